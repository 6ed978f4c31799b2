//! Rows and their conversion to records, and records to bind parameters.

use std::time::Duration;

use sqlx::FromRow;

use super::exec::Arg;
#[cfg(doc)]
use super::statements::{REFRESH_COLUMNS, SESSION_COLUMNS};
use crate::{
    clock::{from_millis, to_millis},
    store::{RefreshRecord, SessionRecord, StoreError, StoreResult},
    token::TokenHash,
};

/// UTF-8 text. MySQL keys are `VARBINARY` (byte-wise comparison), which sqlx will not decode
/// into a `String`; this type accepts both text and binary columns.
pub(super) struct Text(pub(super) String);

macro_rules! text_as_string {
    ($feature:literal, $db:ty) => {
        #[cfg(feature = $feature)]
        impl sqlx::Type<$db> for Text {
            fn type_info() -> <$db as sqlx::Database>::TypeInfo {
                <String as sqlx::Type<$db>>::type_info()
            }
            fn compatible(ty: &<$db as sqlx::Database>::TypeInfo) -> bool {
                <String as sqlx::Type<$db>>::compatible(ty)
            }
        }
        #[cfg(feature = $feature)]
        impl<'r> sqlx::Decode<'r, $db> for Text {
            fn decode(
                value: <$db as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, $db>>::decode(value).map(Text)
            }
        }
    };
}
text_as_string!("sqlite", sqlx::Sqlite);
text_as_string!("postgres", sqlx::Postgres);

#[cfg(feature = "mysql")]
impl sqlx::Type<sqlx::MySql> for Text {
    fn type_info() -> sqlx::mysql::MySqlTypeInfo {
        <[u8] as sqlx::Type<sqlx::MySql>>::type_info()
    }
    fn compatible(ty: &sqlx::mysql::MySqlTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::MySql>>::compatible(ty)
            || <[u8] as sqlx::Type<sqlx::MySql>>::compatible(ty)
    }
}

#[cfg(feature = "mysql")]
impl<'r> sqlx::Decode<'r, sqlx::MySql> for Text {
    fn decode(value: sqlx::mysql::MySqlValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let bytes = <&[u8] as sqlx::Decode<'r, sqlx::MySql>>::decode(value)?;
        Ok(Text(std::str::from_utf8(bytes)?.to_owned()))
    }
}

/// A session record decoded straight from a row of `SELECT {SESSION_COLUMNS}`, read by position
/// (the hot path: no column-name lookups). Text and blob columns are borrowed from the row, so
/// the only allocations are the record's own fields. MySQL's `VARBINARY` subject decodes as
/// `&str` too: the unchecked read skips the type check that would refuse it, not the UTF-8 one.
pub(super) struct SessionRow(pub(super) SessionRecord);

impl<'r, R: sqlx::Row> FromRow<'r, R> for SessionRow
where
    usize: sqlx::ColumnIndex<R>,
    &'r [u8]: sqlx::Decode<'r, R::Database>,
    &'r str: sqlx::Decode<'r, R::Database>,
    i64: sqlx::Decode<'r, R::Database>,
    bool: sqlx::Decode<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        // The order of SESSION_COLUMNS. The schema is keycard's own (its migrations), so the
        // column types are known: decoding skips sqlx's per-column type-compatibility lookup.
        // Each decoder still refuses a value of the wrong shape (length, UTF-8, JSON), which
        // then surfaces as a corrupt record.
        let text = |i: usize| row.try_get_unchecked::<&'r str, _>(i);
        let opt_text = |i: usize| row.try_get_unchecked::<Option<&'r str>, _>(i);
        let time = |i: usize| row.try_get_unchecked::<i64, _>(i).map(from_millis);
        let decoded = |e: StoreError| sqlx::Error::Decode(Box::new(e));
        Ok(Self(SessionRecord {
            id: hash(row.try_get_unchecked(0)?).map_err(decoded)?,
            subject: text(1)?.to_owned(),
            roles: decode_json(text(2)?).map_err(decoded)?,
            attributes: decode_json(text(3)?).map_err(decoded)?,
            created_at: time(4)?,
            last_seen_at: time(5)?,
            authenticated_at: time(6)?,
            expires_at: time(7)?,
            absolute_expires_at: time(8)?,
            user_agent: opt_text(9)?.map(str::to_owned),
            ip: opt_text(10)?.map(str::to_owned),
            data: opt_text(11)?.map(str::to_owned),
            idle_timeout: row
                .try_get_unchecked::<Option<i64>, _>(12)?
                .map(duration_of_millis),
            persistent: row.try_get_unchecked(13)?,
        }))
    }
}

