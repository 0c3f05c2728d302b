//! The axum extractor (feature `axum`).

use axum_core::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::request::Parts;
use serde_json::Value;

use crate::{
    events::{
        from_json, peek_event_type, Ack, Event, EventData, IntoWebhookResponse,
        PlayerVerifyResponse, StoreGetResponse, WebhookError,
    },
    VerifiedBody,
};

/// Extracts the verified event, with `event_data` as `D`, for axum handlers behind
/// [`AghanimSignatureLayer`](crate::AghanimSignatureLayer).
///
/// It reads the [`VerifiedBody`] extension, so it never consumes the body and can sit
/// beside other extractors. It accepts only the event types `D` is for
/// ([`EventData`]): `AghanimEvent<ItemChange>` takes `item.add` and refuses
/// `item.remove` (use [`ItemRemove`](crate::events::ItemRemove) for that), and
/// `AghanimEvent` (with `D` = [`serde_json::Value`]) takes any event.
///
/// Rejections: 400 `unknown_event_type` for an event type `D` is not for, 400
/// `validation_error` naming the field at fault when the JSON does not fit, 500 when
/// the route is not behind the layer.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{
///     events::{PlayerVerify, PlayerVerifyResponse, WebhookError},
///     AghanimEvent, AghanimSignatureLayer,
/// };
/// use axum::{routing::post, Router};
///
/// async fn player_verify(
///     AghanimEvent(event): AghanimEvent<PlayerVerify>,
/// ) -> Result<PlayerVerifyResponse, WebhookError> {
///     match event.event_data.player_id.as_str() {
///         "testplayer" => Ok(PlayerVerifyResponse::new("testplayer", "Test Player")),
///         _ => Err(WebhookError::not_found("Player not found")),
///     }
/// }
///
/// let app: Router = Router::new()
///     .route("/webhooks/player-verify", post(player_verify))
///     .layer(AghanimSignatureLayer::new("secret"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AghanimEvent<D = Value>(pub Event<D>);

impl<D, S> FromRequestParts<S> for AghanimEvent<D>
where
    D: EventData,
    S: Send + Sync,
{
    type Rejection = WebhookError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebhookError> {
        let verified = parts
            .extensions
            .get::<VerifiedBody>()
            .ok_or_else(|| WebhookError::missing_layer("AghanimEvent"))?;
        // The type first, so a mismatch is named as such even if the data would not fit.
        let event_type = peek_event_type(verified)?;
        if !D::is_for(&event_type) {
            return Err(WebhookError::not_handled_here(&event_type));
        }
        from_json(verified).map(AghanimEvent)
    }
}

/// An axum handler behind the idempotency layer takes the delivery's
/// [`Claim`](crate::idempotency::Claim) (and, with the transactional layer, its
/// [`DeliveryTransaction`]) as an argument, as a `Dispatch` handler does; 500 when the
/// layer is not there.
///
#[cfg_attr(
    feature = "postgres",
    doc = "[`DeliveryTransaction`]: crate::idempotency::DeliveryTransaction"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`DeliveryTransaction`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.DeliveryTransaction.html"
)]
#[cfg(feature = "idempotency")]
impl<S: Send + Sync> FromRequestParts<S> for crate::idempotency::Claim {
    type Rejection = WebhookError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebhookError> {
        crate::dispatch::FromDelivery::from_delivery(&parts.extensions)
    }
}

#[cfg(feature = "postgres")]
impl<S: Send + Sync> FromRequestParts<S> for crate::idempotency::DeliveryTransaction {
    type Rejection = WebhookError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebhookError> {
        crate::dispatch::FromDelivery::from_delivery(&parts.extensions)
    }
}

macro_rules! into_axum_response {
    ($($answer:ty),*) => {$(
        impl IntoResponse for $answer {
            fn into_response(self) -> Response {
                self.into_webhook_response().map(axum_core::body::Body::from)
            }
        }
    )*};
}

into_axum_response!(Ack, PlayerVerifyResponse, StoreGetResponse, WebhookError);
