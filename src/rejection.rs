use std::{error::Error, fmt, sync::Arc};

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::response::{self, error_body};

/// Why a request was refused before it reached the inner service.
///
/// The layer answers every rejection with a fixed body that tells the caller nothing
/// about which check failed, and inserts the `Rejection` into the response extensions so
/// that outer layers, metrics and logs can see the reason.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{AghanimSignatureLayer, Rejection, RejectionKind};
/// use http::{Request, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("secret"))
///     .service_fn(|_req: http::Request<aghanim_webhook::body::BufferedBody>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
///     });
///
/// let unsigned = Request::post("/webhook").body(Full::<Bytes>::from("{}")).unwrap();
/// let response = service.oneshot(unsigned).await.unwrap();
///
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// let rejection = response.extensions().get::<Rejection>().unwrap();
/// assert_eq!(rejection.kind(), RejectionKind::MissingTimestamp);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    detail: Detail,
}

#[derive(Debug, Clone)]
enum Detail {
    None,
    Skew { timestamp: u64, now: u64 },
    Limit { limit: usize },
    Budget { budget: usize },
    Source(Arc<dyn Error + Send + Sync>),
}

/// The reason behind a [`Rejection`].
///
/// New kinds may be added in minor releases; match with a wildcard arm.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{RejectionKind, Secret, Verifier};
///
/// let verifier = Verifier::new(Secret::new("secret").unwrap());
/// let rejection = verifier.verify(b"-5", &[b'0'; 64], b"{}", 0).unwrap_err();
/// let is_forgery_attempt = match rejection.kind() {
///     RejectionKind::TimestampOutsideTolerance => false, // authentic, just late
///     RejectionKind::BodyTooLarge | RejectionKind::BodyError => false,
///     _ => true,
/// };
/// assert!(is_forgery_attempt);
/// assert_eq!(rejection.kind(), RejectionKind::MalformedTimestamp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No `x-aghanim-signature-timestamp` header.
    MissingTimestamp,
    /// The timestamp header is not 1 to 20 ASCII digits fitting a `u64`, or appears twice.
    MalformedTimestamp,
    /// No `x-aghanim-signature` header.
    MissingSignature,
    /// The signature header is not exactly 64 hex digits, or appears twice.
    MalformedSignature,
    /// The signature does not match the body and timestamp under any configured secret.
    SignatureMismatch,
    /// The signature is authentic but its timestamp is further from the clock than the
    /// tolerance allows: a replay, a delayed retry, or a clock that is off.
    TimestampOutsideTolerance,
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// The request body stream failed before it ended.
    BodyError,
    /// The body did not arrive in time: a body timeout set outside this layer (such as
    /// tower-http's `RequestBodyTimeoutLayer`) ended it, or it failed with
    /// [`std::io::ErrorKind::TimedOut`].
    BodyTimeout,
    /// The layer's budget for bodies still being read is spent (see
    /// [`AghanimSignatureLayer::buffer_budget`](crate::AghanimSignatureLayer::buffer_budget)),
    /// or the memory for this body could not be allocated: try again later.
    Overloaded,
}

impl RejectionKind {
    /// The kind in snake case, as metrics and logs label it.
    ///
    /// ```
    /// use aghanim_webhook::RejectionKind;
    /// assert_eq!(RejectionKind::SignatureMismatch.as_str(), "signature_mismatch");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MissingTimestamp => "missing_timestamp",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TimestampOutsideTolerance => "timestamp_outside_tolerance",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyError => "body_error",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::MissingTimestamp,
        Self::MalformedTimestamp,
        Self::MissingSignature,
        Self::MalformedSignature,
        Self::SignatureMismatch,
        Self::TimestampOutsideTolerance,
        Self::BodyTooLarge,
        Self::BodyError,
        Self::BodyTimeout,
        Self::Overloaded,
    ];
}

const FORBIDDEN_BODY: &str = error_body!("invalid_signature", "Invalid signature");
const TOO_LARGE_BODY: &str = error_body!("payload_too_large", "Payload too large");
const BAD_BODY: &str = error_body!("bad_request", "Request body could not be read");
const TIMEOUT_BODY: &str = error_body!("request_timeout", "Request body timed out");
const OVERLOADED_BODY: &str = error_body!("unavailable", "Too busy, try again later");

