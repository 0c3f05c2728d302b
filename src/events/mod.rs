//! Typed Aghanim events and responses (feature `events`, on by default).
//!
//! [`Event<D>`](Event) is the envelope every webhook shares, generic over its
//! `event_data`; [`EventType`] names every documented type. The data types here cover
//! the events a game acts on:
//!
//! | `event_type` | `event_data` | answer |
//! |---|---|---|
//! | `player.verify` | [`PlayerVerify`] | [`PlayerVerifyResponse`], or a 4xx [`WebhookError`] (`not_found`, `banned`) |
//! | `item.add` (a credit) | [`ItemChange`] | [`Ack`] once per `idempotency_key`, or [`WebhookError::declined`] |
//! | `item.remove` (take back after a refund) | [`ItemRemove`] | [`Ack`] once per `idempotency_key` |
//! | `store.get` | [`StoreGet`] | [`StoreGetResponse`] |
//! | `player.update` | [`PlayerUpdate`] | [`Ack`] |
//! | `player.marketing_consent.updated` | [`MarketingConsentUpdated`] | [`Ack`] |
//! | `order.*` | [`Order`] | [`Ack`] |
//! | `coupon.redeemed` | [`CouponRedeemed`] | [`Ack`] |
//! | `ingame.popup`, `ingame.push` | [`IngameMessage`] | [`Ack`] |
//! | `fraud.reported` | [`FraudReported`] | [`Ack`] |
//! | any other | [`serde_json::Value`] | [`Ack`] |
//!
//! A data type belongs to its event types only ([`EventData`]): `Dispatch` refuses, when it
//! is built, a handler registered for a type its data is not for, and the axum extractor
//! refuses such an event, so a credit on `Event<ItemChange>` never runs on a refund.
//!
//! The answers for notification events are a convention (any 2xx is success); Aghanim
//! retries on any 4xx or 5xx, so never answer an error for a duplicate.
//!
//! Every answer implements [`IntoWebhookResponse`]. [`Dispatch`](crate::dispatch::Dispatch)
//! routes verified events to handlers by type.
//!
//! # Example
//!
//! ```
//! use aghanim_webhook::events::{Event, EventType, IntoWebhookResponse, ItemChange};
//!
//! let body = br#"{"event_id":"whevt_1","event_type":"item.add","event_time":1725548450,
//!     "event_data":{"player_id":"p1","items":[{"sku":"gems_100","quantity":1,"price":199}]},
//!     "idempotency_key":"ord_1"}"#;
//! let event: Event<ItemChange> = serde_json::from_slice(body).unwrap();
//! assert_eq!(event.event_type, EventType::ItemAdd);
//! assert_eq!(event.dedupe_key(), Some("ord_1"));
//! assert_eq!(event.event_data.items[0].price, Some(199));
//! ```

mod envelope;
mod event_data;
mod event_type;
mod parse;
mod payloads;
mod response;

pub use envelope::{Event, RawJson};
pub use event_data::{EventData, ItemRemove};
pub use event_type::EventType;
pub(crate) use parse::{from_json, peek_event_type};
pub use payloads::{
    Coupon, CouponRedeemed, EmailConsent, FraudReported, IngameMessage, Item, ItemChange,
    MarketingConsentUpdated, Order, PlayerUpdate, PlayerVerify, StoreGet,
};
pub use response::{
    Ack, ErrorCode, IntoWebhookResponse, PlayerAttributes, PlayerVerifyResponse, StoreGetResponse,
    StoreItem, WebhookError,
};
