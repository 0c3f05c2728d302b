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
use crate::{body::ResponseBody, ready_call::ReadyCall};

/// The deduplicated path awaits the store several times; it is one boxed future, next to
/// store round trips that cost far more than the allocation.
type DeduplicatedFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, E>> + Send>>;

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
        // Passed through: the inner service's answer, as it is.
        PassedThrough {
            #[pin]
            call: ReadyCall<S, Request<ReqBody>, F>,
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
            kind: Kind::PassedThrough {
                call: ReadyCall::new(inner, request),
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
        match self.project().kind.project() {
            KindProj::PassedThrough { call } => {
                let mut response = ready!(call.poll(cx))?;
                response
                    .extensions_mut()
                    .insert(IdempotencyOutcome::PassedThrough);
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Deduplicated { future } => {
                let response = ready!(future.as_mut().poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::buffered)))
            }
            KindProj::Answered { response } => {
                let response = response.take().expect("future polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::buffered)))
            }
        }
    }
}
