use std::{
    fmt,
    future::{poll_fn, Future},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use super::SignedRequest;
use crate::{unix_now, BoxError};

/// Delivers one event to a service the way Aghanim can: several copies at once,
/// retries after every non-2xx answer with a fresh signature, retries written as other
/// bytes of the same JSON, and a copy whose client hangs up. It returns every answer,
/// so a test asserts on what the handler did, not on how it was called.
///
/// What Aghanim documents: a 2xx is success, and any 4xx or 5xx is retried on a
/// schedule it does not publish. The rest is our reading of what any at-least-once
/// sender behind a load balancer produces, not documented behaviour: copies of one
/// event arriving together, a retry re-encoded, a first attempt given up by the client
/// while the handler runs. Whether Aghanim re-signs a retry with a new timestamp is not
/// documented either; this sender signs each attempt when it sends it.
///
/// Copies run as Tokio tasks, so the service, its future and its response body must be
/// `Send + 'static` (an axum `Router` and a `ServiceBuilder` stack of `Send` services
/// are), and the test must run inside a Tokio runtime (`#[tokio::test]`).
///
/// # Example
///
/// ```
/// use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
///
/// use aghanim_webhook::{events::EventType, idempotency::IdempotencyLayer, testing::{Sample, Sender}, AghanimSignatureLayer};
/// use http::Response;
/// use tower::{service_fn, ServiceBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let credits = Arc::new(AtomicU32::new(0));
/// let counted = Arc::clone(&credits);
/// let webhook = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("whsec_test"))
///     .layer(IdempotencyLayer::in_memory())
///     .service(service_fn(move |_| {
///         counted.fetch_add(1, Ordering::SeqCst);
///         async { Ok::<_, std::convert::Infallible>(Response::new(r#"{"status":"ok"}"#.to_owned())) }
///     }));
///
/// let answers = Sender::new("whsec_test").copies(3).reserialize_retries().deliver(webhook, Sample::new(EventType::ItemAdd)).await;
/// assert!(answers.succeeded(), "{answers:?}");
/// assert_eq!(credits.load(Ordering::SeqCst), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct Sender {
    secret: Arc<[u8]>,
    copies: usize,
    attempts: u32,
    reserialize_retries: bool,
    hang_up_after: Option<Duration>,
    retry_delay: Duration,
    uri: String,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Sender {
    /// A sender signing with `secret`: one copy, up to 5 attempts, no hang-up.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            secret: Arc::from(secret.as_ref()),
            copies: 1,
            attempts: 5,
            reserialize_retries: false,
            hang_up_after: None,
            retry_delay: Duration::from_millis(10),
            uri: "/webhook".to_owned(),
            clock: Arc::new(unix_now),
        }
    }

    /// Sends `copies` deliveries of the event at once (at least 1), each retried on
    /// its own.
    #[must_use]
    pub fn copies(mut self, copies: usize) -> Self {
        self.copies = copies.max(1);
        self
    }

    /// Sends each copy at most `attempts` times (at least 1), until it gets a 2xx.
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Writes every retry as other bytes of the same JSON value
    /// ([`reserialize`](super::reserialize)).
    #[must_use]
    pub fn reserialize_retries(mut self) -> Self {
        self.reserialize_retries = true;
        self
    }

    /// Sends one more copy first, whose client hangs up without reading its answer:
    /// always, whatever the handler's speed. Its request is whole from the start, so the
    /// service has all of it at the first poll of its response future; the client polls
    /// that future once, then waits up to `after` more (`Duration::ZERO`: not at all),
    /// then drops it, or drops the answer unread if one came. It is not retried: the
    /// other copies are its retries. [`Answers::hung_up`] counts it; its
    /// [`Reply`] is [`Reply::HungUp`] unless the service failed or was never ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// use aghanim_webhook::testing::{Sample, Sender};
    /// use aghanim_webhook::events::EventType;
    /// use http::Response;
    /// use tower::service_fn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A service that answers at once still loses the copy that hangs up.
    /// let instant = service_fn(|_| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) });
    /// let answers = Sender::new("whsec_test")
    ///     .hang_up_first(Duration::ZERO)
    ///     .deliver(instant, Sample::new(EventType::ItemAdd))
    ///     .await;
    /// assert_eq!(answers.hung_up(), 1);
    /// assert!(answers.succeeded());
    /// # }
    /// ```
    #[must_use]
    pub fn hang_up_first(mut self, after: Duration) -> Self {
        self.hang_up_after = Some(after);
        self
    }

    /// Waits `delay` before each retry (10 ms unless set).
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Posts to `uri` instead of `/webhook`.
    #[must_use]
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Signs with the time `clock` gives, in Unix seconds, instead of the system
    /// clock: for a layer built with a fixed clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Delivers `body` (a [`Sample`](super::Sample), or any bytes) to `service` and
    /// waits for every copy's last answer.
    pub async fn deliver<S, B>(&self, service: S, body: impl Into<Bytes>) -> Answers
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let body = body.into();
        let mut copies = tokio::task::JoinSet::new();
        if let Some(after) = self.hang_up_after {
            let request = self.request(&body, false);
            let service = service.clone();
            copies.spawn(async move {
                vec![Answer {
                    copy: 0,
                    attempt: 1,
                    reserialized: false,
                    reply: hang_up(service, request, after).await,
                }]
            });
        }
        let first = usize::from(self.hang_up_after.is_some());
        for copy in first..first + self.copies {
            let (sender, service, body) = (self.clone(), service.clone(), body.clone());
            copies.spawn(async move { sender.until_2xx(copy, service, body).await });
        }
        let mut answers = Vec::new();
        while let Some(copy) = copies.join_next().await {
            match copy {
                Ok(copy) => answers.extend(copy),
                Err(error) => answers.push(Answer {
                    copy: usize::MAX,
                    attempt: 0,
                    reserialized: false,
                    reply: Reply::Failed(format!("the copy's task ended: {error}")),
                }),
            }
        }
        answers.sort_by_key(|answer| (answer.copy, answer.attempt));
        Answers(answers)
    }

    async fn until_2xx<S, B>(self, copy: usize, service: S, body: Bytes) -> Vec<Answer>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
        S::Error: Into<BoxError>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut answers: Vec<Answer> = Vec::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry_delay).await;
            }
            let reserialized = attempt > 1 && self.reserialize_retries;
            let reply = send(service.clone(), self.request(&body, reserialized)).await;
            let done = reply.status().is_some_and(|status| status.is_success());
            answers.push(Answer {
                copy,
                attempt,
                reserialized,
                reply,
            });
            if done {
                break;
            }
        }
        answers
    }

    fn request(&self, body: &Bytes, reserialized: bool) -> Request<Full<Bytes>> {
        let request = SignedRequest::new(&self.secret, body.clone())
            .timestamp((self.clock)())
            .uri(self.uri.clone());
        if reserialized {
            request.reserialized().build()
        } else {
            request.build()
        }
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("copies", &self.copies)
            .field("attempts", &self.attempts)
            .field("reserialize_retries", &self.reserialize_retries)
            .field("hang_up_after", &self.hang_up_after)
            .field("retry_delay", &self.retry_delay)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

async fn send<S, B>(mut service: S, request: Request<Full<Bytes>>) -> Reply
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    if let Err(error) = poll_fn(|cx| service.poll_ready(cx)).await {
        return Reply::Failed(format!("the service is not ready: {}", error.into()));
    }
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(error) => return Reply::Failed(format!("the service failed: {}", error.into())),
    };
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(body) => Reply::Answered(Response::from_parts(parts, body.to_bytes())),
        Err(error) => Reply::Failed(format!("the answer's body failed: {}", error.into())),
    }
}

