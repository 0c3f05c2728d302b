use std::{future::Future, marker::PhantomData};

use bytes::Bytes;
use http::{Extensions, Response};

use super::{
    future::{BoxResponseFuture, IntoResponseFuture},
    FromDelivery,
};
use crate::events::{from_json, Event, EventData, EventType, IntoWebhookResponse, WebhookError};

/// An async function that handles one event type, for [`Dispatch::on`](super::Dispatch::on).
///
/// Implemented for `Fn(Event<D>) -> impl Future<Output = R>`, with the dispatcher's
/// state `Fn(S, Event<D>) -> impl Future<Output = R>`, and with something about the
/// delivery as well `Fn(S, A, Event<D>) -> impl Future<Output = R>` (`A` a
/// [`FromDelivery`], such as the idempotency layer's `Claim`), where `D` is the
/// `event_data` type to deserialize and `R` implements [`IntoWebhookResponse`]. `T`
/// only tells the shapes apart; you never name it.
///
/// `D` is an [`EventData`]: it names the event types it is the data of, and
/// [`Dispatch::on`](super::Dispatch::on) refuses (panics, when the `Dispatch` is built) a
/// handler registered for a type its data does not belong to, so that a credit taking
/// [`ItemChange`](crate::events::ItemChange) can never run on an `item.remove`. Data of
/// your own implements [`EventData`] in one line.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, Event, ItemChange}};
///
/// async fn credit(event: Event<ItemChange>) -> Ack {
///     // credit event.event_data.items to event.event_data.player_id ...
///     Ack
/// }
///
/// let dispatch = Dispatch::new().on("item.add", credit);
/// ```
pub trait Handler<T, S>: Clone + Send + Sync + 'static {
    /// The `event_data` type the handler takes.
    type Data: EventData + Send + 'static;
    /// The future of its response.
    type Future: Future<Output = Response<Bytes>> + Send + 'static;

    /// Handles `event`, with what the layers outside put in the request's `extensions`.
    ///
    /// # Errors
    ///
    /// The answer when the handler cannot be called: an argument it takes is missing.
    fn call(
        &self,
        state: S,
        extensions: &Extensions,
        event: Event<Self::Data>,
    ) -> Result<Self::Future, WebhookError>;
}

impl<F, Fut, D, S> Handler<(Event<D>,), S> for F
where
    F: Fn(Event<D>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoWebhookResponse,
    D: EventData + Send + 'static,
{
    type Data = D;
    type Future = IntoResponseFuture<Fut>;

    fn call(
        &self,
        _state: S,
        _extensions: &Extensions,
        event: Event<D>,
    ) -> Result<Self::Future, WebhookError> {
        Ok(IntoResponseFuture::new(self(event)))
    }
}

impl<F, Fut, D, S> Handler<(S, Event<D>), S> for F
where
    F: Fn(S, Event<D>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoWebhookResponse,
    D: EventData + Send + 'static,
{
    type Data = D;
    type Future = IntoResponseFuture<Fut>;

    fn call(
        &self,
        state: S,
        _extensions: &Extensions,
        event: Event<D>,
    ) -> Result<Self::Future, WebhookError> {
        Ok(IntoResponseFuture::new(self(state, event)))
    }
}

impl<F, Fut, A, D, S> Handler<(S, A, Event<D>), S> for F
where
    F: Fn(S, A, Event<D>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoWebhookResponse,
    A: FromDelivery,
    D: EventData + Send + 'static,
{
    type Data = D;
    type Future = IntoResponseFuture<Fut>;

    fn call(
        &self,
        state: S,
        extensions: &Extensions,
        event: Event<D>,
    ) -> Result<Self::Future, WebhookError> {
        let delivery = A::from_delivery(extensions)?;
        Ok(IntoResponseFuture::new(self(state, delivery, event)))
    }
}

/// A handler with its data type erased, as the route table stores it.
pub(crate) trait Route<S>: Send + Sync {
    /// Parses the verified event of `event_type` for the handler and starts it.
    fn start(
        &self,
        state: S,
        extensions: &Extensions,
        event_type: &EventType,
        verified: &[u8],
    ) -> Result<BoxResponseFuture, WebhookError>;
}

pub(crate) struct Erased<H, T> {
    handler: H,
    shape: PhantomData<fn() -> T>,
}

impl<H, T> Erased<H, T> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            shape: PhantomData,
        }
    }
}

impl<H, T, S> Route<S> for Erased<H, T>
where
    H: Handler<T, S>,
{
    fn start(
        &self,
        state: S,
        extensions: &Extensions,
        event_type: &EventType,
        verified: &[u8],
    ) -> Result<BoxResponseFuture, WebhookError> {
        // `Dispatch::on` and `fallback` already refuse a handler for a type its data is
        // not for; this also covers data of your own that accepts only some unknown
        // types in a fallback. The extractor answers the same.
        if !H::Data::is_for(event_type) {
            return Err(WebhookError::not_handled_here(event_type));
        }
        let event = from_json(verified)?;
        Ok(Box::pin(self.handler.call(state, extensions, event)?))
    }
}

/// Panics unless `D` is the data of `event_type`: a handler registered for an event
/// type whose data it cannot be, caught when the `Dispatch` is built.
#[track_caller]
pub(crate) fn assert_data_is_for<D: EventData>(event_type: &EventType) {
    assert!(
        D::is_for(event_type),
        "Dispatch::on(\"{event_type}\", ..): the handler takes {data}, which is not the \
         event_data of {event_type} (see the table on EventData: {event_type} takes {expected}); \
         register it for its own event type, or make it take that data",
        data = short_type_name::<D>(),
        expected = data_of(event_type),
    );
}

/// Panics unless `D` is the data of every event type, as a fallback's must be: it gets
/// whatever type has no handler, known or not.
#[track_caller]
pub(crate) fn assert_data_is_for_any<D: EventData>() {
    let probes = EventType::DOCUMENTED.iter().cloned().chain([
        EventType::from("analytics.hub.page_view"),
        EventType::from("analytics.checkout.open"),
        EventType::from("not.documented"),
    ]);
    for event_type in probes {
        assert!(
            D::is_for(&event_type),
            "Dispatch::fallback(..): the handler takes {data}, which is not the event_data of \
             {event_type}, and a fallback gets every event type without a handler: make it \
             take serde_json::Value (`Event`), or register it with Dispatch::on for its types",
            data = short_type_name::<D>(),
        );
    }
}

/// The data type the crate has for `event_type`, for the panic message.
fn data_of(event_type: &EventType) -> &'static str {
    use crate::events::*;
    macro_rules! first_for {
        ($($data:ty),*) => {$(
            if <$data>::is_for(event_type) {
                return stringify!($data);
            }
        )*};
    }
    first_for!(
        PlayerVerify,
        PlayerUpdate,
        MarketingConsentUpdated,
        ItemChange,
        ItemRemove,
        StoreGet,
        Order,
        CouponRedeemed,
        IngameMessage,
        FraudReported
    );
    "serde_json::Value"
}

/// `aghanim_webhook::events::payloads::ItemChange` as `ItemChange`, and
/// `serde_json::value::Value` as `serde_json::Value`.
fn short_type_name<D>() -> String {
    let name = std::any::type_name::<D>();
    if name == "serde_json::value::Value" {
        return "serde_json::Value".to_owned();
    }
    if name.contains('<') {
        return name.to_owned();
    }
    name.rsplit("::").next().unwrap_or(name).to_owned()
}
