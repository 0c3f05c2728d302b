//! Exactly-once credit: run each side-effecting webhook once, replay its answer to
//! every duplicate (feature `idempotency`).
//!
//! Aghanim retries a delivery until it gets a 2xx, studios run several instances behind
//! a load balancer, and a captured delivery stays replayable for the whole signature
//! window. [`IdempotencyLayer`] sits **inside** the signature layer, keys each verified
//! delivery by `game_id` + sandbox/live + `event_type` + (`idempotency_key`, else
//! `event_id`), and claims that key in an [`IdempotencyStore`] before the handler runs:
//!
//! | situation | answer |
//! |---|---|
//! | first delivery | claim, run the handler (the claim's lease renewed until its answer is recorded), record its final answer, return it |
//! | duplicate after completion, its `event_data` the same JSON value however it is written | the recorded answer with `idempotent-replayed: true`; the handler is not called |
//! | duplicate while the original runs, on any instance sharing the store | waits up to 5 s: replays if the original completes, runs if it was released, else 503 with `retry-after`. Never a 2xx before the original's effect is done, never a 4xx |
//! | the handler answers 2xx, or a refusal that is a business decision (400 `declined`; more with [`final_refusal`](IdempotencyLayer::final_refusal) and [`final_status`](IdempotencyLayer::final_status)) | recorded and replayed, so a retry cannot turn a decline into a credit |
//! | the handler answers anything else (400 `validation_error` or `unknown_event_type`, 404, 408, 429, 5xx), fails, panics, or its answer's body fails | the claim is released and the answer returned: the next delivery runs with whatever code is deployed then |
//! | the request future is dropped once the claim is taken (the client hung up, a timeout outside fired) | the run goes on in a task of its own: its answer is recorded (or its claim released) as if the client had waited, and the retry gets the replay or waits for it. The handler never runs twice |
//! | a claim call fails or times out | 503 with `retry-after`; the claim it may have left is released in the background (fenced by the owner token, so harmless if there was none) |
//! | the process holding a claim dies (SIGKILL, a crash) | the claim blocks its key until its lease (15 s) runs out, then the next delivery runs (attempt + 1) |
//! | the handler runs past the [run timeout](IdempotencyLayer::run_timeout) (20 s) | its future is dropped, then its claim released, and 503 answered ([`IdempotencyOutcome::TimedOut`]) |
//! | the server shuts down past its drain deadline ([`IdempotencyLayer::cancel_in_flight`]) | each run still going is cancelled (its future dropped), then its claim released, and 503 answered: the next delivery runs elsewhere at once, never beside a handler still writing |
//! | recording the answer fails | tried again within half a lease, then left to the lease ([`IdempotencyOutcome::NotRecorded`]) |
//! | a stale owner (its lease passed and another delivery took over) finishes | its record and release change nothing: they compare the owner token ([`IdempotencyOutcome::LeaseLost`]) |
//! | the same key with another payload (the fingerprint of `event_data` as a JSON value) | [`Policy::Deduplicate`] (`item.*`, `coupon.redeemed`): 422 `idempotency_key_reused` if the key is completed or claimed, the handler not called; a released or expired record never refuses a payload. [`Policy::DeduplicateAllowingChanges`] (notifications, e.g. `payment.*` re-sent when amounts change): each distinct payload is claimed on its own, so copies of one change run once |
//! | the store is unreachable or times out | 503 with `retry-after` (fail closed); [`IdempotencyLayer::fail_open`] runs the handler instead |
//! | a type that [passes through](Policy::PassThrough) (`player.verify`, `store.get`, ...), or an event with neither `idempotency_key` nor `event_id` | the handler, every time: there is nothing to recognise a retry by |
//!
//! What happened is in the response extensions as an [`IdempotencyOutcome`].
//!
//! **The worst case for a duplicate** is the wait plus the lease: a delivery whose
//! owner died just after claiming waits 5 s and gets 503, and the retry after the
//! 15 s lease runs. Aghanim does not publish its request timeout or its retry
//! intervals; every answer of the layer to a duplicate leaves within about the wait
//! plus two store timeouts (9 s by default), which we infer is under its timeout, as
//! webhook senders commonly allow 10 s or more (an inference, not a documented fact).
//!
//! **Payload fingerprint.** Two payloads are the same when their `event_data` is the
//! same JSON value: whitespace and member order do not count, a repeated member name
//! keeps its last value, escapes are decoded (`"\u0041"` is `"A"`), and numbers are
//! compared as exact decimals by their digits, never through a float (`1`, `1.0` and
//! `10e-1` are one number, `100` and `1e2` are one number, while `9007199254740993` and
//! `9007199254740992` stay apart).
//!
//! **Runtime.** The claimed run is a task spawned on the current Tokio runtime, and
//! every store call is timed by Tokio: a deduplicated delivery outside a runtime is
//! answered 500 `internal_error` without touching the store or the handler.
//!
//! # Two tiers of guarantee
//!
//! 1. **The layer**: at most one run per key at a time across every instance sharing
//!    the store, the final answer replayed to later duplicates within the retention
//!    (7 days on the memory and Redis stores), and no duplicate answered 2xx before the
//!    original's effect is done. Records can still be lost (a Redis failover or
//!    eviction, a full memory store, a lease that ran out under a stuck process, a
//!    delivery older than the retention), and then a duplicate runs again.
//! 2. **Your handler**: key its write by the [`Claim`]'s
//!    [`dedupe_key`](Claim::dedupe_key) (or the event's) *in the same transaction as
//!    the effect*, e.g. `INSERT INTO credited(key) ... ON CONFLICT DO NOTHING` and the
//!    balance update together, or one Redis script that sets a marker and credits.
//!    With that, the effect is exactly once even when the layer's records are lost.
//!
//! # Stores
//!
//! [`MemoryStore`] (the default, no service to run) keeps records in this process:
//! **it deduplicates within one process only**. `RedisStore` (feature `redis`) keeps
//! them in Redis for every instance; each operation is one atomic script on one key.
//!
//! `PostgresStore` (feature `postgres`, with `IdempotencyLayer::transactional`) merges
//! the two tiers: each delivery runs in one transaction of the game's own database,
//! holding the claim, the handler's writes (through the `DeliveryTransaction` in the
//! request's extensions) and the recorded answer. What differs from the table above: a
//! duplicate waits on the claim's row, not a lease; an answer that is not final, an
//! error, a panic, a dropped request, a killed process or connection roll back the
//! effect with the claim, and the next delivery runs at once; a failed `COMMIT` is a
//! 503, never a 2xx. A handler's nested `begin()` on the delivery's connection is a
//! savepoint; a completed key is kept for good, its answer's bytes freed after the
//! retention ([`PostgresStore::purge_expired`]); the server ends the transaction of an
//! instance frozen while it holds a claim within the run timeout plus the store
//! timeout.
//!
//! With feature `metrics`, every decision is also counted
//! (`aghanim_webhook_idempotency_decisions_total`) and every store call timed.
//!
//! # Example
//!
//! ```
//! use aghanim_webhook::{
//!     dispatch::Dispatch,
//!     events::{Ack, Event, EventType, ItemChange},
//!     idempotency::IdempotencyLayer,
//!     sign_headers, AghanimSignatureLayer,
//! };
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let credits = Arc::new(AtomicU32::new(0));
//! let dispatch = Dispatch::with_state(credits.clone()).on(
//!     EventType::ItemAdd,
//!     |credits: Arc<AtomicU32>, _event: Event<ItemChange>| async move {
//!         credits.fetch_add(1, Ordering::SeqCst);
//!         Ack
//!     },
//! );
//! let webhook = ServiceBuilder::new()
//!     .layer(AghanimSignatureLayer::new("secret"))
//!     .layer(IdempotencyLayer::in_memory())
//!     .service(dispatch);
//!
//! let body = r#"{"event_id":"whevt_1","event_type":"item.add","idempotency_key":"ord_1",
//!                "event_data":{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}}"#;
//! for delivery in 0..3 {
//!     let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
//!     sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
//!     let response = webhook.clone().oneshot(request).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::OK);
//!     assert_eq!(response.headers().contains_key("idempotent-replayed"), delivery > 0);
//! }
//! assert_eq!(credits.load(Ordering::SeqCst), 1);
//! # }
//! ```

