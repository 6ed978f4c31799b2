//! The JWT strategy's sessions: [`SessionStrategy`] and [`RefreshTokens`] for [`JwtStrategy`]
//! (login, reissue, logout, listing, revocation, the refresh exchange) and the refresh families
//! they start, rotate and revoke.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::strategy::{JwtStrategy, revoked};
use crate::{
    auth::Login,
    clock::{from_millis, to_millis, truncate_millis},
    error::{Error, ErrorKind, Result},
    events::SecurityEvent,
    jwt::claims::check_attributes,
    principal::{Principal, PrincipalSpec},
    revocation::FAMILY_PREFIX,
    store::{DataLimits, DataPatch, RefreshRecord, Revocation, RotateOutcome, RotateRequest},
    strategy::{
        AccessToken, AuthFuture, ClientMeta, Credential, CredentialSource, Issued, RefreshTokens,
        Reissue, SessionInfo, SessionStrategy,
    },
    token::{OpaqueToken, random_id},
};

impl JwtStrategy {
    /// Copies the session data of family `from` into the new family `to` (a reissue).
    async fn carry_data(&self, from: &str, to: &str, now: SystemTime) -> Result<()> {
        let store = &self.inner.refresh_store;
        let Some(text) = store.family_data(from, now).await? else {
            return Ok(());
        };
        let entries: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).map_err(|e| {
                Error::with_message(
                    ErrorKind::StoreUnavailable,
                    "stored session data is not a JSON object",
                )
                .with_source(e)
            })?;
        let mut patch = DataPatch::new();
        entries.into_iter().for_each(|(k, v)| patch.set(k, v));
        // The data met the limits when it was written; the copy is not refused for them.
        let unbounded = DataLimits {
            max_key_bytes: usize::MAX,
            max_value_bytes: usize::MAX,
            max_total_bytes: usize::MAX,
        };
        store
            .update_family_data(to, &patch, &unbounded, now)
            .await?;
        Ok(())
    }

    /// Denylists every access token of `family` for as long as any of them can verify.
    async fn revoke_family_tokens(&self, family: &str, now_ms: i64) -> Result<()> {
        let v = &self.inner.validation;
        let until = now_ms
            .saturating_add(v.max_ttl_secs.saturating_mul(1000))
            .saturating_add(v.leeway_ms)
            .saturating_add(1000);
        self.record_revocation(Revocation::Jti {
            jti: format!("{FAMILY_PREFIX}{family}"),
            until: from_millis(until),
        })
        .await
    }

    async fn record_revocation(&self, revocation: Revocation) -> Result<()> {
        self.inner.revocations.revoke(&revocation).await?;
        // Effective here at once, whatever the feed's latency.
        self.inner.mirror.apply(&revocation);
        Ok(())
    }

    /// Inserts a new family (retrying once on an ID collision), returning its id and token.
    async fn start_family(
        &self,
        spec: &PrincipalSpec,
        f: NewFamily,
    ) -> Result<(String, OpaqueToken)> {
        for _ in 0..2 {
            let family = random_id()?;
            let token = OpaqueToken::generate()?;
            let record = RefreshRecord {
                id: token.hash(),
                family: family.clone(),
                subject: spec.subject.clone(),
                roles: spec.roles.clone(),
                attributes: spec.attributes.clone(),
                issued_at: f.now,
                expires_at: (f.now + f.idle_timeout.unwrap_or(self.inner.refresh.idle))
                    .min(f.expires_at),
                family_created_at: f.now,
                family_expires_at: f.expires_at,
                authenticated_at: f.authenticated_at,
                used_at: None,
                user_agent: f.user_agent.clone(),
                ip: f.ip.clone(),
                idle_timeout: f.idle_timeout,
                persistent: f.persistent,
            };
            if self.inner.refresh_store.insert(&record).await? {
                return Ok((family, token));
            }
        }
        Err(Error::with_message(
            ErrorKind::Internal,
            "refresh family ID collided twice",
        ))
    }
}

/// Facts of a family about to start.
struct NewFamily {
    now: SystemTime,
    expires_at: SystemTime,
    authenticated_at: SystemTime,
    user_agent: Option<String>,
    ip: Option<String>,
    /// The family's own idle timeout, when chosen at login.
    idle_timeout: Option<Duration>,
    /// Whether its refresh cookie is persistent.
    persistent: bool,
}

fn remaining(until: SystemTime, now: SystemTime) -> Duration {
    until.duration_since(now).unwrap_or_default()
}

