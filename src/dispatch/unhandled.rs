/// In a response's extensions: no handler took the delivery. `Dispatch` marks its
/// answer to a type without a handler when it has no fallback (its 400
/// `unknown_event_type`, or the 202 of [`accept_unhandled`](super::Dispatch::accept_unhandled)),
/// and its fallback's answer to a type Aghanim does not document; a fallback's answer to
/// a documented type is the game's own decision and is not marked.
///
/// The idempotency layer never records such an answer, whatever its status, so the
/// delivery runs again once a handler is deployed, and keeps it as a
/// [dead letter] with the reason `no_handler` (feature `idempotency`).
/// A service of your own that answers a type it does not handle can insert it too.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{dispatch::{Dispatch, Unhandled}, sign_headers, AghanimSignatureLayer};
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let webhook = AghanimSignatureLayer::new("secret").layer(Dispatch::new());
/// let body = r#"{"event_type":"quest.completed","event_id":"whevt_1","event_data":{}}"#;
/// let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
/// sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
/// let response = webhook.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 400);
/// assert!(response.extensions().get::<Unhandled>().is_some());
/// # }
/// ```
///
#[cfg_attr(feature = "idempotency", doc = "[dead letter]: crate::dead_letter")]
#[cfg_attr(
    not(feature = "idempotency"),
    doc = "[dead letter]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/dead_letter/"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unhandled;
