//! The revocation message a store publishes to the other instances (Redis `PUBLISH`,
//! PostgreSQL `NOTIFY`): one JSON shape for every backend, times in Unix milliseconds.
//!
//! `published_at` (when the publishing instance built the message) feeds the
//! [`REVOCATION_LAG`](crate::metrics::REVOCATION_LAG) histogram on the receiving ones. It is
//! optional both ways: a message without it (from an older keycard) is applied as before, and an
//! older keycard ignores it.

use serde::{Deserialize, Serialize};

use super::Revocation;
use crate::clock::{from_millis, to_millis};

/// A [`Revocation`] as it travels between instances.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RevocationMessage {
    /// One access token, denied until `until`.
    Jti {
        jti: String,
        until: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published_at: Option<i64>,
    },
    /// Every token of `subject` issued before `epoch`.
    Epoch {
        subject: String,
        epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published_at: Option<i64>,
    },
}

impl RevocationMessage {
    /// The message for `r`.
    /// The message for `r`, published now.
    pub(crate) fn of(r: &Revocation) -> Self {
        let published_at = Some(to_millis(std::time::SystemTime::now()));
        match r {
            Revocation::Jti { jti, until } => Self::Jti {
                jti: jti.clone(),
                until: to_millis(*until),
                published_at,
            },
            Revocation::Epoch { subject, epoch } => Self::Epoch {
                subject: subject.clone(),
                epoch: to_millis(*epoch),
                published_at,
            },
        }
    }

    /// The revocation this message carries, as received now: records its lag when the message
    /// says when it was published.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn into_revocation(self) -> Revocation {
        let (revocation, published_at) = match self {
            Self::Jti {
                jti,
                until,
                published_at,
            } => (
                Revocation::Jti {
                    jti,
                    until: from_millis(until),
                },
                published_at,
            ),
            Self::Epoch {
                subject,
                epoch,
                published_at,
            } => (
                Revocation::Epoch {
                    subject,
                    epoch: from_millis(epoch),
                },
                published_at,
            ),
        };
        if let Some(at) = published_at {
            crate::metrics::revocation_lag(at);
        }
        revocation
    }

    /// The JSON text sent on the channel.
    pub(crate) fn to_json(&self) -> String {
        // Two variants of strings and integers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn both_kinds_round_trip_through_json() {
        for r in [
            Revocation::Jti {
                jti: "j1".into(),
                until: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            },
            Revocation::Epoch {
                subject: "alice".into(),
                epoch: UNIX_EPOCH + Duration::from_millis(42),
            },
        ] {
            let text = RevocationMessage::of(&r).to_json();
            let back: RevocationMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(back.into_revocation(), r);
        }
        let text = RevocationMessage::of(&Revocation::Epoch {
            subject: "s".into(),
            epoch: UNIX_EPOCH,
        })
        .to_json();
        assert!(
            text.starts_with(r#"{"kind":"epoch","subject":"s","epoch":0,"published_at":"#),
            "{text}"
        );
    }

    #[test]
    fn messages_without_a_publication_time_still_apply() {
        // As an older keycard publishes them.
        let old: RevocationMessage =
            serde_json::from_str(r#"{"kind":"jti","jti":"j","until":5}"#).unwrap();
        assert_eq!(
            old.into_revocation(),
            Revocation::Jti {
                jti: "j".into(),
                until: UNIX_EPOCH + Duration::from_millis(5)
            }
        );
    }
}
