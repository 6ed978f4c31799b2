//! A compact binary encoding of the immutable part of a [`SessionRecord`], for stores that keep a
//! record as one opaque value (Redis).
//!
//! It exists for the hot path: decoding it is a few bounds-checked copies, where JSON costs a
//! parser, a field-name match per key and a `BTreeMap` for the (usually empty) attributes.
//!
//! Layout, after the one-byte [`MARKER`] (integers little-endian, lengths `u32`):
//!
//! | field | encoding |
//! |---|---|
//! | `created_at`, `authenticated_at` | `i64` milliseconds since the Unix epoch, each |
//! | `subject` | length, UTF-8 bytes |
//! | `roles` | count, then length and UTF-8 bytes per role |
//! | `user_agent`, `ip` | `0` for none, or `1`, length, UTF-8 bytes |
//! | `attributes` | length, then a JSON object (length `0` for none) |
//! | `idle_timeout` | `0` for none, or `1` and `i64` milliseconds |
//! | `persistent` | `0` or `1` |
//!
//! The marker is not a byte JSON can start with, so a reader tells this form from the JSON form
//! that earlier keycard builds wrote, and reads both. Records of the first binary form
//! ([`MARKER_V1`], without the last two fields) read as persistent with the configured idle
//! timeout.

use serde_json::{Map, Value};

use crate::{
    clock::to_millis,
    store::{SessionRecord, StoreError, StoreResult},
};

/// The first byte of an encoded record.
pub(super) const MARKER: u8 = 0x02;

/// The first byte of a record of the first binary form, still read.
pub(super) const MARKER_V1: u8 = 0x01;

/// The fields of a session that never change, decoded. Times are milliseconds.
#[derive(Debug, PartialEq)]
pub(super) struct Fixed {
    pub(super) subject: String,
    pub(super) roles: Vec<String>,
    pub(super) attributes: Map<String, Value>,
    pub(super) created_at: i64,
    pub(super) authenticated_at: i64,
    pub(super) user_agent: Option<String>,
    pub(super) ip: Option<String>,
    pub(super) idle_timeout: Option<i64>,
    pub(super) persistent: bool,
}

/// Appends the encoded immutable fields of `r` to `out`.
pub(super) fn encode(r: &SessionRecord, out: &mut Vec<u8>) -> StoreResult<()> {
    out.push(MARKER);
    out.extend_from_slice(&to_millis(r.created_at).to_le_bytes());
    out.extend_from_slice(&to_millis(r.authenticated_at).to_le_bytes());
    put_bytes(out, r.subject.as_bytes())?;
    put_len(out, r.roles.len())?;
    for role in &r.roles {
        put_bytes(out, role.as_bytes())?;
    }
    put_opt(out, r.user_agent.as_deref())?;
    put_opt(out, r.ip.as_deref())?;
    if r.attributes.is_empty() {
        put_len(out, 0)?;
    } else {
        let json = serde_json::to_vec(&r.attributes).map_err(StoreError::corrupt)?;
        put_bytes(out, &json)?;
    }
    match r.idle_timeout {
        None => out.push(0),
        Some(idle) => {
            out.push(1);
            out.extend_from_slice(&super::record::millis_of(idle).to_le_bytes());
        }
    }
    out.push(u8::from(r.persistent));
    Ok(())
}

/// Decodes what [`encode`] wrote (starting with the marker). Trailing bytes are an error.
pub(super) fn decode(raw: &[u8]) -> StoreResult<Fixed> {
    let mut r = Reader(raw);
    let v1 = match r.take(1)? {
        [MARKER] => false,
        [MARKER_V1] => true,
        _ => return Err(corrupt()),
    };
    let created_at = r.i64()?;
    let authenticated_at = r.i64()?;
    let subject = r.string()?;
    let count = r.len()?;
    // Each role takes at least its 4-byte length: refuse counts the value cannot hold before
    // allocating for them.
    if count > r.0.len() / 4 {
        return Err(corrupt());
    }
    let mut roles = Vec::with_capacity(count);
    for _ in 0..count {
        roles.push(r.string()?);
    }
    let user_agent = r.opt_string()?;
    let ip = r.opt_string()?;
    let attributes = match r.bytes()? {
        [] => Map::new(),
        json => serde_json::from_slice(json).map_err(StoreError::corrupt)?,
    };
    let (idle_timeout, persistent) = if v1 {
        (None, true)
    } else {
        let idle = match r.take(1)? {
            [0] => None,
            [1] => Some(r.i64()?),
            _ => return Err(corrupt()),
        };
        let persistent = match r.take(1)? {
            [0] => false,
            [1] => true,
            _ => return Err(corrupt()),
        };
        (idle, persistent)
    };
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    Ok(Fixed {
        subject,
        roles,
        attributes,
        created_at,
        authenticated_at,
        user_agent,
        ip,
        idle_timeout,
        persistent,
    })
}

fn corrupt() -> StoreError {
    StoreError::corrupt("malformed binary session record")
}

