//! Session and family data in the sql store.
// PLACEHOLDER (being implemented on a branch): every call fails closed.

use std::time::SystemTime;

use super::SqlStore;
use crate::{
    store::{DataLimits, DataPatch, StoreError, StoreErrorKind, StoreResult},
    token::TokenHash,
};

impl SqlStore {
    pub(super) async fn update_session_data(
        &self,
        _id: &TokenHash,
        _patch: &DataPatch,
        _limits: &DataLimits,
        _now: SystemTime,
    ) -> StoreResult<bool> {
        Err(StoreError::new(StoreErrorKind::Unavailable))
    }

    pub(super) async fn load_family_data(
        &self,
        _family: &str,
        _now: SystemTime,
    ) -> StoreResult<Option<String>> {
        Err(StoreError::new(StoreErrorKind::Unavailable))
    }

    pub(super) async fn save_family_data(
        &self,
        _family: &str,
        _patch: &DataPatch,
        _limits: &DataLimits,
        _now: SystemTime,
    ) -> StoreResult<bool> {
        Err(StoreError::new(StoreErrorKind::Unavailable))
    }
}
