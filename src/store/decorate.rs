//! [`decorate_stores!`]: the one place that lists the store traits' methods for decorators, so a
//! decorator that wraps every call the same way (a timeout, an outage switch) is written once.

/// Implements [`SessionStore`](super::SessionStore), [`RefreshStore`](super::RefreshStore) and
/// [`RevocationStore`](super::RevocationStore) for `$decorator<S>` wherever `S` implements them.
///
/// The decorator has a field `inner: Arc<S>`, an inherent
/// `async fn $wrap<R>(&self, op: &'static metrics::Key, call: impl Future<Output = StoreResult<R>>) -> StoreResult<R>`
/// that runs each call of the inner store (`op` names the call: its
/// [`STORE_CALL_DURATION`](crate::metrics::STORE_CALL_DURATION) key), and an inherent `fn $deadline(&self) -> Option<Duration>`
/// that answers [`SessionStore::call_timeout`](super::SessionStore::call_timeout).
macro_rules! decorate_stores {
    ($decorator:ident, $wrap:ident, $deadline:ident) => {
        $crate::store::decorate::decorate_stores!(@impl $decorator, $wrap, SessionStore "session" {
            fn create(&self, record: &$crate::store::SessionRecord, limit: Option<$crate::store::SessionLimit>) -> $crate::store::CreateOutcome;
            fn load(&self, id: &$crate::token::TokenHash, now: std::time::SystemTime) -> Option<$crate::store::SessionRecord>;
            fn touch(&self, id: &$crate::token::TokenHash, last_seen_at: std::time::SystemTime, expires_at: std::time::SystemTime) -> bool;
            fn rotate(&self, old: &$crate::token::TokenHash, new: &$crate::store::SessionRecord) -> bool;
            fn delete(&self, subject: &str, id: &$crate::token::TokenHash) -> bool;
            fn delete_all(&self, subject: &str) -> u64;
            fn list(&self, subject: &str, now: std::time::SystemTime) -> Vec<$crate::store::SessionRecord>;
            fn sweep(&self, now: std::time::SystemTime) -> u64;
            fn update_data(&self, id: &$crate::token::TokenHash, patch: &$crate::store::DataPatch, limits: &$crate::store::DataLimits, now: std::time::SystemTime) -> bool;
        }
            fn call_timeout(&self) -> Option<std::time::Duration> {
                self.$deadline()
            }
        );
        $crate::store::decorate::decorate_stores!(@impl $decorator, $wrap, RefreshStore "refresh" {
            fn insert(&self, record: &$crate::store::RefreshRecord) -> bool;
            fn rotate(&self, request: $crate::store::RotateRequest<'_>) -> $crate::store::RotateOutcome;
            fn family_live(&self, family: &str, now: std::time::SystemTime) -> bool;
            fn delete_family(&self, subject: &str, family: &str) -> bool;
            fn delete_all(&self, subject: &str) -> u64;
            fn list(&self, subject: &str, now: std::time::SystemTime) -> Vec<$crate::store::RefreshRecord>;
            fn sweep(&self, now: std::time::SystemTime) -> u64;
            fn family_data(&self, family: &str, now: std::time::SystemTime) -> Option<String>;
            fn update_family_data(&self, family: &str, patch: &$crate::store::DataPatch, limits: &$crate::store::DataLimits, now: std::time::SystemTime) -> bool;
        });
        $crate::store::decorate::decorate_stores!(@impl $decorator, $wrap, RevocationStore "revocation" {
            fn revoke(&self, revocation: &$crate::store::Revocation) -> ();
            fn load(&self, now: std::time::SystemTime) -> Vec<$crate::store::Revocation>;
            fn is_revoked(&self, jti: &str, subject: &str, issued_at: std::time::SystemTime) -> bool;
            fn subscribe(&self) -> Option<$crate::store::RevocationFeed>;
            fn sweep(&self, now: std::time::SystemTime) -> u64;
        });
    };
    (@impl $decorator:ident, $wrap:ident, $store:ident $label:literal {
        $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*
    } $($extra:item)*) => {
        #[async_trait::async_trait]
        impl<S: $crate::store::$store + ?Sized> $crate::store::$store for $decorator<S> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $crate::store::StoreResult<$out> {
                    let op = $crate::metrics::key!(
                        $crate::metrics::STORE_CALL_DURATION,
                        "store" => $label,
                        "operation" => stringify!($name),
                    );
                    self.$wrap(op, $crate::store::$store::$name(&*self.inner $(, $arg)*)).await
                }
            )*
            $($extra)*
        }
    };
}

pub(crate) use decorate_stores;
