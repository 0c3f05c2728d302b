use std::{future::Future, marker::PhantomData};

use bytes::Bytes;
use http::{Extensions, Response};
use serde::de::DeserializeOwned;

use super::{
    future::{BoxResponseFuture, IntoResponseFuture},
    FromDelivery,
};
use crate::events::{from_json, Event, IntoWebhookResponse, WebhookError};

/// An async function that handles one event type, for [`Dispatch::on`](super::Dispatch::on).
///
/// Implemented for `Fn(Event<D>) -> impl Future<Output = R>`, with the dispatcher's
/// state `Fn(S, Event<D>) -> impl Future<Output = R>`, and with something about the
/// delivery as well `Fn(S, A, Event<D>) -> impl Future<Output = R>` (`A` a
/// [`FromDelivery`], such as the idempotency layer's `Claim`), where `D` is the
/// `event_data` type to deserialize and `R` implements [`IntoWebhookResponse`]. `T`
/// only tells the shapes apart; you never name it.
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
    type Data: DeserializeOwned + Send + 'static;
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
    D: DeserializeOwned + Send + 'static,
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
    D: DeserializeOwned + Send + 'static,
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
    D: DeserializeOwned + Send + 'static,
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
    /// Parses the verified event for the handler and starts it.
    fn start(
        &self,
        state: S,
        extensions: &Extensions,
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
        verified: &[u8],
    ) -> Result<BoxResponseFuture, WebhookError> {
        let event = from_json(verified)?;
        Ok(Box::pin(self.handler.call(state, extensions, event)?))
    }
}
