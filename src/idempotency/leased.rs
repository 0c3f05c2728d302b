//! The deduplicated path: claim (or wait, or replay); then, in a task of its own, run
//! the handler under a renewed lease and record its final answer.

use std::{panic, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::{runtime::Handle, time::Instant};
use tower_service::Service;

use super::{
    answer::{
        bounded, handle, keep_failed, marked, report, verified_bytes, Ended, Failed, KeepIfDropped,
    },
    config::Config,
    in_flight::Entry,
    key::{Claim, Delivery},
    outcome::{self, IdempotencyOutcome},
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse,
};

/// The first pause of a waiting duplicate; it doubles up to [`LONGEST_PAUSE`]. A store
/// that can tell when a record changes wakes the waiter sooner.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const LONGEST_PAUSE: Duration = Duration::from_millis(400);

pub(crate) async fn deduplicated<S, ReqBody, ResBody>(
    runtime: Handle,
    store: Arc<dyn IdempotencyStore>,
    inner: S,
    mut request: Request<ReqBody>,
    config: Arc<Config>,
    delivery: Delivery,
) -> Result<Response<Bytes>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    let dedupe_key = delivery.dedupe_key;
    let verified = verified_bytes(&request);
    let owner = OwnerToken::random();
    let claim = ClaimRequest::new(
        owner.clone(),
        delivery.fingerprint.as_str(),
        config.lease,
        config.retention,
    );
    // Armed while a claim call is out: a reply that was lost or timed out, or a request
    // dropped mid-call, may leave a claim behind, which it releases in the background.
    let mut guard = ClaimGuard {
        store,
        key: delivery.store_key.as_str().to_owned(),
        owner,
        held: false,
    };
    let deadline = Instant::now() + config.wait;
    let mut pause = FIRST_PAUSE;
    let attempt = loop {
        guard.held = true;
        let Ok(outcome) =
            claim_once_more_on_error(&config, &*guard.store, &guard.key, &claim).await
        else {
            drop(guard);
            if config.fail_open {
                let response = run_unclaimed(inner, request).await?;
                return Ok(marked(
                    response,
                    IdempotencyOutcome::FailedOpen,
                    &dedupe_key,
                ));
            }
            let unavailable = outcome::store_unavailable();
            let reported = IdempotencyOutcome::StoreUnavailable;
            return Ok(marked(unavailable, reported, &dedupe_key));
        };
        guard.held = matches!(outcome, ClaimOutcome::Claimed { .. });
        let (response, reported) = match outcome {
            ClaimOutcome::Claimed { attempt } => break attempt,
            ClaimOutcome::Completed(stored) => {
                (outcome::replay(stored), IdempotencyOutcome::Replayed)
            }
            ClaimOutcome::Mismatch => (outcome::key_reused(), IdempotencyOutcome::KeyReused),
            ClaimOutcome::InProgress { lease_remaining } => {
                let now = Instant::now();
                if pause == FIRST_PAUSE {
                    super::trace::claim(&dedupe_key, None);
                    super::metrics::claim(false);
                }
                if now < deadline {
                    guard
                        .store
                        .changed(&guard.key, pause.min(deadline - now))
                        .await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    continue;
                }
                let busy = outcome::still_in_progress(lease_remaining);
                (busy, IdempotencyOutcome::StillInProgress)
            }
        };
        return Ok(marked(response, reported, &dedupe_key));
    };

    super::trace::claim(&dedupe_key, Some(attempt));
    super::metrics::claim(true);
    request.extensions_mut().insert(Claim {
        dedupe_key: dedupe_key.clone(),
        attempt,
    });
    let in_flight = config.in_flight.enter();
    let claimed = Claimed {
        config,
        guard,
        attempt,
        dedupe_key,
        in_flight,
        verified,
    };
    // Detached from the request: a client that hangs up or a timeout outside drops the
    // request future, not the run, so a handler that has started always has its
    // outcome recorded (or its claim released) and is never run twice.
    match runtime.spawn(claimed.run(inner, request)).await {
        Ok(answered) => answered,
        Err(failed) => match failed.try_into_panic() {
            // The claim was released, and the delivery kept, as the panic unwound; the
            // caller sees the panic, as it would without the layer.
            Ok(payload) => panic::resume_unwind(payload),
            // The runtime is shutting down: nothing was recorded.
            Err(_) => Ok(outcome::store_unavailable()),
        },
    }
}

