//! The signature layer's events through `tracing` (feature `tracing`); without the
//! feature these are empty functions the compiler removes.

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
