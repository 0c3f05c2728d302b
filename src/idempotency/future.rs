use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::IdempotencyOutcome;
use crate::body::ResponseBody;

/// The deduplicated path awaits the store several times; it is one boxed future, next to
/// store round trips that cost far more than the allocation.
pub(crate) type DeduplicatedFuture<E> =
    Pin<Box<dyn Future<Output = Result<Response<Bytes>, E>> + Send>>;

pin_project! {
    /// The response future of [`Idempotency`](super::Idempotency).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, S::Future, S::Error>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, F, E> {
        // Passed through: wait for the inner service, call it, answer with its response.
        Ready {
            pending: Option<(S, Request<ReqBody>)>,
        },
        Calling {
            #[pin]
            future: F,
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
    pub(crate) fn pass_through(inner: S, request: Request<ReqBody>) -> Self {
        Self {
            kind: Kind::Ready {
                pending: Some((inner, request)),
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
            let next = match kind.as_mut().project() {
                KindProj::Ready { pending } => {
                    let (inner, _) = pending.as_mut().expect("future polled after completion");
                    ready!(inner.poll_ready(cx))?;
                    let (mut inner, request) =
                        pending.take().expect("future polled after completion");
                    Kind::Calling {
                        future: inner.call(request),
                    }
                }
                KindProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx))?;
                    response
                        .extensions_mut()
                        .insert(IdempotencyOutcome::PassedThrough);
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
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
            kind.set(next);
        }
    }
}