/// A claim taken, and what its run needs.
struct Claimed {
    config: Arc<Config>,
    guard: ClaimGuard,
    attempt: u64,
    dedupe_key: String,
    /// Lists the run among those in progress until it ends, and tells it when the runs
    /// are cancelled.
    in_flight: Entry,
    /// The delivery, kept if it is not applied.
    verified: Bytes,
}

impl Claimed {
    /// Waits for the handler's readiness, calls it and collects its answer, renewing the
    /// lease all along, for at most the run timeout and until the runs are cancelled;
    /// then records a final answer or releases the claim.
    async fn run<S, ReqBody, ResBody>(
        mut self,
        inner: S,
        request: Request<ReqBody>,
    ) -> Result<Response<Bytes>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body<Data = Bytes>,
    {
        let config = Arc::clone(&self.config);
        let attempt = self.attempt;
        let dropped = KeepIfDropped::new(&config, &self.guard.key, &self.verified);
        let handled = renewing(handle(inner, request), &config, &self.guard);
        // The handler's future is dropped inside `bounded`: a claim given up below can
        // never be run elsewhere while this handler still writes.
        let handled = bounded(handled, config.run_timeout, &mut self.in_flight).await;
        dropped.disarm();
        let response = match handled {
            Ended::Done(Ok(Ok(response))) if config.is_final(&response) => response,
            Ended::Done(Ok(Ok(response))) => {
                let released = IdempotencyOutcome::Released { attempt };
                let failed = Failed::answered(&response);
                return Ok(self.release(response, released, failed).await);
            }
            Ended::Done(Ok(Err(()))) => {
                let failed = outcome::body_failed();
                let released = IdempotencyOutcome::Released { attempt };
                return Ok(self.release(failed, released, Failed::body_failed()).await);
            }
            Ended::Done(Err(error)) => {
                self.guard.release(&config).await;
                report(IdempotencyOutcome::Released { attempt }, &self.dedupe_key);
                let verified = std::mem::take(&mut self.verified);
                keep_failed(&config, &self.guard.key, verified, Failed::service_error()).await;
                return Err(error);
            }
            Ended::TimedOut => {
                let busy = outcome::store_unavailable();
                let timed_out = IdempotencyOutcome::TimedOut { attempt };
                return Ok(self.release(busy, timed_out, Failed::timed_out()).await);
            }
            Ended::Cancelled => {
                let busy = outcome::store_unavailable();
                let cancelled = IdempotencyOutcome::Cancelled { attempt };
                return Ok(self.release(busy, cancelled, Failed::cancelled()).await);
            }
        };

        let stored = config.stored(&response);
        let recorded = self.complete(&stored).await;
        // Whatever the store says, the effect happened: the handler's answer goes back.
        // A claim that could not be completed expires with its lease.
        self.guard.held = false;
        let reported = match recorded {
            Ok(true) => IdempotencyOutcome::Ran { attempt },
            Ok(false) => IdempotencyOutcome::LeaseLost { attempt },
            Err(_) => IdempotencyOutcome::NotRecorded { attempt },
        };
        Ok(marked(response, reported, &self.dedupe_key))
    }

