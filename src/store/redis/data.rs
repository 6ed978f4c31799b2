//! Session and family data in the Redis store: a session's data is the hash `P:{s:<id>}:d` (one
//! field per key, the value's JSON text as value), a family's the fields `d:<key>` of the family
//! hash; both are changed by one script each, limits included (see the module docs of [`super`]).

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::value::RawValue;

use super::{
    RedisStore,
    connection::store_err,
    record::corrupt,
    scripts::{FAMILY_DATA, FAMILY_DATA_UPDATE, SESSION_DATA_UPDATE},
};
use crate::{
    clock::to_millis,
    store::{DataLimits, DataPatch, StoreError, StoreErrorKind, StoreResult},
    token::TokenHash,
};

impl RedisStore {
    pub(super) async fn update_session_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        patch.within(limits)?;
        let keys = &self.inner.keys;
        let data_key = keys.session_data(id);
        let mut invocation = SESSION_DATA_UPDATE.key(keys.session(id));
        invocation.key(&data_key);
        self.run(self.patch(invocation, &data_key, patch, limits, now))
            .await
    }

    pub(super) async fn load_family_data(
        &self,
        family: &str,
        now: SystemTime,
    ) -> StoreResult<Option<String>> {
        let mut conn = self.reader();
        let pairs: Vec<(String, String)> = self
            .run(async {
                FAMILY_DATA
                    .key(self.inner.keys.family(family))
                    .arg(to_millis(now))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(store_err)
            })
            .await?;
        object_text(pairs)
    }

    pub(super) async fn save_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        patch.within(limits)?;
        let key = self.inner.keys.family(family);
        let invocation = FAMILY_DATA_UPDATE.key(&key);
        self.run(self.patch(invocation, &key, patch, limits, now))
            .await
    }

    /// Runs a data-update script (its keys already set) with `now`, the limits and the patch.
    async fn patch(
        &self,
        mut invocation: redis::ScriptInvocation<'_>,
        wait_key: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        invocation
            .arg(to_millis(now))
            .arg(limits.max_key_bytes)
            .arg(limits.max_value_bytes)
            .arg(limits.max_total_bytes);
        for (key, value) in patch.changes() {
            match value {
                Some(v) => invocation.arg(key).arg("s").arg(v),
                None => invocation.arg(key).arg("r").arg(""),
            };
        }
        let mut conn = self.writer();
        let status: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        match status {
            1 => {
                self.durability().wait(&mut conn, wait_key).await?;
                Ok(true)
            }
            -1 => Err(StoreError::new(StoreErrorKind::TooLarge)),
            _ => Ok(false),
        }
    }
}

/// The JSON object text of stored `(key, value JSON text)` pairs, keys in order; `None` for none.
pub(super) fn object_text(mut pairs: Vec<(String, String)>) -> StoreResult<Option<String>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(
        2 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).map_err(StoreError::corrupt)?);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    Ok(Some(out))
}

/// The `(field, value)` pairs of stored data text (a JSON object), for a new data hash.
pub(super) fn object_pairs(text: &str) -> StoreResult<Vec<(String, String)>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|_| corrupt("session data is not a JSON object"))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, String::from(Box::<str>::from(v))))
        .collect())
}
