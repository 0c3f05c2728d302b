//! Single-endpoint dispatch: one tower service that routes verified events to typed
//! handlers by `event_type` (feature `events`).
//!
//! Aghanim can send every event type to one URL. [`Dispatch`] sits behind
//! [`AghanimSignatureLayer`](crate::AghanimSignatureLayer), so it only ever sees verified
//! bytes, and turns each event into a call of the handler registered for its type.
//!
//! # Example
//!
//! ```
//! use aghanim_webhook::{dispatch::Dispatch, events::*, sign_headers, AghanimSignatureLayer};
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! async fn verify(event: Event<PlayerVerify>) -> Result<PlayerVerifyResponse, WebhookError> {
//!     match event.event_data.player_id.as_str() {
//!         "testplayer" => Ok(PlayerVerifyResponse::new("testplayer", "Test Player")),
//!         _ => Err(WebhookError::not_found("Player not found")),
//!     }
//! }
//!
//! async fn credit(event: Event<ItemChange>) -> Ack {
//!     // Credit once per event.dedupe_key() ...
//!     Ack
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let webhook = ServiceBuilder::new()
//!     .layer(AghanimSignatureLayer::new("secret"))
//!     .service(
//!         Dispatch::new()
//!             .on(EventType::PlayerVerify, verify)
//!             .on(EventType::ItemAdd, credit),
//!     );
//!
//! let send = |body: &'static str| {
//!     let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
//!     sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
//!     webhook.clone().oneshot(request)
//! };
//!
//! let verified = send(r#"{"event_id":"whevt_1","event_type":"player.verify","event_time":1,
//!                         "event_data":{"player_id":"testplayer"}}"#).await.unwrap();
//! assert_eq!(verified.status(), StatusCode::OK);
//!
//! let unknown = send(r#"{"event_id":"whevt_2","event_type":"quest.done","event_time":1,
//!                        "event_data":{}}"#).await.unwrap();
//! assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
//!
//! let malformed = send(r#"{"event_id":"whevt_3","event_type":"item.add","event_time":1,
//!                          "event_data":{"player_id":"p1"}}"#).await.unwrap();
//! assert_eq!(malformed.status(), StatusCode::BAD_REQUEST); // no `items`
//! # }
//! ```

#![doc = include_str!("../../docs/dispatch.md")]
//!
//! [`VerifiedBody`]: crate::VerifiedBody
//! [`EventData`]: crate::events::EventData
// Links to items of features that may be off point at docs.rs, so that no build of the
// docs has a link that does not open.
#![cfg_attr(feature = "axum", doc = "[`AghanimEvent<D>`]: crate::AghanimEvent")]
#![cfg_attr(
    not(feature = "axum"),
    doc = "[`AghanimEvent<D>`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/struct.AghanimEvent.html"
)]
#![cfg_attr(feature = "idempotency", doc = "[`Claim`]: crate::idempotency::Claim")]
#![cfg_attr(
    not(feature = "idempotency"),
    doc = "[`Claim`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.Claim.html"
)]
#![cfg_attr(
    feature = "postgres",
    doc = "[`DeliveryTransaction`]: crate::idempotency::DeliveryTransaction"
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "[`DeliveryTransaction`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.DeliveryTransaction.html"
)]

mod delivery;
mod future;
mod handler;
mod metrics;
mod refusal;
mod service;
mod trace;
mod unhandled;

pub use delivery::FromDelivery;
pub use future::{DispatchFuture, IntoResponseFuture};
pub use handler::Handler;
pub use service::Dispatch;
pub use unhandled::Unhandled;
