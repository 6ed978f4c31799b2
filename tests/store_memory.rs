//! The store conformance suite against [`keycard::store::MemoryStore`].

mod common;

common::conformance::store_conformance!(keycard::store::MemoryStore::new());
