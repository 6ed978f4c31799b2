//! The strategy conformance suite: every [`SessionStrategy`](crate::SessionStrategy) through the
//! same HTTP behaviours, through the real layer.
//!
//! Each check builds a fresh [`Keycard`] with the [`StrategyHarness`] it is given, on a
//! [`ManualClock`] of its own, installs its layer on the suite's router and drives that router
//! as a client would: it logs in through [`Auth::login`](crate::Auth::login), keeps the
//! credential where [`Keycard::transport`] says it travels (the session cookie from
//! `Set-Cookie`, or the token of the login's JSON body sent as `Authorization: Bearer`), and
//! calls routes that extract [`Principal`](crate::Principal), `Option<Principal>`,
//! [`RequireRole`](crate::RequireRole) and [`HighRisk`](crate::HighRisk), and that log out, log
//! out everywhere, list and revoke sessions, rotate, step up and refresh through
//! [`Auth`](crate::Auth). [`run`] runs every check; each is also public on its own.
//!
//! Every check uses subjects of its own, so checks may run in parallel on one shared store.
//!
//! # What the checks expect
//! Where the credential travels follows
//! [`SessionStrategy::credential_source`](crate::SessionStrategy::credential_source) (through
//! the keycard's transport settings). Which lifetimes apply follows
//! [`SessionStrategy::refresh_tokens`](crate::SessionStrategy::refresh_tokens):
//!
//! - **No refresh tokens** (server sessions and the like, [`Lifetimes::Session`]): the credential
//!   is checked against the store on every request and slides: a credential used at least once
//!   per 90 % of `idle` stays valid, one unused for longer than `idle` is refused, and none is
//!   accepted once `absolute` has passed since login. A store outage fails every authenticated
//!   request with 503.
//! - **Refresh tokens** (the JWT and hybrid strategies, [`Lifetimes::Tokens`]): the access token
//!   is verified locally and lives `access` from issue (plus the verification `leeway`), however
//!   much it is used; the refresh token exchanges it for new ones and is single-use (presenting
//!   a spent one ends its session, access tokens included); a refresh token unused for longer
//!   than `refresh_idle` is refused, and none is accepted once `refresh_absolute` has passed
//!   since login. During a store outage a locally verified access token may still be served
//!   (200) or refused with 503, never 401 and never as anonymous; everything that needs the
//!   store (login, refresh, listing, [`HighRisk`](crate::HighRisk)) answers 503.
//!
//! Both kinds must log a subject out (one session, or all of them), list its sessions with the
//! caller's marked `current`, revoke one by its public handle (404 for another subject's),
//! replace the credential on a privilege change or a step-up (the old one is then refused), and
//! answer 401 (never anonymous) to a bad credential.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use keycard::{Keycard, clock::ManualClock, store::MemoryStore, strategy::ServerSessions};
//! use keycard::strategy::ServerSettings;
//! use keycard::testing::{FaultyStore, strategy::{self, Lifetimes, StrategyHarness}};
//!
//! struct Harness {
//!     store: FaultyStore<MemoryStore>,
//! }
//!
//! #[async_trait]
//! impl StrategyHarness for Harness {
//!     async fn keycard(&self, clock: &ManualClock) -> Keycard {
//!         let strategy = ServerSessions::new(Arc::new(self.store.clone()), ServerSettings::default())
//!             .with_clock(Arc::new(clock.clone()));
//!         Keycard::builder().strategy(strategy).clock(Arc::new(clock.clone())).build().unwrap()
//!     }
//!     fn lifetimes(&self) -> Lifetimes {
//!         let settings = ServerSettings::default();
//!         Lifetimes::Session { idle: settings.idle_timeout, absolute: settings.absolute_timeout }
//!     }
//!     fn high_risk(&self) -> bool {
//!         true
//!     }
//!     async fn fail_store(&self) {
//!         self.store.fail();
//!     }
//!     async fn recover_store(&self) {
//!         self.store.recover();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! strategy::run(&Harness { store: FaultyStore::new(Arc::new(MemoryStore::new())) }).await;
//! # }
//! ```

use std::time::Duration;

use async_trait::async_trait;

use crate::{Keycard, clock::ManualClock};

mod client;
mod data;
mod expiry;
mod identity;
mod lifetime;
mod outage;
mod reissue;
mod sessions;

pub use data::{session_data_concurrent_writers_all_land, session_data_limits_are_enforced};
pub use expiry::{absolute_expiry, idle_expiry};
pub use identity::{
    bad_credential_is_401_never_anonymous, login_then_authenticate,
    missing_credential_is_401_and_anonymous, require_role_guards_the_route,
};
pub use lifetime::{
    login_may_shorten_the_absolute_timeout, login_may_shorten_the_idle_timeout,
    remember_me_holds_for_the_session,
};
pub use outage::store_down_is_503;
pub use reissue::{
    high_risk_demands_a_recent_authentication, refresh_exchanges_tokens,
    rotation_after_privilege_change, step_up_renews_the_authentication_time,
};
pub use sessions::{
    listing_marks_the_current_session, logout_all_ends_every_session_of_the_subject,
    logout_others_keeps_the_current_session, logout_refuses_the_credential, revoking_one_session,
};

/// What the strategy suite needs from the strategy under test: a way to build it, the
/// lifetimes it was configured with, and a switch for its store.
///
/// Implement it in the test file of a strategy (or of a store, run through a keycard strategy)
/// and pass it to [`run`]; see the [module docs](self) for an example and for what the checks
/// expect.
#[async_trait]
pub trait StrategyHarness: Send + Sync {
    /// Builds a fresh [`Keycard`] whose strategy and layer both read the time from `clock`
    /// (give it to the strategy and to [`KeycardBuilder::clock`](crate::KeycardBuilder::clock)).
    ///
    /// Every check calls this once; keycards may share one store, since checks use subjects of
    /// their own. Keep the strategy's store timeout short (at most about a second): the outage
    /// check waits for it on every request. Leave CSRF protection and the transport at their
    /// defaults, or at least let same-site requests without `Origin` through.
    async fn keycard(&self, clock: &ManualClock) -> Keycard;

