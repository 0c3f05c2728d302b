use std::fmt;

use futures_core::{future::BoxFuture, stream::BoxStream};
use futures_util::{FutureExt, StreamExt};
use sqlx::{
    pool::PoolConnection,
    postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo},
    AssertSqlSafe, Describe, Either, Execute, Executor, PgConnection, Postgres, Row, SqlStr,
};

use super::savepoint::DeliverySavepoint;
use super::store::{is_sqlstate, IN_FAILED_SQL_TRANSACTION};

/// The delivery's connection, lent by
/// [`DeliveryTransaction::connection`](super::DeliveryTransaction::connection): an sqlx
/// [`Executor`] whose every statement runs inside the delivery's transaction, or not
/// at all (feature `postgres`).
///
/// Before each statement but the first it checks, in one round trip, that the
/// connection is still in the delivery's transaction (by its transaction id, which no
/// setting of the handler's can change); when the handler ended it (a raw `COMMIT`,
/// which the table's trigger refuses and rolls back, or a raw `ROLLBACK`), the statement
/// is refused with an error and never runs, so nothing is ever written outside the
/// delivery. (The first needs no check: nothing but the claim ran before it. In a
/// transaction a failed statement aborted, statements go through: PostgreSQL refuses
/// all but a `ROLLBACK`, which a check then finds. A single query string that ends the
/// transaction and writes after, such as `ROLLBACK; INSERT ...` through `raw_sql`, is
/// out of its reach.)
///
/// It is not sqlx's `PgConnection`, and does not hand one out: a helper of the game's
/// that takes `&mut PgConnection` would write past the check. Write helpers over an
/// executor (`impl sqlx::PgExecutor<'_>`, or `&mut DeliveryConnection` for several
/// statements). [`begin`](Self::begin) opens a savepoint, checked the same way.
///
/// # Example
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
///     Ok(())
/// }
/// ```
///
/// A helper written for sqlx's own connection type does not take it:
///
/// ```compile_fail
/// use aghanim_webhook::idempotency::DeliveryTransaction;
///
/// async fn grant(connection: &mut sqlx::PgConnection) {}
///
/// async fn credit(transaction: &DeliveryTransaction) {
///     let mut connection = transaction.connection().await.unwrap();
///     grant(&mut connection).await;
/// }
/// ```
pub struct DeliveryConnection {
    pooled: PoolConnection<Postgres>,
    /// The delivery's transaction id, given by its claim.
    transaction_id: i64,
    /// Known to be in the delivery's transaction: nothing has run on the connection
    /// since the claim, or since the last check. Only a statement can end the
    /// transaction, so a check is needed only after one.
    in_claim: bool,
    /// Savepoints begun and not yet ended.
    savepoints: usize,
    /// The depth of a savepoint dropped without `commit` or `rollback`, to roll back
    /// to before anything else runs.
    rollback_to: Option<usize>,
}

impl DeliveryConnection {
    pub(super) fn new(pooled: PoolConnection<Postgres>) -> Self {
        Self {
            pooled,
            transaction_id: 0,
            in_claim: false,
            savepoints: 0,
            rollback_to: None,
        }
    }

    /// The delivery's transaction has begun, with this id.
    pub(super) fn claimed(&mut self, transaction_id: i64) {
        self.transaction_id = transaction_id;
        self.in_claim = true;
    }

