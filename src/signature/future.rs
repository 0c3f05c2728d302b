use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{request::Parts, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    budget::Reservation,
    buffer::{BodyBuffer, Refused},
    config::Config,
};
use crate::{
    body::{BufferedBody, ResponseBody},
    ready_call::ReadyCall,
    BoxError, Rejection, Verification, VerifiedBody,
};

pin_project! {
    /// The response future of [`AghanimSignature`](super::AghanimSignature).
    ///
    /// Reads and verifies the body, then waits for the inner service to be ready and
    /// calls it, or answers with the rejection.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<BufferedBody>>,
    {
        #[pin]
        state: State<S, ReqBody, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F> {
        Reading {
            #[pin]
            body: ReqBody,
            reading: Option<Reading<S>>,
        },
        Calling {
            #[pin]
            call: ReadyCall<S, Request<BufferedBody>, F>,
        },
        Rejected {
            rejection: Option<Rejection>,
            config: Arc<Config>,
        },
    }
}

/// What the future owns while the body streams in.
struct Reading<S> {
    inner: S,
    parts: Parts,
    verification: Verification,
    buffer: BodyBuffer,
    config: Arc<Config>,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<BufferedBody>>,
{
    pub(crate) fn reading(
        inner: S,
        parts: Parts,
        body: ReqBody,
        verification: Verification,
        declared_length: Option<u64>,
        config: Arc<Config>,
    ) -> Self {
        let reservation = Reservation::new(config.buffer_budget.clone());
        let buffer = BodyBuffer::new(config.body_limit, declared_length, reservation);
        Self {
            state: State::Reading {
                body,
                reading: Some(Reading {
                    inner,
                    parts,
                    verification,
                    buffer,
                    config,
                }),
            },
        }
    }

    pub(crate) fn rejected(rejection: Rejection, config: Arc<Config>) -> Self {
        Self {
            state: State::rejected(rejection, config),
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Reading { mut body, reading } => {
                    let pending = reading.as_mut().expect("future polled after completion");
                    // Frames are taken here until the body ends, without going back
                    // through the state machine for each one.
                    let ended = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                // Trailers carry nothing that was signed.
                                if let Ok(data) = frame.into_data() {
                                    if let Err(refused) =
                                        pending.buffer.push(data, &mut pending.verification)
                                    {
                                        break Err(pending.refusal(refused));
                                    }
                                }
                            }
                            Some(Err(error)) => break Err(Rejection::body_error(error.into())),
                            None => break Ok(()),
                        }
                    };
                    let pending = reading.take().expect("future polled after completion");
                    match pending.finish(ended) {
                        Ok((inner, request)) => State::Calling {
                            call: ReadyCall::start(inner, request, cx)?,
                        },
                        Err((rejection, config)) => State::rejected(rejection, config),
                    }
                }
                StateProj::Calling { call } => {
                    let response = ready!(call.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { rejection, config } => {
                    let rejection = rejection.take().expect("future polled after completion");
                    let mut response = config.response_for(&rejection);
                    response.extensions_mut().insert(rejection);
                    return Poll::Ready(Ok(response.map(ResponseBody::buffered)));
                }
            };
            state.set(next);
        }
    }
}

impl<S> Reading<S> {
    fn refusal(&self, refused: Refused) -> Rejection {
        match refused {
            Refused::OverLimit => Rejection::body_too_large(self.config.body_limit),
            Refused::OverBudget => {
                Rejection::overloaded(self.config.buffer_budget.as_ref().map(|b| b.total()))
            }
        }
    }

    /// The body has ended, or failed: the request for the inner service if it is
    /// authentic, else the rejection (traced) and what answering it needs.
    fn finish(
        self,
        ended: Result<(), Rejection>,
    ) -> Result<(S, Request<BufferedBody>), (Rejection, Arc<Config>)> {
        let Self {
            inner,
            mut parts,
            mut verification,
            mut buffer,
            config,
        } = self;
        let body_read = buffer.len();
        let now = config.now();
        let verified = ended.and_then(|()| {
            let bytes = buffer.finish(&mut verification);
            Ok((bytes, verification.check(now)?))
        });
        match verified {
            Ok((bytes, timestamp)) => {
                super::metrics::verified(timestamp, now);
                let verified_body = VerifiedBody::new(bytes.clone(), timestamp);
                parts.extensions.insert(verified_body);
                Ok((inner, Request::from_parts(parts, BufferedBody::new(bytes))))
            }
            Err(rejection) => {
                super::trace::rejection(&rejection, &parts, body_read);
                super::metrics::rejected(rejection.kind());
                Err((rejection, config))
            }
        }
    }
}

impl<S, ReqBody, F> State<S, ReqBody, F> {
    fn rejected(rejection: Rejection, config: Arc<Config>) -> Self {
        Self::Rejected {
            rejection: Some(rejection),
            config,
        }
    }
}
