use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::answer::keep_unhandled;
use super::{config::Config, IdempotencyOutcome};
use crate::{body::ResponseBody, dispatch::Unhandled, ready_call::ReadyCall};

/// The deduplicated path awaits the store several times; it is one boxed future, next to
/// store round trips that cost far more than the allocation.
type DeduplicatedFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, E>> + Send>>;

/// Keeping a delivery no handler took, on the path that passes through.
type KeepingFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a delivery passed through needs to be kept if no handler takes it: the layer's
/// settings and the verified bytes.
pub(crate) type KeepIfUnhandled = Option<(Arc<Config>, Bytes)>;

pin_project! {
    /// The response future of [`Idempotency`](super::Idempotency).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, S::Future, S::Error, S::Response>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, F, E, R> {
        // Passed through: the inner service's answer, as it is.
        PassedThrough {
            #[pin]
            call: ReadyCall<S, Request<ReqBody>, F>,
            keep: KeepIfUnhandled,
        },
        // Passed through, and no handler took it: kept, then answered.
        Keeping {
            keeping: KeepingFuture,
            response: Option<R>,
        },
        Deduplicated {
            future: DeduplicatedFuture<E>,
        },
        Answered {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn pass_through(inner: S, request: Request<ReqBody>, keep: KeepIfUnhandled) -> Self {
        Self {
            kind: Kind::PassedThrough {
                call: ReadyCall::new(inner, request),
                keep,
            },
        }
    }

    pub(crate) fn deduplicated(future: DeduplicatedFuture<S::Error>) -> Self {
        Self {
            kind: Kind::Deduplicated { future },
        }
    }

    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Answered {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let response = match kind.as_mut().project() {
                KindProj::PassedThrough { call, keep } => {
                    let mut response = ready!(call.poll(cx))?;
                    response
                        .extensions_mut()
                        .insert(IdempotencyOutcome::PassedThrough);
                    let unhandled = response.extensions().get::<Unhandled>().is_some();
                    match keep.take() {
                        Some((config, verified)) if unhandled => {
                            let status = response.status().as_u16();
                            let keeping = keep_unhandled(config, verified, status);
                            kind.set(Kind::Keeping {
                                keeping: Box::pin(keeping),
                                response: Some(response),
                            });
                            continue;
                        }
                        _ => response,
                    }
                }
                KindProj::Keeping { keeping, response } => {
                    ready!(keeping.as_mut().poll(cx));
                    response.take().expect("future polled after completion")
                }
                KindProj::Deduplicated { future } => {
                    let response = ready!(future.as_mut().poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::buffered)));
                }
                KindProj::Answered { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::buffered)));
                }
            };
            return Poll::Ready(Ok(response.map(ResponseBody::inner)));
        }
    }
}
