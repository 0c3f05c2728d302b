//! Receive [Aghanim](https://aghanim.com) webhooks safely: a tower middleware that
//! verifies each webhook's signature before your handlers see a byte of it.
//!
//! Aghanim signs every webhook with HMAC-SHA256 over `"{timestamp}.{raw body}"`, keyed
//! with the webhook's secret, and sends the lowercase hex tag in `x-aghanim-signature`
//! and the Unix time in `x-aghanim-signature-timestamp`. [`AghanimSignatureLayer`]
//! buffers the body (up to a limit), checks both headers, the signature in constant time
//! and the replay window, and then calls the inner service with the original request and
//! the verified bytes. Anything else gets a rejection response and never reaches your
//! code:
//!
//! What it answers on its own, and how to configure it, is on
//! [`AghanimSignatureLayer`](AghanimSignatureLayer#responses-the-layer-sends-itself).
//!
//! Every 403 carries the same small JSON body,
//! `{"status":"error","code":"invalid_signature","message":"Invalid signature"}`, so a
//! forger learns nothing about which check failed; the typed [`Rejection`] goes into the
//! response extensions for your logs and metrics.
//!
//! The inner service is asked for readiness only once a request is verified, so
//! forged requests never hold its capacity (see [`AghanimSignature`]'s readiness
//! contract). It receives the request with a [`body::BufferedBody`] that yields the
//! verified bytes (so axum's `Bytes`, `String` and `Json` extractors work) and a
//! [`VerifiedBody`] extension holding the same bytes and the verified timestamp.
//!
//! Without tower, [`Verifier`] runs the same checks on header values and a body you
//! already have; [`sign`] and [`sign_headers`] make signed requests for your tests.
//!
//! With the default feature `events`, [`events`] types Aghanim's envelope, event data and
//! answers, and [`dispatch::Dispatch`] routes verified events to handlers by type; the
//! `axum` feature adds the `AghanimEvent` extractor. The `idempotency` feature adds
//! `idempotency::IdempotencyLayer`, which runs each side-effecting event once across
//! instances and replays its answer to duplicates (with a Redis store under `redis`, and
//! in the game's own PostgreSQL transaction under `postgres`); `tracing` reports every
//! rejection and idempotency decision, `metrics` counts them, and `testing` is a kit for
//! testing your own handlers.
//!
//! # Example
//!
//! ```
//! use aghanim_webhook::{sign_headers, AghanimSignatureLayer, VerifiedBody};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let webhook = ServiceBuilder::new()
//!     .layer(AghanimSignatureLayer::new("whsec_test").clock(|| 1_700_000_000))
//!     .service_fn(|request: Request<_>| async move {
//!         let event = request.extensions().get::<VerifiedBody>().unwrap();
//!         assert_eq!(event.timestamp(), 1_700_000_000);
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
//!             br#"{"status":"ok"}"#,
//!         ))))
//!     });
//!
//! let body = r#"{"event_type":"player.verify","event_data":{"player_id":"testplayer"}}"#;
//!
//! let mut signed = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
//! sign_headers(signed.headers_mut(), "whsec_test", 1_700_000_000, body);
//! let response = webhook.clone().oneshot(signed).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let mut forged = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
//! sign_headers(forged.headers_mut(), "guessed", 1_700_000_000, body);
//! let response = webhook.oneshot(forged).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # }
//! ```
//!
#![doc = include_str!("../docs/features.md")]
//!
#![doc = include_str!("../docs/logs.md")]
//!
#![doc = include_str!("../docs/security.md")]
//!
// Links to the modules of the default feature `events` open without it too.
#![cfg_attr(feature = "events", doc = "[`events`]: mod@events")]
#![cfg_attr(
    not(feature = "events"),
    doc = "[`events`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/events/index.html"
)]
#![cfg_attr(feature = "events", doc = "[`dispatch`]: mod@dispatch")]
#![cfg_attr(
    not(feature = "events"),
    doc = "[`dispatch`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/dispatch/index.html"
)]
#![cfg_attr(feature = "events", doc = "[`dispatch::Dispatch`]: dispatch::Dispatch")]
#![cfg_attr(
    not(feature = "events"),
    doc = "[`dispatch::Dispatch`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/dispatch/struct.Dispatch.html"
)]
#![cfg_attr(feature = "idempotency", doc = "[`dead_letter`]: mod@dead_letter")]
#![cfg_attr(
    not(feature = "idempotency"),
    doc = "[`dead_letter`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/dead_letter/index.html"
)]
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
#[cfg(feature = "idempotency")]
#[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
pub mod dead_letter;
#[cfg(feature = "tracing")]
mod delivery_ids;
#[cfg(feature = "events")]
#[cfg_attr(docsrs, doc(cfg(feature = "events")))]
pub mod dispatch;
#[cfg(feature = "events")]
#[cfg_attr(docsrs, doc(cfg(feature = "events")))]
pub mod events;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "idempotency")]
#[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
pub mod idempotency;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod ready_call;
mod rejection;
mod response;
mod secret;
mod sign;
mod signature;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod verified_body;
mod verify;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::AghanimEvent;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use metrics::describe_metrics;
pub use rejection::{Rejection, RejectionKind};
pub use secret::{EmptySecret, Secret};
pub use sign::{sign, sign_headers, unix_now};
pub use signature::{
    AghanimSignature, AghanimSignatureLayer, ResponseFuture, DEFAULT_BODY_LIMIT,
    DEFAULT_BUFFER_BUDGET,
};
pub use verified_body::VerifiedBody;
pub use verify::{Verification, Verifier, DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER};

// The README's runnable snippets are doctests, so that what it shows keeps working.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "idempotency",
    feature = "testing"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The error type a request body's errors are converted into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
