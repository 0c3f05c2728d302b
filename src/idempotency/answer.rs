//! What both deduplicated paths, leased and transactional, do around the handler: call
//! it and collect its answer, then mark and report what the layer did.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::outcome::IdempotencyOutcome;
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
