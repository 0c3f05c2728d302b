use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{layer::Config, BufferedBody, ResponseBody, ResponseFuture};
use crate::{BoxError, Rejection};

/// The service made by [`AghanimSignatureLayer`](super::AghanimSignatureLayer): it
/// verifies each request and hands only authentic ones to `S`.
///
/// `S` receives the original request parts with a [`BufferedBody`] that yields the
/// verified bytes, and a [`VerifiedBody`](crate::VerifiedBody) in the extensions.
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Call the instance that reported ready; keep its clone for the next request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);

        let (parts, body) = request.into_parts();
        let declared = declared_length(&parts.headers, &body);
        if declared.is_some_and(|length| length > config.body_limit as u64) {
            let rejection = Rejection::body_too_large(config.body_limit);
            return ResponseFuture::rejected(rejection, config);
        }
        match config.verifier.begin_headers(&parts.headers) {
            Ok(verification) => {
                ResponseFuture::reading(inner, parts, body, verification, declared, config)
            }
            Err(rejection) => ResponseFuture::rejected(rejection, config),
        }
    }
}

/// The length the client announced: the body's exact size hint (hyper derives it from
/// `content-length`), or else the `content-length` header itself.
fn declared_length<B: Body>(headers: &HeaderMap, body: &B) -> Option<u64> {
    body.size_hint().exact().or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
    })
}

impl<S: fmt::Debug> fmt::Debug for AghanimSignature<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AghanimSignature")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
