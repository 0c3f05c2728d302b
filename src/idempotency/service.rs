use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{
    config::{Backend, Config},
    key::{Claim, Delivery},
    leased::deduplicated,
    Policy, ResponseFuture,
};
use crate::{
    body::ResponseBody,
    events::{peek_event_type, IntoWebhookResponse, WebhookError},
    VerifiedBody,
};

/// The service made by [`IdempotencyLayer`](super::IdempotencyLayer).
///
/// # Runtime
///
/// Deduplicated deliveries need a Tokio runtime (with its time driver): once a claim is
/// taken, the handler, the collection of its answer and the recording of that answer
/// run to completion in a task spawned on it, whatever happens to the request future,
/// and every store call is timed. Called outside a runtime, a deduplicated delivery is
/// answered 500 `internal_error` without touching the store or the handler; reads that
/// pass through need no runtime.
///
/// # Readiness
///
/// Always ready, like the signature layer: each request takes a clone of `S` and waits
/// for its readiness only when it is about to run, after its claim; a duplicate that
/// waits or is replayed never holds `S`'s capacity.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{body::BufferedBody, idempotency::IdempotencyLayer};
/// use http::{Request, Response};
/// use tower::{service_fn, Layer};
///
/// let service = IdempotencyLayer::in_memory().layer(service_fn(
///     |_req: Request<BufferedBody>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) },
/// ));
/// ```
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Idempotency<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives up the layer and returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = self.inner.clone();
        let Some(verified) = request.extensions().get::<VerifiedBody>() else {
            let error = WebhookError::missing_layer("IdempotencyLayer");
            return ResponseFuture::answered(error.into_webhook_response());
        };
        // An idempotency layer further out has claimed this delivery already: claiming
        // it again would wait on that claim until the wait ran out, on every attempt.
        if request.extensions().get::<Claim>().is_some() {
            return ResponseFuture::pass_through(inner, request);
        }
        // The type alone decides whether to deduplicate: reads pass through without
        // computing a key or a fingerprint.
        let policy = peek_event_type(verified).map_or(Policy::PassThrough, |event_type| {
            self.config.policy(&event_type)
        });
        let delivery = match policy {
            Policy::PassThrough => None,
            Policy::Deduplicate => Delivery::of(verified, false),
            Policy::DeduplicateAllowingChanges => Delivery::of(verified, true),
        };
        let Some(delivery) = delivery else {
            return ResponseFuture::pass_through(inner, request);
        };
        // The claimed run is a task of its own, and every store call is timed.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let error = WebhookError::misconfigured("IdempotencyLayer needs a Tokio runtime");
            return ResponseFuture::answered(error.into_webhook_response());
        };
        let config = Arc::clone(&self.config);
        match &config.backend {
            Backend::Leased(store) => {
                let store = Arc::clone(store);
                ResponseFuture::deduplicated(Box::pin(deduplicated(
                    runtime, store, inner, request, config, delivery,
                )))
            }
            #[cfg(feature = "postgres")]
            Backend::Transactional(store) => {
                let store = store.clone();
                ResponseFuture::deduplicated(Box::pin(super::postgres::in_transaction(
                    store, inner, request, config, delivery,
                )))
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
