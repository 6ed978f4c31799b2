//! The store conformance suite against [`keycard::store::MemoryStore`].

use crate::common;

common::conformance::store_conformance!(keycard::store::MemoryStore::new());

/// The suite's runners, which a backend outside keycard calls, run every check of their trait.
#[cfg(feature = "test-suite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runners_pass_on_one_store() {
    use keycard::{store::MemoryStore, testing::store};
    use std::sync::Arc;

    let memory = Arc::new(MemoryStore::new());
    store::session_store(memory.clone()).await;
    store::refresh_store(memory.clone()).await;
    store::revocation_store(memory).await;
}
