//! A test kit for your own webhook handlers (feature `testing`): realistic samples of
//! every documented event, signed requests (also stale, forged and re-serialized
//! ones), and a [`Sender`] that delivers an event the way Aghanim can, with
//! concurrent copies, retries and hang-ups, so a test can assert that a handler
//! credits once.
//!
//! Enable it for tests only, with what the examples here use beside it:
//!
//! ```toml
//! [dev-dependencies]
//! # "idempotency" for the IdempotencyLayer the examples below put in front
//! aghanim-webhook = { version = "0.1", features = ["testing", "idempotency"] }
//! tokio = { version = "1", features = ["macros", "rt"] }  # #[tokio::test]
//! tower = { version = "0.5", features = ["util"] }        # ServiceExt::oneshot, service_fn
//! http = "1"                                              # Request, Response, StatusCode
//! http-body-util = "0.1"                                  # reading an answer's body
//! ```
//!
//! ([`SignedRequest`] builds an `http::Request<http_body_util::Full<Bytes>>`; with axum,
//! `axum::body::to_bytes` reads an answer's body instead of `http-body-util`.)
//!
//! # Example
//!
//! A handler behind the signature layer, fed a sample purchase:
//!
//! ```
//! use aghanim_webhook::{events::EventType, testing::{Sample, Sender}, AghanimSignatureLayer};
//! use http::Response;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let webhook = ServiceBuilder::new()
//!     .layer(AghanimSignatureLayer::new("whsec_test"))
//!     .service(service_fn(|_| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }));
//!
//! let answers = Sender::new("whsec_test").deliver(webhook, Sample::new(EventType::ItemAdd)).await;
//! assert!(answers.succeeded());
//! # }
//! ```

//!
//! For a layer with a fixed clock (`AghanimSignatureLayer::clock(|| 1_700_000_000)`),
//! sign at that time: [`SignedRequest::timestamp`], [`Sender::clock`]. The bare
//! signature of any bytes is [`sign`](crate::sign)`(secret, timestamp, body)`, and
//! [`sign_headers`](crate::sign_headers) puts both headers on a request you built.

mod request;
mod sample;
mod sender;

pub use request::{reserialize, signed_request, SignedRequest};
pub use sample::{Sample, SAMPLE_GAME_ID, SAMPLE_SKU};
pub use sender::{Answer, Answers, Reply, Sender};
