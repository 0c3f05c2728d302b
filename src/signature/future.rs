use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{request::Parts, HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, SizeHint};
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
    verify::SignedHeaders,
    BoxError, Rejection, Verification, VerifiedBody,
};

pin_project! {
    /// The response future of [`AghanimSignature`](super::AghanimSignature).
    ///
    /// On its first poll checks the headers; then reads and verifies the body, waits for
    /// the inner service to be ready and calls it, or answers with the rejection.
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
        // What lives through the whole read is verified and finished in place, and only
        // the parts and the service move on to the call.
        Reading {
            #[pin]
            body: ReqBody,
            pending: Option<(S, Parts)>,
            // Started on the first poll, in place: a MAC state returned through `call`
            // was copied four times while just written, each copy stalling on store
            // forwarding.
            started: Option<Started>,
            config: Arc<Config>,
        },
        Calling {
            #[pin]
            call: ReadyCall<S, Request<BufferedBody>, F>,
        },
        Rejected {
            rejection: Option<Rejection>,
            config: Arc<Config>,
            // An authentic delivery refused as stale, being kept before the answer.
            keeping: Option<Keeping>,
        },
    }
}

/// Keeping a stale delivery as a dead letter: boxed, off the verified path.
pub(crate) type Keeping = Pin<Box<dyn Future<Output = ()> + Send>>;

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<BufferedBody>>,
{
    pub(crate) fn new(inner: S, parts: Parts, body: ReqBody, config: Arc<Config>) -> Self {
        Self {
            state: State::Reading {
                body,
                pending: Some((inner, parts)),
                started: None,
                config,
            },
        }
    }
}

/// What reading an admitted body needs.
struct Started {
    verification: Verification,
    buffer: BodyBuffer,
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
                StateProj::Reading {
                    mut body,
                    pending,
                    started,
                    config,
                } => 'reading: {
                    let Started {
                        verification,
                        buffer,
                    } = match started {
                        Some(started) => started,
                        None => {
                            let (_, parts) =
                                pending.as_ref().expect("future polled after completion");
                            match admit(config, &parts.headers, body.size_hint()) {
                                Ok(admitted) => started.insert(admitted),
                                Err(rejection) => {
                                    super::trace::rejection(&rejection, parts, 0);
                                    super::metrics::rejected(rejection.kind());
                                    break 'reading State::rejected(rejection, Arc::clone(config));
                                }
                            }
                        }
                    };
                    // Frames are taken here until the body ends, without going back
                    // through the state machine for each one.
                    let ended = loop {
                        // Matched in place, not through `ready!` or `into_data`: each
                        // copies the frame the body has just written, a store-forwarding
                        // stall per frame.
                        match body.as_mut().poll_frame(cx) {
                            Poll::Ready(Some(Ok(ref mut frame))) => {
                                // Trailers carry nothing that was signed.
                                if let Some(data) = frame.data_mut() {
                                    if let Err(refused) = buffer.push(data, verification) {
                                        break Err(refusal(config, refused));
                                    }
                                }
                            }
                            Poll::Ready(Some(Err(error))) => {
                                break Err(Rejection::body_error(error.into()))
                            }
                            Poll::Ready(None) => break Ok(()),
                            Poll::Pending => return Poll::Pending,
                        }
                    };
                    let (inner, mut parts) =
                        pending.take().expect("future polled after completion");
                    let body_read = buffer.len();
                    let now = config.now();
                    // The bytes stay with a refusal: a stale one is authentic, and its
                    // log names the purchase it carried.
                    let verified = ended.map_err(|rejection| (rejection, None)).and_then(|()| {
                        let bytes = buffer.finish(verification);
                        match verification.check(now) {
                            Ok(timestamp) => Ok((bytes, timestamp)),
                            Err(rejection) => Err((rejection, Some(bytes))),
                        }
                    });
                    match verified {
                        Ok((bytes, timestamp)) => {
                            super::metrics::verified(timestamp, now);
                            parts
                                .extensions
                                .insert(VerifiedBody::new(bytes.clone(), timestamp));
                            let request = Request::from_parts(parts, BufferedBody::new(bytes));
                            State::Calling {
                                call: ReadyCall::start(inner, request, cx)?,
                            }
                        }
                        Err((rejection, bytes)) => {
                            super::trace::rejection_read(
                                &rejection,
                                &parts,
                                body_read,
                                bytes.as_deref(),
                            );
                            super::metrics::rejected(rejection.kind());
                            let keeping =
                                bytes.and_then(|bytes| config.keep_stale(&rejection, bytes, now));
                            let config = Arc::clone(config);
                            State::Rejected {
                                rejection: Some(rejection),
                                config,
                                keeping,
                            }
                        }
                    }
                }
                StateProj::Calling { call } => {
                    let response = ready!(call.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected {
                    rejection,
                    config,
                    keeping,
                } => {
                    if let Some(keeping) = keeping {
                        ready!(keeping.as_mut().poll(cx));
                    }
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

/// What can be checked before a byte of the body is read: the declared length against
/// the limit, the signature headers, and the declared length against the budget left.
#[inline]
fn admit(config: &Config, headers: &HeaderMap, hint: SizeHint) -> Result<Started, Rejection> {
    let found = SignedHeaders::find(headers);
    let declared = declared_length(found.content_length, hint);
    let limit = config.body_limit;
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Rejection::body_too_large(limit));
    }
    let (timestamp, signature) = found.values()?;
    let verification = config.verifier.begin(timestamp, signature)?;
    if let Some(budget) = &config.buffer_budget {
        let first_need = declared.map_or(0, |length| length as usize);
        if !budget.fits(first_need) {
            return Err(Rejection::overloaded(Some(budget.total())));
        }
    }
    let reservation = Reservation::new(config.buffer_budget.clone());
    Ok(Started {
        verification,
        buffer: BodyBuffer::new(limit, declared, reservation),
    })
}

/// The length the client announced: the larger of the body's exact size hint (hyper
/// derives it from `content-length`) and the `content-length` header, so neither claim
/// can hide the other.
fn declared_length(header: Option<&HeaderValue>, hint: SizeHint) -> Option<u64> {
    let header = header
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match (hint.exact(), header) {
        (Some(hint), Some(header)) => Some(hint.max(header)),
        (hint, header) => hint.or(header),
    }
}

fn refusal(config: &Config, refused: Refused) -> Rejection {
    match refused {
        Refused::OverLimit => Rejection::body_too_large(config.body_limit),
        Refused::OverBudget => {
            Rejection::overloaded(config.buffer_budget.as_ref().map(|b| b.total()))
        }
    }
}

impl<S, ReqBody, F> State<S, ReqBody, F> {
    fn rejected(rejection: Rejection, config: Arc<Config>) -> Self {
        Self::Rejected {
            rejection: Some(rejection),
            config,
            keeping: None,
        }
    }
}
