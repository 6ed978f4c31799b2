//! The store conformance suite against [`keycard::store::MemoryStore`].

use crate::common;

common::conformance::store_conformance!(keycard::store::MemoryStore::new());
