use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{config::Config, ResponseFuture};
use crate::body::{BufferedBody, ResponseBody};
use crate::BoxError;

/// The service made by [`AghanimSignatureLayer`](super::AghanimSignatureLayer): it
/// verifies each request and hands only authentic ones to `S`.
///
/// `S` receives the original request parts with a [`BufferedBody`] that yields the
/// verified bytes, and a [`VerifiedBody`](crate::VerifiedBody) in the extensions.
///
/// # Readiness
///
/// This service is always ready. Each request takes a clone of `S` and waits for its
/// `poll_ready` only after the request is verified, so a request that is forged, or
/// whose body is still trickling in, never holds a permit of a `ConcurrencyLimit`, a
/// slot of a `Buffer` or any other capacity of `S`. An error from `S::poll_ready` is
/// returned from the response future. `S` must therefore be `Clone`, and its clones
/// must share whatever capacity they guard, as tower's services do.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{AghanimSignatureLayer, body::BufferedBody};
/// use http::{Request, Response};
/// use tower::{service_fn, Layer};
///
/// let service = AghanimSignatureLayer::new("secret").layer(service_fn(
///     |_req: Request<BufferedBody>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) },
/// ));
/// ```
#[derive(Clone)]
pub struct AghanimSignature<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> AghanimSignature<S> {
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AghanimSignature<S>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    /// Always ready: the inner service's readiness is awaited by the response future,
    /// only once the request is verified.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        ResponseFuture::new(self.inner.clone(), parts, body, Arc::clone(&self.config))
    }
}

impl<S: fmt::Debug> fmt::Debug for AghanimSignature<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AghanimSignature")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
