use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    handler::{assert_data_is_for, assert_data_is_for_any, Erased, Route},
    refusal::Refusal,
    DispatchFuture, Handler,
};
use crate::{
    events::{peek_event_type, ErrorCode, EventType, IntoWebhookResponse, WebhookError},
    VerifiedBody,
};

/// Routes verified events to handlers by `event_type`: the single endpoint.
///
/// Put it behind [`AghanimSignatureLayer`](crate::AghanimSignatureLayer): it reads the
/// [`VerifiedBody`] the layer leaves in the request extensions, reads `event_type` to
/// pick the handler, parses the event once straight into the handler's data type and
/// answers with what the handler returns.
///
/// | request | answer |
/// |---|---|
/// | a registered `event_type` | the handler's response |
/// | an unregistered one | the [`fallback`](Self::fallback), by default 400 `unknown_event_type` |
/// | not an event envelope, or `event_data` of the wrong shape | 400 `validation_error`, naming the field |
/// | no `VerifiedBody`: `Dispatch` is not behind the layer | 500, a configuration error |
///
/// # Example
///
/// ```
/// use aghanim_webhook::{dispatch::Dispatch, events::*, sign_headers, AghanimSignatureLayer};
/// use bytes::Bytes;
/// use http::{Request, StatusCode};
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// async fn verify(event: Event<PlayerVerify>) -> Result<PlayerVerifyResponse, WebhookError> {
///     match event.event_data.player_id.as_str() {
///         "testplayer" => Ok(PlayerVerifyResponse::new("testplayer", "Test Player")),
///         _ => Err(WebhookError::not_found("Player not found")),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let webhook = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("secret"))
///     .service(Dispatch::new().on(EventType::PlayerVerify, verify));
///
/// let body = r#"{"event_id":"whevt_1","event_type":"player.verify","event_time":1,
///                "event_data":{"player_id":"nobody"}}"#;
/// let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
/// sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
/// let response = webhook.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// # }
/// ```
pub struct Dispatch<S = ()> {
    routes: Arc<Routes<S>>,
    state: S,
}

struct Routes<S> {
    handlers: HashMap<EventType, Arc<dyn Route<S>>>,
    fallback: Option<Arc<dyn Route<S>>>,
    accept_unhandled: bool,
}

impl Dispatch<()> {
    /// A dispatcher with no handlers and no state.
    pub fn new() -> Self {
        Self::with_state(())
    }
}

