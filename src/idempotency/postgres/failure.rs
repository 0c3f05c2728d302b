//! Why the transactional path answered 503: each failure of the store, named, logged
//! once with the database's own words and SQLSTATE, and counted by reason.

use std::fmt;

use super::store::{is_sqlstate, is_transaction_ended, IN_FAILED_SQL_TRANSACTION};
use crate::idempotency::{metrics, trace, StoreError};

/// Why a claim failed.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// No connection from the pool.
    Acquire(sqlx::Error),
    /// The claim's statements, or the read of a committed answer, failed.
    Claim(sqlx::Error),
    /// The committed answer could not be read.
    Read(StoreError),
    /// The key's insert was refused as a duplicate, yet no row has it.
    Vanished,
}

/// Why a delivery's transaction did not commit.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// The handler ended the delivery's transaction itself (its own `COMMIT` or
    /// `ROLLBACK`): what it committed, the claim's row among it, is out of reach.
    Ended,
    /// A statement of the handler's failed and aborted the transaction.
    Aborted(sqlx::Error),
    /// The handler left a savepoint open (a nested transaction it forgot).
    SavepointLeftOpen,
    /// The commit's query failed otherwise: the `COMMIT` (a deferred constraint, a
    /// serialization failure), or the connection.
    Commit(sqlx::Error),
}

impl CommitError {
    /// What an error of the commit's query means: its first statement raises when the
    /// transaction is not the claim's or is aborted; anything else failed the
    /// `COMMIT` (a deferred constraint, a serialization failure) or the connection.
    pub(super) fn of(error: sqlx::Error) -> Self {
        if is_transaction_ended(&error) {
            Self::Ended
        } else if is_sqlstate(&error, IN_FAILED_SQL_TRANSACTION) {
            Self::Aborted(error)
        } else {
            Self::Commit(error)
        }
    }
}

impl ClaimError {
    /// A bounded label for the metrics.
    fn reason(&self) -> &'static str {
        match self {
            Self::Acquire(error) | Self::Claim(error) => reason_of(error),
            Self::Read(_) => "unreadable_record",
            Self::Vanished => "record_vanished",
        }
    }
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Acquire(error) => write!(f, "no connection from the pool: {error}"),
            Self::Claim(error) => write!(f, "{error}"),
            Self::Read(error) => write!(f, "{error}"),
            Self::Vanished => f.write_str("the key's insert was refused, yet no row has it"),
        }
    }
}

impl CommitError {
    /// A bounded label for the metrics.
    fn reason(&self) -> &'static str {
        match self {
            Self::Ended => "transaction_ended",
            Self::Aborted(_) => "transaction_aborted",
            Self::SavepointLeftOpen => "savepoint_left_open",
            Self::Commit(error) => reason_of(error),
        }
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended => f.write_str(
                "the handler ended the delivery's transaction itself (its own COMMIT or \
                 ROLLBACK): rolled back what could be",
            ),
            Self::Aborted(_) => f.write_str(
                "a statement of the handler's failed and aborted the delivery's \
                 transaction: nothing kept, the retry runs again",
            ),
            Self::SavepointLeftOpen => {
                f.write_str("the handler left a savepoint (a nested begin()) open: rolled back")
            }
            Self::Commit(error) => write!(f, "COMMIT: {error}"),
        }
    }
}

/// Why the store failed, for one 503.
pub(crate) enum Failure<'a> {
    Claim(&'a ClaimError),
    Commit(&'a CommitError),
    /// The operation did not finish within the store timeout.
    TimedOut,
    /// The handler kept the transaction past its answer, longer than the store timeout.
    HeldByHandler,
    /// A duplicate found its key committed without an answer.
    Unanswered,
    /// The claim's lock wait ended.
    LockTimeout(&'a sqlx::Error),
}

impl Failure<'_> {
    /// Logs the failure once, with its cause, and counts it by reason.
    pub(crate) fn report(&self, operation: &'static str, dedupe_key: &str) {
        let (reason, sqlstate, cause): (_, _, &dyn fmt::Display) = match self {
            Self::Claim(error) => (error.reason(), sqlstate_of_claim(error), *error),
            Self::Commit(error) => (error.reason(), sqlstate_of_commit(error), *error),
            Self::TimedOut => ("timed_out", None, &"no answer within the store timeout"),
            Self::HeldByHandler => (
                "held_by_handler",
                None,
                &"the handler kept the delivery's transaction past its answer",
            ),
            Self::LockTimeout(error) => (
                "lock_timeout",
                sqlstate(error),
                &"the claim's lock wait ended: a copy of the delivery still runs, or something \
                  holds a lock on the table (a migration, LOCK TABLE, VACUUM FULL)",
            ),
            Self::Unanswered => (
                "committed_without_answer",
                None,
                &"the key was committed without an answer (a handler's own COMMIT): \
                  refused until an operator decides (aghanim-webhook records stuck)",
            ),
        };
        trace::store_failure(dedupe_key, "postgres", operation, reason, sqlstate, cause);
        metrics::store_failure("postgres", operation, reason);
    }
}

fn sqlstate_of_claim(error: &ClaimError) -> Option<String> {
    match error {
        ClaimError::Acquire(error) | ClaimError::Claim(error) => sqlstate(error),
        _ => None,
    }
}

fn sqlstate_of_commit(error: &CommitError) -> Option<String> {
    match error {
        // An ended transaction raises by the check's own construction: no SQLSTATE of
        // the database's to report.
        CommitError::Commit(error) | CommitError::Aborted(error) => sqlstate(error),
        _ => None,
    }
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// A bounded label for an sqlx error.
fn reason_of(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(_) if is_sqlstate(error, "57014") => "statement_timeout",
        sqlx::Error::Database(_) if is_sqlstate(error, IN_FAILED_SQL_TRANSACTION) => {
            "transaction_aborted"
        }
        sqlx::Error::Database(_) if is_sqlstate(error, "53300") => "too_many_connections",
        sqlx::Error::Database(_) if is_sqlstate(error, "40001") => "serialization_failure",
        sqlx::Error::Database(_) if is_sqlstate(error, "40P01") => "deadlock",
        sqlx::Error::Database(error)
            if error.code().is_some_and(|code| code.starts_with("57P")) =>
        {
            "server_shutdown"
        }
        sqlx::Error::Database(_) => "database",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "connection",
        sqlx::Error::Protocol(_) => "protocol",
        _ => "other",
    }
}
