//! Access-token claims: what keycard writes, and the strict parser and validator for what it reads.
//!
//! Claims are parsed by a hand-written serde visitor, not a derived struct, so that:
//! - a duplicated claim (registered or not) is a rejection, never "last one wins";
//! - a claim of the wrong JSON type (`"exp": "123"`, `"exp": 1.5`, `"aud": 5`, `"roles": "admin"`)
//!   is a rejection, never a skipped check;
//! - unregistered claims become the principal's attributes in one pass, without a second parse.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, Serializer},
};
use serde_json::{Map, Value};

use crate::{
    clock::from_millis,
    error::{Error, ErrorKind, Result},
    principal::{Principal, PrincipalSpec, SessionRef},
};

/// Claim names keycard sets or interprets itself; attributes may not use them.
pub const RESERVED_CLAIMS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "sid",
    "roles",
    "auth_time",
    "iat_ms",
];

/// Largest accepted NumericDate (9999-12-31T23:59:59Z), so that millisecond arithmetic never
/// overflows.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

pub(crate) fn invalid(message: &'static str) -> Error {
    Error::with_message(ErrorKind::InvalidCredential, message)
}

/// What every access token is checked against, besides its signature.
#[derive(Debug, Clone)]
pub(crate) struct Validation {
    pub(crate) issuer: Box<str>,
    pub(crate) audience: Box<str>,
    pub(crate) leeway_ms: i64,
    /// Largest accepted `exp - iat`, in seconds.
    pub(crate) max_ttl_secs: i64,
}

/// A token whose signature and claims have been verified (revocation not yet checked).
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    /// Millisecond-precision issue time (`iat_ms` when present, else `iat` × 1000).
    pub(crate) iat_ms: i64,
    /// `exp` in milliseconds.
    pub(crate) exp_ms: i64,
}

/// A string that borrows from the input when it has no escapes.
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `aud`: one string or an array of strings.
#[derive(Debug, PartialEq)]
enum Aud<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl<'de> Deserialize<'de> for Aud<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Aud<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Aud::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Aud::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Str(s)) = seq.next_element::<Str<'de>>()? {
                    if out.len() >= 64 {
                        return Err(de::Error::custom("too many audiences"));
                    }
                    out.push(s);
                }
                Ok(Aud::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Aud<'_> {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Aud::One(a) => a == audience,
            Aud::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// Claims as read from a token, before validation.
#[derive(Debug, Default, PartialEq)]
struct RawClaims<'a> {
    iss: Option<Cow<'a, str>>,
    sub: Option<Cow<'a, str>>,
    aud: Option<Aud<'a>>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    iat_ms: Option<i64>,
    auth_time: Option<i64>,
    jti: Option<Cow<'a, str>>,
    sid: Option<Cow<'a, str>>,
    roles: Option<Vec<String>>,
    attributes: Map<String, Value>,
}

fn dup<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate claim `{name}`"))
}

