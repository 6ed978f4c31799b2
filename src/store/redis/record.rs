//! The values the Redis store keeps: session records (`last_seen|expires|absolute|<fixed>`, the
//! fixed part in the binary form of [`codec`] or the legacy JSON form), refresh families and
//! tokens, refresh pointers, and the millisecond times they hold.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::codec;
use crate::{
    clock::{from_millis, to_millis},
    store::{RefreshRecord, SessionRecord, StoreError, StoreResult},
    token::TokenHash,
};

/// Stored data that could not be decoded.
pub(super) fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt(what)
}

/// `d` in whole milliseconds, saturating.
pub(super) fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Stored milliseconds as a duration (a negative count, which keycard never writes, as zero).
fn duration_of_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A `PXAT`/`PEXPIREAT` argument: Redis refuses values below 1.
pub(super) fn expire_at(t: SystemTime) -> i64 {
    to_millis(t).max(1)
}

/// The parts of a session that never change, as compact JSON: the form of records written before
/// the binary form ([`codec`]); still read, never written.
#[derive(Deserialize)]
struct LegacySessionData {
    s: String,
    #[serde(default)]
    r: Vec<String>,
    #[serde(default)]
    a: Map<String, Json>,
    c: i64,
    t: i64,
    #[serde(default)]
    ua: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// `last_seen|expires|absolute|<fixed>`: the times the touch script rewrites come first, as
/// decimal text, so Lua never parses the rest; `<fixed>` is the binary form of [`codec`].
pub(super) fn encode_session(r: &SessionRecord) -> StoreResult<Vec<u8>> {
    let mut out = format!(
        "{}|{}|{}|",
        to_millis(r.last_seen_at),
        to_millis(r.expires_at),
        to_millis(r.absolute_expires_at)
    )
    .into_bytes();
    codec::encode(r, &mut out)?;
    Ok(out)
}

pub(super) fn decode_session(id: TokenHash, raw: &[u8]) -> StoreResult<SessionRecord> {
    let mut rest = raw;
    let mut time = || -> StoreResult<i64> {
        // A dozen bytes: an inline scan beats a call into `memchr`'s vector search.
        let end = rest
            .iter()
            .position(|&b| b == b'|')
            .ok_or_else(|| corrupt("malformed session record"))?;
        let value = decimal(&rest[..end]).ok_or_else(|| corrupt("malformed session record"))?;
        rest = &rest[end + 1..];
        Ok(value)
    };
    let (last_seen, expires, absolute) = (time()?, time()?, time()?);
    let fixed = if matches!(rest.first(), Some(&(codec::MARKER | codec::MARKER_V1))) {
        codec::decode(rest)?
    } else {
        let d: LegacySessionData = serde_json::from_slice(rest).map_err(StoreError::corrupt)?;
        codec::Fixed {
            subject: d.s,
            roles: d.r,
            attributes: d.a,
            created_at: d.c,
            authenticated_at: d.t,
            user_agent: d.ua,
            ip: d.ip,
            idle_timeout: None,
            persistent: true,
        }
    };
    Ok(SessionRecord {
        id,
        subject: fixed.subject,
        roles: fixed.roles,
        attributes: fixed.attributes,
        created_at: from_millis(fixed.created_at),
        last_seen_at: from_millis(last_seen),
        authenticated_at: from_millis(fixed.authenticated_at),
        expires_at: from_millis(expires),
        absolute_expires_at: from_millis(absolute),
        user_agent: fixed.user_agent,
        ip: fixed.ip,
        data: None,
        idle_timeout: fixed.idle_timeout.map(duration_of_millis),
        persistent: fixed.persistent,
    })
}

/// An optionally negative decimal integer, as Lua's `%-?%d+` matches it and the scripts write it.
fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    // Past leading zeros, at most 19 digits fit a `u64` without overflow, so the loop needs no
    // check per digit (a time in milliseconds has 13 digits, and three are read per request);
    // the range of `i64` is checked once at the end.
    let significant = &digits[digits.iter().take_while(|&&d| d == b'0').count()..];
    if significant.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &d in significant {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + u64::from(d);
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// The parts of a refresh family shared by all its tokens, as compact JSON.
#[derive(Serialize, Deserialize)]
struct FamilyData<'a> {
    #[serde(default)]
    r: Cow<'a, [String]>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    a: Cow<'a, Map<String, Json>>,
    c: i64,
    x: i64,
    t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<Cow<'a, str>>,
    /// The family's own idle timeout in milliseconds, when chosen at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<i64>,
    /// Whether the refresh cookie is persistent (absent: it is).
    #[serde(default = "persistent", skip_serializing_if = "is_persistent")]
    p: bool,
}

fn persistent() -> bool {
    true
}

fn is_persistent(p: &bool) -> bool {
    *p
}

pub(super) fn encode_family(r: &RefreshRecord) -> StoreResult<String> {
    let data = FamilyData {
        r: Cow::Borrowed(&r.roles),
        a: Cow::Borrowed(&r.attributes),
        c: to_millis(r.family_created_at),
        x: to_millis(r.family_expires_at),
        t: to_millis(r.authenticated_at),
        ua: r.user_agent.as_deref().map(Cow::Borrowed),
        ip: r.ip.as_deref().map(Cow::Borrowed),
        i: r.idle_timeout.map(millis_of),
        p: r.persistent,
    };
    serde_json::to_string(&data).map_err(StoreError::corrupt)
}

/// `issued|expires|used` (`used` empty for the head).
pub(super) fn encode_token(r: &RefreshRecord) -> String {
    match r.used_at {
        Some(used) => format!(
            "{}|{}|{}",
            to_millis(r.issued_at),
            to_millis(r.expires_at),
            to_millis(used)
        ),
        None => format!("{}|{}|", to_millis(r.issued_at), to_millis(r.expires_at)),
    }
}

pub(super) fn decode_refresh(
    id: TokenHash,
    subject: String,
    family: String,
    data: &str,
    token: &str,
) -> StoreResult<RefreshRecord> {
    let data: FamilyData<'static> = serde_json::from_str(data).map_err(StoreError::corrupt)?;
    let bad = || corrupt("malformed refresh token record");
    let mut parts = token.splitn(3, '|');
    let issued: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let expires: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let used = match parts.next().ok_or_else(bad)? {
        "" => None,
        p => Some(from_millis(p.parse().map_err(|_| bad())?)),
    };
    Ok(RefreshRecord {
        id,
        family,
        subject,
        roles: data.r.into_owned(),
        attributes: data.a.into_owned(),
        issued_at: from_millis(issued),
        expires_at: from_millis(expires),
        family_created_at: from_millis(data.c),
        family_expires_at: from_millis(data.x),
        authenticated_at: from_millis(data.t),
        used_at: used,
        user_agent: data.ua.map(Cow::into_owned),
        ip: data.ip.map(Cow::into_owned),
        idle_timeout: data.i.map(duration_of_millis),
        persistent: data.p,
    })
}

/// What a family's pointer holds: `family_expires|family`.
pub(super) fn encode_pointer(family_expires: i64, family: &str) -> String {
    format!("{family_expires}|{family}")
}

/// Reads what [`encode_pointer`] wrote.
pub(super) fn parse_pointer(raw: &str) -> StoreResult<(i64, &str)> {
    let (x, family) = raw
        .split_once('|')
        .ok_or_else(|| corrupt("malformed refresh pointer"))?;
    let x = x
        .parse()
        .map_err(|_| corrupt("malformed refresh pointer"))?;
    Ok((x, family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_records_round_trip() {
        let t = from_millis(1_700_000_000_123);
        let record = SessionRecord {
            id: TokenHash::from_bytes([7; 32]),
            subject: "a|b{c}".into(),
            roles: vec!["admin".into()],
            attributes: serde_json::json!({"k": [1, 2]})
                .as_object()
                .cloned()
                .unwrap(),
            created_at: t,
            last_seen_at: t,
            authenticated_at: t,
            expires_at: t + Duration::from_secs(60),
            absolute_expires_at: t + Duration::from_secs(3600),
            user_agent: Some("ua|x".into()),
            ip: None,
            data: None,
            idle_timeout: Some(Duration::from_secs(90)),
            persistent: false,
        };
        let encoded = encode_session(&record).unwrap();
        assert_eq!(decode_session(record.id, &encoded).unwrap(), record);
        assert!(decode_session(record.id, b"1|2|x").is_err());
        assert!(decode_session(record.id, b"1|2|3|").is_err());
        assert!(decode_session(record.id, b"1|x|3|{}").is_err());

        // Records written in the JSON form before the binary one are still read, as persistent
        // sessions with the configured idle timeout.
        let record = SessionRecord {
            idle_timeout: None,
            persistent: true,
            ..record
        };
        let legacy = format!(
            "{}|{}|{}|{}",
            to_millis(record.last_seen_at),
            to_millis(record.expires_at),
            to_millis(record.absolute_expires_at),
            serde_json::json!({
                "s": record.subject, "r": record.roles, "a": record.attributes,
                "c": to_millis(record.created_at), "t": to_millis(record.authenticated_at),
                "ua": record.user_agent,
            })
        );
        assert_eq!(
            decode_session(record.id, legacy.as_bytes()).unwrap(),
            record
        );
    }

    #[test]
    fn decimals_read_as_the_scripts_write_them() {
        for (text, value) in [
            ("0", Some(0)),
            ("1700000000123", Some(1_700_000_000_123)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            ("-999999999999999999", Some(-999_999_999_999_999_999)),
            ("1000000000000000000", Some(1_000_000_000_000_000_000)),
            ("00000000000000000000000001", Some(1)),
            ("12345678901234567x", None),
            ("9223372036854775808", None),
            ("", None),
            ("-", None),
            ("+1", None),
            ("1 ", None),
            ("1.5", None),
            ("--1", None),
        ] {
            assert_eq!(decimal(text.as_bytes()), value, "{text:?}");
            if let Some(v) = value {
                assert_eq!(text.parse::<i64>().ok(), Some(v));
            }
        }
    }
}
