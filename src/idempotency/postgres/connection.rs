use std::{
    fmt,
    ops::{Deref, DerefMut},
};

use futures_core::{future::BoxFuture, stream::BoxStream};
use futures_util::{FutureExt, StreamExt};
use sqlx::{
    pool::PoolConnection,
    postgres::{PgQueryResult, PgRow, PgStatement, PgTransactionManager, PgTypeInfo},
    Describe, Either, Execute, Executor, PgConnection, Postgres, SqlStr,
};
use sqlx_core::transaction::TransactionManager;

use super::store::claim_is_open;

/// The delivery's connection, lent by
/// [`DeliveryTransaction::connection`](super::DeliveryTransaction::connection): an sqlx
/// [`Executor`] whose every statement runs inside the delivery's transaction, or not
/// at all (feature `postgres`).
///
/// Before each statement but the first it checks, in one round trip, that the
/// connection is still in the claim's transaction; when the handler ended it (a raw
/// `COMMIT` or `ROLLBACK`) or a failed statement aborted it, the statement is refused
/// with an error and never runs, so nothing is ever written outside the delivery. (The
/// first needs no check: nothing but the claim ran before it. A single query string
/// that ends the transaction and writes after, such as `ROLLBACK; INSERT ...` through
/// `raw_sql`, is out of its reach.) It dereferences to sqlx's
/// [`PgConnection`] for everything else: `connection.begin()` opens a savepoint, as on
/// any connection in a transaction (statements on that savepoint's own
/// [`Transaction`](sqlx::Transaction) go to the connection directly, unchecked).
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
pub struct DeliveryConnection {
    pooled: PoolConnection<Postgres>,
    /// Known to be in the claim's transaction: nothing has run on the connection since
    /// the claim, or since the last check. Only a statement, or a use of the connection
    /// as sqlx's own, can end the transaction, so a check is needed only after one.
    in_claim: bool,
}

impl DeliveryConnection {
    /// The connection, its claim's transaction just begun.
    pub(super) fn new(pooled: PoolConnection<Postgres>) -> Self {
        Self {
            pooled,
            in_claim: true,
        }
    }

    /// The connection, checked before this statement unless nothing ran since the
    /// last check; then marked unchecked, since the statement may end the transaction.
    async fn checked(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if !std::mem::replace(&mut self.in_claim, false) {
            ensure_open(&mut self.pooled).await?;
        } else if PgTransactionManager::get_transaction_depth(&self.pooled) == 0 {
            return Err(transaction_ended());
        }
        Ok(&mut self.pooled)
    }

    pub(super) fn pooled_mut(&mut self) -> &mut PgConnection {
        &mut self.pooled
    }

    pub(super) fn close_on_drop(&mut self) {
        self.pooled.close_on_drop();
    }
}

impl Deref for DeliveryConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.pooled
    }
}

impl DerefMut for DeliveryConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        // Used as sqlx's own (a savepoint, say): anything may have run.
        self.in_claim = false;
        &mut self.pooled
    }
}

impl fmt::Debug for DeliveryConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryConnection").finish_non_exhaustive()
    }
}

/// Fails unless `connection` is still in the claim's transaction.
async fn ensure_open(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    // sqlx rolled back the delivery's level itself (a savepoint's `begin()` that
    // failed, on some versions): no need to ask.
    if PgTransactionManager::get_transaction_depth(connection) == 0 {
        return Err(transaction_ended());
    }
    // An aborted transaction says so itself.
    match claim_is_open(connection).await? {
        true => Ok(()),
        false => Err(transaction_ended()),
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
        self.pooled.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pooled.describe(sql)
    }
}
