//! The deduplicated path on a transactional store: one database transaction per
//! delivery holds the claim, the handler's writes and the recorded answer.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::{timeout, Instant};
use tower_service::Service;

use super::{
    store::{Claim as PostgresClaim, Recorded},
    DeliveryTransaction, PostgresStore,
};
use crate::idempotency::{
    answer::{handle, marked, report},
    config::Config,
    key::{Claim, Delivery},
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

    // A completed delivery's answer, or the claim; which may wait for a copy running
    // elsewhere, up to `wait`.
    let claiming = store.claim(&key, &fingerprint, config.wait);
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
    // A dropped request or a panic drops the transaction: its connection closes and the
    // server rolls back the claim with the handler's writes.
    let handled = handle(inner, request).await;
    let Some(open) = transaction.end().await else {
        return Ok(unavailable());
    };
    let response = match handled {
        Ok(Ok(response)) if config.is_final(&response) => response,
        Ok(answered) => {
            open.rollback().await;
            let response = answered.unwrap_or_else(|()| outcome::body_failed());
            return Ok(answer(
                response,
                IdempotencyOutcome::Released { attempt: 1 },
            ));
        }
        Err(error) => {
            open.rollback().await;
            report(IdempotencyOutcome::Released { attempt: 1 }, &dedupe_key);
            return Err(error);
        }
    };
    let stored = config.stored(&response);
    let committing = open.record_and_commit(store.table_name(), &key, &stored);
    let started = Instant::now();
    let committed = timeout(config.store_timeout, committing).await;
    metrics::store_call("postgres", "commit", started.elapsed());
    match committed {
        Ok(Ok(())) => Ok(answer(response, IdempotencyOutcome::Ran { attempt: 1 })),
        // Not committed, so nothing happened: never a 2xx.
        Ok(Err(_)) | Err(_) => Ok(unavailable()),
    }
}

/// A committed answer: replayed to the same payload, 422 to another.
fn recorded_answer(recorded: Recorded, fingerprint: &str) -> (Response<Bytes>, IdempotencyOutcome) {
    if recorded.fingerprint == fingerprint {
        (
            outcome::replay(recorded.response),
            IdempotencyOutcome::Replayed,
        )
    } else {
        (outcome::key_reused(), IdempotencyOutcome::KeyReused)
    }
}
