//! Public conformance suites (feature `test-suite`).
//!
//! A store written outside keycard is done when it passes the same suite as keycard's own,
//! against a real server. The suites are plain async functions that panic on a
//! failed assertion, so they run inside any test: call them from a `#[tokio::test]`.
//!
//! - [`store`]: the checks every [`SessionStore`](crate::store::SessionStore),
//!   [`RefreshStore`](crate::store::RefreshStore) and
//!   [`RevocationStore`](crate::store::RevocationStore) must pass. Hand it the store:
//!
//! ```no_run
//! use std::sync::Arc;
//! # use keycard::store::MemoryStore as MyStore;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn session_store_conformance() {
//!     let store = MyStore::new(); // your backend, connected to a real server
//!     keycard::testing::store::session_store(Arc::new(store)).await;
//! }
//! ```
//!
//! The strategy suite (every strategy through the same HTTP behaviours) will join it here.
//! [`FaultyStore`] makes any store fail on demand, for checks of fail-closed behaviour.

mod faulty;
pub mod store;

pub use faulty::FaultyStore;
