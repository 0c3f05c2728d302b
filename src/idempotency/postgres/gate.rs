//! One delivery per key at a time in this process goes to the database: the copies of a
//! delivery running here wait in memory, not on the claim's row with a pooled
//! connection each, so a burst of copies cannot take the pool from other deliveries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(crate) struct Gates {
    open: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl Gates {
    /// Waits, at most `wait`, until no other delivery of `key` in this process is
    /// between its claim and its answer; `None` if one still is.
    pub(crate) async fn enter(self: &Arc<Self>, key: &str, wait: Duration) -> Option<Gate> {
        let gate = Arc::clone(self.map().entry(key.to_owned()).or_default());
        let entered = tokio::time::timeout(wait, Arc::clone(&gate).lock_owned()).await;
        drop(gate);
        match entered {
            Ok(held) => Some(Gate {
                gates: Arc::clone(self),
                key: key.to_owned(),
                held: Some(held),
            }),
            Err(_) => {
                self.forget_unused(key);
                None
            }
        }
    }

    /// Forgets the key's gate once nobody holds or waits on it.
    fn forget_unused(&self, key: &str) {
        let mut open = self.map();
        if open
            .get(key)
            .is_some_and(|gate| Arc::strong_count(gate) == 1)
        {
            open.remove(key);
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<AsyncMutex<()>>>> {
        // Every change is one insert or remove: a panic elsewhere cannot leave it torn.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// Held from before the claim until the answer; the next copy enters when it drops.
pub(crate) struct Gate {
    gates: Arc<Gates>,
    key: String,
    held: Option<OwnedMutexGuard<()>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        drop(self.held.take());
        self.gates.forget_unused(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_copy_waits_for_the_first_and_the_gate_is_forgotten_after() {
        let gates = Arc::new(Gates::default());
        let first = gates.enter("k", Duration::from_secs(1)).await.unwrap();
        assert!(gates.enter("k", Duration::from_millis(20)).await.is_none());
        assert!(gates
            .enter("other", Duration::from_millis(20))
            .await
            .is_some());
        let waiting = tokio::spawn({
            let gates = Arc::clone(&gates);
            async move { gates.enter("k", Duration::from_secs(5)).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap());
        assert_eq!(gates.len(), 0);
    }
}