fn put_len(out: &mut Vec<u8>, len: usize) -> StoreResult<()> {
    let len = u32::try_from(len).map_err(|_| StoreError::corrupt("session field too large"))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> StoreResult<()> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) -> StoreResult<()> {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_bytes(out, v.as_bytes())?;
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
        if n > self.0.len() {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> StoreResult<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }

    fn i64(&mut self) -> StoreResult<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn len(&mut self) -> StoreResult<usize> {
        usize::try_from(u32::from_le_bytes(self.array()?)).map_err(|_| corrupt())
    }

    fn bytes(&mut self) -> StoreResult<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn string(&mut self) -> StoreResult<String> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(StoreError::corrupt)
    }

    fn opt_string(&mut self) -> StoreResult<Option<String>> {
        match self.take(1)? {
            [0] => Ok(None),
            [1] => self.string().map(Some),
            _ => Err(corrupt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{clock::from_millis, token::TokenHash};

    fn record(attributes: Map<String, Value>, ua: Option<&str>, ip: Option<&str>) -> SessionRecord {
        let t = from_millis(1_700_000_000_123);
        SessionRecord {
            id: TokenHash::from_bytes([3; 32]),
            subject: "ünïcode|{subject}\u{0}".into(),
            roles: vec!["admin".into(), String::new(), "a|b".into()],
            attributes,
            created_at: t,
            last_seen_at: t,
            authenticated_at: t + Duration::from_millis(5),
            expires_at: t + Duration::from_secs(60),
            absolute_expires_at: t + Duration::from_secs(3600),
            user_agent: ua.map(str::to_owned),
            ip: ip.map(str::to_owned),
            data: None,
            idle_timeout: None,
            persistent: true,
        }
    }

    fn encoded(r: &SessionRecord) -> Vec<u8> {
        let mut out = Vec::new();
        encode(r, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_every_field() {
        let attrs = serde_json::json!({"tenant": "t1", "n": [1, 2, {"x": null}]});
        for r in [
            record(Map::new(), None, None),
            record(attrs.as_object().cloned().unwrap(), Some("ua"), Some("::1")),
            record(Map::new(), Some(""), None),
        ] {
            let fixed = decode(&encoded(&r)).unwrap();
            assert_eq!(fixed.subject, r.subject);
            assert_eq!(fixed.roles, r.roles);
            assert_eq!(fixed.attributes, r.attributes);
            assert_eq!(fixed.created_at, to_millis(r.created_at));
            assert_eq!(fixed.authenticated_at, to_millis(r.authenticated_at));
            assert_eq!(fixed.user_agent, r.user_agent);
            assert_eq!(fixed.ip, r.ip);
            assert_eq!(fixed.idle_timeout, None);
            assert!(fixed.persistent);
        }
        let mut chosen = record(Map::new(), None, None);
        chosen.idle_timeout = Some(Duration::from_millis(90_500));
        chosen.persistent = false;
        let fixed = decode(&encoded(&chosen)).unwrap();
        assert_eq!(fixed.idle_timeout, Some(90_500));
        assert!(!fixed.persistent);
    }

    #[test]
    fn reads_the_first_binary_form_as_persistent_with_the_configured_idle() {
        let mut bytes = encoded(&record(Map::new(), Some("ua"), None));
        // The first form: the same fields up to the attributes, nothing after them.
        bytes.truncate(bytes.len() - 2);
        bytes[0] = MARKER_V1;
        let fixed = decode(&bytes).unwrap();
        assert_eq!(fixed.user_agent.as_deref(), Some("ua"));
        assert_eq!(fixed.idle_timeout, None);
        assert!(fixed.persistent);
    }

    #[test]
    fn never_starts_like_json() {
        let bytes = encoded(&record(Map::new(), None, None));
        assert_eq!(bytes[0], MARKER);
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let attrs = serde_json::json!({"k": "v"});
        let bytes = encoded(&record(
            attrs.as_object().cloned().unwrap(),
            Some("ua"),
            Some("ip"),
        ));
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn hostile_lengths_and_bytes_are_refused() {
        let mut bytes = encoded(&record(Map::new(), None, None));
        // A role count far beyond what the value holds.
        let count_at = 1 + 16 + 4 + "ünïcode|{subject}\u{0}".len();
        bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());

        let mut bytes = encoded(&record(Map::new(), None, None));
        // Invalid UTF-8 in the subject.
        bytes[1 + 16 + 4] = 0xff;
        assert!(decode(&bytes).is_err());

        let mut bytes = encoded(&record(Map::new(), None, None));
        // An option tag other than 0 or 1 (the IP's, before the attributes' length and the
        // two one-byte lifetime fields).
        let len = bytes.len();
        bytes[len - 2 - 4 - 1] = 2;
        assert!(decode(&bytes).is_err());

        for at in [1, 2] {
            // A lifetime tag other than 0 or 1.
            let mut bytes = encoded(&record(Map::new(), None, None));
            let len = bytes.len();
            bytes[len - at] = 2;
            assert!(decode(&bytes).is_err());
        }

        let mut bytes = encoded(&record(Map::new(), None, None));
        bytes[0] = b'{';
        assert!(decode(&bytes).is_err());
    }
}
