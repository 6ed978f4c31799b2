//! Session data of the JWT strategy: kept with the refresh family on the server, never in a
//! token, and read on first use (an access token alone needs no store round trip).

use async_trait::async_trait;

use super::strategy::JwtStrategy;
use crate::{
    error::{Error, ErrorKind, Result},
    principal::Principal,
    store::{DataLimits, DataPatch},
    strategy::SessionDataStore,
};

#[async_trait]
impl SessionDataStore for JwtStrategy {
    async fn load(&self, session: &Principal) -> Result<Option<String>> {
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .refresh_store
            .family_data(&session.session().id, now)
            .await?)
    }

    async fn save(
        &self,
        session: &Principal,
        patch: &DataPatch,
        limits: &DataLimits,
    ) -> Result<()> {
        let now = self.inner.clock.now();
        let saved = self
            .inner
            .refresh_store
            .update_family_data(&session.session().id, patch, limits, now)
            .await?;
        match saved {
            true => Ok(()),
            false => Err(Error::new(ErrorKind::Revoked)),
        }
    }
}
