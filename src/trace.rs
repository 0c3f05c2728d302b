//! What the layers report through `tracing` (feature `tracing`); without the feature
//! these are empty functions the compiler removes.

use crate::Rejection;
#[cfg(feature = "tracing")]
use crate::RejectionKind;

/// One event per rejection: its kind, the request's method and path, the body bytes
/// read, and for a window rejection the claimed timestamp and the clock's skew. Never
/// the secret, the expected MAC or the body.
///
/// `warn` for what an operator must act on (a signature that does not match: a forgery
/// or a wrong secret; an authentic delivery outside the window: a clock or retry
/// problem; a spent buffer budget); `debug` for malformed or missing headers, oversized
/// and failed bodies, so that a flood of junk does not fill the logs at `warn`.
#[inline]
pub(crate) fn rejection(rejection: &Rejection, parts: &http::request::Parts, body_read: usize) {
    #[cfg(feature = "tracing")]
    {
        let kind = rejection.kind();
        let method = &parts.method;
        let path = parts.uri.path();
        match (kind, rejection.skew()) {
            (_, Some((timestamp, skew))) => tracing::warn!(
                target: "aghanim_webhook::signature",
                ?kind, %method, path, body_read, claimed_timestamp = timestamp, clock_skew_secs = skew,
                "webhook rejected: authentic signature outside the tolerance"
            ),
            (RejectionKind::SignatureMismatch | RejectionKind::Overloaded, _) => tracing::warn!(
                target: "aghanim_webhook::signature",
                ?kind, %method, path, body_read,
                "webhook rejected: {rejection}"
            ),
            _ => tracing::debug!(
                target: "aghanim_webhook::signature",
                ?kind, %method, path, body_read,
                "webhook rejected: {rejection}"
            ),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (rejection, parts, body_read);
}

/// One event per decision of the idempotency layer, keyed by the delivery's readable
/// dedupe key (`{game}:{sandbox|live}:{event_type}:{id}`).
#[cfg(feature = "idempotency")]
#[inline]
pub(crate) fn idempotency(outcome: crate::idempotency::IdempotencyOutcome, dedupe_key: &str) {
    #[cfg(feature = "tracing")]
    {
        use crate::idempotency::IdempotencyOutcome::*;
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
#[cfg(feature = "idempotency")]
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
