use std::{fmt, sync::Arc};

use sqlx::{pool::PoolConnection, Postgres};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::DeliveryConnection;
#[cfg(doc)]
use super::PostgresStore;
use crate::idempotency::StoreError;

/// The delivery's database transaction, in the request's extensions when the layer is
/// [`transactional`](crate::idempotency::IdempotencyLayer::transactional) (feature `postgres`): the
/// handler's statements on it commit together with the delivery's claim and recorded
/// answer, or not at all.
///
/// The layer commits once the handler has answered with a final answer, and rolls back
/// on any other answer, an error, a panic, a dropped request or the run timeout. Call
/// no other service from inside it: what is not in this database is not undone by a
/// rollback (write an outbox row instead).
///
/// sqlx's idiom on the connection, `connection.begin()`, opens a **savepoint** inside it
/// (a [`DeliverySavepoint`](super::DeliverySavepoint)): its `commit()` releases the
/// savepoint and its `rollback()` rolls back to it, and neither ends the delivery's
/// transaction; what the handler keeps still commits with the claim and the answer,
/// or not at all.
///
/// Nothing the handler writes through the [`DeliveryConnection`] commits outside the
/// delivery's transaction: a raw `COMMIT` of the handler's own (through
/// `sqlx::raw_sql`, say) is refused by the table's trigger and rolls the delivery back,
/// and after it, or after a raw `ROLLBACK`, the connection refuses the handler's next
/// statement. The layer then answers 503, never a 2xx
/// ([`IdempotencyOutcome::TransactionLost`](crate::idempotency::IdempotencyOutcome::TransactionLost)),
/// and the retry runs again. A statement that failed aborts the transaction: a 2xx
/// answered after it is answered 503, nothing is kept, and the retry runs again. The
/// check costs one round trip per statement after the first:
/// [the cost](PostgresStore#what-it-costs).
///
/// # Example
///
/// A credit, and a bonus that may already have been granted: the bonus's failure is
/// rolled back to its savepoint, the credit stays.
///
/// ```no_run
/// use aghanim_webhook::idempotency::DeliveryTransaction;
///
/// async fn credit(transaction: &DeliveryTransaction, player: &str, gems: i64) -> Result<(), Box<dyn std::error::Error>> {
///     let mut connection = transaction.connection().await?;
///     sqlx::query("UPDATE wallets SET gems = gems + $1 WHERE player_id = $2")
///         .bind(gems)
///         .bind(player)
///         .execute(&mut *connection)
///         .await?;
///
///     let mut bonus = connection.begin().await?; // SAVEPOINT
///     let granted = sqlx::query("INSERT INTO bonuses (player_id) VALUES ($1)")
///         .bind(player)
///         .execute(&mut *bonus)
///         .await;
///     match granted {
///         Ok(_) => bonus.commit().await?,    // RELEASE SAVEPOINT
///         Err(_) => bonus.rollback().await?, // ROLLBACK TO SAVEPOINT: the credit stays
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct DeliveryTransaction {
    open: Arc<Mutex<Option<OpenTransaction>>>,
}

impl DeliveryTransaction {
    pub(crate) fn new(open: OpenTransaction) -> Self {
        Self {
            open: Arc::new(Mutex::new(Some(open))),
        }
    }

    /// The connection inside the transaction, for the handler's statements; one holder
    /// at a time.
    ///
    /// # Errors
    ///
    /// When the layer has already ended the transaction (the handler answered, and
    /// this is a copy kept past it).
    pub async fn connection(&self) -> Result<MappedMutexGuard<'_, DeliveryConnection>, StoreError> {
        let open = self.open.lock().await;
        MutexGuard::try_map(open, |open| open.as_mut().map(|open| &mut open.connection))
            .map_err(|_| StoreError::new("the delivery's transaction has ended"))
    }

    /// Takes the transaction back from the handler, to commit or roll it back.
    pub(crate) async fn end(&self) -> Option<OpenTransaction> {
        self.open.lock().await.take()
    }
}

impl fmt::Debug for DeliveryTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryTransaction")
            .finish_non_exhaustive()
    }
}

/// A delivery's pooled connection from its claim on. Dropped before a reply has said
/// that its transaction ended (a timeout, a client that hangs up, a panic, at any
/// await), it is closed, never given back to the pool: the server then rolls back
/// whatever the connection had begun.
pub(crate) struct OpenTransaction {
    connection: DeliveryConnection,
    ended: bool,
}

impl OpenTransaction {
    pub(crate) fn new(connection: PoolConnection<Postgres>) -> Self {
        Self {
            connection: DeliveryConnection::new(connection),
            ended: false,
        }
    }

    pub(crate) fn connection(&mut self) -> &mut DeliveryConnection {
        &mut self.connection
    }

    /// The transaction has ended: the connection may go back to the pool.
    pub(crate) fn ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if !self.ended {
            self.connection.close_on_drop();
        }
    }
}
