//! What both deduplicated paths, leased and transactional, do around the handler: call
//! it and collect its answer, then mark and report what the layer did.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::{config::Config, in_flight::Entry, outcome::IdempotencyOutcome};
use crate::{
    dead_letter::{self, DeadLetter, Reason},
    ready_call::ReadyCall,
};

/// Waits for the handler's readiness, calls it and collects its answer; the inner
/// `Err` is an answer whose body failed.
pub(crate) async fn handle<S, ReqBody, ResBody>(
    inner: S,
    request: Request<ReqBody>,
) -> Result<Result<Response<Bytes>, ()>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let (parts, body) = ReadyCall::new(inner, request).await?.into_parts();
    Ok(match body.collect().await {
        Ok(collected) => Ok(Response::from_parts(parts, collected.to_bytes())),
        Err(_) => Err(()),
    })
}

/// Reports what the layer did, in the response extensions, through `tracing` and the
/// metrics.
pub(crate) fn marked(
    mut response: Response<Bytes>,
    reported: IdempotencyOutcome,
    dedupe_key: &str,
) -> Response<Bytes> {
    report(reported, dedupe_key);
    response.extensions_mut().insert(reported);
    response
}

/// Reports a decision through `tracing` and the metrics.
pub(crate) fn report(reported: IdempotencyOutcome, dedupe_key: &str) {
    super::trace::decision(reported, dedupe_key);
    super::metrics::decision(reported);
}

/// How a run's work ended.
pub(crate) enum Ended<T> {
    Done(T),
    /// It took longer than the layer's run timeout: its future was dropped.
    TimedOut,
    /// The runs were cancelled (a server past its drain deadline): its future was
    /// dropped.
    Cancelled,
}

/// Runs `work` for at most `limit`, or until the runs are cancelled; either drops it
/// before returning.
pub(crate) async fn bounded<F: Future>(
    work: F,
    limit: Duration,
    entry: &mut Entry,
) -> Ended<F::Output> {
    tokio::select! {
        // The work first: a run that has finished is not cancelled.
        biased;
        done = tokio::time::timeout(limit, work) => match done {
            Ok(done) => Ended::Done(done),
            Err(_) => Ended::TimedOut,
        },
        () = entry.cancelled() => Ended::Cancelled,
    }
}

/// Why a claimed run did not apply its delivery, for its dead letter.
pub(crate) struct Failed {
    reason: Reason,
    status: u16,
    detail: String,
}

impl Failed {
    /// The handler answered `response`, which is not final.
    pub(crate) fn answered(response: &Response<Bytes>) -> Self {
        let (reason, detail) = dead_letter::reason_of(response);
        let status = response.status().as_u16();
        Self {
            reason,
            status,
            detail,
        }
    }

    pub(crate) fn body_failed() -> Self {
        Self::handler("the handler's answer body failed", 500)
    }

    pub(crate) fn service_error() -> Self {
        Self::handler("the handler's service returned an error", 500)
    }

    pub(crate) fn timed_out() -> Self {
        let detail = "the handler ran past the run timeout".to_owned();
        Self {
            reason: Reason::TimedOut,
            status: 503,
            detail,
        }
    }

    pub(crate) fn cancelled() -> Self {
        let detail = "cancelled at a drain, past its deadline".to_owned();
        Self {
            reason: Reason::Cancelled,
            status: 503,
            detail,
        }
    }

    /// The handler ended the delivery's transaction itself: 503.
    pub(crate) fn ended_by_handler() -> Self {
        let detail =
            "the handler ended the delivery's transaction itself (its own COMMIT or ROLLBACK)";
        Self::handler(detail, 503)
    }

    /// The store failed while the answer was being recorded: 503.
    pub(crate) fn store(detail: &str) -> Self {
        let detail = detail.to_owned();
        Self {
            reason: Reason::StoreFailed,
            status: 503,
            detail,
        }
    }

    fn handler(detail: &str, status: u16) -> Self {
        let detail = detail.to_owned();
        Self {
            reason: Reason::HandlerFailed,
            status,
            detail,
        }
    }
}

/// The verified bytes a request carries (the service has checked that it does).
pub(crate) fn verified_bytes<B>(request: &Request<B>) -> Bytes {
    request
        .extensions()
        .get::<crate::VerifiedBody>()
        .map(|verified| verified.bytes().clone())
        .unwrap_or_default()
}

/// Keeps the delivery `verified`, stored under `key`, as a dead letter, where the
/// layer keeps them, if anywhere.
pub(crate) async fn keep_failed(config: &Arc<Config>, key: &str, verified: Bytes, failed: Failed) {
    if config.dead_letters().is_none() || verified.is_empty() {
        return;
    }
    let Failed {
        reason,
        status,
        detail,
    } = failed;
    let letter = DeadLetter::keyed(key, verified, reason, status, &detail);
    dead_letter::keep(Arc::clone(config), letter).await;
}

/// Keeps the delivery as a dead letter if it is dropped while armed: a panic
/// unwinding through the run, or, on the transactional store (whose run is not a task
/// of its own), the request future dropped while the handler runs (the client hung
/// up, a timeout outside the layer). It borrows what it would keep, so a run that ends
/// normally pays no allocation for it.
pub(crate) struct KeepIfDropped<'a> {
    armed: Option<(&'a Arc<Config>, &'a str, &'a Bytes)>,
}

impl<'a> KeepIfDropped<'a> {
    pub(crate) fn new(config: &'a Arc<Config>, key: &'a str, verified: &'a Bytes) -> Self {
        let armed = (config.dead_letters().is_some() && !verified.is_empty())
            .then_some((config, key, verified));
        Self { armed }
    }

    /// The run went on to an answer: it keeps its own letter if it must.
    pub(crate) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for KeepIfDropped<'_> {
    fn drop(&mut self) {
        let Some((config, key, verified)) = self.armed.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (reason, detail) = if std::thread::panicking() {
            (Reason::HandlerFailed, "the handler panicked")
        } else {
            (
                Reason::Dropped,
                "the request was dropped before it was answered",
            )
        };
        let letter = DeadLetter::keyed(key, verified.clone(), reason, 500, detail);
        runtime.spawn(dead_letter::keep(Arc::clone(config), letter));
    }
}
