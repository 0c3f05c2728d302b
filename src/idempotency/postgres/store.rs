use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use sqlx::{pool::PoolConnection, postgres::PgRow, PgConnection, PgPool, Postgres, Row};

use crate::idempotency::{StoreError, StoreFuture, StoredResponse};
use crate::sign::lower_hex;

/// The table unless configured otherwise.
pub const DEFAULT_POSTGRES_TABLE: &str = "aghanim_idempotency";

/// How many expired records [`PostgresStore::purge_expired`] deletes per statement, so
/// that a purge never holds many row locks at once.
const PURGE_BATCH: i64 = 1_000;

/// Keeps idempotency records in the game's own PostgreSQL, in the same transaction as
/// the handler's writes (feature `postgres`).
///
/// With [`IdempotencyLayer::transactional`](crate::idempotency::IdempotencyLayer::transactional),
/// each deduplicated delivery is one transaction: the claim (a row inserted under the
/// delivery's key), the handler's own statements through the
/// [`DeliveryTransaction`](crate::idempotency::DeliveryTransaction) in the request's
/// extensions, and the recorded answer commit together or not at all. A crash, a
/// dropped request, a panic, a killed connection or an answer that is not final rolls
/// back the effect and the claim at once; a duplicate while the original runs waits on
/// the claim's row (up to the layer's wait), then replays the committed answer or, if
/// the original rolled back, runs. No lease, no renewal, no clock.
///
/// The pool is sqlx 0.8's [`PgPool`], the line most users run, so the game's own pool
/// fits.
///
/// # Table
///
/// One row per recorded delivery; keys are SHA-256 hex digests of the delivery's scope,
/// as in the other stores. [`migration`](Self::migration) gives the SQL and
/// [`migrate`](Self::migrate) runs it:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS aghanim_idempotency (
///     key          text PRIMARY KEY,
///     fingerprint  text NOT NULL,
///     status       integer,
///     content_type text,
///     body         bytea,
///     recorded_at  timestamptz NOT NULL DEFAULT now()
/// );
/// CREATE INDEX IF NOT EXISTS aghanim_idempotency_recorded_at
///     ON aghanim_idempotency (recorded_at);
/// ```
///
/// # Example
///
/// ```no_run
/// use aghanim_webhook::idempotency::{IdempotencyLayer, PostgresStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://game@localhost/game").await?;
/// let store = PostgresStore::new(pool);
/// store.migrate().await?;
/// let layer = IdempotencyLayer::transactional(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: Arc<str>,
}

