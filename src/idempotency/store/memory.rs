use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::{
    super::super::dead_letter::{DeadLetter, DeadLetters, Filter, Kept, MemoryDeadLetters},
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse,
};

/// The records a [`MemoryStore`] holds unless configured otherwise.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// Keeps idempotency records in this process's memory: the default store.
///
/// # One process only
///
/// **A `MemoryStore` deduplicates within one process.** Two instances behind a load
/// balancer each have their own, so a retry that lands on the other instance runs
/// again, and a restart forgets every record. Use `RedisStore` (feature `redis`) when
/// more than one process receives the same webhooks.
///
/// It holds at most `capacity` records (100,000 by default). When full, it drops
/// expired records, then the completed or released records closest to expiry; it never
/// drops a claim in progress, and when every record is one it refuses new claims (the
/// layer answers 503, and Aghanim retries). A dropped record means a later duplicate of
/// its key runs the handler again: safe when the handler's own write is idempotent.
///
/// A record with a short answer such as `{"status":"ok"}` costs about 380 bytes, so
/// a full store at the default capacity about 36 MiB of resident memory (measured with
/// `cargo run --release --example memory_store_cost`); a longer answer adds its
/// bytes, up to the layer's `max_stored_body` (64 KiB) each.
///
/// Duplicates waiting in this process are woken as soon as the claim they wait for
/// completes or is released, without polling. Time is Tokio's monotonic clock, so
/// tests can pause and advance it.
///
/// # Example
///
/// ```
/// use aghanim_webhook::idempotency::{IdempotencyLayer, MemoryStore};
///
/// let layer = IdempotencyLayer::new(MemoryStore::with_capacity(10_000));
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    records: Mutex<HashMap<String, Record>>,
    changed: Notify,
    capacity: usize,
    letters: MemoryDeadLetters,
}

struct Record {
    state: State,
    attempt: u64,
    fingerprint: String,
    expires_at: Instant,
}

enum State {
    Claimed {
        owner: OwnerToken,
        lease_until: Instant,
    },
    Completed(StoredResponse),
    Released,
}

impl MemoryStore {
    /// A store of at most [`DEFAULT_MEMORY_CAPACITY`] records.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }

