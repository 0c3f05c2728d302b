use std::{
    fmt,
    ops::{Deref, DerefMut},
};

use super::DeliveryConnection;

/// A savepoint inside the delivery's transaction, from
/// [`DeliveryConnection::begin`]: its statements run on the same checked connection
/// (`&mut *savepoint` is an sqlx `Executor`), and it ends with
/// [`commit`](Self::commit), which keeps them with the delivery, or
/// [`rollback`](Self::rollback), which undoes them alone (feature `postgres`). Dropped
/// without either, it is rolled back to before the connection's next statement, as
/// sqlx's own `Transaction` is.
///
/// Neither ends the delivery's transaction: what is kept commits with the claim and the
/// recorded answer, or not at all.
///
/// # Example
///
/// A credit, and a bonus that may already have been granted: the bonus's failure is
/// rolled back to its savepoint, the credit stays.
///
/// ```no_run
/// use aghanim_webhook::idempotency::DeliveryTransaction;
///
/// async fn credit(transaction: &DeliveryTransaction, player: &str) -> Result<(), Box<dyn std::error::Error>> {
///     let mut connection = transaction.connection().await?;
///     sqlx::query("UPDATE wallets SET gems = gems + 100 WHERE player_id = $1")
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
#[must_use = "a savepoint dropped without commit() is rolled back"]
pub struct DeliverySavepoint<'c> {
    connection: &'c mut DeliveryConnection,
    depth: usize,
    open: bool,
}

impl<'c> DeliverySavepoint<'c> {
    pub(super) fn new(connection: &'c mut DeliveryConnection, depth: usize) -> Self {
        Self {
            connection,
            depth,
            open: true,
        }
    }

    /// Keeps what ran on the savepoint (`RELEASE SAVEPOINT`). Cut short before its
    /// reply (a timeout around it), it is rolled back as a dropped savepoint is.
    ///
    /// # Errors
    ///
    /// When the delivery's transaction has ended, or the database refuses it.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        // Open until the release's reply: a commit cut short (a timeout around it) is
        // rolled back as a drop is, never kept by a release that may not have run.
        self.connection.end_savepoint(self.depth, true).await?;
        self.open = false;
        Ok(())
    }

    /// Undoes what ran on the savepoint, and nothing before it (`ROLLBACK TO
    /// SAVEPOINT`); it also clears the error of a statement that failed on it.
    ///
    /// # Errors
    ///
    /// When the delivery's transaction has ended, or the database refuses it.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.open = false;
        self.connection.end_savepoint(self.depth, false).await
    }
}

impl Deref for DeliverySavepoint<'_> {
    type Target = DeliveryConnection;

    fn deref(&self) -> &DeliveryConnection {
        self.connection
    }
}

impl DerefMut for DeliverySavepoint<'_> {
    fn deref_mut(&mut self) -> &mut DeliveryConnection {
        self.connection
    }
}

impl Drop for DeliverySavepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            self.connection.savepoint_dropped(self.depth);
        }
    }
}

impl fmt::Debug for DeliverySavepoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliverySavepoint")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}
