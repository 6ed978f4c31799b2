//! Public conformance suites (feature `test-suite`): one for stores, one for strategies.
//!
//! A store or a strategy written outside keycard is done when it passes the same suites as
//! keycard's own, against a real server. The suites are plain async functions that panic on a
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
//! - [`strategy`]: every [`SessionStrategy`](crate::SessionStrategy) through the same HTTP
//!   behaviours, through the real layer. Hand it a [`StrategyHarness`](strategy::StrategyHarness)
//!   that builds a [`Keycard`](crate::Keycard) with the strategy on a given clock, says its
//!   lifetimes, and makes its store fail and recover ([`FaultyStore`] does that for any store):
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use keycard::{Keycard, clock::ManualClock, store::MemoryStore};
//! use keycard::testing::{FaultyStore, strategy::{self, Lifetimes, StrategyHarness}};
//! # use keycard::strategy::{ServerSessions as MyStrategy, ServerSettings};
//! # fn my_strategy(store: Arc<FaultyStore<MemoryStore>>, clock: &ManualClock) -> MyStrategy {
//! #     MyStrategy::new(store, ServerSettings::default()).with_clock(Arc::new(clock.clone()))
//! # }
//!
//! struct Harness {
//!     store: FaultyStore<MemoryStore>,
//! }
//!
//! #[async_trait]
//! impl StrategyHarness for Harness {
//!     async fn keycard(&self, clock: &ManualClock) -> Keycard {
//!         // Your strategy, over the harness's store, reading the time from `clock`.
//!         let strategy = my_strategy(Arc::new(self.store.clone()), clock);
//!         Keycard::builder()
//!             .strategy(strategy)
//!             .clock(Arc::new(clock.clone()))
//!             .build()
//!             .expect("keycard")
//!     }
//!     fn lifetimes(&self) -> Lifetimes {
//!         Lifetimes::Session {
//!             idle: std::time::Duration::from_secs(30 * 60),
//!             absolute: std::time::Duration::from_secs(12 * 3600),
//!         }
//!     }
//!     fn high_risk(&self) -> bool {
//!         true
//!     }
//!     async fn fail_store(&self) {
//!         self.store.fail();
//!     }
//!     async fn recover_store(&self) {
//!         self.store.recover();
//!     }
//! }
//!
//! #[tokio::test]
//! async fn strategy_conformance() {
//!     let harness = Harness { store: FaultyStore::new(Arc::new(MemoryStore::new())) };
//!     strategy::run(&harness).await;
//! }
//! ```
//!
//! The harness trait is implemented with [`async_trait`](https://docs.rs/async-trait), like
//! [`SessionStrategy`](crate::SessionStrategy) itself.

mod app;
mod faulty;
pub mod store;
pub mod strategy;

pub use app::router;
pub use faulty::FaultyStore;
