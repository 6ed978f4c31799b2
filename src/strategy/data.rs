//! [`SessionDataStore`]: where a strategy keeps per-session data (see
//! [`SessionData`](crate::SessionData)).

use async_trait::async_trait;

use super::{ClientMeta, Issued};
use crate::{
    error::Result,
    principal::Principal,
    store::{DataLimits, DataPatch},
};

/// Per-session data of a strategy, reached through
/// [`SessionStrategy::session_data`](super::SessionStrategy::session_data).
///
/// Server sessions keep the data in the session record (read with the principal, so reading it
/// costs no round trip of its own); the JWT strategy keeps it with the refresh family on the
/// server, never in a token, and reads it on first use.
#[async_trait]
pub trait SessionDataStore: Send + Sync {
    /// The data of `session`'s session (a JSON object as text), when it did not come with the
    /// principal. A session that is gone is [`ErrorKind::Revoked`](crate::ErrorKind::Revoked).
    async fn load(&self, session: &Principal) -> Result<Option<String>>;

    /// Applies `patch` to the data of `session`'s session, key by key and atomically.
    ///
    /// # Errors
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) when `limits` would be
    /// exceeded (nothing is saved), [`ErrorKind::Revoked`](crate::ErrorKind::Revoked) when the
    /// session is gone.
    async fn save(&self, session: &Principal, patch: &DataPatch, limits: &DataLimits)
    -> Result<()>;

    /// Whether a caller without a credential who writes data gets an anonymous session.
    fn anonymous(&self) -> bool {
        false
    }

    /// Starts an anonymous session holding `patch`'s data, when [`anonymous`](Self::anonymous).
    async fn start_anonymous(
        &self,
        patch: &DataPatch,
        limits: &DataLimits,
        meta: &ClientMeta,
    ) -> Result<Option<Issued>> {
        let _ = (patch, limits, meta);
        Ok(None)
    }

    /// Ends an anonymous session whose data moved into a logged-in session.
    async fn discard_anonymous(&self, session: &Principal) -> Result<()> {
        let _ = session;
        Ok(())
    }
}
