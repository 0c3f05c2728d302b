//! The runs going on, so that a server shutting down can cancel them and wait for them.

use std::{
    pin::pin,
    sync::atomic::{AtomicUsize, Ordering},
    sync::Arc,
};

use tokio::sync::{watch, Notify};

/// One per layer, shared by its clones and services.
pub(crate) struct InFlight {
    /// Turns true once, when the runs are cancelled; it never turns back.
    cancel: watch::Sender<bool>,
    runs: AtomicUsize,
    cancelled: AtomicUsize,
    finished: Notify,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            cancel: watch::channel(false).0,
            runs: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            finished: Notify::new(),
        }
    }
}

impl InFlight {
    /// Notes a run that starts; it is forgotten when the entry drops.
    pub(crate) fn enter(self: &Arc<Self>) -> Entry {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Entry {
            registry: Arc::clone(self),
            cancel: self.cancel.subscribe(),
        }
    }

    /// How many runs are going on.
    pub(crate) fn running(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Cancels every run going on and every run that starts from now on, and waits
    /// until each has ended; how many handlers were cancelled.
    pub(crate) async fn cancel_all(&self) -> usize {
        let before = self.cancelled.load(Ordering::SeqCst);
        self.cancel.send_replace(true);
        self.finished().await;
        self.cancelled.load(Ordering::SeqCst) - before
    }

    /// Waits until no run is going on.
    pub(crate) async fn finished(&self) {
        loop {
            let mut notified = pin!(self.finished.notified());
            // Registered before the count is read, so that no ending is missed.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A run going on.
pub(crate) struct Entry {
    registry: Arc<InFlight>,
    cancel: watch::Receiver<bool>,
}

impl Entry {
    /// Resolves once the runs are cancelled; a run that ends because of it is counted.
    pub(crate) async fn cancelled(&mut self) {
        // The sender lives in the registry this entry holds: it cannot close.
        let _ = self.cancel.wait_for(|cancelled| *cancelled).await;
        self.registry.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.runs.fetch_sub(1, Ordering::SeqCst);
        self.registry.finished.notify_waiters();
    }
}
