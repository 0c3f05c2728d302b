//! No purchase lost: every authentic delivery that was not applied is kept, listed and
//! replayed (feature `idempotency`).
//!
//! The [`IdempotencyLayer`](crate::idempotency::IdempotencyLayer) makes sure a purchase
//! is never applied twice; this module makes sure one that failed is never applied
//! zero times without anyone knowing. Aghanim documents no retry schedule, no retry
//! horizon and no resend control: once it stops retrying, a delivery that failed lives
//! only here.
//!
//! | what happened to an authentic delivery | kept as |
//! |---|---|
//! | the handler answered 5xx, failed (its service's error) or panicked | [`Reason::HandlerFailed`] |
//! | `Dispatch` refused it: 400 `validation_error`, naming the field | [`Reason::Invalid`] |
//! | no handler for its event type: `Dispatch`'s own answer (400, or 202 with [`accept_unhandled`](crate::dispatch::Dispatch::accept_unhandled)), or its fallback's answer to a type nobody documents | [`Reason::NoHandler`] |
//! | another answer that is not final (404, 409, 429, a 400 that is not `declined`) | [`Reason::NotFinal`] |
//! | the handler ran past the run timeout | [`Reason::TimedOut`] |
//! | cancelled by [`cancel_in_flight`](crate::idempotency::IdempotencyLayer::cancel_in_flight) at a drain | [`Reason::Cancelled`] |
//! | the request dropped while the handler ran (the client hung up; the transactional store rolls it back, the others run it to its end) | [`Reason::Dropped`] |
//! | the transactional store's commit failed or timed out (503) | [`Reason::StoreFailed`] (resolved at once should the commit have gone through) |
//! | refused 403 as stale by the signature layer, when [`keep_stale`](crate::AghanimSignatureLayer::keep_stale) is on | [`Reason::Stale`], with its age |
//!
//! Never kept: a request whose signature did not verify (nothing before the MAC check
//! is stored), a duplicate that was replayed or waited, and a type the layer passes
//! through (`player.verify`, `store.get`, `analytics.*`: reads, with nothing to apply
//! later). A type this crate does not know is deduplicated by its key by default
//! ([`Policy::default_for`](crate::idempotency::Policy::default_for)), so that its letter,
//! replayed once a handler is deployed, is applied once.
//!
//! Each delivery key has **one** [`DeadLetter`], updated on every failed attempt
//! (attempts, last seen, last reason and answer). It is kept in the store the layer
//! already uses ([`DeadLetters`] on [`MemoryStore`](crate::idempotency::MemoryStore),
//! `RedisStore` and `PostgresStore`), and it is **resolved** by the first delivery of
//! its key that succeeds: an Aghanim retry after a fix, or a replay. On PostgreSQL a
//! letter is resolved exactly when its key's record commits, so the two can never
//! disagree; on Redis the record's completion marks it in the same script; in memory
//! under the same lock.
//!
//! # Seen, and replayed
//!
//! `aghanim-webhook records failed` lists the letters not yet resolved, newest first,
//! and `records replay` signs each again with a fresh timestamp and POSTs it to your
//! endpoint, where it passes the same signature check, idempotency layer and handler
//! as Aghanim's own retry: replayed twice, or while Aghanim's retry arrives, it is
//! credited once. [`replay`] does the same through a tower service in process. With
//! feature `metrics`, every letter kept is counted
//! (`aghanim_webhook_dead_letters_kept_total{reason,event_type}`) and
//! `ops/alerts.yml`'s `AghanimPurchaseFailing` fires when purchases keep failing.
//!
//! **Past the retention** (memory and Redis stores: 7 days), a key's record is gone, as
//! for any delivery: a replay of a letter whose record has expired runs the handler,
//! which is right for a letter never applied, and is absorbed by the handler's own keyed
//! write (the idempotency layer's second tier) for one that was. A letter resolved by
//! its key's success stays resolved after the record expires; on PostgreSQL records are
//! kept for good, and a record forgotten by an operator leaves its letter resolved.
//!
//! # Bounds
//!
//! A store keeps at most a stated number of letters ([`DEFAULT_MAX_DEAD_LETTERS`],
//! 10,000), each at most the signature layer's body limit (the verified bytes). When
//! full, a resolved letter makes room (in memory and on PostgreSQL the one seen longest
//! ago; on Redis the first one a sweep of the index finds, 50 letters per keeping, each
//! keeping going on from where the last stopped); when none is found, the new one is
//! **not** kept and counted as not kept (`reason="full"`): the oldest failed deliveries
//! are the ones Aghanim has stopped retrying, while a new one still has its retries. The
//! memory store also bounds the letters' bytes ([`DEFAULT_MAX_DEAD_LETTER_BYTES`],
//! 64 MiB), updates included: a letter whose new attempt's bytes do not fit keeps its
//! own.
//!
//! A stale delivery is kept only when it was signed less than half the idempotency
//! layer's retention ago (see [`keep_stale`](crate::AghanimSignatureLayer::keep_stale)):
//! an older copy of a purchase may have been applied so long ago that its record is
//! gone, and a replay would apply it again. A resolved letter is never replayed by
//! `records replay`, for the same reason.
//!
//! # Example
//!
//! ```
//! use aghanim_webhook::{
//!     dead_letter::{DeadLetters, Filter, Reason},
//!     dispatch::Dispatch,
//!     events::{Ack, ErrorCode, Event, EventType, ItemChange, WebhookError},
//!     idempotency::{IdempotencyLayer, MemoryStore},
//!     sign_headers, AghanimSignatureLayer,
//! };
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let broken = Dispatch::new().on(EventType::ItemAdd, |_: Event<ItemChange>| async {
//!     let locked = WebhookError::new(ErrorCode::Custom("internal".into()), "inventory table is locked");
//!     Err::<Ack, _>(locked.with_status(http::StatusCode::INTERNAL_SERVER_ERROR))
//! });
//! let webhook = ServiceBuilder::new()
//!     .layer(AghanimSignatureLayer::new("secret"))
//!     .layer(IdempotencyLayer::new(store.clone()))
//!     .service(broken);
//!
//! let body = r#"{"event_id":"whevt_1","event_type":"item.add","game_id":"gm_1","idempotency_key":"ord_1",
//!                "event_data":{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}}"#;
//! let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
//! sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
//! assert_eq!(webhook.oneshot(request).await.unwrap().status(), 500);
//!
//! let failed = store.list(&Filter::unresolved()).await.unwrap();
//! assert_eq!(failed.len(), 1);
//! assert_eq!(failed[0].reason, Reason::HandlerFailed);
//! assert_eq!(failed[0].delivery_id, "ord_1");
//! assert_eq!(failed[0].body, body.as_bytes());
//! # }
//! ```

mod keep;
mod letter;
mod memory;
mod metrics;
mod replay;

pub(crate) use keep::{keep, reason_of, Keeper};
pub use letter::{DeadLetter, Filter, Kept, Reason};
pub use memory::{MemoryDeadLetters, DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_DEAD_LETTER_BYTES};
pub use replay::{replay, ReplayError, Replayed};

use std::sync::Arc;

use crate::idempotency::StoreFuture;

/// Where authentic deliveries that were not applied are kept: one [`DeadLetter`] per
/// delivery key, in the store the idempotency layer already uses.
///
/// [`MemoryStore`](crate::idempotency::MemoryStore), `RedisStore` and `PostgresStore`
/// implement it beside their records, and [`MemoryDeadLetters`] alone; a custom
/// [`IdempotencyStore`](crate::idempotency::IdempotencyStore) can offer one through
/// [`IdempotencyStore::dead_letters`](crate::idempotency::IdempotencyStore::dead_letters),
/// or the layer can be given one with
/// [`IdempotencyLayer::dead_letters`](crate::idempotency::IdempotencyLayer::dead_letters).
///
/// # Example
///
/// ```
/// use aghanim_webhook::dead_letter::{DeadLetters, Filter, MemoryDeadLetters};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let letters = MemoryDeadLetters::new();
/// assert!(letters.list(&Filter::unresolved()).await.unwrap().is_empty());
/// # }
/// ```
pub trait DeadLetters: Send + Sync + 'static {
    /// Keeps `letter` under its key: a new letter with one attempt, or the key's letter
    /// updated (attempts + 1, last seen, reason, detail, status and bytes of this
    /// attempt). Its `attempts`, `first_seen`, `last_seen` and `resolved` are the
    /// store's to set and are ignored here.
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept>;

    /// The letters `filter` asks for, the most recently seen first.
    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>>;

    /// The letter of `key` (a store key, 64 hex digits), resolved or not.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>>;

    /// Deletes the letter of `key` and returns it: for an operator who decided it will
    /// never be applied. Nothing else deletes an unresolved letter.
    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>>;
}

/// How many letters in `letters` are not resolved; with feature `metrics`, also sets
/// the gauge `aghanim_webhook_dead_letters_unresolved{event_type}` from them. Each
/// instance's gauge counts the whole store: run it on a schedule (the example server
/// does, every minute), and read the gauge with `max`, not `sum`.
///
/// # Errors
///
/// When the store cannot be read.
///
/// ```
/// use aghanim_webhook::dead_letter::{unresolved, MemoryDeadLetters};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(unresolved(&MemoryDeadLetters::new()).await.unwrap(), 0);
/// # }
/// ```
pub async fn unresolved(
    letters: &dyn DeadLetters,
) -> Result<usize, crate::idempotency::StoreError> {
    let listed = letters.list(&Filter::unresolved()).await?;
    #[cfg(feature = "metrics")]
    metrics::unresolved(&listed);
    Ok(listed.len())
}

impl<T: DeadLetters + ?Sized> DeadLetters for Arc<T> {
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept> {
        (**self).keep(letter)
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>> {
        (**self).list(filter)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        (**self).get(key)
    }

    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        (**self).forget(key)
    }
}
