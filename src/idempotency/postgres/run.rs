//! The deduplicated path on a transactional store: one database transaction per
//! delivery holds the claim, the handler's writes and the recorded answer.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::{timeout, Instant};
use tower_service::Service;

use super::{
    failure::{CommitError, Failure},
    store::{Bounds, Claim as PostgresClaim, Recorded},
    transaction::OpenTransaction,
    DeliveryTransaction, PostgresStore,
};
use crate::idempotency::{
    answer::{
        bounded, handle, keep_failed, marked, report, verified_bytes, Ended, Failed, KeepIfDropped,
    },
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
    let unavailable = |failure: Failure<'_>, operation| {
        failure.report(operation, &dedupe_key);
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
    // Dropped at the timeout, a claim in flight closes its connection.
    let started = Instant::now();
    let claimed = timeout(
        config.store_timeout + config.wait,
        store.claim(&key, &fingerprint, bounds),
    )
    .await;
    metrics::store_call("postgres", "claim", started.elapsed());
    let mut open = match claimed {
        Ok(Ok(PostgresClaim::Claimed(open))) => open,
        Ok(Ok(PostgresClaim::Recorded(recorded))) => {
            let (response, reported) = recorded_answer(recorded, &fingerprint);
            return Ok(answer(response, reported));
        }
        Ok(Ok(PostgresClaim::StillRunning(error))) => {
            Failure::LockTimeout(&error).report("claim", &dedupe_key);
            let busy = outcome::still_in_progress(STILL_RUNNING_RETRY);
            return Ok(answer(busy, IdempotencyOutcome::StillInProgress));
        }
        Ok(Ok(PostgresClaim::Unanswered)) => {
            Failure::Unanswered.report("claim", &dedupe_key);
            let lost = outcome::store_unavailable();
            return Ok(answer(lost, IdempotencyOutcome::TransactionLost));
        }
        Ok(Err(error)) => return Ok(unavailable(Failure::Claim(&error), "claim")),
        Err(_) => return Ok(unavailable(Failure::TimedOut, "claim")),
    };

    trace::claim(&dedupe_key, Some(1));
    metrics::claim(true);
    let verified = verified_bytes(&request);
    let transaction = DeliveryTransaction::new(open);
    request.extensions_mut().insert(transaction.clone());
    request.extensions_mut().insert(Claim {
        dedupe_key: dedupe_key.clone(),
        attempt: 1,
    });
    // A dropped request or a panic drops the transaction, which closes its connection;
    // the run timeout and a cancellation drop the handler's future here, and the
    // transaction is rolled back below.
    let mut in_flight = config.in_flight.enter();
    let dropped = KeepIfDropped::new(&config, key.as_str(), &verified);
    let handled = bounded(handle(inner, request), config.run_timeout, &mut in_flight).await;
    dropped.disarm();
    // The handler may have kept a copy of the transaction and its connection (in a task
    // of its own): waiting for it is bounded too.
    open = match timeout(config.store_timeout, transaction.end()).await {
        Ok(Some(open)) => open,
        Ok(None) | Err(_) => {
            let failed =
                Failed::store("the handler held the delivery's transaction past its answer");
            keep_failed(&config, key.as_str(), verified, failed).await;
            return Ok(unavailable(Failure::HeldByHandler, "end"));
        }
    };
    let released = IdempotencyOutcome::Released { attempt: 1 };
    let (response, reported) = match handled {
        Ended::Done(Ok(Ok(response))) if config.is_final(&response) => (response, None),
        Ended::Done(Ok(Ok(response))) => {
            let failed = Failed::answered(&response);
            (response, Some((released, failed)))
        }
        Ended::Done(Ok(Err(()))) => (
            outcome::body_failed(),
            Some((released, Failed::body_failed())),
        ),
        Ended::Done(Err(error)) => {
            let lost = !release(open, &config, &dedupe_key).await;
            report(
                if lost {
                    IdempotencyOutcome::TransactionLost
                } else {
                    released
                },
                &dedupe_key,
            );
            keep_failed(&config, key.as_str(), verified, Failed::service_error()).await;
            return Err(error);
        }
        Ended::TimedOut => (
            outcome::store_unavailable(),
            Some((
                IdempotencyOutcome::TimedOut { attempt: 1 },
                Failed::timed_out(),
            )),
        ),
        Ended::Cancelled => (
            outcome::store_unavailable(),
            Some((
                IdempotencyOutcome::Cancelled { attempt: 1 },
                Failed::cancelled(),
            )),
        ),
    };
    if let Some((reported, failed)) = reported {
        let kept = release(open, &config, &dedupe_key).await;
        keep_failed(&config, key.as_str(), verified, failed).await;
        if !kept {
            let lost = outcome::store_unavailable();
            return Ok(answer(lost, IdempotencyOutcome::TransactionLost));
        }
        return Ok(answer(response, reported));
    }
    let stored = config.stored(&response);
    let started = Instant::now();
    let committed = timeout(
        config.store_timeout,
        store.record_and_commit(&mut open, &key, &stored),
    )
    .await;
    metrics::store_call("postgres", "commit", started.elapsed());
    match committed {
        Ok(Ok(())) => Ok(answer(response, IdempotencyOutcome::Ran { attempt: 1 })),
        // Not committed, so nothing of the delivery's transaction happened: never a 2xx.
        // Kept too: a letter whose commit went through after all counts as resolved,
        // since its record is committed.
        Ok(Err(error)) => {
            Failure::Commit(&error).report("commit", &dedupe_key);
            rollback(open, &config).await;
            let failed = match error {
                CommitError::Ended => Failed::ended_by_handler(),
                _ => Failed::store(&format!("the commit failed: {error}")),
            };
            keep_failed(&config, key.as_str(), verified, failed).await;
            let reported = match error {
                // What the handler committed itself is out of reach, and duplicates
                // are refused until an operator decides.
                CommitError::Ended => IdempotencyOutcome::TransactionLost,
                _ => IdempotencyOutcome::StoreUnavailable,
            };
            Ok(answer(outcome::store_unavailable(), reported))
        }
        Err(_) => {
            // Closed first: on a pool of one, the keeping needs its connection.
            drop(open);
            let failed = Failed::store("the commit timed out");
            keep_failed(&config, key.as_str(), verified, failed).await;
            Ok(unavailable(Failure::TimedOut, "commit"))
        }
    }
}

/// Rolls back, within the store timeout; past it the connection is closed, which the
/// server takes as a rollback. `false` when the handler had ended the transaction
/// itself, which is reported.
async fn release(mut open: OpenTransaction, config: &Config, dedupe_key: &str) -> bool {
    match timeout(config.store_timeout, PostgresStore::release(&mut open)).await {
        Ok(Ok(true)) | Ok(Err(_)) | Err(_) => true,
        Ok(Ok(false)) => {
            Failure::Commit(&CommitError::Ended).report("rollback", dedupe_key);
            false
        }
    }
}

/// Rolls back, within the store timeout; past it the connection is closed.
async fn rollback(mut open: OpenTransaction, config: &Config) {
    let _ = timeout(config.store_timeout, PostgresStore::rollback(&mut open)).await;
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