/// Sends `request` and hangs up without reading the answer: after the response future's
/// first poll (the body is whole, so the service has all of it by then) and up to
/// `after` more.
async fn hang_up<S, B>(mut service: S, request: Request<Full<Bytes>>, after: Duration) -> Reply
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    if let Err(error) = poll_fn(|cx| service.poll_ready(cx)).await {
        return Reply::Failed(format!("the service is not ready: {}", error.into()));
    }
    let mut response = pin!(service.call(request));
    // An answer is dropped unread with the connection, and an error said at once, so
    // that neither is held across the wait.
    let unread = |outcome: Result<Response<B>, S::Error>| {
        outcome.map(drop).map_err(|error| error.into().to_string())
    };
    let first = match poll_fn(|cx| Poll::Ready(response.as_mut().poll(cx))).await {
        Poll::Ready(outcome) => Some(unread(outcome)),
        Poll::Pending => None,
    };
    let outcome = match first {
        Some(outcome) => Some(outcome),
        None if after.is_zero() => None,
        None => tokio::time::timeout(after, response).await.ok().map(unread),
    };
    match outcome {
        Some(Err(error)) => Reply::Failed(format!("the service failed: {error}")),
        Some(Ok(())) | None => Reply::HungUp,
    }
}

/// One attempt of one copy, and what it got.
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer {
    /// Which copy, from 0; with [`Sender::hang_up_first`], copy 0 is the one that hung up.
    pub copy: usize,
    /// Which attempt of that copy, from 1.
    pub attempt: u32,
    /// Whether its body was re-serialized.
    pub reserialized: bool,
    /// What it got.
    pub reply: Reply,
}