#![doc = include_str!("../../docs/idempotency.md")]
//!
#![cfg_attr(
    feature = "postgres",
    doc = "[`PostgresStore::purge_expired`]: PostgresStore::purge_expired"
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "[`PostgresStore::purge_expired`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.PostgresStore.html#method.purge_expired"
)]

mod answer;
pub(crate) mod config;
mod fingerprint;
mod future;
mod in_flight;
pub(crate) mod key;
mod layer;
mod leased;
mod metrics;
mod outcome;
mod policy;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod record;
mod service;
mod store;
mod trace;
#[cfg(test)]
mod vectors;

pub use future::ResponseFuture;
pub use key::{Claim, RecordKey};
pub use layer::{
    IdempotencyLayer, DEFAULT_LEASE, DEFAULT_MAX_STORED_BODY, DEFAULT_RETENTION,
    DEFAULT_RUN_TIMEOUT, DEFAULT_STORE_TIMEOUT, DEFAULT_WAIT,
};
pub use outcome::{IdempotencyOutcome, REPLAYED_HEADER};
pub use policy::Policy;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{
    DeliveryConnection, DeliverySavepoint, DeliveryTransaction, PostgresStore,
    DEFAULT_POSTGRES_TABLE,
};
#[cfg(any(feature = "redis", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "postgres"))))]
pub use record::{Record, RecordState, StuckClaim};
pub use service::Idempotency;
pub use store::{
    ClaimOutcome, ClaimRequest, IdempotencyStore, MemoryStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse, DEFAULT_MEMORY_CAPACITY,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::{RedisStore, DEFAULT_REDIS_PREFIX};
