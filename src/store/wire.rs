//! The revocation message a store publishes to the other instances (Redis `PUBLISH`,
//! PostgreSQL `NOTIFY`): one JSON shape for every backend, times in Unix milliseconds.

use serde::{Deserialize, Serialize};

use super::Revocation;
use crate::clock::{from_millis, to_millis};

/// A [`Revocation`] as it travels between instances.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RevocationMessage {
    /// One access token, denied until `until`.
    Jti { jti: String, until: i64 },
    /// Every token of `subject` issued before `epoch`.
    Epoch { subject: String, epoch: i64 },
}

impl RevocationMessage {
    /// The message for `r`.
    pub(crate) fn of(r: &Revocation) -> Self {
        match r {
            Revocation::Jti { jti, until } => Self::Jti {
                jti: jti.clone(),
                until: to_millis(*until),
            },
            Revocation::Epoch { subject, epoch } => Self::Epoch {
                subject: subject.clone(),
                epoch: to_millis(*epoch),
            },
        }
    }

    /// The revocation this message carries.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn into_revocation(self) -> Revocation {
        match self {
            Self::Jti { jti, until } => Revocation::Jti {
                jti,
                until: from_millis(until),
            },
            Self::Epoch { subject, epoch } => Revocation::Epoch {
                subject,
                epoch: from_millis(epoch),
            },
        }
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
        assert_eq!(
            RevocationMessage::of(&Revocation::Epoch {
                subject: "s".into(),
                epoch: UNIX_EPOCH
            })
            .to_json(),
            r#"{"kind":"epoch","subject":"s","epoch":0}"#
        );
    }
}
