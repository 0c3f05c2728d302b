//! The idempotency layer's metrics through the `metrics` facade (feature `metrics`);
//! without the feature these are empty functions the compiler removes.

use std::time::Duration;

use super::IdempotencyOutcome;

#[cfg(feature = "metrics")]
pub(crate) const DECISIONS: &str = "aghanim_webhook_idempotency_decisions_total";
#[cfg(all(feature = "metrics", feature = "postgres"))]
pub(crate) const STORE_FAILURES: &str = "aghanim_webhook_idempotency_store_failures_total";
#[cfg(feature = "metrics")]
pub(crate) const STORE_DURATION: &str = "aghanim_webhook_idempotency_store_duration_seconds";

/// The label of a decision: a bounded set.
#[cfg(feature = "metrics")]
fn decision_label(outcome: IdempotencyOutcome) -> &'static str {
    use IdempotencyOutcome::*;
    match outcome {
        Ran { .. } => "recorded",
        Replayed => "replayed",
        Released { .. } => "released",
        StillInProgress => "busy",
        KeyReused => "key_reused",
        StoreUnavailable => "store_unavailable",
        LeaseLost { .. } => "lease_lost",
        NotRecorded { .. } => "not_recorded",
        TimedOut { .. } => "timed_out",
        Cancelled { .. } => "cancelled",
        TransactionLost => "transaction_lost",
        FailedOpen => "failed_open",
        PassedThrough => "passed_through",
    }
}

/// What the layer answered a deduplicated delivery with.
#[inline]
pub(crate) fn decision(outcome: IdempotencyOutcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DECISIONS, "decision" => decision_label(outcome)).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A claim taken (`true`), or a wait begun for the copy in progress (`false`).
#[inline]
pub(crate) fn claim(taken: bool) {
    #[cfg(feature = "metrics")]
    {
        let decision = if taken { "claimed" } else { "waited" };
        metrics::counter!(DECISIONS, "decision" => decision).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = taken;
}

/// How long one store call took.
#[inline]
pub(crate) fn store_call(store: &'static str, operation: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(STORE_DURATION, "store" => store, "operation" => operation)
        .record(took.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (store, operation, took);
}

/// A store failure that made the layer answer 503, by a bounded reason.
#[cfg(feature = "postgres")]
#[inline]
pub(crate) fn store_failure(store: &'static str, operation: &'static str, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(STORE_FAILURES, "store" => store, "operation" => operation, "reason" => reason)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (store, operation, reason);
}