    /// A store of at most `capacity` records (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                records: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                capacity: capacity.max(1),
                letters: MemoryDeadLetters::new(),
            }),
        }
    }

    /// Keeps its [dead letters](crate::dead_letter) in `letters` (with their own limits)
    /// instead of a [`MemoryDeadLetters::new`].
    #[must_use]
    pub fn with_dead_letters(self, letters: MemoryDeadLetters) -> Self {
        let shared = Shared {
            records: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            capacity: self.shared.capacity,
            letters,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// How many records it holds now, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every record, as a restart would.
    pub fn clear(&self) {
        self.records().clear();
        self.shared.changed.notify_waiters();
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        // A panic while the lock was held cannot leave a record half-written: every
        // change below is a single assignment.
        self.shared
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn claim_now(&self, key: &str, request: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let now = Instant::now();
        let mut records = self.records();
        let live = records.get(key).filter(|record| record.expires_at > now);
        let attempt = match live {
            Some(record) => {
                // Only a completed record or a live claim can refuse another payload.
                let other_payload = record.fingerprint != request.fingerprint;
                match &record.state {
                    State::Completed(_) if other_payload => return Ok(ClaimOutcome::Mismatch),
                    State::Completed(response) => {
                        return Ok(ClaimOutcome::Completed(response.clone()))
                    }
                    State::Claimed { owner, .. } if *owner == request.owner => {
                        return Ok(ClaimOutcome::Claimed {
                            attempt: record.attempt,
                        })
                    }
                    State::Claimed { lease_until, .. } if *lease_until > now => {
                        return Ok(if other_payload {
                            ClaimOutcome::Mismatch
                        } else {
                            ClaimOutcome::InProgress {
                                lease_remaining: *lease_until - now,
                            }
                        });
                    }
                    State::Claimed { .. } | State::Released => record.attempt + 1,
                }
            }
            None => {
                records.remove(key);
                if records.len() >= self.shared.capacity {
                    make_room(&mut records, now, self.shared.capacity)?;
                }
                1
            }
        };
        records.insert(
            key.to_owned(),
            Record {
                state: State::Claimed {
                    owner: request.owner.clone(),
                    lease_until: now + request.lease,
                },
                attempt,
                fingerprint: request.fingerprint.clone(),
                expires_at: now + request.retention.max(request.lease),
            },
        );
        Ok(ClaimOutcome::Claimed { attempt })
    }

    /// Applies `change` to `owner`'s claim of `key`, if `owner` still holds it.
    fn with_claim(
        &self,
        key: &str,
        owner: &OwnerToken,
        change: impl FnOnce(&mut Record, Instant),
    ) -> bool {
        let now = Instant::now();
        let mut records = self.records();
        let Some(record) = records.get_mut(key) else {
            return false;
        };
        let holds =
            matches!(&record.state, State::Claimed { owner: holder, .. } if holder == owner);
        if holds {
            change(record, now);
        }
        holds
    }
}

/// Drops expired records, then finished ones closest to expiry, until one more fits.
fn make_room(
    records: &mut HashMap<String, Record>,
    now: Instant,
    capacity: usize,
) -> Result<(), StoreError> {
    records.retain(|_, record| record.expires_at > now);
    if records.len() < capacity {
        return Ok(());
    }
    // Evict a tenth at once, so a full store does not scan on every claim: the finished
    // records that expire first, found by their deadlines alone (no key is copied).
    let mut deadlines: Vec<Instant> = records
        .values()
        .filter(|record| !matches!(record.state, State::Claimed { .. }))
        .map(|record| record.expires_at)
        .collect();
    if deadlines.is_empty() {
        return Err(StoreError::new(
            "the memory store is full of claims in progress",
        ));
    }
    let evict = (capacity / 10).clamp(1, deadlines.len());
    let (_, &mut threshold, _) = deadlines.select_nth_unstable(evict - 1);
    records.retain(|_, record| {
        matches!(record.state, State::Claimed { .. }) || record.expires_at > threshold
    });
    Ok(())
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome> {
        Box::pin(std::future::ready(self.claim_now(key, request)))
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        let renewed = self.with_claim(key, owner, |record, now| {
            if let State::Claimed { lease_until, .. } = &mut record.state {
                *lease_until = now + lease;
                record.expires_at = record.expires_at.max(now + lease);
            }
        });
        Box::pin(std::future::ready(Ok(renewed)))
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool> {
        // The key's letter is resolved under the records' lock, which a keeping holds
        // too, so no letter is kept unresolved for a key completed meanwhile.
        let completed = self.with_claim(key, owner, |record, now| {
            record.state = State::Completed(response.clone());
            record.expires_at = now + retention;
            self.shared.letters.resolve(key);
        });
        self.shared.changed.notify_waiters();
        Box::pin(std::future::ready(Ok(completed)))
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool> {
        let released = self.with_claim(key, owner, |record, _| record.state = State::Released);
        self.shared.changed.notify_waiters();
        Box::pin(std::future::ready(Ok(released)))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        Some(self)
    }

    fn changed<'a>(
        &'a self,
        _key: &'a str,
        at_most: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let _ = tokio::time::timeout(at_most, self.shared.changed.notified()).await;
        })
    }
}

/// Its dead letters are kept beside the records, in this process: a letter is resolved
/// when its key completes, and kept resolved when its key had completed already.
impl DeadLetters for MemoryStore {
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept> {
        let records = self.records();
        let applied = matches!(
            records.get(&letter.key),
            Some(Record {
                state: State::Completed(_),
                ..
            })
        );
        let kept = self.shared.letters.keep_now(letter, applied);
        drop(records);
        Box::pin(std::future::ready(Ok(kept)))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>> {
        self.shared.letters.list(filter)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        self.shared.letters.get(key)
    }

    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        self.shared.letters.forget(key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn claim(owner: &OwnerToken, fingerprint: &str) -> ClaimRequest {
        ClaimRequest::new(
            owner.clone(),
            fingerprint,
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
    }

    fn ok_response() -> StoredResponse {
        StoredResponse {
            status: 200,
            content_type: None,
            body: bytes::Bytes::from_static(b"ok"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_evicts_finished_records_and_never_claims() {
        let store = MemoryStore::with_capacity(2);
        let first = OwnerToken::random();
        store.claim("a", &claim(&first, "f")).await.unwrap();
        let completed = store
            .complete("a", &first, &ok_response(), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(completed);
        store
            .claim("b", &claim(&OwnerToken::random(), "f"))
            .await
            .unwrap();
        // Full: "a" (completed) goes, the claim on "b" stays.
        let outcome = store.claim("c", &claim(&OwnerToken::random(), "f")).await;
        assert_eq!(outcome.unwrap(), ClaimOutcome::Claimed { attempt: 1 });
        assert!(matches!(
            store
                .claim("b", &claim(&OwnerToken::random(), "f"))
                .await
                .unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        // Full of claims: refused, not evicted.
        assert!(store
            .claim("d", &claim(&OwnerToken::random(), "f"))
            .await
            .is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn records_expire_with_their_retention() {
        let store = MemoryStore::new();
        let owner = OwnerToken::random();
        store.claim("k", &claim(&owner, "f")).await.unwrap();
        store
            .complete("k", &owner, &ok_response(), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        let outcome = store.claim("k", &claim(&OwnerToken::random(), "f")).await;
        assert_eq!(outcome.unwrap(), ClaimOutcome::Claimed { attempt: 1 });
    }
}
