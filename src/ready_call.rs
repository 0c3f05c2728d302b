//! Waits until a service is ready, then calls it: tower's `Oneshot`, for the
//! middlewares' futures, without tower's `util` feature.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use pin_project_lite::pin_project;
use tower_service::Service;

pin_project! {
    /// `F` is `S::Future`, named apart because `pin_project!` enums take no bounds.
    #[project = ReadyCallProj]
    pub(crate) enum ReadyCall<S, Request, F> {
        Waiting {
            pending: Option<(S, Request)>,
        },
        Called {
            #[pin]
            future: F,
        },
    }
}

impl<S, Request> ReadyCall<S, Request, S::Future>
where
    S: Service<Request>,
{
    /// Calls `service` at once if it is ready now (the usual case, which then never
    /// parks the request), else keeps both until it is.
    pub(crate) fn start(
        mut service: S,
        request: Request,
        cx: &mut Context<'_>,
    ) -> Result<Self, S::Error> {
        Ok(match service.poll_ready(cx)? {
            Poll::Ready(()) => Self::Called {
                future: service.call(request),
            },
            Poll::Pending => Self::Waiting {
                pending: Some((service, request)),
            },
        })
    }

    /// Calls `service` once it is ready, when first polled.
    #[cfg(feature = "idempotency")]
    pub(crate) fn new(service: S, request: Request) -> Self {
        Self::Waiting {
            pending: Some((service, request)),
        }
    }
}

impl<S, Request> Future for ReadyCall<S, Request, S::Future>
where
    S: Service<Request>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let called = match self.as_mut().project() {
                ReadyCallProj::Waiting { pending } => {
                    let (service, _) = pending.as_mut().expect("future polled after completion");
                    ready!(service.poll_ready(cx))?;
                    let (mut service, request) =
                        pending.take().expect("future polled after completion");
                    service.call(request)
                }
                ReadyCallProj::Called { future } => return future.poll(cx),
            };
            self.set(Self::Called { future: called });
        }
    }
}
