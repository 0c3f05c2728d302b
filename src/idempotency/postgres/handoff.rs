//! A connection a delivery has just finished with goes straight to a delivery waiting
//! for one, instead of back to the pool: sqlx pings a connection when it comes back and
//! again when the pool hands it out, two round trips that tell nothing about a
//! connection whose last answer has just been read in full.
//!
//! A delivery waits here only when the pool has nothing to give (no idle connection,
//! no room for another) and deliveries hold connections, each of which will come here
//! or go back to the pool; a delivery waiting here never waits on the pool at the same
//! time, since dropping sqlx's `acquire` while it pings a connection closes that
//! connection. A connection going back to the pool sends one waiting delivery there.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use sqlx::{
    pool::PoolConnection, postgres::PgTransactionManager, PgPool, Postgres, TransactionManager,
};
use tokio::sync::oneshot;

/// How many deliveries in a row a connection serves before it goes back to the pool:
/// the pool's other users get their turn, and its `max_lifetime` and `idle_timeout`
/// their say, at least that often.
const HANDOFFS_IN_A_ROW: u8 = 8;

/// Below this many places, none is cleared out but from the front.
const CLEAR_AT_LEAST: usize = 64;

/// The deliveries waiting for a connection a delivery finishes with.
#[derive(Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Oldest first; `None` sends one to the pool.
    waiting: VecDeque<oneshot::Sender<Option<Held>>>,
    /// Connections the deliveries hold or are acquiring from the pool.
    held: usize,
    /// Deliveries acquiring from the pool now.
    acquiring: usize,
    /// The length at which places given up behind a waiting delivery are cleared out:
    /// twice what was left at the last clearing, so that it costs each place O(1).
    clear_at: usize,
}

/// A delivery's pooled connection. Dropped, it goes back to the pool outside any
/// transaction (the pool's ping sends the `ROLLBACK` queued for one still open) and
/// sends a waiting delivery to get it there.
pub(crate) struct Held {
    // Declared first, so dropped first: back to the pool before a waiter is sent there.
    pub(crate) connection: PoolConnection<Postgres>,
    /// Deliveries it served since it left the pool.
    served: u8,
    slot: Slot,
}

/// Counts a connection held; dropped, it sends one waiting delivery to the pool.
struct Slot(Arc<Handoff>);

/// Counts a delivery acquiring from the pool, while it does.
struct Acquiring<'a>(&'a Handoff);

impl<'a> Acquiring<'a> {
    fn new(handoff: &'a Handoff) -> Self {
        handoff.state().acquiring += 1;
        Self(handoff)
    }
}

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.acquiring = state.acquiring.saturating_sub(1);
    }
}

impl Handoff {
    /// A connection handed on by a delivery that finished, or one from `pool`.
    pub(crate) async fn acquire(self: &Arc<Self>, pool: &PgPool) -> Result<Held, sqlx::Error> {
        let handed = {
            let mut state = self.state();
            // What the pool can give at once, less what deliveries are taking already.
            let spare = pool.num_idle()
                + (pool.options().get_max_connections() as usize)
                    .saturating_sub(pool.size() as usize);
            if state.acquiring < spare || state.held == 0 {
                None
            } else {
                let (sender, handed) = oneshot::channel();
                state.queue(sender);
                Some(handed)
            }
        };
        if let Some(handed) = handed {
            if let Ok(Some(held)) = handed.await {
                return Ok(held);
            }
        }
        let slot = self.slot();
        let connection = {
            let _acquiring = Acquiring::new(self);
            pool.acquire().await?
        };
        Ok(Held {
            connection,
            served: 0,
            slot,
        })
    }

    fn slot(self: &Arc<Self>) -> Slot {
        self.state().held += 1;
        Slot(Arc::clone(self))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is one push, pop or count: a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn queue(&mut self, sender: oneshot::Sender<Option<Held>>) {
        // Those that gave up leave their place behind.
        while self.waiting.front().is_some_and(oneshot::Sender::is_closed) {
            self.waiting.pop_front();
        }
        if self.waiting.len() >= self.clear_at {
            self.waiting.retain(|waiting| !waiting.is_closed());
            self.clear_at = (2 * self.waiting.len()).max(CLEAR_AT_LEAST);
        }
        self.waiting.push_back(sender);
    }
}

impl Held {
    /// Queues a `ROLLBACK` of every level still open (a handler's savepoints
    /// included), to go with whatever the connection sends next: it leaves outside any
    /// transaction.
    pub(crate) fn leave_transactions(&mut self) {
        while PgTransactionManager::get_transaction_depth(&self.connection) > 0 {
            PgTransactionManager::start_rollback(&mut self.connection);
        }
    }

    /// Passes the connection, whose last answer has just been read in full, to the
    /// longest-waiting delivery; back to the pool when none waits or it has served
    /// [`HANDOFFS_IN_A_ROW`] deliveries.
    pub(crate) fn pass_on(mut self) {
        self.served = self.served.saturating_add(1);
        if self.served >= HANDOFFS_IN_A_ROW {
            return;
        }
        let handoff = Arc::clone(&self.slot.0);
        loop {
            let Some(next) = handoff.state().waiting.pop_front() else {
                return;
            };
            // Sent outside the lock: a connection dropped here locks it.
            match next.send(Some(self)) {
                Err(Some(refused)) => self = refused,
                _ => return,
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.leave_transactions();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.held = state.held.saturating_sub(1);
        // The pool has a connection now, or room for one: the longest-waiting
        // delivery goes there.
        while let Some(next) = state.waiting.pop_front() {
            if next.send(None).is_ok() {
                return;
            }
        }
    }
}
