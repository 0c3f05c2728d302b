//! The claims whose runs are going on, so that a server shutting down can give them up.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use super::{IdempotencyStore, OwnerToken};

/// One per layer, shared by its clones and services.
#[derive(Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    claims: Mutex<HashMap<u64, Held>>,
}

struct Held {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    owner: OwnerToken,
}

impl InFlight {
    /// Notes a claim whose run starts; it is forgotten when the entry drops.
    pub(crate) fn enter(
        self: &Arc<Self>,
        store: Arc<dyn IdempotencyStore>,
        key: String,
        owner: OwnerToken,
    ) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.claims().insert(id, Held { store, key, owner });
        Entry {
            registry: Arc::clone(self),
            id,
        }
    }

    /// Gives up every claim whose run has not finished, fenced by its owner token;
    /// how many were still held.
    pub(crate) async fn release_all(&self) -> usize {
        let held: Vec<Held> = self.claims().drain().map(|(_, held)| held).collect();
        let mut released = 0;
        for Held { store, key, owner } in held {
            if let Ok(true) = store.release(&key, &owner).await {
                released += 1;
            }
        }
        released
    }

    fn claims(&self) -> MutexGuard<'_, HashMap<u64, Held>> {
        // Every change is one insert or remove: a panic elsewhere cannot leave it torn.
        self.claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A run in progress; dropping it forgets the claim.
pub(crate) struct Entry {
    registry: Arc<InFlight>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.claims().remove(&self.id);
    }
}
