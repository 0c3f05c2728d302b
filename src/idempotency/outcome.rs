use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use super::StoredResponse;
use crate::response::{self, error_body};

/// The header on every replayed answer.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What the [`IdempotencyLayer`](super::IdempotencyLayer) did with a request, in the
/// response's extensions, for logs and metrics.
///
/// # Example
///
/// ```
/// use aghanim_webhook::idempotency::IdempotencyOutcome;
///
/// fn replayed<B>(response: &http::Response<B>) -> bool {
///     matches!(response.extensions().get(), Some(IdempotencyOutcome::Replayed))
/// }
/// # assert!(!replayed(&http::Response::new(())));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyOutcome {
    /// Not deduplicated: its type passes through, it carries no key, or it is not an
    /// event.
    PassedThrough,
    /// The handler ran under this claim and its final answer was recorded.
    Ran {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// The handler's answer was not final (anything but a 2xx or a refusal marked
    /// final, such as 400 `validation_error`, 404 or 5xx), or the handler failed or
    /// its answer's body did: the claim was released so that the next delivery runs it
    /// again.
    Released {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// The handler ran, but its lease had passed and another delivery took the claim
    /// over: its answer was returned and not recorded.
    LeaseLost {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// The handler ran, but recording its answer failed: the claim stays until its
    /// lease passes, then a duplicate runs the handler again.
    NotRecorded {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// The handler took longer than the layer's
    /// [`run_timeout`](super::IdempotencyLayer::run_timeout): it was cancelled (its
    /// future dropped, on the transactional store its writes rolled back), then its
    /// claim released, and 503 answered.
    TimedOut {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// The runs were cancelled by
    /// [`cancel_in_flight`](super::IdempotencyLayer::cancel_in_flight) (a server past
    /// its drain deadline): the handler's future was dropped, its claim released (on
    /// the transactional store its writes rolled back), and 503 answered.
    Cancelled {
        /// The claim's attempt number.
        attempt: u64,
    },
    /// On the transactional store, the handler ended the delivery's transaction itself
    /// (a `COMMIT` or `ROLLBACK` of its own, not through a nested `begin()`), so the
    /// claim was no longer in it: what could be was rolled back, and 503 answered.
    TransactionLost,
    /// A duplicate of a completed delivery: its answer, replayed.
    Replayed,
    /// A duplicate of a delivery still in progress after the wait: 503.
    StillInProgress,
    /// The key was seen with another payload: 422.
    KeyReused,
    /// The store could not be reached: 503.
    StoreUnavailable,
    /// The store could not be reached and the layer fails open: the handler ran
    /// without a claim.
    FailedOpen,
}

const KEY_REUSED_BODY: &str = error_body!(
    "idempotency_key_reused",
    "This idempotency key was used with another payload"
);
const IN_PROGRESS_BODY: &str = error_body!(
    "unavailable",
    "The same delivery is being processed, try again later"
);
const STORE_DOWN_BODY: &str = error_body!("unavailable", "Try again later");
const BODY_FAILED: &str = error_body!("internal_error", "The handler's answer could not be read");

pub(crate) fn key_reused() -> Response<Bytes> {
    response::static_error(StatusCode::UNPROCESSABLE_ENTITY, KEY_REUSED_BODY)
}

pub(crate) fn still_in_progress(lease_remaining: Duration) -> Response<Bytes> {
    // Whole seconds, rounded up, at least 1 and at most 30.
    let seconds = lease_remaining.as_millis().div_ceil(1000).clamp(1, 30);
    let busy = response::static_error(StatusCode::SERVICE_UNAVAILABLE, IN_PROGRESS_BODY);
    response::retry_after(busy, u64::try_from(seconds).unwrap_or(30))
}

pub(crate) fn store_unavailable() -> Response<Bytes> {
    let down = response::static_error(StatusCode::SERVICE_UNAVAILABLE, STORE_DOWN_BODY);
    response::retry_after(down, 1)
}

pub(crate) fn body_failed() -> Response<Bytes> {
    response::static_error(StatusCode::INTERNAL_SERVER_ERROR, BODY_FAILED)
}

/// The stored answer, marked as a replay.
pub(crate) fn replay(stored: StoredResponse) -> Response<Bytes> {
    let mut response = Response::new(stored.body);
    *response.status_mut() =
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(value) = stored
        .content_type
        .and_then(|content_type| HeaderValue::from_str(&content_type).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
