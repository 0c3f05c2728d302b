//! Stores with faults, for the idempotency layer's tests.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use aghanim_webhook::idempotency::{
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse,
};

/// Delegates to a store, with faults switched on and off: claims applied but their
/// replies lost, slow completions, renewals that fail a given number of times.
pub struct Faulty {
    pub inner: Arc<dyn IdempotencyStore>,
    pub lose_claim_replies: AtomicBool,
    pub slow_complete: AtomicBool,
    pub failing_renewals: AtomicUsize,
    /// How many completions fail (after being applied or not: not here) before they go
    /// through.
    pub failing_completes: AtomicUsize,
    pub claims: AtomicUsize,
    pub completes: AtomicUsize,
}

impl Faulty {
    pub fn new(inner: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            inner,
            lose_claim_replies: AtomicBool::new(false),
            slow_complete: AtomicBool::new(false),
            failing_renewals: AtomicUsize::new(0),
            failing_completes: AtomicUsize::new(0),
            claims: AtomicUsize::new(0),
            completes: AtomicUsize::new(0),
        }
    }

    /// Every renewal fails, so a slow owner's lease runs out.
    pub fn never_renewing(inner: Arc<dyn IdempotencyStore>) -> Self {
        let store = Self::new(inner);
        store.failing_renewals.store(usize::MAX, Ordering::SeqCst);
        store
    }
}

impl IdempotencyStore for Faulty {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome> {
        Box::pin(async move {
            self.claims.fetch_add(1, Ordering::SeqCst);
            let outcome = self.inner.claim(key, request).await;
            if self.lose_claim_replies.load(Ordering::SeqCst) {
                return Err(StoreError::new("the reply was lost"));
            }
            outcome
        })
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        let failing = self
            .failing_renewals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            return Box::pin(async { Err(StoreError::new("renewal failed")) });
        }
        self.inner.renew(key, owner, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.completes.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failing_completes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            if failing {
                return Err(StoreError::new("complete failed"));
            }
            if self.slow_complete.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.inner.complete(key, owner, response, retention).await
        })
    }
    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool> {
        self.inner.release(key, owner)
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// A store that is never reachable.
pub struct Unreachable;

impl IdempotencyStore for Unreachable {
    fn claim<'a>(&'a self, _: &'a str, _: &'a ClaimRequest) -> StoreFuture<'a, ClaimOutcome> {
        Box::pin(async { Err(StoreError::new("connection refused")) })
    }
    fn renew<'a>(&'a self, _: &'a str, _: &'a OwnerToken, _: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::new("connection refused")) })
    }
    fn complete<'a>(
        &'a self,
        _: &'a str,
        _: &'a OwnerToken,
        _: &'a StoredResponse,
        _: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::new("connection refused")) })
    }
    fn release<'a>(&'a self, _: &'a str, _: &'a OwnerToken) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::new("connection refused")) })
    }
}
