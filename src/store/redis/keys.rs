//! The key layout (see the module docs of [`super`]): key names, the session key written straight
//! into a command, and cluster hash slots.

use redis::{RedisWrite, ToRedisArgs};
use sha2::{Digest, Sha256};

use crate::{
    error::Error,
    store::{StoreError, StoreResult},
    token::TokenHash,
};

/// Key names. Every user-chosen string is hashed before it goes into a key.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Result<Self, Error> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::config(
                "redis.key_prefix",
                "must be non-empty and contain neither `{` nor `}`",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub(super) fn session(&self, id: &TokenHash) -> String {
        id.with_handle(|hex| self.session_hex(hex))
    }

    /// The key of the session whose handle is `hex`: one allocation, no formatting machinery.
    pub(super) fn session_hex(&self, hex: &str) -> String {
        let parts = session_parts(&self.prefix, hex.as_bytes());
        let mut key = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| key.extend_from_slice(p));
        // The prefix is a `str` and the rest ASCII.
        String::from_utf8(key).unwrap_or_default()
    }

    /// The key of session `id` as a command argument, written straight into the command's buffer
    /// (`load`, the hot path, needs no `String` of its own).
    pub(super) fn session_arg<'a>(&'a self, id: &TokenHash) -> SessionKey<'a> {
        SessionKey {
            prefix: &self.prefix,
            hex: id.hex(),
            suffix: b"",
        }
    }

    /// The key of session `id`'s data hash (`<session key>:d`, same slot) as a command argument.
    pub(super) fn session_data_arg<'a>(&'a self, id: &TokenHash) -> SessionKey<'a> {
        SessionKey {
            prefix: &self.prefix,
            hex: id.hex(),
            suffix: DATA_SUFFIX.as_bytes(),
        }
    }

    /// The key of session `id`'s data hash.
    pub(super) fn session_data(&self, id: &TokenHash) -> String {
        id.with_handle(|hex| self.session_data_hex(hex))
    }

    /// The key of the data hash of the session whose handle is `hex`.
    pub(super) fn session_data_hex(&self, hex: &str) -> String {
        let mut key = self.session_hex(hex);
        key.push_str(DATA_SUFFIX);
        key
    }

    /// `(si, se, sg)`: by creation, by expiry, pending removal.
    pub(super) fn session_index(&self, subject: &str) -> (String, String, String) {
        let tag = self.subject_tag(subject);
        (
            format!("{tag}:si"),
            format!("{tag}:se"),
            format!("{tag}:sg"),
        )
    }

    /// `(rf, rx)`: families by creation, by absolute expiry.
    pub(super) fn family_index(&self, subject: &str) -> (String, String) {
        let tag = self.subject_tag(subject);
        (format!("{tag}:rf"), format!("{tag}:rx"))
    }

    fn subject_tag(&self, subject: &str) -> String {
        format!("{}:{{u:{}}}", self.prefix, hex_of(subject.as_bytes()))
    }

    pub(super) fn family(&self, family: &str) -> String {
        format!("{}:{{f:{}}}", self.prefix, hex_of(family.as_bytes()))
    }

    pub(super) fn pointer(&self, id: &TokenHash) -> String {
        self.pointer_hex(&id.handle())
    }

    pub(super) fn pointer_hex(&self, hex: &str) -> String {
        format!("{}:{{r:{hex}}}", self.prefix)
    }

    pub(super) fn denylist(&self) -> String {
        format!("{}:{{rv}}:jti", self.prefix)
    }

    pub(super) fn epochs(&self) -> String {
        format!("{}:{{rv}}:epoch", self.prefix)
    }

    /// A login-throttle counter: `<prefix>:{t:<hex of the key>}` (the key is already a hash).
    pub(super) fn throttle(&self, key: &crate::store::ThrottleKey) -> String {
        format!("{}:{{t:{}}}", self.prefix, key.hex())
    }

    pub(super) fn channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// The prefix with glob characters escaped, for `SCAN MATCH`.
    pub(super) fn glob_prefix(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}

/// The one definition of the session key layout: `<prefix>:{s:<handle>}`.
fn session_parts<'a>(prefix: &'a str, hex: &'a [u8]) -> [&'a [u8]; 4] {
    [prefix.as_bytes(), b":{s:", hex, b"}"]
}

/// What follows a session key in the key of its data hash.
const DATA_SUFFIX: &str = ":d";

/// A session key (or its data key) as a command argument (see [`Keys::session_arg`]).
pub(super) struct SessionKey<'a> {
    prefix: &'a str,
    hex: [u8; 64],
    suffix: &'static [u8],
}

impl SessionKey<'_> {
    pub(super) fn len(&self) -> usize {
        session_parts(self.prefix, &self.hex)
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
            + self.suffix.len()
    }
}

impl ToRedisArgs for SessionKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        for part in session_parts(self.prefix, &self.hex) {
            // The writer appends to the command's buffer in memory: it cannot fail.
            let _ = arg.write_all(part);
        }
        let _ = arg.write_all(self.suffix);
    }
}

/// The cluster hash slot of a key (CRC16/XMODEM of its hash tag, modulo 16384).
pub(super) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

fn hex_of(data: &[u8]) -> String {
    TokenHash::from_bytes(Sha256::digest(data).into()).handle()
}

/// The token hash whose handle is `hex`, as the index sets and scripts hold it.
pub(super) fn parse_id(hex: &str) -> StoreResult<TokenHash> {
    TokenHash::from_handle(hex).ok_or_else(|| StoreError::corrupt("malformed token hash in Redis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_hash_tags() {
        // Reference values from the Redis Cluster specification.
        // CRC16/XMODEM("123456789") = 0x31C3.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        let keys = Keys::new("keycard").unwrap();
        let (si, se, sg) = keys.session_index("alice");
        let (rf, rx) = keys.family_index("alice");
        for k in [&se, &sg, &rf, &rx] {
            assert_eq!(key_slot(k.as_bytes()), key_slot(si.as_bytes()));
        }
        assert_eq!(
            key_slot(keys.denylist().as_bytes()),
            key_slot(keys.epochs().as_bytes())
        );
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(Keys::new("a{b").is_err());
        assert!(Keys::new("").is_err());
        assert_eq!(Keys::new("a*b").unwrap().glob_prefix(), "a\\*b");
    }

    #[test]
    fn session_keys_are_built_as_documented() {
        let keys = Keys::new("app").unwrap();
        let id = TokenHash::from_bytes([0xab; 32]);
        assert_eq!(keys.session(&id), keys.session_hex(&id.handle()));
        assert_eq!(keys.session(&id), format!("app:{{s:{}}}", "ab".repeat(32)));
        // The argument written into a command's buffer is the same key, as one argument.
        assert_eq!(
            keys.session_arg(&id).to_redis_args(),
            vec![keys.session(&id).into_bytes()]
        );
        // The data hash shares the session's slot.
        assert_eq!(keys.session_data(&id), format!("{}:d", keys.session(&id)));
        assert_eq!(
            keys.session_data_arg(&id).to_redis_args(),
            vec![keys.session_data(&id).into_bytes()]
        );
        assert_eq!(
            keys.session_data_arg(&id).len(),
            keys.session_data(&id).len()
        );
        assert_eq!(
            key_slot(keys.session_data(&id).as_bytes()),
            key_slot(keys.session(&id).as_bytes())
        );
    }
}
