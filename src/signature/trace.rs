//! The signature layer's events through `tracing` (feature `tracing`); without the
//! feature these are empty functions the compiler removes.

use crate::Rejection;
#[cfg(feature = "tracing")]
use crate::{delivery_ids::DeliveryIds, RejectionKind};

/// [`rejection_read`] for a request refused before its body was read.
#[inline]
pub(crate) fn rejection(rejection: &Rejection, parts: &http::request::Parts, body_read: usize) {
    rejection_read(rejection, parts, body_read, None);
}

/// One event per rejection: its kind, the request's method and path, the body bytes
/// read, and for a window rejection the claimed timestamp, the clock's skew and the
/// delivery's ids (`event_type`, `event_id`, `idempotency_key`, `game_id`, read from
/// `verified`, the bytes whose MAC matched; with the feature `events`). Never the
/// secret, the expected MAC, the body, or anything read from an unverified body.
///
/// `warn` for what an operator must act on (a signature that does not match: a forgery
/// or a wrong secret; an authentic delivery outside the window: a clock or retry
/// problem, and a purchase to recover; a spent buffer budget); `debug` for malformed or
/// missing headers, oversized and failed bodies, so that a flood of junk does not fill
/// the logs at `warn`.
#[inline]
pub(crate) fn rejection_read(
    rejection: &Rejection,
    parts: &http::request::Parts,
    body_read: usize,
    verified: Option<&[u8]>,
) {
    #[cfg(feature = "tracing")]
    {
        let kind = rejection.kind();
        let method = &parts.method;
        let path = parts.uri.path();
        match (kind, rejection.skew()) {
            (_, Some((timestamp, skew))) => {
                let ids = verified.map(DeliveryIds::read).unwrap_or_default();
                tracing::warn!(
                    target: "aghanim_webhook::signature",
                    ?kind, %method, path, body_read, claimed_timestamp = timestamp, clock_skew_secs = skew,
                    event_type = ids.event_type.as_deref(), event_id = ids.event_id.as_deref(),
                    idempotency_key = ids.idempotency_key.as_deref(), game_id = ids.game_id.as_deref(),
                    "webhook rejected: authentic signature outside the tolerance"
                );
            }
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
    let _ = (rejection, parts, body_read, verified);
}
