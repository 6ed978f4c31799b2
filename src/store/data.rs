//! Session data as stores see it: a JSON object kept with a session (or a refresh family), and
//! the per-key changes a request makes to it.
//!
//! Stores apply a [`DataPatch`] key by key and atomically, so two requests of one session that
//! change different keys both take effect: there is no read-modify-write of the whole object
//! between requests. [`DataPatch::apply`] is the one merge rule (the memory store calls it under
//! its lock, the SQL store before a compare-and-set or under the row lock; the Redis store does
//! the same in a script). The size of the
//! data is the sum, over its keys, of the key's length plus the length of the value's JSON text,
//! in bytes; [`DataLimits`] bounds it.

use std::{collections::BTreeMap, fmt, sync::Arc};

use serde_json::value::RawValue;

use super::{StoreError, StoreErrorKind, StoreResult};

/// Limits on session data, checked when a handler writes and again, atomically with the merge,
/// by the store. In config: `[data]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataLimits {
    /// Longest key, in bytes. Default 64.
    pub max_key_bytes: usize,
    /// Longest value (its JSON text), in bytes. Default 4 KiB.
    pub max_value_bytes: usize,
    /// Largest total: the sum of key and value lengths over all keys, in bytes. Default 16 KiB.
    pub max_total_bytes: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 64,
            max_value_bytes: 4 * 1024,
            max_total_bytes: 16 * 1024,
        }
    }
}

/// The changes one request made to a session's data: per key, a new value (its JSON text) or a
/// removal. Keys are kept in order, each at most once.
#[derive(Clone, Default)]
pub struct DataPatch {
    changes: BTreeMap<String, Option<Box<RawValue>>>,
    /// The data as the request read it, when it did (see [`DataPatch::base`]).
    base: Option<Option<Arc<str>>>,
}

impl fmt::Debug for DataPatch {
    // Values may be personal data: only the keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPatch")
            .field("keys", &self.changes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DataPatch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` (JSON text).
    pub fn set(&mut self, key: impl Into<String>, value: Box<RawValue>) {
        self.changes.insert(key.into(), Some(value));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<String>) {
        self.changes.insert(key.into(), None);
    }

    /// Records the data as this request read it (`None`: it had none), for [`base`](Self::base).
    pub fn with_base(mut self, base: Option<Arc<str>>) -> Self {
        self.base = Some(base);
        self
    }

    /// The stored data as this request read it, if it did (`Some(None)`: there was none). A
    /// store that writes with a compare-and-set can try it as the expected value first and save
    /// a read. It may be stale by the time the store sees it: a store must not write on its
    /// word, only compare against it.
    pub fn base(&self) -> Option<Option<&str>> {
        self.base.as_ref().map(Option::as_deref)
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes, in key order: `Some(json)` sets, `None` removes.
    pub fn changes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.changes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref().map(RawValue::get)))
    }

    /// The change to `key`, if the patch has one: `Some(None)` is a removal.
    pub fn get(&self, key: &str) -> Option<Option<&RawValue>> {
        self.changes.get(key).map(Option::as_deref)
    }

    /// Whether every key and value is within the per-key limits (the total is the store's to
    /// check, since it depends on the keys other requests wrote).
    ///
    /// # Errors
    /// [`StoreErrorKind::TooLarge`].
    pub fn within(&self, limits: &DataLimits) -> StoreResult<()> {
        for (key, value) in &self.changes {
            if key.len() > limits.max_key_bytes
                || value
                    .as_ref()
                    .is_some_and(|v| v.get().len() > limits.max_value_bytes)
            {
                return Err(StoreError::new(StoreErrorKind::TooLarge));
            }
        }
        Ok(())
    }

    /// The stored data after this patch: `current` is the stored JSON object text (`None` for
    /// none). Returns the new text, `None` when no key is left.
    ///
    /// Stores that hold the data as one JSON text call this under the lock (or row lock) that
    /// serializes the writers of the session, or before writing the result only if `current` is
    /// still what is stored (a compare-and-set).
    ///
    /// # Errors
    /// [`StoreErrorKind::TooLarge`] when a limit would be exceeded, [`StoreErrorKind::Corrupt`]
    /// when `current` is not a JSON object.
    pub fn apply(&self, current: Option<&str>, limits: &DataLimits) -> StoreResult<Option<String>> {
        self.within(limits)?;
        let mut map = parse(current)
            .ok_or_else(|| StoreError::corrupt("session data is not a JSON object"))?;
        for (key, value) in &self.changes {
            match value {
                Some(v) => map.insert(key.as_str().into(), v.clone()),
                None => map.remove(key.as_str()),
            };
        }
        if size(&map) > limits.max_total_bytes {
            return Err(StoreError::new(StoreErrorKind::TooLarge));
        }
        if map.is_empty() {
            return Ok(None);
        }
        serde_json::to_string(&map)
            .map(Some)
            .map_err(StoreError::corrupt)
    }
}

/// Stored data as key → value JSON text (`None` and empty text are no data); `None` when the
/// text is not a JSON object.
fn parse(text: Option<&str>) -> Option<BTreeMap<Box<str>, Box<RawValue>>> {
    match text {
        None => Some(BTreeMap::new()),
        Some(t) if t.trim().is_empty() => Some(BTreeMap::new()),
        Some(t) => serde_json::from_str(t).ok(),
    }
}

/// The size [`DataLimits::max_total_bytes`] bounds.
fn size(map: &BTreeMap<Box<str>, Box<RawValue>>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.get().len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn patches_merge_key_by_key() {
        let mut patch = DataPatch::new();
        patch.set("b", raw(r#"{"x":[1,2]}"#));
        patch.remove("a");
        let limits = DataLimits::default();
        let merged = patch
            .apply(Some(r#"{"a":1,"c":"keep"}"#), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(merged, r#"{"b":{"x":[1,2]},"c":"keep"}"#);
        let mut clear = DataPatch::new();
        clear.remove("b");
        clear.remove("c");
        assert_eq!(clear.apply(Some(&merged), &limits).unwrap(), None);
    }

    #[test]
    fn limits_refuse_the_whole_patch() {
        let limits = DataLimits {
            max_key_bytes: 3,
            max_value_bytes: 5,
            max_total_bytes: 10,
        };
        let mut long_key = DataPatch::new();
        long_key.set("abcd", raw("1"));
        assert_eq!(
            long_key.apply(None, &limits).unwrap_err().kind(),
            StoreErrorKind::TooLarge
        );
        let mut long_value = DataPatch::new();
        long_value.set("a", raw("123456"));
        assert_eq!(
            long_value.apply(None, &limits).unwrap_err().kind(),
            StoreErrorKind::TooLarge
        );
        let mut total = DataPatch::new();
        total.set("b", raw("12345"));
        // 1 + 5 already stored, 1 + 5 more: 12 > 10.
        assert_eq!(
            total
                .apply(Some(r#"{"a":12345}"#), &limits)
                .unwrap_err()
                .kind(),
            StoreErrorKind::TooLarge
        );
        assert!(format!("{total:?}").contains("\"b\""));
        assert!(!format!("{total:?}").contains("12345"));
    }
}
