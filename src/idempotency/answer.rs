//! What both deduplicated paths, leased and transactional, do around the handler: call
//! it and collect its answer, then mark and report what the layer did.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::{in_flight::Entry, outcome::IdempotencyOutcome};
use crate::ready_call::ReadyCall;

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