/// The credentials of a family whose cookies are `persistent` and which ends at `until`: a
/// persistent login's cookies carry a `Max-Age` (the access-token cookie its token's lifetime,
/// the refresh cookie the family's), a browser-session login's none.
fn issued(
    principal: Principal,
    access: AccessToken,
    refresh: OpaqueToken,
    (persistent, until): (bool, SystemTime),
    now: SystemTime,
) -> Issued {
    Issued {
        principal,
        session_token: None,
        session_max_age: persistent.then_some(access.expires_in),
        access_token: Some(access),
        refresh_token: Some(refresh),
        refresh_max_age: persistent.then(|| remaining(until, now)),
    }
}

fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn grant_error() -> Error {
    Error::new(ErrorKind::InvalidGrant)
}

#[async_trait]
impl SessionStrategy for JwtStrategy {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn credential_source(&self) -> CredentialSource {
        CredentialSource::Bearer
    }

    fn refresh_tokens(&self) -> Option<&dyn RefreshTokens> {
        Some(self)
    }

    fn session_data(&self) -> Option<&dyn crate::strategy::SessionDataStore> {
        Some(self)
    }

    #[inline]
    fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
        self.authenticate_now(credential)
    }

    async fn login(
        &self,
        spec: PrincipalSpec,
        meta: &ClientMeta,
        options: Login,
    ) -> Result<Issued> {
        check_attributes(&spec.attributes)?;
        if spec.subject.is_empty() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "the subject is empty",
            ));
        }
        if self.inner.keys.signer().is_none() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "this JWT strategy has no signing key",
            ));
        }
        let idle_timeout = options.idle_within(self.inner.refresh.idle)?;
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let absolute_end = now + options.absolute_within(self.inner.refresh.absolute)?;
        let (family, refresh_token) = self
            .start_family(
                &spec,
                NewFamily {
                    now,
                    expires_at: absolute_end,
                    authenticated_at: now,
                    user_agent: meta.user_agent.as_deref().map(|ua| truncate_utf8(ua, 256)),
                    ip: meta.ip.map(|ip| ip.to_string()),
                    idle_timeout,
                    persistent: options.is_persistent(),
                },
            )
            .await?;
        let subject = spec.subject.clone();
        let (access, principal) = match self.issue_access(spec, &family, now_ms, now_ms) {
            Ok(issued) => issued,
            Err(e) => {
                // Do not leave a family behind that no client holds.
                let _ = self
                    .inner
                    .refresh_store
                    .delete_family(&subject, &family)
                    .await;
                return Err(e);
            }
        };
        self.inner.events.emit(SecurityEvent::Login {
            subject,
            session: family,
            ip: meta.ip,
        });
        Ok(issued(
            principal,
            access,
            refresh_token,
            (options.is_persistent(), absolute_end),
            now,
        ))
    }

    async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued> {
        let (spec, reauthenticated) = change.into_parts();
        let spec = spec.unwrap_or_else(|| current.spec());
        if spec.subject != current.subject() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "rotate cannot change the subject; log the new subject in instead",
            ));
        }
        check_attributes(&spec.attributes)?;
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let old_family = current.session().id.clone();
        let old = self
            .inner
            .refresh_store
            .list(&spec.subject, now)
            .await?
            .into_iter()
            .find(|r| r.family == old_family)
            .ok_or_else(revoked)?;
        let (authenticated_at, family_expires_at) = if reauthenticated.is_some() {
            // A step-up restarts the family's lifetime: the one chosen at login (set then, and
            // at each step-up, from `authenticated_at`), never longer than the configured one.
            let lifetime = old
                .family_expires_at
                .duration_since(old.authenticated_at)
                .unwrap_or_default()
                .min(self.inner.refresh.absolute);
            (now, now + lifetime)
        } else {
            (old.authenticated_at, old.family_expires_at)
        };
        let (family, refresh_token) = self
            .start_family(
                &spec,
                NewFamily {
                    now,
                    expires_at: family_expires_at,
                    authenticated_at,
                    user_agent: match reauthenticated {
                        Some(meta) => meta.user_agent.clone(),
                        None => old.user_agent.clone(),
                    },
                    ip: match reauthenticated {
                        Some(meta) => meta.ip.map(|ip| ip.to_string()),
                        None => old.ip.clone(),
                    },
                    idle_timeout: old.idle_timeout,
                    persistent: old.persistent,
                },
            )
            .await?;
        self.carry_data(&old_family, &family, now).await?;
        self.inner
            .refresh_store
            .delete_family(&spec.subject, &old_family)
            .await?;
        self.revoke_family_tokens(&old_family, now_ms).await?;
        let subject = spec.subject.clone();
        let (access, principal) =
            self.issue_access(spec, &family, to_millis(authenticated_at), now_ms)?;
        self.inner.events.emit(SecurityEvent::SessionRotated {
            subject: subject.clone(),
            old: old_family,
            new: family,
        });
        if reauthenticated.is_some() {
            self.inner.events.emit(SecurityEvent::StepUp { subject });
        }
        Ok(issued(
            principal,
            access,
            refresh_token,
            (old.persistent, family_expires_at),
            now,
        ))
    }

    async fn logout(&self, current: &Principal) -> Result<()> {
        let now_ms = self.now_ms();
        let family = current.session().id.as_str();
        if let Some(jti) = &current.session().jti {
            let until =
                to_millis(current.expires_at()).saturating_add(self.inner.validation.leeway_ms);
            self.record_revocation(Revocation::Jti {
                jti: jti.clone(),
                until: from_millis(until),
            })
            .await?;
        }
        self.revoke_family_tokens(family, now_ms).await?;
        self.inner
            .refresh_store
            .delete_family(current.subject(), family)
            .await?;
        self.inner.events.emit(SecurityEvent::Logout {
            subject: current.subject().to_owned(),
            session: family.to_owned(),
        });
        Ok(())
    }

    async fn logout_all(&self, subject: &str) -> Result<u64> {
        let now_ms = to_millis(self.inner.clock.now());
        // `T + 1 ms`: tokens issued up to and including this millisecond are void. Tokens are
        // never stamped before the current epoch, so the new epoch moves past it too.
        let current = self.inner.mirror.epoch_ms(subject).unwrap_or(i64::MIN);
        let epoch = from_millis(now_ms.max(current).saturating_add(1));
        self.record_revocation(Revocation::Epoch {
            subject: subject.to_owned(),
            epoch,
        })
        .await?;
        let count = self.inner.refresh_store.delete_all(subject).await?;
        self.inner.events.emit(SecurityEvent::AllSessionsRevoked {
            subject: subject.to_owned(),
            count,
        });
        Ok(count)
    }

    async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>> {
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .refresh_store
            .list(subject, now)
            .await?
            .into_iter()
            .map(|r| SessionInfo {
                id: r.family,
                created_at: r.family_created_at,
                last_seen_at: r.issued_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool> {
        let now_ms = self.now_ms();
        let deleted = self
            .inner
            .refresh_store
            .delete_family(subject, session_id)
            .await?;
        if deleted {
            // Only after the store confirmed the family is this subject's.
            self.revoke_family_tokens(session_id, now_ms).await?;
            self.inner.events.emit(SecurityEvent::SessionRevoked {
                subject: subject.to_owned(),
                session: session_id.to_owned(),
            });
        }
        Ok(deleted)
    }

    async fn verify_live(&self, current: &Principal) -> Result<()> {
        let now = self.inner.clock.now();
        if self
            .inner
            .refresh_store
            .family_live(&current.session().id, now)
            .await?
        {
            Ok(())
        } else {
            Err(revoked())
        }
    }
}

#[async_trait]
impl RefreshTokens for JwtStrategy {
    async fn refresh(&self, refresh_token: &str, _meta: &ClientMeta) -> Result<Issued> {
        let presented = OpaqueToken::parse(refresh_token).ok_or_else(grant_error)?;
        if self.inner.keys.signer().is_none() {
            return Err(grant_error());
        }
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let next_token = OpaqueToken::generate()?;
        let next_hash = next_token.hash();
        let outcome = self
            .inner
            .refresh_store
            .rotate(RotateRequest {
                presented: &presented.hash(),
                next: &next_hash,
                now,
                idle: self.inner.refresh.idle,
                grace: self.inner.refresh.grace,
            })
            .await?;
        match outcome {
            RotateOutcome::Rotated { next } => {
                let spec = PrincipalSpec {
                    subject: next.subject.clone(),
                    roles: next.roles.clone(),
                    attributes: next.attributes.clone(),
                };
                let (access, principal) = self.issue_access(
                    spec,
                    &next.family,
                    to_millis(next.authenticated_at),
                    now_ms,
                )?;
                self.inner.events.emit(SecurityEvent::RefreshRotated {
                    subject: next.subject,
                    family: next.family,
                });
                Ok(issued(
                    principal,
                    access,
                    next_token,
                    (next.persistent, next.family_expires_at),
                    now,
                ))
            }
            RotateOutcome::Reused { family, subject } => {
                self.inner.events.emit(SecurityEvent::RefreshReuseDetected {
                    subject,
                    family: family.clone(),
                });
                // The thief may hold an access token from this family: void them all.
                if let Err(e) = self.revoke_family_tokens(&family, now_ms).await {
                    tracing::error!(error = %e, "keycard: could not denylist the access tokens of a reused refresh family");
                }
                Err(Error::with_message(
                    ErrorKind::InvalidGrant,
                    "the refresh token was already used; its session has been revoked",
                ))
            }
            RotateOutcome::Invalid => Err(grant_error()),
        }
    }
}
