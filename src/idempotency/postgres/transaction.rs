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
/// on any other answer, an error, a panic or a dropped request. Do not `COMMIT` or
/// `ROLLBACK` on it yourself, and call no other service from inside it: what is not in
/// this database is not undone by a rollback (write an outbox row instead).
///
/// # Example
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
        MutexGuard::try_map(open, |open| open.as_mut().map(OpenTransaction::connection))
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
