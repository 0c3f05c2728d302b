//! The idempotency layer's events through `tracing` (feature `tracing`); without the
//! feature these are empty functions the compiler removes.

/// One event per decision of the layer, keyed by the delivery's readable
/// dedupe key (`{game}:{sandbox|live}:{event_type}:{id}`).
#[inline]
pub(crate) fn decision(outcome: super::IdempotencyOutcome, dedupe_key: &str) {
    #[cfg(feature = "tracing")]
    {
        use super::IdempotencyOutcome::*;
        const TARGET: &str = "aghanim_webhook::idempotency";
        match outcome {
            Ran { attempt } => {
                tracing::debug!(target: TARGET, dedupe_key, attempt, "ran and recorded")
            }
            Replayed => {
                tracing::debug!(target: TARGET, dedupe_key, "duplicate: replayed the recorded answer")
            }
            Released { attempt } => {
                tracing::info!(target: TARGET, dedupe_key, attempt, "claim released for a retry")
            }
            StillInProgress => {
                tracing::info!(target: TARGET, dedupe_key, "duplicate still in progress after the wait: 503")
            }
            LeaseLost { attempt } => {
                tracing::warn!(target: TARGET, dedupe_key, attempt, "lease lost to another delivery: answer not recorded")
            }
            NotRecorded { attempt } => {
                tracing::warn!(target: TARGET, dedupe_key, attempt, "answer could not be recorded: the claim expires with its lease")
            }
            TimedOut { attempt } => {
                tracing::warn!(target: TARGET, dedupe_key, attempt, "handler past the run timeout: cancelled, claim released, 503")
            }
            Cancelled { attempt } => {
                tracing::warn!(target: TARGET, dedupe_key, attempt, "run cancelled at shutdown: claim released, 503")
            }
            TransactionLost => {
                tracing::error!(target: TARGET, dedupe_key, "the handler ended the delivery's transaction itself (COMMIT or ROLLBACK outside a nested begin()): rolled back what could be, 503")
            }
            KeyReused => {
                tracing::warn!(target: TARGET, dedupe_key, "idempotency key reused with another payload: 422")
            }
            StoreUnavailable => {
                tracing::warn!(target: TARGET, dedupe_key, "store unavailable: 503")
            }
            FailedOpen => {
                tracing::warn!(target: TARGET, dedupe_key, "store unavailable: ran without a claim (fail open)")
            }
            _ => tracing::trace!(target: TARGET, dedupe_key, ?outcome, "passed through"),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (outcome, dedupe_key);
}

/// A claim taken, or a wait begun for the delivery in progress.
#[inline]
pub(crate) fn claim(dedupe_key: &str, attempt: Option<u64>) {
    #[cfg(feature = "tracing")]
    match attempt {
        Some(attempt) => {
            tracing::debug!(target: "aghanim_webhook::idempotency", dedupe_key, attempt, "claimed")
        }
        None => {
            tracing::debug!(target: "aghanim_webhook::idempotency", dedupe_key, "waiting for the delivery in progress")
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (dedupe_key, attempt);
}

/// A store failure that made the layer answer 503, once, with the store's own words
/// and, from a database, its SQLSTATE.
#[cfg(feature = "postgres")]
#[inline]
pub(crate) fn store_failure(
    dedupe_key: &str,
    store: &'static str,
    operation: &'static str,
    reason: &'static str,
    sqlstate: Option<String>,
    cause: &dyn std::fmt::Display,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "aghanim_webhook::idempotency",
        dedupe_key,
        store,
        operation,
        reason,
        sqlstate = sqlstate.as_deref().unwrap_or(""),
        error = %cause,
        "store failed: 503"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (dedupe_key, store, operation, reason, sqlstate, cause);
}