#[derive(FromRow)]
pub(super) struct RefreshRow {
    id: Vec<u8>,
    family: Text,
    subject: Text,
    roles: Text,
    attributes: Text,
    issued_at: i64,
    expires_at: i64,
    family_created_at: i64,
    family_expires_at: i64,
    authenticated_at: i64,
    used_at: Option<i64>,
    user_agent: Option<Text>,
    ip: Option<Text>,
    idle_timeout_ms: Option<i64>,
    persistent: bool,
}

impl RefreshRow {
    pub(super) fn into_record(self) -> StoreResult<RefreshRecord> {
        Ok(RefreshRecord {
            id: hash(&self.id)?,
            family: self.family.0,
            subject: self.subject.0,
            roles: decode_json(&self.roles.0)?,
            attributes: decode_json(&self.attributes.0)?,
            issued_at: from_millis(self.issued_at),
            expires_at: from_millis(self.expires_at),
            family_created_at: from_millis(self.family_created_at),
            family_expires_at: from_millis(self.family_expires_at),
            authenticated_at: from_millis(self.authenticated_at),
            used_at: self.used_at.map(from_millis),
            user_agent: self.user_agent.map(|t| t.0),
            ip: self.ip.map(|t| t.0),
            idle_timeout: self.idle_timeout_ms.map(duration_of_millis),
            persistent: self.persistent,
        })
    }
}

/// A stored whole number of milliseconds as a duration (a negative one, which keycard never
/// writes, as zero).
fn duration_of_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration as stored: whole milliseconds, saturating.
fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn hash(bytes: &[u8]) -> StoreResult<TokenHash> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash::from_bytes)
        .map_err(|_| StoreError::corrupt("a stored token hash is not 32 bytes long"))
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(StoreError::corrupt)
}

fn encode_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(StoreError::corrupt)
}

pub(super) fn count(rows: Vec<(i64,)>) -> i64 {
    rows.first().map_or(0, |r| r.0)
}

/// The bind parameters of a session row, in [`SESSION_COLUMNS`] order.
pub(super) struct SessionParams<'a> {
    record: &'a SessionRecord,
    roles: String,
    attributes: String,
}

impl<'a> SessionParams<'a> {
    pub(super) fn new(record: &'a SessionRecord) -> StoreResult<Self> {
        Ok(Self {
            record,
            roles: encode_json(&record.roles)?,
            attributes: encode_json(&record.attributes)?,
        })
    }

    pub(super) fn args(&self) -> [Arg<'_>; 14] {
        let r = self.record;
        [
            Arg::Bytes(r.id.as_bytes()),
            Arg::Text(&r.subject),
            Arg::Text(&self.roles),
            Arg::Text(&self.attributes),
            Arg::Int(to_millis(r.created_at)),
            Arg::Int(to_millis(r.last_seen_at)),
            Arg::Int(to_millis(r.authenticated_at)),
            Arg::Int(to_millis(r.expires_at)),
            Arg::Int(to_millis(r.absolute_expires_at)),
            Arg::OptText(r.user_agent.as_deref()),
            Arg::OptText(r.ip.as_deref()),
            Arg::OptText(r.data.as_deref()),
            Arg::OptInt(r.idle_timeout.map(millis_of)),
            Arg::Bool(r.persistent),
        ]
    }
}

/// The bind parameters of a refresh-token row, in [`REFRESH_COLUMNS`] order.
pub(super) struct RefreshParams<'a> {
    record: &'a RefreshRecord,
    roles: String,
    attributes: String,
}

impl<'a> RefreshParams<'a> {
    pub(super) fn new(record: &'a RefreshRecord) -> StoreResult<Self> {
        Ok(Self {
            record,
            roles: encode_json(&record.roles)?,
            attributes: encode_json(&record.attributes)?,
        })
    }

    pub(super) fn args(&self) -> [Arg<'_>; 15] {
        let r = self.record;
        [
            Arg::Bytes(r.id.as_bytes()),
            Arg::Text(&r.family),
            Arg::Text(&r.subject),
            Arg::Text(&self.roles),
            Arg::Text(&self.attributes),
            Arg::Int(to_millis(r.issued_at)),
            Arg::Int(to_millis(r.expires_at)),
            Arg::Int(to_millis(r.family_created_at)),
            Arg::Int(to_millis(r.family_expires_at)),
            Arg::Int(to_millis(r.authenticated_at)),
            Arg::OptInt(r.used_at.map(to_millis)),
            Arg::OptText(r.user_agent.as_deref()),
            Arg::OptText(r.ip.as_deref()),
            Arg::OptInt(r.idle_timeout.map(millis_of)),
            Arg::Bool(r.persistent),
        ]
    }
}
