use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::metrics::EventLabel;
use crate::{body::BufferedBody, events::IntoWebhookResponse};

/// Handlers return different future types, so the route table holds them boxed: one
/// allocation per event, next to the JSON parsing that dispatch needs anyway.
pub(crate) type BoxResponseFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// The response future of [`Dispatch`](super::Dispatch): an answer known at once (an
/// invalid or unknown event), or the handler's.
pub struct DispatchFuture {
    kind: Kind,
    event: EventLabel,
    unhandled: bool,
}

enum Kind {
    Ready(Option<Response<Bytes>>),
    Handler(BoxResponseFuture),
}

impl DispatchFuture {
    pub(crate) fn ready(event: EventLabel, response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
            event,
            unhandled: false,
        }
    }

    pub(crate) fn handler(event: EventLabel, future: BoxResponseFuture) -> Self {
        Self {
            kind: Kind::Handler(future),
            event,
            unhandled: false,
        }
    }

    /// Marks the answer [`Unhandled`](super::Unhandled): no handler took the delivery.
    pub(crate) fn unhandled(mut self) -> Self {
        self.unhandled = true;
        self
    }
}

impl Future for DispatchFuture {
    type Output = Result<Response<BufferedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = match &mut self.kind {
            Kind::Ready(response) => response.take().expect("future polled after completion"),
            Kind::Handler(future) => ready!(future.as_mut().poll(cx)),
        };
        if self.unhandled {
            response.extensions_mut().insert(super::Unhandled);
        }
        super::metrics::answered(self.event, response.status());
        Poll::Ready(Ok(response.map(BufferedBody::from)))
    }
}

impl std::fmt::Debug for DispatchFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// A handler's future, its output turned into a response.
    pub struct IntoResponseFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F> IntoResponseFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }
}

impl<F> Future for IntoResponseFuture<F>
where
    F: Future,
    F::Output: IntoWebhookResponse,
{
    type Output = Response<Bytes>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Bytes>> {
        let answer = ready!(self.project().future.poll(cx));
        Poll::Ready(answer.into_webhook_response())
    }
}