    /// Records `stored`, trying again after a failure while half a lease has not passed
    /// since the handler answered: the lease, last renewed at most a third of it ago,
    /// still holds then, so no other delivery can have taken the key over. A reply lost
    /// after the store applied it makes the next try answer `false`, which is reported
    /// as a lost lease although the answer was recorded.
    async fn complete(&self, stored: &StoredResponse) -> Result<bool, StoreError> {
        let (config, guard) = (&*self.config, &self.guard);
        let deadline = Instant::now() + config.lease / 2;
        let mut pause = FIRST_PAUSE;
        loop {
            let recording =
                guard
                    .store
                    .complete(&guard.key, &guard.owner, stored, config.retention);
            let recorded = timed(config, &*guard.store, "complete", recording).await;
            let now = Instant::now();
            if recorded.is_ok() || now + pause >= deadline {
                return recorded;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// Gives the claim up for the next delivery, keeps the delivery as a dead letter,
    /// and answers `response`.
    async fn release(
        mut self,
        response: Response<Bytes>,
        reported: IdempotencyOutcome,
        failed: Failed,
    ) -> Response<Bytes> {
        self.guard.release(&self.config).await;
        keep_failed(&self.config, &self.guard.key, self.verified, failed).await;
        marked(response, reported, &self.dedupe_key)
    }
}

/// A claim whose reply was lost may have been applied: asking again with the same
/// owner token answers `Claimed` for it, so one retry is safe.
async fn claim_once_more_on_error(
    config: &Config,
    store: &dyn IdempotencyStore,
    key: &str,
    claim: &ClaimRequest,
) -> Result<ClaimOutcome, StoreError> {
    match timed(config, store, "claim", store.claim(key, claim)).await {
        Ok(outcome) => Ok(outcome),
        Err(_) => timed(config, store, "claim", store.claim(key, claim)).await,
    }
}

/// Bounds one store call by the store timeout, and measures it.
async fn timed<T>(
    config: &Config,
    store: &dyn IdempotencyStore,
    operation: &'static str,
    call: StoreFuture<'_, T>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let answered = tokio::time::timeout(config.store_timeout, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::new("timed out")));
    super::metrics::store_call(store.kind(), operation, started.elapsed());
    answered
}

/// Runs `work` while the claim's lease is renewed every third of it; once the claim
/// is lost or its lease has run out, `work` goes on unrenewed.
async fn renewing<F: std::future::Future>(
    work: F,
    config: &Config,
    guard: &ClaimGuard,
) -> F::Output {
    let mut work = pin!(work);
    let renewal = keep_renewed(config, &*guard.store, &guard.key, &guard.owner);
    tokio::select! {
        // The work first: a handler that answers at once never arms the renewal timer.
        biased;
        done = &mut work => return done,
        () = renewal => {}
    }
    work.await
}

/// Renews the lease every third of it; a failed renewal is tried again, a few times a
/// lease, until the lease it would have extended has run out. Returns when the claim
/// is lost (another owner took it over) or its lease has run out.
async fn keep_renewed(
    config: &Config,
    store: &dyn IdempotencyStore,
    key: &str,
    owner: &OwnerToken,
) {
    let every = config.lease / 3;
    let mut lease_ends = Instant::now() + config.lease;
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        match timed(
            config,
            store,
            "renew",
            store.renew(key, owner, config.lease),
        )
        .await
        {
            // The store counts the new lease from when it got the call: after `sent`.
            Ok(true) => {
                lease_ends = sent + config.lease;
                next = sent + every;
            }
            Ok(false) => return,
            Err(_) => {
                let now = Instant::now();
                if now >= lease_ends {
                    return;
                }
                next = now + (every / 10).min(lease_ends - now);
            }
        }
    }
}

/// Calls the handler outside any claim.
async fn run_unclaimed<S, ReqBody, ResBody>(
    inner: S,
    request: Request<ReqBody>,
) -> Result<Response<Bytes>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let answered = handle(inner, request).await?;
    Ok(answered.unwrap_or_else(|()| outcome::body_failed()))
}

/// Releases the claim, fenced by the owner token, if it is dropped while `held`: a
/// claim call whose answer never came, a run whose task is dropped (the runtime shuts
/// down) or unwinds from a panic. In the background on the current Tokio runtime; with
/// none left, the lease runs out instead.
struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    owner: OwnerToken,
    held: bool,
}

impl ClaimGuard {
    async fn release(&mut self, config: &Config) {
        self.held = false;
        let release = self.store.release(&self.key, &self.owner);
        let _ = timed(config, &*self.store, "release", release).await;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Ok(runtime) = Handle::try_current() {
            let store = Arc::clone(&self.store);
            let key = std::mem::take(&mut self.key);
            let owner = self.owner.clone();
            runtime.spawn(async move {
                let _ = store.release(&key, &owner).await;
            });
        }
    }
}