/// Seconds a client is asked to wait after an [`RejectionKind::Overloaded`] answer.
const RETRY_AFTER_SECONDS: u64 = 1;

impl Rejection {
    pub(crate) fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            detail: Detail::None,
        }
    }

    pub(crate) fn outside_tolerance(timestamp: u64, now: u64) -> Self {
        Self {
            kind: RejectionKind::TimestampOutsideTolerance,
            detail: Detail::Skew { timestamp, now },
        }
    }

    pub(crate) fn body_too_large(limit: usize) -> Self {
        Self {
            kind: RejectionKind::BodyTooLarge,
            detail: Detail::Limit { limit },
        }
    }

    /// `budget` is the spent budget's size, `None` when the allocator failed instead.
    pub(crate) fn overloaded(budget: Option<usize>) -> Self {
        Self {
            kind: RejectionKind::Overloaded,
            detail: budget.map_or(Detail::None, |budget| Detail::Budget { budget }),
        }
    }

    /// A failed body stream, classified by what failed: a length limit or a timeout set
    /// by an outer layer is its own kind, anything else is [`RejectionKind::BodyError`].
    pub(crate) fn body_error(source: Box<dyn Error + Send + Sync>) -> Self {
        Self {
            kind: classify_body_error(&*source),
            detail: Detail::Source(Arc::from(source)),
        }
    }

    /// The reason for the rejection.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status code the default response carries: 403 for anything about the
    /// signature or timestamp, 413 for an oversized body, 408 for a body that timed out,
    /// 400 for any other failed body stream, 503 when the layer is overloaded.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{Secret, Verifier};
    /// use http::StatusCode;
    ///
    /// let verifier = Verifier::new(Secret::new("secret").unwrap());
    /// let rejection = verifier.verify(b"1", b"not hex", b"{}", 1).unwrap_err();
    /// assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::BodyError => StatusCode::BAD_REQUEST,
            RejectionKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RejectionKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// For [`RejectionKind::TimestampOutsideTolerance`], the refused timestamp and how
    /// far the clock was from it (clock minus timestamp, in seconds).
    #[cfg(feature = "tracing")]
    pub(crate) fn skew(&self) -> Option<(u64, i128)> {
        match self.detail {
            Detail::Skew { timestamp, now } => {
                Some((timestamp, i128::from(now) - i128::from(timestamp)))
            }
            _ => None,
        }
    }

    /// For [`RejectionKind::TimestampOutsideTolerance`], the authentic timestamp that was
    /// refused; `None` for every other kind.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{sign, Secret, Verifier};
    ///
    /// let verifier = Verifier::new(Secret::new("secret").unwrap());
    /// let late = sign("secret", 1_000, "{}");
    /// let rejection = verifier.verify(b"1000", late.as_bytes(), b"{}", 2_000).unwrap_err();
    /// assert_eq!(rejection.timestamp(), Some(1_000));
    /// ```
    pub fn timestamp(&self) -> Option<u64> {
        match self.detail {
            Detail::Skew { timestamp, .. } => Some(timestamp),
            _ => None,
        }
    }

    /// The response the layer sends unless a custom one is configured: [`status`] with
    /// a small fixed JSON body in Aghanim's error shape. Every 403 has the same body; a
    /// 503 also carries `retry-after`.
    ///
    /// [`status`]: Rejection::status
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{Secret, Verifier};
    ///
    /// let verifier = Verifier::new(Secret::new("secret").unwrap());
    /// let rejection = verifier.verify(b"1", &[b'0'; 64], b"{}", 1).unwrap_err();
    /// let response = rejection.default_response();
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// assert_eq!(
    ///     response.body().as_ref(),
    ///     br#"{"status":"error","code":"invalid_signature","message":"Invalid signature"}"#
    /// );
    /// ```
    pub fn default_response(&self) -> Response<Bytes> {
        let body = match self.kind {
            RejectionKind::BodyTooLarge => TOO_LARGE_BODY,
            RejectionKind::BodyError => BAD_BODY,
            RejectionKind::BodyTimeout => TIMEOUT_BODY,
            RejectionKind::Overloaded => OVERLOADED_BODY,
            _ => FORBIDDEN_BODY,
        };
        let response = response::static_error(self.status(), body);
        if self.kind == RejectionKind::Overloaded {
            return response::retry_after(response, RETRY_AFTER_SECONDS);
        }
        response
    }
}

