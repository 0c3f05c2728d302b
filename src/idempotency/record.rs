use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// What a store holds under one [`RecordKey`](super::RecordKey), as an operator reads
/// it: [`RedisStore::record`], [`PostgresStore::record`], or `aghanim-webhook records
/// show`.
///
#[cfg_attr(
    feature = "redis",
    doc = "[`RedisStore::record`]: super::RedisStore::record"
)]
#[cfg_attr(
    not(feature = "redis"),
    doc = "[`RedisStore::record`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.RedisStore.html#method.record"
)]
#[cfg_attr(
    feature = "postgres",
    doc = "[`PostgresStore::record`]: super::PostgresStore::record"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`PostgresStore::record`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.PostgresStore.html#method.record"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Where the delivery stands.
    pub state: RecordState,
    /// When it was claimed: on PostgreSQL the claim's transaction's start; on Redis
    /// the latest claim (Redis records written before this field existed do not have
    /// it).
    pub claimed_at: Option<SystemTime>,
    /// When its answer was recorded (Redis only; PostgreSQL records it in the claim's
    /// transaction, at `claimed_at`).
    pub completed_at: Option<SystemTime>,
    /// How many times the key was claimed (Redis; PostgreSQL keeps no count).
    pub attempts: Option<u64>,
}

/// Where a delivery stands in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordState {
    /// The handler's answer is recorded: every duplicate gets it, the handler never
    /// runs again for this key.
    Completed {
        /// The recorded status.
        status: u16,
        /// The `content-type` duplicates get.
        content_type: Option<String>,
        /// The body duplicates get. On PostgreSQL, an acknowledgement
        /// (`{"status":"ok"}`) is kept as the row's status alone, and a 2xx answer
        /// purged past the retention is replayed as that acknowledgement.
        body: Bytes,
    },
    /// A run holds the key: on Redis its lease is renewed while it runs; on
    /// PostgreSQL its transaction is open.
    Running {
        /// How long the lease lasts without a renewal (Redis).
        lease_remaining: Option<Duration>,
    },
    /// A claim whose lease ran out unanswered (Redis): its holder died or was cut off;
    /// the next delivery runs the handler.
    Expired,
    /// A claim let go unanswered (the handler failed, or answered a status that is not
    /// final): the next delivery runs the handler.
    Released,
    /// The claim committed without an answer (PostgreSQL: a handler committed the
    /// delivery's transaction itself): every duplicate is answered 503 until the key
    /// is forgotten.
    Unanswered,
}

/// A claim in progress for longer than asked, from [`RedisStore::stuck`] or
/// [`PostgresStore::stuck`].
///
#[cfg_attr(
    feature = "redis",
    doc = "[`RedisStore::stuck`]: super::RedisStore::stuck"
)]
#[cfg_attr(
    not(feature = "redis"),
    doc = "[`RedisStore::stuck`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.RedisStore.html#method.stuck"
)]
#[cfg_attr(
    feature = "postgres",
    doc = "[`PostgresStore::stuck`]: super::PostgresStore::stuck"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`PostgresStore::stuck`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.PostgresStore.html#method.stuck"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StuckClaim {
    /// The store key, when the store can tell: on PostgreSQL a claim still in its
    /// transaction is not visible to anyone else, only its holder is.
    pub key: Option<String>,
    /// How long ago it was claimed (on PostgreSQL, its transaction began).
    pub age: Option<Duration>,
    /// Who holds it, in words: a lease renewed or run out, or a PostgreSQL session's
    /// process id, state and client.
    pub holder: String,
}
