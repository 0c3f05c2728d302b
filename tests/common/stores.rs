//! Stores with faults, for the idempotency layer's tests.

use std::{sync::Arc, time::Duration};

use aghanim_webhook::idempotency::{
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse,
};

/// Delegates to a store but never renews, so a slow owner's lease runs out.
pub struct NoRenewal(pub Arc<dyn IdempotencyStore>);

impl IdempotencyStore for NoRenewal {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome> {
        self.0.claim(key, request)
    }
    fn renew<'a>(&'a self, _: &'a str, _: &'a OwnerToken, _: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::new("renewal switched off")) })
    }
    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool> {
        self.0.complete(key, owner, response, retention)
    }
    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool> {
        self.0.release(key, owner)
    }
    fn kind(&self) -> &'static str {
        self.0.kind()
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
