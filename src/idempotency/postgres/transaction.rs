use std::{fmt, sync::Arc};

use sqlx::PgConnection;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::store::OpenTransaction;
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
/// sqlx knows the transaction is open, so sqlx's own idiom on the connection,
/// `connection.begin()`, opens a **savepoint** inside it: its `commit()` releases the
/// savepoint and its `rollback()` rolls back to it, and neither ends the delivery's
/// transaction; what the handler keeps still commits with the claim and the answer,
/// or not at all. A raw `COMMIT` or `ROLLBACK` of the handler's own (through
/// `sqlx::raw_sql`, say) does end it: the layer finds that out before answering, rolls
/// back what it still can and answers 503, never a 2xx
/// ([`IdempotencyOutcome::TransactionLost`](crate::idempotency::IdempotencyOutcome::TransactionLost));
/// a key the handler committed that way is marked without an answer once the layer
/// finds out, and its duplicates are refused until an operator forgets it (one that
/// reached another instance in between is replayed the acknowledgement the claim's row
/// holds until then). A statement that failed aborts the
/// transaction: a 2xx answered after it is answered 503, and nothing is kept.
///
/// # Example
///
/// A credit, and a bonus that may already have been granted: the bonus's failure is
/// rolled back to its savepoint, the credit stays.
///
/// ```no_run
/// use aghanim_webhook::idempotency::DeliveryTransaction;
/// use sqlx::Connection;
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
    pub async fn connection(&self) -> Result<MappedMutexGuard<'_, PgConnection>, StoreError> {
        let open = self.open.lock().await;
        MutexGuard::try_map(open, |open| {
            open.as_mut().and_then(OpenTransaction::connection)
        })
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
