use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use super::StoredResponse;
use crate::rejection::json_bytes;

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
    /// Not deduplicated: its type passes through, it carries no key, it is not an
    /// event, or its payload changed under a policy that lets changes through.
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

const KEY_REUSED_BODY: &str = r#"{"status":"error","code":"idempotency_key_reused","message":"This idempotency key was used with another payload"}"#;
const IN_PROGRESS_BODY: &str = r#"{"status":"error","code":"unavailable","message":"The same delivery is being processed, try again later"}"#;
const STORE_DOWN_BODY: &str =
    r#"{"status":"error","code":"unavailable","message":"Try again later"}"#;
const BODY_FAILED: &str = r#"{"status":"error","code":"internal_error","message":"The handler's answer could not be read"}"#;

pub(crate) fn key_reused() -> Response<Bytes> {
    json_bytes(
        StatusCode::UNPROCESSABLE_ENTITY,
        Bytes::from_static(KEY_REUSED_BODY.as_bytes()),
    )
}

pub(crate) fn still_in_progress(lease_remaining: Duration) -> Response<Bytes> {
    // Whole seconds, rounded up, at least 1 and at most 30.
    let seconds = lease_remaining
        .as_millis()
        .div_ceil(1000)
        .clamp(1, 30)
        .to_string();
    with_retry_after(IN_PROGRESS_BODY, &seconds)
}

pub(crate) fn store_unavailable() -> Response<Bytes> {
    with_retry_after(STORE_DOWN_BODY, "1")
}

pub(crate) fn body_failed() -> Response<Bytes> {
    json_bytes(
        StatusCode::INTERNAL_SERVER_ERROR,
        Bytes::from_static(BODY_FAILED.as_bytes()),
    )
}

fn with_retry_after(body: &'static str, seconds: &str) -> Response<Bytes> {
    let mut response = json_bytes(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(body.as_bytes()),
    );
    if let Ok(value) = HeaderValue::from_str(seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
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