fn set<T, E: de::Error>(slot: &mut Option<T>, name: &str, value: T) -> std::result::Result<(), E> {
    if slot.is_some() {
        return Err(dup(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for RawClaims<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawClaims<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut c = RawClaims::default();
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        "iss" => set(&mut c.iss, "iss", map.next_value::<Str<'de>>()?.0)?,
                        "sub" => set(&mut c.sub, "sub", map.next_value::<Str<'de>>()?.0)?,
                        "jti" => set(&mut c.jti, "jti", map.next_value::<Str<'de>>()?.0)?,
                        "sid" => set(&mut c.sid, "sid", map.next_value::<Str<'de>>()?.0)?,
                        "aud" => set(&mut c.aud, "aud", map.next_value::<Aud<'de>>()?)?,
                        "exp" => set(&mut c.exp, "exp", map.next_value::<i64>()?)?,
                        "nbf" => set(&mut c.nbf, "nbf", map.next_value::<i64>()?)?,
                        "iat" => set(&mut c.iat, "iat", map.next_value::<i64>()?)?,
                        "iat_ms" => set(&mut c.iat_ms, "iat_ms", map.next_value::<i64>()?)?,
                        "auth_time" => {
                            set(&mut c.auth_time, "auth_time", map.next_value::<i64>()?)?
                        }
                        "roles" => set(&mut c.roles, "roles", map.next_value::<Vec<String>>()?)?,
                        _ => {
                            let value = map.next_value::<Value>()?;
                            if c.attributes.insert(key.into_owned(), value).is_some() {
                                return Err(de::Error::custom("duplicate claim"));
                            }
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

fn date(v: i64) -> Result<i64> {
    if (0..=MAX_NUMERIC_DATE).contains(&v) {
        Ok(v * 1000)
    } else {
        Err(invalid("a time claim is out of range"))
    }
}

/// A cursor over the exact JSON keycard's issuer writes.
struct Canonical<'a> {
    json: &'a str,
    at: usize,
}

impl<'a> Canonical<'a> {
    /// Consumes `lit` exactly (a fixed-size comparison, inlined rather than a `memcmp` call).
    #[inline]
    fn lit<const N: usize>(&mut self, lit: &[u8; N]) -> Option<()> {
        let end = self.at + N;
        let got: &[u8; N] = self.json.as_bytes().get(self.at..end)?.try_into().ok()?;
        (got == lit).then(|| self.at = end)
    }

    /// A string without escapes or control characters (anything else is left to serde).
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = self.json.as_bytes().get(self.at..)?;
        let len = memchr::memchr(b'"', rest)?;
        let content = &rest[..len];
        if content
            .iter()
            .fold(false, |bad, &b| bad | (b < 0x20) | (b == b'\\'))
        {
            return None;
        }
        let s = self.json.get(self.at..self.at + len)?;
        self.at += len + 1;
        Some(s)
    }

    /// An integer as serde_json writes it: optional `-`, no leading zero, at most 18 digits.
    fn int(&mut self) -> Option<i64> {
        let bytes = self.json.as_bytes();
        let negative = bytes.get(self.at) == Some(&b'-');
        let start = self.at + usize::from(negative);
        let mut value = 0i64;
        let mut digits = 0usize;
        for &b in bytes.get(start..)? {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            digits += 1;
            if digits > 18 {
                return None;
            }
            value = value * 10 + i64::from(d);
        }
        if digits == 0 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
        self.at = start + digits;
        Some(if negative { -value } else { value })
    }
}

/// Reads the compact claims keycard's own issuer writes (`IssueClaims`, keys in that order, no
/// attributes, no escapes, no whitespace) without serde; `None` for anything else, which the
/// general parser then reads. Whatever this accepts, serde reads the same way (tested), so it is
/// a shortcut, not a second grammar.
fn canonical(json: &str) -> Option<RawClaims<'_>> {
    let mut p = Canonical { json, at: 0 };
    p.lit(b"{\"iss\":")?;
    let iss = p.string()?;
    p.lit(b",\"sub\":")?;
    let sub = p.string()?;
    p.lit(b",\"aud\":")?;
    let aud = p.string()?;
    p.lit(b",\"exp\":")?;
    let exp = p.int()?;
    p.lit(b",\"iat\":")?;
    let iat = p.int()?;
    p.lit(b",\"iat_ms\":")?;
    let iat_ms = p.int()?;
    p.lit(b",\"auth_time\":")?;
    let auth_time = p.int()?;
    p.lit(b",\"jti\":")?;
    let jti = p.string()?;
    p.lit(b",\"sid\":")?;
    let sid = p.string()?;
    p.lit(b",\"roles\":[")?;
    let mut roles = Vec::new();
    if p.lit(b"]").is_none() {
        loop {
            roles.push(p.string()?.to_owned());
            if p.lit(b"]").is_some() {
                break;
            }
            p.lit(b",")?;
        }
    }
    p.lit(b"}")?;
    (p.at == json.len()).then(|| RawClaims {
        iss: Some(Cow::Borrowed(iss)),
        sub: Some(Cow::Borrowed(sub)),
        aud: Some(Aud::One(Cow::Borrowed(aud))),
        exp: Some(exp),
        nbf: None,
        iat: Some(iat),
        iat_ms: Some(iat_ms),
        auth_time: Some(auth_time),
        jti: Some(Cow::Borrowed(jti)),
        sid: Some(Cow::Borrowed(sid)),
        roles: Some(roles),
        attributes: Map::new(),
    })
}

/// Parses and validates decoded claims. `now_ms` is the current time in Unix milliseconds.
// One function on purpose (~100 lines): each token's checks, in the order their errors win.
pub(crate) fn validate(json: &str, v: &Validation, now_ms: i64) -> Result<Verified> {
    let c = match canonical(json) {
        Some(c) => c,
        None => serde_json::from_str::<RawClaims<'_>>(json).map_err(|_| {
            invalid("the token's claims are malformed, duplicated or of the wrong type")
        })?,
    };

    match c.iss.as_deref() {
        Some(iss) if iss == &*v.issuer => {}
        Some(_) => return Err(invalid("the token's issuer is not accepted")),
        None => return Err(invalid("the token has no `iss` claim")),
    }
    match &c.aud {
        Some(aud) if aud.contains(&v.audience) => {}
        Some(_) => return Err(invalid("the token's audience is not accepted")),
        None => return Err(invalid("the token has no `aud` claim")),
    }
    let sub = c
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("the token has no `sub` claim"))?;
    let jti = c
        .jti
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| invalid("the token has no usable `jti` claim"))?;
    let exp = c
        .exp
        .ok_or_else(|| invalid("the token has no `exp` claim"))?;
    let iat = c
        .iat
        .ok_or_else(|| invalid("the token has no `iat` claim"))?;
    let exp_ms = date(exp)?;
    let iat_ms = match c.iat_ms {
        None => date(iat)?,
        Some(ms) => {
            date(iat)?;
            if ms.div_euclid(1000) != iat {
                return Err(invalid("the token's `iat_ms` contradicts `iat`"));
            }
            ms
        }
    };

    if now_ms > exp_ms.saturating_add(v.leeway_ms) {
        return Err(Error::with_message(
            ErrorKind::Expired,
            "the token has expired",
        ));
    }
    if let Some(nbf) = c.nbf
        && date(nbf)? > now_ms.saturating_add(v.leeway_ms)
    {
        return Err(invalid("the token is not valid yet (nbf)"));
    }
    if iat_ms > now_ms.saturating_add(v.leeway_ms) {
        return Err(invalid("the token was issued in the future (iat)"));
    }
    if exp < iat {
        return Err(invalid("the token expires before it was issued"));
    }
    if exp - iat > v.max_ttl_secs {
        return Err(invalid("the token's lifetime exceeds the accepted maximum"));
    }
    let authenticated_ms = match c.auth_time {
        Some(t) => {
            let t = date(t)?;
            if t > iat_ms.saturating_add(v.leeway_ms) {
                return Err(invalid("the token's auth_time is after its iat"));
            }
            t
        }
        None => iat_ms,
    };

    let sid = c
        .sid
        .map(Cow::into_owned)
        .unwrap_or_else(|| jti.clone().into_owned());
    let principal = Principal::new(
        PrincipalSpec {
            subject: sub.into_owned(),
            roles: c.roles.unwrap_or_default(),
            attributes: c.attributes,
        },
        SessionRef {
            id: sid,
            jti: Some(jti.into_owned()),
            issued_at: from_millis(iat_ms),
            client_ip: None,
        },
        from_millis(authenticated_ms),
        from_millis(exp_ms),
    );
    Ok(Verified {
        principal,
        iat_ms,
        exp_ms,
    })
}

/// The claims keycard writes into an access token.
pub(crate) struct IssueClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) iat_ms: i64,
    pub(crate) auth_time: i64,
    pub(crate) jti: &'a str,
    pub(crate) sid: &'a str,
    pub(crate) roles: &'a [String],
    pub(crate) attributes: &'a Map<String, Value>,
}

impl serde::Serialize for IssueClaims<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(11 + self.attributes.len()))?;
        m.serialize_entry("iss", self.iss)?;
        m.serialize_entry("sub", self.sub)?;
        m.serialize_entry("aud", self.aud)?;
        m.serialize_entry("exp", &self.exp)?;
        m.serialize_entry("iat", &self.iat)?;
        m.serialize_entry("iat_ms", &self.iat_ms)?;
        m.serialize_entry("auth_time", &self.auth_time)?;
        m.serialize_entry("jti", self.jti)?;
        m.serialize_entry("sid", self.sid)?;
        m.serialize_entry("roles", self.roles)?;
        for (k, v) in self.attributes {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Refuses attributes that would shadow a registered claim.
pub(crate) fn check_attributes(attributes: &Map<String, Value>) -> Result<()> {
    match attributes
        .keys()
        .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        Some(k) => Err(Error::with_message(
            ErrorKind::Internal,
            format!("attribute `{k}` collides with a registered JWT claim"),
        )),
        None => Ok(()),
    }
}

