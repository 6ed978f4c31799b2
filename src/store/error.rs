//! Store failures: [`StoreError`] and its kind, and how they reach a request as an [`Error`].

use std::fmt;

use crate::error::{BoxError, Error, ErrorKind};

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend is unreachable or refused the operation (maps to 503).
    Unavailable,
    /// The operation did not finish within the store timeout (maps to 503).
    Timeout,
    /// A write would have overwritten an existing record (an ID collision).
    Conflict,
    /// The stored data could not be decoded.
    Corrupt,
    /// A session-data change would exceed its [`DataLimits`](super::DataLimits); nothing was
    /// written (maps to 413).
    TooLarge,
}

/// A store failure, keeping the backend's error as its source.
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<BoxError>,
}

impl StoreError {
    /// A failure of `kind` without a source.
    pub fn new(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// The backend is unavailable; `source` says why.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self {
            kind: StoreErrorKind::Unavailable,
            source: Some(source.into()),
        }
    }

    /// Stored data could not be decoded; `source` says why.
    pub fn corrupt(source: impl Into<BoxError>) -> Self {
        Self {
            kind: StoreErrorKind::Corrupt,
            source: Some(source.into()),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StoreErrorKind::Unavailable => f.write_str("session store unavailable"),
            StoreErrorKind::Timeout => f.write_str("session store timed out"),
            StoreErrorKind::Conflict => f.write_str("session store record already exists"),
            StoreErrorKind::Corrupt => f.write_str("session store returned undecodable data"),
            StoreErrorKind::TooLarge => f.write_str("session data over its size limit"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A store failure seen by a request: 503 (fail closed), or 500 for an ID collision, which a
/// strategy retries before it reaches a request.
impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        let kind = match err.kind() {
            StoreErrorKind::Conflict => ErrorKind::Internal,
            StoreErrorKind::TooLarge => ErrorKind::PayloadTooLarge,
            _ => ErrorKind::StoreUnavailable,
        };
        Error::new(kind).with_source(err)
    }
}
