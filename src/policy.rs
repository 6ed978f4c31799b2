//! What to do when a session is used from another client address (or another region).
//!
//! A session records the client IP at login (and at each step-up). With a [`ClientPolicy`],
//! every authenticated request compares it with the request's peer address (axum's
//! `ConnectInfo<SocketAddr>`; serve with `into_make_service_with_connect_info`). When an
//! app-supplied region resolver is set (for example a GeoIP country lookup), regions are compared
//! instead of addresses, so a mobile client changing address inside one country is not flagged.
//!
//! A change always raises [`SecurityEvent::ClientIpChanged`](crate::events::SecurityEvent), then:
//! - [`IpChangeAction::Allow`]: the request proceeds (report only);
//! - [`IpChangeAction::StepUp`]: the request proceeds, but its authentication counts as stale,
//!   so [`HighRisk`](crate::HighRisk) routes answer `insufficient_user_authentication` until the
//!   user steps up (which records the new address);
//! - [`IpChangeAction::Terminate`]: the session is revoked and the request gets 401.
//!
//! JWT access tokens do not carry the login address, so the policy applies to server sessions.

use std::{fmt, net::IpAddr, sync::Arc};

/// The action taken when a session's client address (or region) changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpChangeAction {
    /// Report the change and carry on.
    Allow,
    /// Report it and demand a step-up on high-risk routes.
    StepUp,
    /// Report it and revoke the session.
    Terminate,
}

type Resolver = dyn Fn(IpAddr) -> Option<String> + Send + Sync;

/// A policy for sessions whose client address changes.
///
/// ```
/// use keycard::policy::{ClientPolicy, IpChangeAction};
///
/// // Terminate a session that shows up from another country, per an app-supplied lookup.
/// let policy = ClientPolicy::new(IpChangeAction::Terminate)
///     .with_region(|ip| if ip.is_loopback() { Some("local".into()) } else { None });
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct ClientPolicy {
    action: IpChangeAction,
    region: Option<Arc<Resolver>>,
}

impl fmt::Debug for ClientPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPolicy")
            .field("action", &self.action)
            .field("region_resolver", &self.region.is_some())
            .finish()
    }
}

impl ClientPolicy {
    /// A policy comparing addresses.
    pub fn new(action: IpChangeAction) -> Self {
        Self {
            action,
            region: None,
        }
    }

    /// Compares regions (e.g. countries) from `resolver` instead of addresses. An address the
    /// resolver does not know counts as no change.
    pub fn with_region(
        mut self,
        resolver: impl Fn(IpAddr) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.region = Some(Arc::new(resolver));
        self
    }

    /// The action.
    pub fn action(&self) -> IpChangeAction {
        self.action
    }

    /// Whether a session recorded at `from` used from `to` counts as a change.
    pub fn changed(&self, from: IpAddr, to: IpAddr) -> bool {
        match &self.region {
            None => from != to,
            Some(region) => match (region(from), region(to)) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_addresses_or_regions() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "198.51.100.9".parse().unwrap();
        let p = ClientPolicy::new(IpChangeAction::Allow);
        assert!(p.changed(a, b));
        assert!(!p.changed(a, a));
        let same_country = p.clone().with_region(|_| Some("NZ".into()));
        assert!(!same_country.changed(a, b));
        let by_first_octet = p.with_region(|ip| match ip {
            IpAddr::V4(v4) => Some(v4.octets()[0].to_string()),
            IpAddr::V6(_) => None,
        });
        assert!(by_first_octet.changed(a, b));
    }
}