/// Seconds since the Unix epoch (floor), for `exp`/`iat`.
pub(crate) fn secs_floor(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// Header parameter names that are refused outright: `crit` (RFC 7515 §4.1.11: we understand no
/// extension), the key-location parameters (a token never chooses its own key), `b64`
/// (RFC 7797 unencoded payloads), and JWE/compression parameters.
const FORBIDDEN_HEADERS: [&str; 12] = [
    "crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc", "epk", "cty",
];

/// Deepest nesting accepted in an (ignored) header parameter.
const MAX_HEADER_DEPTH: usize = 4;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The parts of a protected header keycard uses.
pub(crate) struct Header<'a> {
    pub(crate) alg: Cow<'a, str>,
    pub(crate) kid: Cow<'a, str>,
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut alg = None;
                let mut kid = None;
                let mut typ = None;
                let mut others: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        "alg" => set(&mut alg, "alg", map.next_value::<Str<'de>>()?.0)?,
                        "kid" => set(&mut kid, "kid", map.next_value::<Str<'de>>()?.0)?,
                        "typ" => set(&mut typ, "typ", map.next_value::<Str<'de>>()?.0)?,
                        k if FORBIDDEN_HEADERS.contains(&k) => {
                            return Err(de::Error::custom("forbidden header parameter"));
                        }
                        _ => {
                            if others.len() >= 16 || others.contains(&key) {
                                return Err(de::Error::custom(
                                    "duplicate or too many header parameters",
                                ));
                            }
                            // Unknown parameters are ignored, but not arbitrarily deep ones.
                            if depth(&map.next_value::<Value>()?) > MAX_HEADER_DEPTH {
                                return Err(de::Error::custom(
                                    "header parameter nested too deeply",
                                ));
                            }
                            others.push(key);
                        }
                    }
                }
                let typ = typ.ok_or_else(|| de::Error::custom("missing typ"))?;
                if !(typ.eq_ignore_ascii_case("at+jwt")
                    || typ.eq_ignore_ascii_case("application/at+jwt"))
                {
                    return Err(de::Error::custom("typ is not at+jwt"));
                }
                Ok(Header {
                    alg: alg.ok_or_else(|| de::Error::custom("missing alg"))?,
                    kid: kid.ok_or_else(|| de::Error::custom("missing kid"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validation {
        Validation {
            issuer: "https://issuer".into(),
            audience: "api".into(),
            leeway_ms: 60_000,
            max_ttl_secs: 600,
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"https://issuer","sub":"alice","aud":"api","exp":1800000300,"iat":1800000000,"jti":"j1"{extra}}}"#
        )
    }

    fn issued(sub: &str, roles: &[String], attributes: &Map<String, Value>) -> String {
        serde_json::to_string(&IssueClaims {
            iss: "https://issuer",
            sub,
            aud: "api",
            exp: 1_800_000_300,
            iat: 1_800_000_000,
            iat_ms: 1_800_000_000_123,
            auth_time: 1_799_999_000,
            jti: "j1",
            sid: "fam-1",
            roles,
            attributes,
        })
        .unwrap()
    }

    fn serde_read(json: &str) -> Option<RawClaims<'_>> {
        serde_json::from_str(json).ok()
    }

    #[test]
    fn the_canonical_shortcut_reads_issued_claims_as_serde_does() {
        let none = Map::new();
        for (sub, roles) in [
            ("alice", vec![]),
            ("bob", vec!["user".to_owned()]),
            ("zoë ☃", vec!["user".to_owned(), "admin".to_owned()]),
            ("-1", vec![String::new()]),
        ] {
            let json = issued(sub, &roles, &none);
            let fast = canonical(&json).expect("issued claims take the shortcut");
            assert_eq!(Some(&fast), serde_read(&json).as_ref(), "{json}");
        }
        // Escapes, attributes, whitespace, another order, leading zeros, duplicates, trailing
        // bytes: all left to serde (which may accept or refuse them).
        let mut attributes = Map::new();
        attributes.insert("email".into(), "a@b".into());
        let escaped = issued("quo\"te", &[], &none);
        let with_attributes = issued("alice", &[], &attributes);
        let base = issued("alice", &["user".to_owned()], &none);
        for other in [
            escaped.clone(),
            with_attributes.clone(),
            base.replace(",\"sub\"", ", \"sub\""),
            base.replace("\"exp\":1800000300", "\"exp\":01800000300"),
            base.replace(
                "\"iss\":\"https://issuer\",\"sub\":\"alice\"",
                "\"sub\":\"alice\",\"iss\":\"https://issuer\"",
            ),
            base.replace("}", ",\"sub\":\"mallory\"}"),
            format!("{base} "),
            base.replace("\"exp\":1800000300", "\"exp\":1800000300.0"),
            base.replace("\"exp\":1800000300", "\"exp\":18000003000000000000"),
        ] {
            assert_eq!(canonical(&other), None, "{other}");
        }
        // The general parser still reads what the shortcut leaves.
        assert!(serde_read(&escaped).is_some());
        assert!(serde_read(&with_attributes).is_some());
    }

    #[test]
    fn accepts_good_claims_and_keeps_attributes() {
        let ok = validate(&claims(r#","email":"a@b","roles":["user"]"#), &v(), NOW).unwrap();
        assert_eq!(ok.principal.subject(), "alice");
        assert_eq!(ok.principal.roles(), ["user"]);
        assert_eq!(ok.principal.attributes()["email"], "a@b");
        assert_eq!(ok.principal.session().id, "j1");
    }

    #[test]
    fn rejects_duplicates_and_wrong_types() {
        for extra in [
            r#","exp":1800000300"#,
            r#","email":1,"email":2"#,
            r#","roles":"admin""#,
            r#","roles":[1]"#,
            r#","nbf":"1""#,
            r#","nbf":1.5"#,
            r#","auth_time":-1"#,
            r#","iat_ms":1700000000000"#,
        ] {
            assert!(validate(&claims(extra), &v(), NOW).is_err(), "{extra}");
        }
        let wrong_exp = r#"{"iss":"https://issuer","sub":"a","aud":"api","exp":"1800000300","iat":1800000000,"jti":"j"}"#;
        assert!(validate(wrong_exp, &v(), NOW).is_err());
        let float_exp = r#"{"iss":"https://issuer","sub":"a","aud":"api","exp":1800000300.0,"iat":1800000000,"jti":"j"}"#;
        assert!(validate(float_exp, &v(), NOW).is_err());
        let aud_num = r#"{"iss":"https://issuer","sub":"a","aud":5,"exp":1800000300,"iat":1800000000,"jti":"j"}"#;
        assert!(validate(aud_num, &v(), NOW).is_err());
    }

    #[test]
    fn header_rules() {
        let ok: Header<'_> =
            serde_json::from_str(r#"{"alg":"EdDSA","typ":"AT+JWT","kid":"k"}"#).unwrap();
        assert_eq!(ok.alg, "EdDSA");
        for bad in [
            r#"{"alg":"EdDSA","kid":"k"}"#,
            r#"{"alg":"EdDSA","typ":"JWT","kid":"k"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":["exp"]}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","b64":false}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","alg":"none"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","x":1,"x":2}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":7}"#,
            r#"["alg"]"#,
        ] {
            assert!(serde_json::from_str::<Header<'_>>(bad).is_err(), "{bad}");
        }
    }
}