impl Default for Dispatch<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Dispatch<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// A dispatcher whose handlers may take `state` (cloned for each event) as their first
    /// argument.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, Event, ItemChange}};
    ///
    /// async fn credit(credited: Arc<AtomicU64>, event: Event<ItemChange>) -> Ack {
    ///     credited.fetch_add(event.event_data.items.len() as u64, Ordering::SeqCst);
    ///     Ack
    /// }
    ///
    /// let dispatch = Dispatch::with_state(Arc::new(AtomicU64::new(0))).on("item.add", credit);
    /// ```
    #[must_use]
    pub fn with_state(state: S) -> Self {
        Self {
            routes: Arc::new(Routes {
                handlers: HashMap::new(),
                fallback: None,
                accept_unhandled: false,
            }),
            state,
        }
    }

    /// Handles events of `event_type` with `handler`, deserializing their `event_data`
    /// into the handler's data type. A second handler for the same type replaces the first.
    ///
    /// The handler's data type must be the data of `event_type`
    /// ([`EventData::is_for`](crate::events::EventData::is_for)): `item.add` takes
    /// [`ItemChange`](crate::events::ItemChange), `item.remove`
    /// [`ItemRemove`](crate::events::ItemRemove), `player.verify`
    /// [`PlayerVerify`](crate::events::PlayerVerify), and so on; `serde_json::Value`
    /// (`Event` with no parameter) goes with any type.
    ///
    /// # Panics
    ///
    /// When the handler's data type is not the data of `event_type`, naming both: a
    /// credit registered for refunds, a revoke for purchases or a `player.verify`
    /// handler for purchases is a mistake in the program, caught when the `Dispatch` is
    /// built rather than answered 200 at a delivery.
    ///
    /// ```should_panic
    /// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, Event, EventType, ItemChange}};
    ///
    /// async fn credit(_event: Event<ItemChange>) -> Ack {
    ///     Ack
    /// }
    ///
    /// // Panics: "the handler takes ItemChange, which is not the event_data of item.remove".
    /// let dispatch = Dispatch::new().on(EventType::ItemRemove, credit);
    /// ```
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, Event, EventType, ItemChange, ItemRemove}};
    ///
    /// async fn credit(_event: Event<ItemChange>) -> Ack {
    ///     Ack
    /// }
    ///
    /// async fn revoke(_event: Event<ItemRemove>) -> Ack {
    ///     Ack
    /// }
    ///
    /// let dispatch = Dispatch::new()
    ///     .on(EventType::ItemAdd, credit)
    ///     .on(EventType::ItemRemove, revoke);
    /// ```
    #[must_use]
    #[track_caller]
    pub fn on<H, T>(mut self, event_type: impl Into<EventType>, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let event_type = event_type.into();
        assert_data_is_for::<H::Data>(&event_type);
        let route: Arc<dyn Route<S>> = Arc::new(Erased::new(handler));
        self.routes_mut().handlers.insert(event_type, route);
        self
    }

    /// Handles events whose type has no handler; by default they get 400
    /// `{"status":"error","code":"unknown_event_type",...}`.
    ///
    /// The fallback gets any event type, so its data must be the data of every type:
    /// `serde_json::Value` (`Event` with no parameter), or data of your own whose
    /// [`EventData::is_for`](crate::events::EventData::is_for) accepts every type.
    ///
    /// # Panics
    ///
    /// When the handler's data type is not the data of every event type (say
    /// `Event<ItemChange>`), naming the data type and a type it is not for.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{dispatch::Dispatch, events::{Ack, ErrorCode, Event, WebhookError}};
    ///
    /// // Acknowledge every documented notification; refuse types nobody documents.
    /// let dispatch = Dispatch::new().fallback(|event: Event| async move {
    ///     if event.event_type.is_documented() {
    ///         Ok(Ack)
    ///     } else {
    ///         Err(WebhookError::new(ErrorCode::UnknownEventType, "Unknown event_type"))
    ///     }
    /// });
    /// ```
    #[must_use]
    #[track_caller]
    pub fn fallback<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        assert_data_is_for_any::<H::Data>();
        self.routes_mut().fallback = Some(Arc::new(Erased::new(handler)));
        self
    }

    /// Answers 202 `{"status":"ok"}` to a type with no handler and no fallback, instead
    /// of 400 `unknown_event_type`: what Aghanim's 2026 integration guidance advises
    /// ("return 202 and log it"), so that a type you do not handle is not retried.
    ///
    /// Either way the answer is marked [`Unhandled`](super::Unhandled): the idempotency
    /// layer does not record it and keeps the delivery as a
    /// [dead letter], so nothing is swallowed unseen, and it is counted
    /// (`aghanim_webhook_dispatch_refusals_total{reason="unknown_event_type"}`).
    /// The default stays 400: Aghanim then retries the delivery, which a handler
    /// deployed meanwhile applies without a replay.
    ///
    /// ```
    /// use aghanim_webhook::dispatch::Dispatch;
    ///
    /// let dispatch = Dispatch::new().accept_unhandled();
    /// ```
    ///
    #[cfg_attr(feature = "idempotency", doc = "[dead letter]: crate::dead_letter")]
    #[cfg_attr(
        not(feature = "idempotency"),
        doc = "[dead letter]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/dead_letter/"
    )]
    #[must_use]
    pub fn accept_unhandled(mut self) -> Self {
        self.routes_mut().accept_unhandled = true;
        self
    }

    fn routes_mut(&mut self) -> &mut Routes<S> {
        Arc::make_mut(&mut self.routes)
    }

    /// Reads only `event_type` to pick the handler, which then parses the whole event
    /// once, straight into its own data type.
    fn start(&self, extensions: &http::Extensions, verified: &[u8]) -> DispatchFuture {
        let event_type = match peek_event_type(verified) {
            Ok(event_type) => event_type,
            Err(error) => return refuse(OTHER, &error, Some(verified)),
        };
        let event = super::metrics::event_label(&event_type);
        let handler = self.routes.handlers.get(&event_type);
        let route = handler.or(self.routes.fallback.as_ref());
        let started = match route {
            Some(route) => route.start(self.state.clone(), extensions, &event_type, verified),
            None => Err(WebhookError::new(
                ErrorCode::UnknownEventType,
                format!("No handler for event_type {event_type}"),
            )),
        };
        let answered = match started {
            Ok(future) => DispatchFuture::handler(event, future),
            Err(error) if route.is_none() && self.routes.accept_unhandled => {
                report(event, &error, Some(verified));
                let mut accepted = crate::events::Ack.into_webhook_response();
                *accepted.status_mut() = http::StatusCode::ACCEPTED;
                DispatchFuture::ready(event, accepted)
            }
            Err(error) => refuse(event, &error, Some(verified)),
        };
        // A fallback of the game's own that answers a documented type took it; a type
        // nobody documents, or one no handler and no fallback took, was not.
        let fallback_took = self.routes.fallback.is_some() && event_type.is_documented();
        if handler.is_some() || fallback_took {
            answered
        } else {
            answered.unhandled()
        }
    }
}