    /// Opens a savepoint inside the delivery's transaction: what runs on it is rolled
    /// back alone by its [`rollback`](DeliverySavepoint::rollback), or when it is
    /// dropped, and kept with the delivery by its [`commit`](DeliverySavepoint::commit).
    ///
    /// # Errors
    ///
    /// When the delivery's transaction has ended or is aborted (a statement failed),
    /// or the database refuses the savepoint.
    pub async fn begin(&mut self) -> Result<DeliverySavepoint<'_>, sqlx::Error> {
        let depth = self.savepoints + 1;
        let begin = format!("SAVEPOINT {}", self.savepoint_name(depth));
        (&mut *self)
            .execute(sqlx::raw_sql(AssertSqlSafe(begin)))
            .await?;
        self.savepoints = depth;
        Ok(DeliverySavepoint::new(self, depth))
    }

    /// Ends the savepoint at `depth`: released (`keep`), or rolled back to and released.
    /// A release counts from its reply; a rollback is owed from before its round trip:
    /// either cut short (a timeout around it) leaves a rollback made before anything
    /// else runs, or the commit fails.
    pub(super) async fn end_savepoint(
        &mut self,
        depth: usize,
        keep: bool,
    ) -> Result<(), sqlx::Error> {
        if keep {
            let release = format!("RELEASE SAVEPOINT {}", self.savepoint_name(depth));
            (&mut *self)
                .execute(sqlx::raw_sql(AssertSqlSafe(release)))
                .await?;
            self.savepoints = depth - 1;
            return Ok(());
        }
        self.savepoint_dropped(depth);
        self.in_claim = false;
        self.settle_rollback().await
    }

    /// A savepoint at `depth` was dropped without being ended: it is rolled back to
    /// before the connection's next statement.
    pub(super) fn savepoint_dropped(&mut self, depth: usize) {
        self.savepoints = depth - 1;
        self.rollback_to = Some(self.rollback_to.map_or(depth, |deeper| deeper.min(depth)));
    }

    /// Makes the rollback a dropped or rolled-back savepoint owes, if any; it stays owed
    /// until its reply says it is made.
    async fn settle_rollback(&mut self) -> Result<(), sqlx::Error> {
        let rollback = self.owed_rollback();
        if !rollback.is_empty() {
            self.pooled
                .execute(sqlx::raw_sql(AssertSqlSafe(rollback)))
                .await?;
            self.rollback_to = None;
        }
        Ok(())
    }

    /// The rollback a savepoint owes, as the start of a simple query.
    pub(super) fn owed_rollback(&self) -> String {
        self.rollback_to.map_or_else(String::new, |depth| {
            let name = self.savepoint_name(depth);
            format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}; ")
        })
    }

    /// Savepoints the handler left open (forgotten, not dropped).
    pub(super) fn savepoints_open(&self) -> usize {
        self.savepoints
    }

    /// The savepoint at `depth`, named after the delivery's transaction, so that a
    /// handler's own savepoints do not shadow it.
    fn savepoint_name(&self, depth: usize) -> String {
        format!("aghanim_webhook_{}_{depth}", self.transaction_id)
    }

    pub(super) fn transaction_id(&self) -> i64 {
        self.transaction_id
    }

    pub(super) fn pooled_mut(&mut self) -> &mut PgConnection {
        &mut self.pooled
    }

    pub(super) fn close_on_drop(&mut self) {
        self.pooled.close_on_drop();
    }

    /// Whether the connection is still in the delivery's transaction; an aborted one
    /// answers with its error.
    pub(super) async fn claim_is_open(&mut self) -> Result<bool, sqlx::Error> {
        let check = format!(
            "SELECT coalesce(txid_current_if_assigned() = {}, false)",
            self.transaction_id
        );
        let row = self
            .pooled
            .fetch_one(sqlx::raw_sql(AssertSqlSafe(check)))
            .await?;
        row.try_get(0)
    }

    /// The connection, ready for the handler's next statement: a dropped savepoint
    /// rolled back to, and the transaction checked unless nothing ran since the claim
    /// or the last check; then marked unchecked, since the statement may end it.
    async fn checked(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.rollback_to.is_some() {
            self.in_claim = false;
            self.settle_rollback().await?;
        }
        if !std::mem::replace(&mut self.in_claim, false) {
            match self.claim_is_open().await {
                Ok(true) => {}
                Ok(false) => return Err(transaction_ended()),
                // Aborted: PostgreSQL itself refuses all but the way out.
                Err(error) if is_sqlstate(&error, IN_FAILED_SQL_TRANSACTION) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(&mut self.pooled)
    }
}

impl fmt::Debug for DeliveryConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryConnection")
            .field("savepoints", &self.savepoints)
            .finish_non_exhaustive()
    }
}

fn transaction_ended() -> sqlx::Error {
    sqlx::Error::Protocol(
        "aghanim-webhook: the delivery's transaction was ended by a COMMIT or ROLLBACK \
         of the handler's own; statement refused, so that nothing is written outside it"
            .to_owned(),
    )
}

impl<'c> Executor<'c> for &'c mut DeliveryConnection {
    type Database = Postgres;

    fn fetch_many<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        futures_util::stream::once(async move {
            match self.checked().await {
                Ok(connection) => connection.fetch_many(query),
                Err(error) => futures_util::stream::once(async { Err(error) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        async move { self.checked().await?.fetch_optional(query).await }.boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        async move { self.checked().await?.prepare_with(sql, parameters).await }.boxed()
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        async move { self.checked().await?.describe(sql).await }.boxed()
    }
}
