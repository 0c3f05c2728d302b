//! The deduplicated path on a transactional store: one database transaction per
//! delivery holds the claim, the handler's writes and the recorded answer.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::{timeout, Instant};
use tower_service::Service;

use super::{
    store::{Bounds, Claim as PostgresClaim, OpenTransaction, Recorded},
    DeliveryTransaction, PostgresStore,
};
use crate::idempotency::{
    answer::{bounded, handle, marked, report, Ended},
    config::Config,
    key::{Claim, Delivery, HexDigest},
    metrics,
    outcome::{self, IdempotencyOutcome},
    trace,
};

/// The `retry-after` of a duplicate whose original still runs: it holds a transaction,
/// not a lease, so there is no deadline to count down from.
const STILL_RUNNING_RETRY: Duration = Duration::from_secs(1);

pub(crate) async fn in_transaction<S, ReqBody, ResBody>(
    store: PostgresStore,
    inner: S,
    mut request: Request<ReqBody>,
    config: Arc<Config>,
    delivery: Delivery,
) -> Result<Response<Bytes>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let Delivery {
        store_key: key,
        dedupe_key,
        fingerprint,
    } = delivery;
    let answer = |response, reported| marked(response, reported, &dedupe_key);
    let unavailable = || {
        let response = outcome::store_unavailable();
        marked(response, IdempotencyOutcome::StoreUnavailable, &dedupe_key)
    };

    // Copies running in this process wait here, without a connection; then a
    // completed delivery's answer, or the claim, which may wait for a copy running
    // elsewhere: both within `wait`.
    let waited = Instant::now();
    let Some(_gate) = store.enter(key.as_str(), config.wait).await else {
        let busy = outcome::still_in_progress(STILL_RUNNING_RETRY);
        return Ok(answer(busy, IdempotencyOutcome::StillInProgress));
    };
    let bounds = Bounds {
        wait: config.wait.saturating_sub(waited.elapsed()),
        run: config.run_timeout + config.store_timeout,
    };
    let claiming = store.claim(&key, &fingerprint, bounds);
    let started = Instant::now();
    let claimed = timeout(config.store_timeout + config.wait, claiming).await;
    metrics::store_call("postgres", "claim", started.elapsed());
    let open = match claimed {
        Ok(Ok(PostgresClaim::Claimed(open))) => open,
        Ok(Ok(PostgresClaim::Recorded(recorded))) => {
            let (response, reported) = recorded_answer(recorded, &fingerprint);
            return Ok(answer(response, reported));
        }
        Ok(Ok(PostgresClaim::StillRunning)) => {
            let busy = outcome::still_in_progress(STILL_RUNNING_RETRY);
            return Ok(answer(busy, IdempotencyOutcome::StillInProgress));
        }
        Ok(Err(_)) | Err(_) => return Ok(unavailable()),
    };

    trace::claim(&dedupe_key, Some(1));
    metrics::claim(true);
    let transaction = DeliveryTransaction::new(open);
    request.extensions_mut().insert(transaction.clone());
    request.extensions_mut().insert(Claim {
        dedupe_key: dedupe_key.clone(),
        attempt: 1,
    });
    // A dropped request or a panic drops the transaction, and sqlx rolls back the
    // claim with the handler's writes; the run timeout and a cancellation drop the
    // handler's future here, and the transaction is rolled back below.
    let mut in_flight = config.in_flight.enter();
    let handled = bounded(handle(inner, request), config.run_timeout, &mut in_flight).await;
    // The handler may have kept a copy of the transaction and its connection (in a task
    // of its own): waiting for it is bounded too.
    let Ok(Some(open)) = timeout(config.store_timeout, transaction.end()).await else {
        return Ok(unavailable());
    };
    let released = IdempotencyOutcome::Released { attempt: 1 };
    let (response, reported) = match handled {
        Ended::Done(Ok(Ok(response))) if config.is_final(&response) => (response, None),
        Ended::Done(Ok(answered)) => {
            let response = answered.unwrap_or_else(|()| outcome::body_failed());
            (response, Some(released))
        }
        Ended::Done(Err(error)) => {
            rollback(open, &config).await;
            report(released, &dedupe_key);
            return Err(error);
        }
        Ended::TimedOut => (
            outcome::store_unavailable(),
            Some(IdempotencyOutcome::TimedOut { attempt: 1 }),
        ),
        Ended::Cancelled => (
            outcome::store_unavailable(),
            Some(IdempotencyOutcome::Cancelled { attempt: 1 }),
        ),
    };
    if let Some(reported) = reported {
        rollback(open, &config).await;
        return Ok(answer(response, reported));
    }
    let stored = config.stored(&response);
    let committing = open.record_and_commit(&store, &key, &stored);
    let started = Instant::now();
    let committed = timeout(config.store_timeout, committing).await;
    metrics::store_call("postgres", "commit", started.elapsed());
    match committed {
        Ok(Ok(true)) => Ok(answer(response, IdempotencyOutcome::Ran { attempt: 1 })),
        // The handler ended the transaction itself: what it committed is out of reach,
        // and duplicates are refused until an operator decides.
        Ok(Ok(false)) => {
            let _ = timeout(config.store_timeout, store.mark_unanswered(&key)).await;
            let lost = outcome::store_unavailable();
            Ok(answer(lost, IdempotencyOutcome::TransactionLost))
        }
        // Not committed, so nothing happened: never a 2xx.
        Ok(Err(_)) | Err(_) => Ok(unavailable()),
    }
}

/// Rolls back, within the store timeout; past it the transaction is dropped, which
/// rolls it back as well.
async fn rollback(open: OpenTransaction, config: &Config) {
    let _ = timeout(config.store_timeout, open.rollback()).await;
}

/// A committed answer: replayed to the same payload, 422 to another.
fn recorded_answer(
    recorded: Recorded,
    fingerprint: &HexDigest,
) -> (Response<Bytes>, IdempotencyOutcome) {
    if recorded.fingerprint == fingerprint.as_str() {
        (
            outcome::replay(recorded.response),
            IdempotencyOutcome::Replayed,
        )
    } else {
        (outcome::key_reused(), IdempotencyOutcome::KeyReused)
    }
}