    /// The lifetimes the strategy was configured with: [`Lifetimes::Session`] when it issues no
    /// refresh tokens, [`Lifetimes::Tokens`] when it does.
    fn lifetimes(&self) -> Lifetimes;

    /// Whether the application protects routes with [`HighRisk`](crate::HighRisk) (the hybrid
    /// strategy, server sessions): [`high_risk_demands_a_recent_authentication`] runs and the
    /// outage check expects the high-risk route to answer 503. `false` for a plain token API.
    fn high_risk(&self) -> bool;

    /// Starts a store outage for every keycard this harness built: from now on each store call
    /// fails ([`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable), or a timeout)
    /// within the strategy's store timeout. [`FaultyStore`](super::FaultyStore) does this for
    /// any store; a real server can instead be stalled behind a TCP proxy or paused.
    async fn fail_store(&self);

    /// Ends the outage. The keycards must recover by themselves (within ten seconds), without
    /// being rebuilt.
    async fn recover_store(&self);
}

/// The lifetimes of the credentials of the strategy under test, as it was configured. See the
/// [module docs](self) for what each kind means to the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lifetimes {
    /// A strategy without refresh tokens: its credential slides with use.
    ///
    /// The checks need `idle` of at least 10 seconds and `absolute` of at least three times
    /// `idle`.
    Session {
        /// A credential unused for this long is refused.
        idle: Duration,
        /// No credential is accepted this long after its login, however active.
        absolute: Duration,
    },
    /// A strategy with refresh tokens: short-lived access tokens, and refresh families.
    ///
    /// The checks need `access` of at least 10 seconds, `refresh_idle` of at least
    /// `access + leeway + 1 min` and `refresh_absolute` of at least three times `refresh_idle`.
    Tokens {
        /// An access token is accepted until this long after its issue...
        access: Duration,
        /// ...plus this clock-skew tolerance, and refused after that.
        leeway: Duration,
        /// A refresh token unused for this long is refused.
        refresh_idle: Duration,
        /// No refresh token of a login is accepted this long after that login.
        refresh_absolute: Duration,
    },
}

impl Lifetimes {
    /// Panics with an explanation unless these lifetimes fit a strategy that does (or does not)
    /// issue refresh tokens and leave room for the checks.
    fn validate(&self, refreshes: bool) {
        const MIN: Duration = Duration::from_secs(10);
        match *self {
            Self::Session { idle, absolute } => {
                assert!(
                    !refreshes,
                    "the strategy issues refresh tokens: its harness must report Lifetimes::Tokens"
                );
                assert!(
                    idle >= MIN,
                    "Lifetimes::Session: idle must be at least 10 s"
                );
                assert!(
                    absolute >= idle * 3,
                    "Lifetimes::Session: absolute must be at least three times idle"
                );
            }
            Self::Tokens {
                access,
                leeway,
                refresh_idle,
                refresh_absolute,
            } => {
                assert!(
                    refreshes,
                    "the strategy issues no refresh tokens: its harness must report \
                     Lifetimes::Session"
                );
                assert!(
                    access >= MIN,
                    "Lifetimes::Tokens: access must be at least 10 s"
                );
                assert!(
                    refresh_idle >= access + leeway + Duration::from_secs(60),
                    "Lifetimes::Tokens: refresh_idle must be at least access + leeway + 1 min"
                );
                assert!(
                    refresh_absolute >= refresh_idle * 3,
                    "Lifetimes::Tokens: refresh_absolute must be at least three times refresh_idle"
                );
            }
        }
    }

    /// The longest step a client may let pass between two uses and stay logged in: 90 % of the
    /// idle lifetime (of the session, or of the refresh token).
    fn keep_alive_step(&self) -> Duration {
        match *self {
            Self::Session { idle, .. } => idle * 9 / 10,
            Self::Tokens { refresh_idle, .. } => refresh_idle * 9 / 10,
        }
    }
}

/// Runs every check against the strategy `harness` builds, one after another.
/// [`high_risk_demands_a_recent_authentication`] runs only when
/// [`StrategyHarness::high_risk`] says the application has high-risk routes.
pub async fn run(harness: &dyn StrategyHarness) {
    login_then_authenticate(harness).await;
    missing_credential_is_401_and_anonymous(harness).await;
    bad_credential_is_401_never_anonymous(harness).await;
    require_role_guards_the_route(harness).await;
    logout_refuses_the_credential(harness).await;
    logout_all_ends_every_session_of_the_subject(harness).await;
    logout_others_keeps_the_current_session(harness).await;
    listing_marks_the_current_session(harness).await;
    revoking_one_session(harness).await;
    session_data_concurrent_writers_all_land(harness).await;
    session_data_limits_are_enforced(harness).await;
    rotation_after_privilege_change(harness).await;
    step_up_renews_the_authentication_time(harness).await;
    if harness.high_risk() {
        high_risk_demands_a_recent_authentication(harness).await;
    }
    refresh_exchanges_tokens(harness).await;
    idle_expiry(harness).await;
    absolute_expiry(harness).await;
    remember_me_holds_for_the_session(harness).await;
    login_may_shorten_the_idle_timeout(harness).await;
    login_may_shorten_the_absolute_timeout(harness).await;
    store_down_is_503(harness).await;
}
