//! Where the layer keeps its records: the [`IdempotencyStore`] trait and its stores,
//! one file each.

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{MemoryStore, DEFAULT_MEMORY_CAPACITY};
#[cfg(all(test, feature = "redis"))]
pub(crate) use redis::redis_key;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, DEFAULT_REDIS_PREFIX};

use std::{error::Error, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::dead_letter::DeadLetters;

/// The future a store method returns: boxed, so that [`IdempotencyStore`] can be used
/// as a trait object; one allocation beside a store round trip.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where the [`IdempotencyLayer`](super::IdempotencyLayer) keeps its records: claims,
/// completed responses and released claims, one record per key.
///
/// Every method is one atomic step on one key; times (lease deadlines, retention) are
/// measured by the store's own clock, never by the instances'. Ownership is fenced by
/// the [`OwnerToken`]: `renew`, `complete` and `release` change a record only while it
/// is a claim held by that token, so an owner whose lease expired and was taken over
/// can no longer touch the record.
///
/// | state | held fields | left by |
/// |---|---|---|
/// | absent | | `claim` → claimed, attempt 1 |
/// | claimed | owner, attempt, lease deadline, fingerprint | owner's `complete` → completed; owner's `release` → released; anyone's `claim` once the lease has passed → claimed by them, attempt + 1; owner's `renew` moves the deadline |
/// | completed | the [`StoredResponse`], fingerprint, attempt | nothing: it expires with the retention |
/// | released | fingerprint, attempt | `claim` → claimed, attempt + 1 |
///
/// [`MemoryStore`](super::MemoryStore) keeps records in this process; `RedisStore`
/// (feature `redis`) in Redis, shared by every instance. `PostgresStore` (feature
/// `postgres`) is not one of these: it keeps no leased claims but runs the whole
/// delivery in a transaction, through `IdempotencyLayer::transactional`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use aghanim_webhook::idempotency::{ClaimOutcome, ClaimRequest, IdempotencyStore, MemoryStore, OwnerToken};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let owner = OwnerToken::random();
/// let claim = ClaimRequest::new(owner.clone(), "fingerprint", Duration::from_secs(60), Duration::from_secs(3600));
/// let outcome = store.claim("key", &claim).await.unwrap();
/// assert_eq!(outcome, ClaimOutcome::Claimed { attempt: 1 });
///
/// let other = ClaimRequest::new(OwnerToken::random(), "fingerprint", Duration::from_secs(60), Duration::from_secs(3600));
/// assert!(matches!(store.claim("key", &other).await.unwrap(), ClaimOutcome::InProgress { .. }));
/// # }
/// ```
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for `request.owner`, unless it is completed (the stored response) or
    /// claimed by another owner whose lease has not passed (in progress); either with
    /// another fingerprint is a mismatch. A released record, or a claim whose lease has
    /// passed, never refuses a payload: it is claimed with the new fingerprint. Claiming
    /// again with the same owner token while the claim holds answers `Claimed` again,
    /// so a claim whose reply was lost can be retried safely.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome>;

    /// Moves the lease deadline of `owner`'s claim to `lease` from now; `false` when
    /// `owner` no longer holds the claim.
    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        lease: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Records `response` as the key's final answer, kept for `retention`; `false`
    /// (and nothing written) when `owner` no longer holds the claim.
    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Gives up `owner`'s claim, keeping the attempt count, so that the next delivery
    /// runs; `false` when `owner` no longer holds it.
    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool>;

    /// What the store is, for the `store` label of its call durations: `"memory"`,
    /// `"redis"`; `"custom"` unless a store says otherwise.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Where the layer keeps the authentic deliveries that were not applied, beside
    /// the records: the memory and Redis stores keep them; `None` (the default) keeps
    /// none, unless the layer is given a place with
    /// [`IdempotencyLayer::dead_letters`](super::IdempotencyLayer::dead_letters).
    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        None
    }

    /// Waits until the record of `key` may have changed, or `at_most`. The default
    /// sleeps `at_most`, so waiters poll; a store that can tell (the memory store)
    /// wakes them as soon as the claim completes or is released.
    fn changed<'a>(
        &'a self,
        key: &'a str,
        at_most: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = key;
        Box::pin(tokio::time::sleep(at_most))
    }
}

