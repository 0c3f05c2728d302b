//! The signature layer's metrics through the `metrics` facade (feature `metrics`);
//! without the feature these are empty functions the compiler removes.

use crate::RejectionKind;

#[cfg(feature = "metrics")]
pub(crate) const DELIVERIES: &str = "aghanim_webhook_deliveries_total";
#[cfg(feature = "metrics")]
pub(crate) const DELIVERY_AGE: &str = "aghanim_webhook_delivery_age_seconds";
#[cfg(feature = "metrics")]
pub(crate) const BODIES_READING: &str = "aghanim_webhook_bodies_reading";
#[cfg(feature = "metrics")]
pub(crate) const BUDGET_IN_USE: &str = "aghanim_webhook_buffer_budget_bytes_in_use";

/// A verified delivery, and how old its signature was (negative when the sender's clock
/// is ahead).
#[inline]
pub(crate) fn verified(timestamp: u64, now: u64) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(DELIVERIES, "outcome" => "verified").increment(1);
        let age = i128::from(now) - i128::from(timestamp);
        #[allow(clippy::cast_precision_loss)] // seconds: far below 2^53
        metrics::histogram!(DELIVERY_AGE).record(age as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (timestamp, now);
}

/// A refused delivery, by kind.
#[inline]
pub(crate) fn rejected(kind: RejectionKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DELIVERIES, "outcome" => kind.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// A body began (`1`) or ended (`-1`) being read.
#[inline]
pub(crate) fn bodies_reading(change: i8) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(BODIES_READING).increment(f64::from(change));
    #[cfg(not(feature = "metrics"))]
    let _ = change;
}

/// The buffer budget's bytes in use now.
#[inline]
pub(crate) fn budget_in_use(bytes: usize) {
    #[cfg(feature = "metrics")]
    #[allow(clippy::cast_precision_loss)] // bytes of memory: far below 2^53
    metrics::gauge!(BUDGET_IN_USE).set(bytes as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = bytes;
}