/// Two rejections are equal when they have the same kind and details; body errors are
/// equal only to themselves (their clones).
impl PartialEq for Rejection {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && match (&self.detail, &other.detail) {
                (Detail::None, Detail::None) => true,
                (
                    Detail::Skew {
                        timestamp: a,
                        now: x,
                    },
                    Detail::Skew {
                        timestamp: b,
                        now: y,
                    },
                ) => a == b && x == y,
                (Detail::Limit { limit: a }, Detail::Limit { limit: b }) => a == b,
                (Detail::Budget { budget: a }, Detail::Budget { budget: b }) => a == b,
                (Detail::Source(a), Detail::Source(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Rejection {}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.detail) {
            (_, Detail::Skew { timestamp, now }) => write!(
                f,
                "authentic signature with timestamp {timestamp} outside the tolerance (clock reads {now})"
            ),
            (_, Detail::Limit { limit }) => write!(f, "body larger than the limit of {limit} bytes"),
            (_, Detail::Budget { budget }) => write!(f, "the buffer budget of {budget} bytes for bodies still being read is spent"),
            (RejectionKind::BodyTimeout, Detail::Source(source)) => write!(f, "request body timed out: {source}"),
            (RejectionKind::BodyTooLarge, Detail::Source(source)) => write!(f, "request body over an outer limit: {source}"),
            (_, Detail::Source(source)) => write!(f, "request body failed: {source}"),
            (RejectionKind::MissingTimestamp, _) => f.write_str("missing x-aghanim-signature-timestamp header"),
            (RejectionKind::MalformedTimestamp, _) => f.write_str("malformed x-aghanim-signature-timestamp header"),
            (RejectionKind::MissingSignature, _) => f.write_str("missing x-aghanim-signature header"),
            (RejectionKind::MalformedSignature, _) => f.write_str("malformed x-aghanim-signature header"),
            (RejectionKind::SignatureMismatch, _) => f.write_str("signature does not match"),
            (RejectionKind::TimestampOutsideTolerance, _) => f.write_str("timestamp outside the tolerance"),
            (RejectionKind::BodyTooLarge, _) => f.write_str("body larger than the limit"),
            (RejectionKind::BodyError, _) => f.write_str("request body failed"),
            (RejectionKind::BodyTimeout, _) => f.write_str("request body timed out"),
            (RejectionKind::Overloaded, _) => f.write_str("memory for the body could not be allocated"),
        }
    }
}

impl Error for Rejection {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.detail {
            Detail::Source(source) => Some(&**source as &(dyn Error + 'static)),
            _ => None,
        }
    }
}

/// What a body error means for the client: the layers that sit outside this one
/// (tower-http's `RequestBodyLimitLayer` and `RequestBodyTimeoutLayer`, hyper) report a
/// length limit or a timeout as a body error, and those deserve 413 and 408, not 400.
fn classify_body_error(error: &(dyn Error + 'static)) -> RejectionKind {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return RejectionKind::BodyTooLarge;
        }
        let timed_out = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|error| error.kind() == std::io::ErrorKind::TimedOut);
        // tower-http's `TimeoutError` cannot be named without depending on tower-http and
        // its runtime; its message is stable and a test pins it.
        if timed_out || error.to_string() == TOWER_HTTP_BODY_TIMEOUT {
            return RejectionKind::BodyTimeout;
        }
        current = error.source();
    }
    RejectionKind::BodyError
}

const TOWER_HTTP_BODY_TIMEOUT: &str = "data was not received within the designated timeout";
