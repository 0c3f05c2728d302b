use http::Extensions;

use crate::events::WebhookError;

/// What a [`Dispatch`](super::Dispatch) handler can take about its delivery, besides the
/// state and the typed event, from what the layers outside put in the request's
/// extensions: `Fn(S, A, Event<D>)`.
///
/// | `A` | from | missing |
/// |---|---|---|
/// | [`Claim`] | the idempotency layer, for a deduplicated delivery | 500: the stack is put together wrongly, or the type passes through |
/// | [`DeliveryTransaction`] | [`IdempotencyLayer::transactional`] | 500, likewise |
/// | `Option<A>` | either | `None` |
///
/// # Example
///
/// ```
/// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, Event, ItemChange}, idempotency::Claim};
///
/// let dispatch = Dispatch::new().on("item.add", |_state: (), claim: Claim, event: Event<ItemChange>| async move {
///     // credit event.event_data.items, keyed by claim.dedupe_key() ...
///     Ack
/// });
/// ```
///
#[cfg_attr(feature = "idempotency", doc = "[`Claim`]: crate::idempotency::Claim")]
#[cfg_attr(
    not(feature = "idempotency"),
    doc = "[`Claim`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.Claim.html"
)]
#[cfg_attr(
    feature = "postgres",
    doc = "[`DeliveryTransaction`]: crate::idempotency::DeliveryTransaction"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`DeliveryTransaction`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.DeliveryTransaction.html"
)]
#[cfg_attr(
    feature = "postgres",
    doc = "[`IdempotencyLayer::transactional`]: crate::idempotency::IdempotencyLayer::transactional"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`IdempotencyLayer::transactional`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.IdempotencyLayer.html#method.transactional"
)]
pub trait FromDelivery: Sized + Send + 'static {
    /// Takes the argument from the request's extensions.
    ///
    /// # Errors
    ///
    /// The answer when it is not there.
    fn from_delivery(extensions: &Extensions) -> Result<Self, WebhookError>;
}

impl<A: FromDelivery> FromDelivery for Option<A> {
    fn from_delivery(extensions: &Extensions) -> Result<Self, WebhookError> {
        Ok(A::from_delivery(extensions).ok())
    }
}

/// The extension `T`, or a 500 naming what was expected of the stack.
#[cfg(feature = "idempotency")]
fn required<T: Clone + Send + Sync + 'static>(
    extensions: &Extensions,
    needs: &'static str,
) -> Result<T, WebhookError> {
    extensions
        .get::<T>()
        .cloned()
        .ok_or_else(|| WebhookError::misconfigured(needs))
}

#[cfg(feature = "idempotency")]
impl FromDelivery for crate::idempotency::Claim {
    fn from_delivery(extensions: &Extensions) -> Result<Self, WebhookError> {
        required(
            extensions,
            "this handler takes a Claim: put IdempotencyLayer between the signature layer and Dispatch, and deduplicate this event type",
        )
    }
}

#[cfg(feature = "postgres")]
impl FromDelivery for crate::idempotency::DeliveryTransaction {
    fn from_delivery(extensions: &Extensions) -> Result<Self, WebhookError> {
        required(
            extensions,
            "this handler takes a DeliveryTransaction: put IdempotencyLayer::transactional between the signature layer and Dispatch, and deduplicate this event type",
        )
    }
}
