//! The verified-token cache: a bounded map from the *whole* token to its verified claims.
//!
//! A hit skips base64, JSON and the signature check, but never the checks that can change after
//! verification: every hit re-checks expiry (with leeway), the key-ring generation (a retired key
//! voids its cached tokens) and, in the caller, the `jti`/family denylist and the subject's epoch.
//!
//! Keys are the complete token text, so two tokens share an entry only if they are byte-for-byte
//! identical. The map holds at most `capacity` entries; when full, expired and stale entries are
//! dropped first, then an arbitrary eighth of the rest (the map's random hash order makes that an
//! approximately random eviction), so inserts stay amortised O(1). Memory is bounded by
//! `capacity` × (token length + principal), i.e. about 10 MB for 10 000 tokens of 1 KiB.
//!
//! Lookups hash only the token's last [`HASHED_TAIL`] bytes (its signature, which no two
//! distinct tokens share in practice and which nobody can choose without the key) with a randomly
//! seeded `foldhash`; equality is still the whole token. The hash decides only the bucket, never a
//! match. Only verified tokens are ever stored, so nobody can fill the map with colliding keys.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
};

use foldhash::fast::RandomState;

use parking_lot::RwLock;

use super::claims::Verified;

/// Default number of cached tokens.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// How many trailing bytes of a token are hashed.
const HASHED_TAIL: usize = 32;

/// Hashes the last [`HASHED_TAIL`] bytes of what it is given (a `str` key writes its bytes,
/// then one `0xff`, which is hashed too).
struct TailHasher(foldhash::fast::FoldHasher);

impl Hasher for TailHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[derive(Default)]
struct TailState(RandomState);

impl BuildHasher for TailState {
    type Hasher = TailHasher;

    #[inline]
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct Entry {
    verified: Verified,
    generation: u64,
}

pub(crate) struct TokenCache {
    capacity: usize,
    map: RwLock<HashMap<Box<str>, Entry, TailState>>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: RwLock::new(HashMap::default()),
        }
    }

    /// A cached verification of exactly `token`, still within `exp + leeway` and made with the
    /// current key-ring `generation`.
    #[inline]
    pub(crate) fn get(
        &self,
        token: &str,
        now_ms: i64,
        leeway_ms: i64,
        generation: u64,
    ) -> Option<Verified> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.map.read();
        let entry = map.get(token)?;
        if entry.generation != generation
            || now_ms > entry.verified.exp_ms.saturating_add(leeway_ms)
        {
            return None;
        }
        Some(entry.verified.clone())
    }

    pub(crate) fn insert(
        &self,
        token: &str,
        verified: &Verified,
        generation: u64,
        now_ms: i64,
        leeway_ms: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.write();
        if map.len() >= self.capacity && !map.contains_key(token) {
            map.retain(|_, e| {
                e.generation == generation && now_ms <= e.verified.exp_ms.saturating_add(leeway_ms)
            });
            if map.len() >= self.capacity {
                let drop_n = (self.capacity / 8).max(1);
                let victims: Vec<Box<str>> = map.keys().take(drop_n).cloned().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            token.into(),
            Entry {
                verified: verified.clone(),
                generation,
            },
        );
        crate::metrics::token_cache_entries(map.len());
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        self.map.write().clear();
        crate::metrics::token_cache_entries(0);
    }

    /// Number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::claims::{Validation, validate};

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn tokens_sharing_the_hashed_tail_are_still_distinct() {
        let v = Validation {
            issuer: "i".into(),
            audience: "a".into(),
            leeway_ms: 0,
            max_ttl_secs: 600,
        };
        let verified = validate(
            r#"{"iss":"i","sub":"alice","aud":"a","exp":1800000300,"iat":1800000000,"jti":"j"}"#,
            &v,
            NOW,
        )
        .unwrap();
        let tail = "x".repeat(HASHED_TAIL * 2);
        let (first, second) = (format!("aaa.{tail}"), format!("bbb.{tail}"));
        let cache = TokenCache::new(8);
        cache.insert(&first, &verified, 0, NOW, 0);
        assert!(cache.get(&first, NOW, 0, 0).is_some());
        assert!(cache.get(&second, NOW, 0, 0).is_none());
        assert!(cache.get(&tail, NOW, 0, 0).is_none());
        cache.insert(&second, &verified, 0, NOW, 0);
        assert_eq!(cache.len(), 2);
        // Expiry and the key-ring generation still apply on a hit.
        assert!(cache.get(&first, NOW + 301_000, 0, 0).is_none());
        assert!(cache.get(&first, NOW, 0, 1).is_none());
    }
}