/// Answers `error` for `Dispatch` itself: logged once at `warn` with the delivery's ids
/// (feature `tracing`) and counted by reason (feature `metrics`).
fn refuse(
    event: super::metrics::EventLabel,
    error: &WebhookError,
    verified: Option<&[u8]>,
) -> DispatchFuture {
    report(event, error, verified);
    DispatchFuture::ready(event, error.clone().into_webhook_response())
}

/// Logs and counts `Dispatch`'s own refusal `error`.
fn report(event: super::metrics::EventLabel, error: &WebhookError, verified: Option<&[u8]>) {
    let refusal = Refusal::of(error);
    super::trace::refused(refusal, error, verified);
    super::metrics::refused(event, refusal);
}

/// The event label of a body whose type could not be read.
const OTHER: super::metrics::EventLabel = {
    #[cfg(feature = "metrics")]
    {
        "other"
    }
    #[cfg(not(feature = "metrics"))]
    {}
};

impl<S, B> Service<Request<B>> for Dispatch<S>
where
    S: Clone + Send + Sync + 'static,
{
    type Response = Response<crate::body::BufferedBody>;
    type Error = Infallible;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> DispatchFuture {
        let Some(verified) = request.extensions().get::<VerifiedBody>() else {
            return refuse(OTHER, &WebhookError::missing_layer("Dispatch"), None);
        };
        self.start(request.extensions(), verified)
    }
}

// Not derived: the routes are shared handlers, whatever `S` is.
impl<S> Clone for Routes<S> {
    fn clone(&self) -> Self {
        Self {
            handlers: self.handlers.clone(),
            fallback: self.fallback.clone(),
            accept_unhandled: self.accept_unhandled,
        }
    }
}

impl<S: Clone> Clone for Dispatch<S> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
            state: self.state.clone(),
        }
    }
}

impl<S> fmt::Debug for Dispatch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&str> = self.routes.handlers.keys().map(EventType::as_str).collect();
        types.sort_unstable();
        f.debug_struct("Dispatch")
            .field("handlers", &types)
            .field("fallback", &self.routes.fallback.is_some())
            .finish_non_exhaustive()
    }
}
