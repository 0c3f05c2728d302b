//! The deduplicated path: claim (or wait, or replay), run the handler under a renewed
//! lease, record its final answer.

use std::{future::poll_fn, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower_service::Service;

use super::{
    key::{Claim, Delivery},
    layer::Config,
    outcome::{self, IdempotencyOutcome},
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, Policy, StoreError, StoreFuture,
    StoredResponse,
};

/// The first pause of a waiting duplicate; it doubles up to [`LONGEST_PAUSE`]. A store
/// that can tell when a record changes wakes the waiter sooner.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const LONGEST_PAUSE: Duration = Duration::from_millis(400);

pub(crate) async fn deduplicated<S, ReqBody, ResBody>(
    mut inner: S,
    mut request: Request<ReqBody>,
    config: Arc<Config>,
    delivery: Delivery,
    policy: Policy,
) -> Result<Response<Bytes>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let key = delivery.store_key.as_str();
    let dedupe_key = delivery.dedupe_key;
    let answer = |response, reported| marked(response, reported, &dedupe_key);
    let owner = OwnerToken::random();
    let claim = ClaimRequest::new(
        owner.clone(),
        delivery.fingerprint,
        config.lease,
        config.retention,
    );
    let deadline = Instant::now() + config.wait;
    let mut pause = FIRST_PAUSE;
    let attempt = loop {
        let outcome = match claim_once_more_on_error(&config, key, &claim).await {
            Ok(outcome) => outcome,
            Err(_) if config.fail_open => {
                let response = run_unclaimed(inner, request).await?;
                return Ok(answer(response, IdempotencyOutcome::FailedOpen));
            }
            Err(_) => {
                return Ok(answer(
                    outcome::store_unavailable(),
                    IdempotencyOutcome::StoreUnavailable,
                ))
            }
        };
        match outcome {
            ClaimOutcome::Claimed { attempt } => break attempt,
            ClaimOutcome::Completed(stored) => {
                return Ok(answer(
                    outcome::replay(stored),
                    IdempotencyOutcome::Replayed,
                ))
            }
            ClaimOutcome::Mismatch if policy == Policy::DeduplicateAllowingChanges => {
                let response = run_unclaimed(inner, request).await?;
                return Ok(answer(response, IdempotencyOutcome::PassedThrough));
            }
            ClaimOutcome::Mismatch => {
                return Ok(answer(outcome::key_reused(), IdempotencyOutcome::KeyReused))
            }
            ClaimOutcome::InProgress { lease_remaining } => {
                let now = Instant::now();
                if pause == FIRST_PAUSE {
                    crate::trace::claim(&dedupe_key, None);
                }
                if now >= deadline {
                    let busy = outcome::still_in_progress(lease_remaining);
                    return Ok(answer(busy, IdempotencyOutcome::StillInProgress));
                }
                config.store.changed(key, pause.min(deadline - now)).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    };

    crate::trace::claim(&dedupe_key, Some(attempt));
    let mut guard = ClaimGuard {
        store: Arc::clone(&config.store),
        key: key.to_owned(),
        owner,
        held: true,
    };
    request.extensions_mut().insert(Claim {
        dedupe_key: dedupe_key.clone(),
        attempt,
    });
    if let Err(error) = poll_fn(|cx| inner.poll_ready(cx)).await {
        guard.release(&config).await;
        return Err(error);
    }
    let answered = run_renewing(inner.call(request), &config, &guard).await;
    let response = match answered {
        Ok(response) => response,
        Err(error) => {
            guard.release(&config).await;
            return Err(error);
        }
    };
    let Ok(response) = collect(response).await else {
        guard.release(&config).await;
        let failed = outcome::body_failed();
        return Ok(answer(failed, IdempotencyOutcome::Released { attempt }));
    };
    if !is_final(response.status()) {
        guard.release(&config).await;
        return Ok(answer(response, IdempotencyOutcome::Released { attempt }));
    }

    let body = response.body();
    let stored = StoredResponse {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: if body.len() <= config.max_stored_body {
            body.clone()
        } else {
            Bytes::new()
        },
    };
    let recorded = timed(
        &config,
        config
            .store
            .complete(key, &guard.owner, &stored, config.retention),
    )
    .await;
    // Whatever the store says, the effect happened: the handler's answer goes back.
    // A claim that could not be completed expires with its lease.
    guard.held = false;
    let reported = match recorded {
        Ok(true) => IdempotencyOutcome::Ran { attempt },
        Ok(false) => IdempotencyOutcome::LeaseLost { attempt },
        Err(_) => IdempotencyOutcome::NotRecorded { attempt },
    };
    Ok(answer(response, reported))
}

/// A claim whose reply was lost may have been applied: asking again with the same
/// owner token answers `Claimed` for it, so one retry is safe.
async fn claim_once_more_on_error(
    config: &Config,
    key: &str,
    claim: &ClaimRequest,
) -> Result<ClaimOutcome, StoreError> {
    match timed(config, config.store.claim(key, claim)).await {
        Ok(outcome) => Ok(outcome),
        Err(_) => timed(config, config.store.claim(key, claim)).await,
    }
}

async fn timed<T>(config: &Config, call: StoreFuture<'_, T>) -> Result<T, StoreError> {
    tokio::time::timeout(config.store_timeout, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::new("timed out")))
}

/// Runs the handler while renewing the lease every third of it; stops renewing once
/// the claim is lost.
async fn run_renewing<F: std::future::Future>(
    call: F,
    config: &Config,
    guard: &ClaimGuard,
) -> F::Output {
    let mut call = std::pin::pin!(call);
    let every = config.lease / 3;
    loop {
        // The handler first: one that answers at once never arms the renewal timer.
        tokio::select! {
            biased;
            answered = &mut call => return answered,
            () = tokio::time::sleep(every) => {
                let renewal = config.store.renew(&guard.key, &guard.owner, config.lease);
                if let Ok(false) = timed(config, renewal).await {
                    return call.await;
                }
            }
        }
    }
}

/// Calls the handler outside any claim.
async fn run_unclaimed<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<Bytes>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    poll_fn(|cx| inner.poll_ready(cx)).await?;
    let response = inner.call(request).await?;
    Ok(collect(response)
        .await
        .unwrap_or_else(|()| outcome::body_failed()))
}

async fn collect<B: Body<Data = Bytes>>(response: Response<B>) -> Result<Response<Bytes>, ()> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(drop)?.to_bytes();
    Ok(Response::from_parts(parts, bytes))
}

/// A final answer is recorded and replayed: success, and refusals such as 400
/// `declined`, which a retry must not turn into a credit. Server errors, 408 and 429
/// say "try again": the claim is released.
fn is_final(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

/// Reports what the layer did, in the response extensions and through `tracing`.
fn marked(
    mut response: Response<Bytes>,
    reported: IdempotencyOutcome,
    dedupe_key: &str,
) -> Response<Bytes> {
    crate::trace::idempotency(reported, dedupe_key);
    response.extensions_mut().insert(reported);
    response
}

/// Releases the claim if the request ends without recording an answer, including when
/// its future is dropped (the client went away, a timeout outside fired, the handler
/// panicked): in the background on the current Tokio runtime, or, outside one, by
/// letting the lease run out.
struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    owner: OwnerToken,
    held: bool,
}

impl ClaimGuard {
    async fn release(&mut self, config: &Config) {
        self.held = false;
        let _ = timed(config, self.store.release(&self.key, &self.owner)).await;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            let key = std::mem::take(&mut self.key);
            let owner = self.owner.clone();
            runtime.spawn(async move {
                let _ = store.release(&key, &owner).await;
            });
        }
    }
}