impl PostgresStore {
    /// A store on `pool`, in the table [`DEFAULT_POSTGRES_TABLE`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_POSTGRES_TABLE.into(),
        }
    }

    /// Keeps the records in `table` instead: a name, or `schema.name`, of ASCII
    /// letters, digits and underscores.
    ///
    /// # Errors
    ///
    /// When `table` is not such a name.
    pub fn table(mut self, table: &str) -> Result<Self, StoreError> {
        let plain = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|part| plain(part)) {
            return Err(StoreError::new(format!(
                "{table:?} is not a table name of letters, digits and underscores"
            )));
        }
        self.table = table.into();
        Ok(self)
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The SQL that creates the table and its index, if they do not exist.
    pub fn migration(&self) -> String {
        let table = &self.table;
        let index = table.rsplit('.').next().unwrap_or(table);
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\n    \
                 key          text PRIMARY KEY,\n    \
                 fingerprint  text NOT NULL,\n    \
                 status       integer,\n    \
                 content_type text,\n    \
                 body         bytea,\n    \
                 recorded_at  timestamptz NOT NULL DEFAULT now()\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {index}_recorded_at ON {table} (recorded_at);\n"
        )
    }

    /// Runs [`migration`](Self::migration), in a transaction that holds an advisory
    /// lock: instances starting together would otherwise race in `CREATE TABLE IF NOT
    /// EXISTS`, which PostgreSQL does not make safe against itself.
    ///
    /// # Errors
    ///
    /// When the database refuses it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let script = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('aghanim-webhook migration'));\n{}COMMIT;",
            self.migration()
        );
        sqlx::raw_sql(&script)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::new)
    }

    /// Deletes the records recorded more than `retention` ago, a thousand per statement
    /// until none is left; returns how many. Schedule it (the example server runs it
    /// hourly): nothing else deletes records.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached; the batches already deleted stay deleted.
    pub async fn purge_expired(&self, retention: Duration) -> Result<u64, StoreError> {
        let table = &self.table;
        let statement = format!(
            "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
             WHERE recorded_at < now() - make_interval(secs => $1) LIMIT $2)"
        );
        let mut deleted = 0;
        loop {
            let done = sqlx::query(&statement)
                .bind(retention.as_secs_f64())
                .bind(PURGE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?
                .rows_affected();
            deleted += done;
            if done < PURGE_BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    /// The key's committed answer, read outside any transaction (a duplicate of a
    /// completed delivery costs this one round trip); else the delivery's transaction,
    /// opened with its claim inserted in one more. A copy running elsewhere holds the
    /// key's row: the insert waits for it, at most `wait`, then finds its committed
    /// answer or, if it rolled back, claims.
    pub(crate) fn claim<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        wait: Duration,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_now(key, fingerprint, wait))
    }

    async fn claim_now(
        &self,
        key: &str,
        fingerprint: &str,
        wait: Duration,
    ) -> Result<Claim, StoreError> {
        // Both are hex digests made by the layer, and the only values written into
        // the statement's text: checked, so the text can carry no SQL.
        if !is_hex(key) || !is_hex(fingerprint) {
            return Err(StoreError::new("keys and fingerprints are hex digests"));
        }
        let mut connection = self.pool.acquire().await.map_err(StoreError::new)?;
        let table = &self.table;
        let read = format!(
            "SELECT fingerprint, status, content_type, body FROM {table} WHERE key = '{key}'"
        );
        let rows = run_sql(&mut connection, &read)
            .await
            .map_err(StoreError::new)?;
        if let Some(row) = rows.first() {
            return Ok(Claim::Recorded(Recorded::from_row(row)?));
        }
        let wait = wait.as_millis().max(1);
        let script = format!(
            "BEGIN; SET LOCAL lock_timeout = '{wait}ms';\n\
             WITH claimed AS (INSERT INTO {table} (key, fingerprint) VALUES ('{key}', '{fingerprint}') \
             ON CONFLICT (key) DO NOTHING RETURNING key)\n\
             SELECT true AS claimed, NULL::text AS fingerprint, NULL::integer AS status, \
             NULL::text AS content_type, NULL::bytea AS body FROM claimed\n\
             UNION ALL SELECT false, fingerprint, status, content_type, body FROM {table} \
             WHERE key = '{key}' AND NOT EXISTS (SELECT 1 FROM claimed)"
        );
        let mut open = OpenTransaction {
            connection,
            open: true,
        };
        let rows = match run_sql(&mut open.connection, &script).await {
            Ok(rows) => rows,
            Err(error) if is_lock_timeout(&error) => {
                open.rollback().await;
                return Ok(Claim::StillRunning);
            }
            Err(error) => return Err(StoreError::new(error)),
        };
        match rows.first() {
            Some(row) if row.try_get::<bool, _>("claimed").map_err(StoreError::new)? => {
                Ok(Claim::Claimed(open))
            }
            Some(row) => {
                let recorded = Recorded::from_row(row)?;
                open.rollback().await;
                Ok(Claim::Recorded(recorded))
            }
            // The copy it waited for committed after this statement's snapshot: a new
            // statement sees its answer.
            None => {
                let rows = run_sql(&mut open.connection, &format!("{read}; ROLLBACK"))
                    .await
                    .map_err(StoreError::new)?;
                open.ended();
                let row = rows
                    .first()
                    .ok_or_else(|| StoreError::new("the claim's row vanished"))?;
                Ok(Claim::Recorded(Recorded::from_row(row)?))
            }
        }
    }

    pub(crate) fn table_name(&self) -> &str {
        &self.table
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// What claiming a key found.
pub(crate) enum Claim {
    /// The key is this delivery's, in this open transaction.
    Claimed(OpenTransaction),
    /// The key has a committed answer.
    Recorded(Recorded),
    /// Another copy still holds the key after the wait.
    StillRunning,
}

/// A committed record.
pub(crate) struct Recorded {
    pub(crate) fingerprint: String,
    pub(crate) response: StoredResponse,
}

impl Recorded {
    fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        let status: Option<i32> = row.try_get("status").map_err(StoreError::new)?;
        let status = status
            .and_then(|status| u16::try_from(status).ok())
            .ok_or_else(|| StoreError::new("a record without an answer"))?;
        Ok(Self {
            fingerprint: row.try_get("fingerprint").map_err(StoreError::new)?,
            response: StoredResponse {
                status,
                content_type: row.try_get("content_type").map_err(StoreError::new)?,
                body: row
                    .try_get::<Option<Vec<u8>>, _>("body")
                    .map_err(StoreError::new)?
                    .map(Bytes::from)
                    .unwrap_or_default(),
            },
        })
    }
}

/// A pooled connection inside a transaction this crate began. Dropped before the
/// transaction ended (a panic, a dropped request), it closes the connection instead of
/// returning it to the pool: the server rolls the transaction back.
pub(crate) struct OpenTransaction {
    connection: PoolConnection<Postgres>,
    open: bool,
}

impl OpenTransaction {
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Records `response` under `key` and commits, in one round trip.
    pub(crate) fn record_and_commit<'a>(
        self,
        table: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.record_and_commit_now(table, key, response))
    }

    async fn record_and_commit_now(
        mut self,
        table: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        // Every value goes in as hex, which can carry no SQL whatever the server's
        // string settings; the key was checked at the claim.
        let content_type = response.content_type.as_deref().map_or_else(
            || "NULL".to_owned(),
            |text| {
                format!(
                    "convert_from(decode('{}', 'hex'), 'UTF8')",
                    lower_hex(text.as_bytes())
                )
            },
        );
        let script = format!(
            "UPDATE {table} SET status = {status}, content_type = {content_type}, \
             body = decode('{body}', 'hex'), recorded_at = now() WHERE key = '{key}'; COMMIT",
            status = response.status,
            body = lower_hex(&response.body),
        );
        run_sql(&mut self.connection, &script)
            .await
            .map_err(StoreError::new)?;
        self.ended();
        Ok(())
    }

    /// Rolls back; a connection that cannot is closed, which rolls back too.
    pub(crate) fn rollback(mut self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if run_sql(&mut self.connection, "ROLLBACK").await.is_ok() {
                self.ended();
            }
        })
    }
}

impl OpenTransaction {
    /// The transaction was committed or rolled back: the connection may go back to the
    /// pool.
    fn ended(&mut self) {
        self.open = false;
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if self.open {
            self.connection.close_on_drop();
        }
    }
}

/// Runs `sql`, one or more statements in one round trip, and returns their rows; through
/// the `Executor` trait's boxed future, which is `Send` for the connection's lifetime
/// (`RawSql`'s own `async fn` is not provably so inside a boxed future).
fn run_sql<'c>(
    connection: &'c mut PgConnection,
    sql: &'c str,
) -> Pin<Box<dyn Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send + 'c>> {
    sqlx::Executor::fetch_all(connection, sqlx::raw_sql(sql))
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    // 55P03: lock_not_available, raised when `lock_timeout` passes.
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some("55P03"))
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}