/// What one attempt got.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// An answer, its body read whole.
    Answered(Response<Bytes>),
    /// The client hung up before an answer.
    HungUp,
    /// The service, or the answer's body, failed.
    Failed(String),
}

impl Reply {
    /// The answer's status, if there was an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Answered(response) => Some(response.status()),
            _ => None,
        }
    }

    /// The answer's headers, if there was an answer.
    pub fn headers(&self) -> Option<&HeaderMap> {
        match self {
            Self::Answered(response) => Some(response.headers()),
            _ => None,
        }
    }

    /// The answer's body, if there was an answer.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Self::Answered(response) => Some(response.body()),
            _ => None,
        }
    }
}

/// Every attempt [`Sender::deliver`] made, by copy and attempt.
#[derive(Debug)]
pub struct Answers(Vec<Answer>);

impl Answers {
    /// Whether every copy that did not hang up ended with a 2xx: Aghanim would count
    /// the event delivered.
    pub fn succeeded(&self) -> bool {
        let mut last: Vec<&Answer> = Vec::new();
        for answer in &self.0 {
            match last.last_mut() {
                Some(previous) if previous.copy == answer.copy => *previous = answer,
                _ => last.push(answer),
            }
        }
        !last.is_empty()
            && last.iter().all(|answer| {
                matches!(answer.reply, Reply::HungUp)
                    || answer
                        .reply
                        .status()
                        .is_some_and(|status| status.is_success())
            })
    }

    /// How many attempts hung up without reading an answer ([`Sender::hang_up_first`]).
    pub fn hung_up(&self) -> usize {
        self.0
            .iter()
            .filter(|answer| matches!(answer.reply, Reply::HungUp))
            .count()
    }

    /// How many answers were replays of a recorded answer (`idempotent-replayed`).
    pub fn replayed(&self) -> usize {
        self.0
            .iter()
            .filter(|answer| {
                answer
                    .reply
                    .headers()
                    .is_some_and(|headers| headers.contains_key("idempotent-replayed"))
            })
            .count()
    }

    /// Every status answered, in order of copy and attempt.
    pub fn statuses(&self) -> Vec<StatusCode> {
        self.0
            .iter()
            .filter_map(|answer| answer.reply.status())
            .collect()
    }

    /// Every attempt.
    pub fn all(&self) -> &[Answer] {
        &self.0
    }
}

impl IntoIterator for Answers {
    type Item = Answer;
    type IntoIter = std::vec::IntoIter<Answer>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