impl<T: IdempotencyStore + ?Sized> IdempotencyStore for Arc<T> {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome> {
        (**self).claim(key, request)
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        (**self).renew(key, owner, lease)
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool> {
        (**self).complete(key, owner, response, retention)
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool> {
        (**self).release(key, owner)
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        (**self).dead_letters()
    }

    fn changed<'a>(
        &'a self,
        key: &'a str,
        at_most: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        (**self).changed(key, at_most)
    }
}

/// What [`IdempotencyStore::claim`] is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Who claims.
    pub owner: OwnerToken,
    /// Fingerprint of the payload; a completed record or a live claim with another one
    /// is a [`ClaimOutcome::Mismatch`].
    pub fingerprint: String,
    /// How long the claim holds without renewal.
    pub lease: Duration,
    /// How long a record is kept at all.
    pub retention: Duration,
}

impl ClaimRequest {
    /// A claim by `owner` for a payload with `fingerprint`.
    pub fn new(
        owner: OwnerToken,
        fingerprint: impl Into<String>,
        lease: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            owner,
            fingerprint: fingerprint.into(),
            lease,
            retention,
        }
    }
}

/// The answer of [`IdempotencyStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimOutcome {
    /// The caller holds the claim; `attempt` counts claims of this key, from 1.
    Claimed {
        /// Which claim of the key this is.
        attempt: u64,
    },
    /// Another owner holds the claim for `lease_remaining` more (at least).
    InProgress {
        /// Until the holder's lease passes.
        lease_remaining: Duration,
    },
    /// The key is done: its final response.
    Completed(StoredResponse),
    /// The key is completed, or claimed under a live lease, with another payload
    /// fingerprint.
    Mismatch,
}

/// A final response as a store keeps it, to replay to duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// The `content-type`, if any.
    pub content_type: Option<String>,
    /// The body; empty when the original was longer than the layer keeps.
    pub body: Bytes,
}

/// Identifies one claim's owner: 128 random bits, fresh for every delivery.
///
/// # Example
///
/// ```
/// use aghanim_webhook::idempotency::OwnerToken;
///
/// assert_ne!(OwnerToken::random(), OwnerToken::random());
/// assert_eq!(OwnerToken::random().as_str().len(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerToken(String);

impl OwnerToken {
    /// A new token, unique to this process and this call.
    ///
    /// The bits come from the standard library's randomly keyed hasher, fed a counter,
    /// the time and the process id: unpredictable enough to tell owners apart, which is
    /// all a token does (it grants nothing).
    pub fn random() -> Self {
        use std::{
            collections::hash_map::RandomState,
            hash::{BuildHasher, Hasher},
            sync::atomic::{AtomicU64, Ordering},
            time::{SystemTime, UNIX_EPOCH},
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let half = |salt: u64| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.write_u64(count);
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.finish()
        };
        Self(format!("{:016x}{:016x}", half(1), half(2)))
    }

    /// The token as text (32 hex digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A store could not answer: unreachable, timed out, or it said something unexpected.
///
/// The layer answers 503 with `retry-after` (fail closed) unless configured to fail
/// open.
///
/// # Example
///
/// ```
/// use aghanim_webhook::idempotency::StoreError;
///
/// let error = StoreError::new("connection refused");
/// assert_eq!(error.to_string(), "idempotency store: connection refused");
/// ```
#[derive(Debug)]
pub struct StoreError {
    source: Box<dyn Error + Send + Sync>,
}

impl StoreError {
    /// An error caused by `source`.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "idempotency store: {}", self.source)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}
