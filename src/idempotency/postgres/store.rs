use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use sqlx::{
    postgres::{PgRow, PgTransactionManager},
    Executor, PgConnection, PgPool, Row, TransactionManager,
};

use super::gate::{Gate, Gates};
use super::handoff::{Handoff, Held};
use crate::idempotency::key::HexDigest;
use crate::idempotency::{StoreError, StoreFuture, StoredResponse};
use crate::sign::lower_hex;

/// The table unless configured otherwise.
pub const DEFAULT_POSTGRES_TABLE: &str = "aghanim_idempotency";

/// How many records [`PostgresStore::purge_expired`] and
/// [`PostgresStore::forget_older_than`] change per statement, so that neither ever
/// holds many row locks at once.
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
/// fits. Within one process, copies of one delivery go to the database one at a time
/// (the others wait in memory, up to the layer's wait), so a burst of copies holds one
/// pooled connection, not one each. When the pool has no idle connection and no room
/// for another, a connection whose delivery has just committed goes straight to the
/// delivery that has waited longest, without the two pings sqlx sends when a connection
/// goes back to the pool and when it comes out (its last answer has just arrived), and
/// the next delivery claims inside the empty transaction the commit chained, without a
/// `ROLLBACK` and a `BEGIN` between them; after 8 deliveries in a row it goes back to
/// the pool, so that the pool's other users, and its `max_lifetime` and
/// `idle_timeout`, get their turn.
///
/// # What is kept, for how long
///
/// Every completed key is kept **for good**: a delivery that completed is never run
/// again, whatever its age (a manual resend, a late retry, a stored delivery re-signed
/// months later). [`purge_expired`](Self::purge_expired), run on a schedule, frees the
/// bytes of 2xx answers older than the retention, keeping the row: a duplicate then
/// gets its recorded status with `{"status":"ok"}`, marked replayed, and the handler
/// is not called. A purged row takes 314 bytes with its indexes, so about 300 MB per
/// million purchases (measured on PostgreSQL 15 with 100,000 rows, after `VACUUM`, by
/// `a_purged_record_costs_under_320_bytes_with_its_indexes` in `tests/postgres.rs`). Refusals
/// marked final (400 `declined`) keep their answer. Only
/// [`forget_older_than`](Self::forget_older_than), called explicitly with a horizon
/// you choose, deletes rows, and a delivery older than that horizon would run again.
///
/// # Bounds on the server
///
/// Each delivery's transaction carries the layer's
/// [`run_timeout`](crate::idempotency::IdempotencyLayer::run_timeout) plus its store
/// timeout (22 s by default) as `statement_timeout` and
/// `idle_in_transaction_session_timeout`, set with `SET LOCAL` so they end with it:
/// an instance frozen or cut off while it holds a claim has its transaction ended by
/// the server within that time, and the next delivery runs elsewhere. The claim's
/// `lock_timeout` (the layer's wait) applies to the claim alone, not to the handler's
/// statements. A connection the server cannot reach any more (a host gone) is found
/// by TCP keepalive: set the server's `tcp_keepalives_idle` short for the pool, as the
/// example server does through its connection options.
///
/// # Table
///
/// One row per completed delivery; keys are SHA-256 hex digests of the delivery's
/// scope, as in the other stores, and fingerprints those of the payload's JSON value:
/// their bytes are the store format, pinned by `tests/vectors/idempotency.json` (whose
/// script documents them), and a change to them is a breaking change of this table's
/// format. [`migration`](Self::migration) gives the SQL and
/// [`migrate`](Self::migrate) runs it:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS aghanim_idempotency (
///     key          text PRIMARY KEY,
///     fingerprint  text NOT NULL,
///     status       integer,
///     content_type text,
///     body         bytea,
///     recorded_at  timestamptz NOT NULL DEFAULT now(),
///     purged       boolean NOT NULL DEFAULT false
/// );
/// ALTER TABLE aghanim_idempotency ADD COLUMN IF NOT EXISTS purged boolean NOT NULL DEFAULT false;
/// CREATE INDEX IF NOT EXISTS aghanim_idempotency_recorded_at
///     ON aghanim_idempotency (recorded_at);
/// CREATE INDEX IF NOT EXISTS aghanim_idempotency_unpurged
///     ON aghanim_idempotency (recorded_at) WHERE NOT purged;
/// ```
///
/// A claim's row is inserted saying acknowledged: status 200, no body, `purged` (the
/// acknowledgement `{"status":"ok"}` is what a purged 2xx row replays), so it stays out
/// of the unpurged index, and committing a delivery answered with
/// [`Ack`](crate::events::Ack) writes nothing more. Another final answer is written
/// into the row at the commit, with `purged` false, for
/// [`purge_expired`](Self::purge_expired) to find. A row whose status is null was
/// committed without an answer (a handler's own `COMMIT`).
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
#[doc = include_str!("../../../docs/postgres.md")]
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: Arc<str>,
    statements: Arc<Statements>,
    gates: Arc<Gates>,
    handoff: Arc<Handoff>,
}

impl PostgresStore {
    /// A store on `pool`, in the table [`DEFAULT_POSTGRES_TABLE`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_POSTGRES_TABLE.into(),
            statements: Arc::new(Statements::of(DEFAULT_POSTGRES_TABLE)),
            gates: Arc::default(),
            handoff: Arc::default(),
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
        self.statements = Arc::new(Statements::of(table));
        Ok(self)
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The SQL that creates the table and its indexes, if they do not exist.
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
                 recorded_at  timestamptz NOT NULL DEFAULT now(),\n    \
                 purged       boolean NOT NULL DEFAULT false\n\
             );\n\
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS purged boolean NOT NULL DEFAULT false;\n\
             CREATE INDEX IF NOT EXISTS {index}_recorded_at ON {table} (recorded_at);\n\
             CREATE INDEX IF NOT EXISTS {index}_unpurged ON {table} (recorded_at) WHERE NOT purged;\n"
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

    /// Frees the bytes of the 2xx answers recorded more than `retention` ago, a
    /// thousand per statement until none is left, and returns how many. The rows stay:
    /// a duplicate of such a delivery still gets a 2xx, marked replayed, and never runs
    /// the handler again. Schedule it (the example server runs it hourly).
    ///
    /// ```no_run
    /// # async fn run(store: aghanim_webhook::idempotency::PostgresStore) -> Result<(), aghanim_webhook::idempotency::StoreError> {
    /// use aghanim_webhook::idempotency::DEFAULT_RETENTION;
    ///
    /// let purged = store.purge_expired(DEFAULT_RETENTION).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When the database cannot be reached; the batches already purged stay purged.
    pub async fn purge_expired(&self, retention: Duration) -> Result<u64, StoreError> {
        let table = &self.table;
        self.in_batches(
            &format!(
                "UPDATE {table} SET body = NULL, content_type = NULL, purged = true WHERE key IN \
                 (SELECT key FROM {table} WHERE NOT purged AND status BETWEEN 200 AND 299 \
                 AND recorded_at < now() - make_interval(secs => $1) LIMIT $2)"
            ),
            retention,
        )
        .await
    }

    /// Deletes every record, answered or purged, recorded more than `age` ago, and
    /// returns how many: **a delivery of one of those keys would run again**. Nothing
    /// calls it; call it only with a horizon past which no delivery can come back
    /// (Aghanim documents none).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached; the batches already deleted stay deleted.
    pub async fn forget_older_than(&self, age: Duration) -> Result<u64, StoreError> {
        let table = &self.table;
        self.in_batches(
            &format!(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
                 WHERE recorded_at < now() - make_interval(secs => $1) LIMIT $2)"
            ),
            age,
        )
        .await
    }

    /// Runs `statement` with `age` and the batch size until it changes fewer rows than
    /// a batch; how many it changed.
    async fn in_batches(&self, statement: &str, age: Duration) -> Result<u64, StoreError> {
        let mut changed = 0;
        loop {
            let done = sqlx::query(statement)
                .bind(age.as_secs_f64())
                .bind(PURGE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?
                .rows_affected();
            changed += done;
            if done < PURGE_BATCH.unsigned_abs() {
                return Ok(changed);
            }
        }
    }

    /// Waits, at most `wait`, until no other copy of `key` in this process is between
    /// its claim and its answer.
    pub(crate) async fn enter(&self, key: &str, wait: Duration) -> Option<Gate> {
        self.gates.enter(key, wait).await
    }

    /// The delivery's transaction, begun with its claim inserted, in one round trip; or,
    /// when the key is committed already, its answer, read in one more. A copy running
    /// elsewhere holds the key's row: the insert waits for it, at most `bounds.wait`,
    /// then, if it committed, its answer is read; if it rolled back, the key is
    /// claimed. Claiming first costs a duplicate one round trip more than reading
    /// first would, and saves every first delivery one (`scripts/load-postgres.py`
    /// measured both); PostgreSQL logs each duplicate's refused insert as an error.
    pub(crate) fn claim<'a>(
        &'a self,
        key: &'a HexDigest,
        fingerprint: &'a HexDigest,
        bounds: Bounds,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_now(key, fingerprint, bounds))
    }

    async fn claim_now(
        &self,
        key: &HexDigest,
        fingerprint: &HexDigest,
        bounds: Bounds,
    ) -> Result<Claim, StoreError> {
        let mut held = self
            .handoff
            .acquire(&self.pool)
            .await
            .map_err(StoreError::new)?;
        if PgTransactionManager::get_transaction_depth(&held.connection) > 0 {
            match self.claim_chained(held, key, fingerprint, bounds).await {
                Ok(claimed) => return claimed,
                Err(rolled_back) => held = rolled_back,
            }
        }
        let connection = &mut held.connection;
        // The insert (prepared, executed by name) comes before `BEGIN` in one simple
        // query: PostgreSQL includes it in the transaction that `BEGIN` opens, and when
        // it fails (the key committed meanwhile, or still held when the lock wait ends)
        // the whole query rolls back and the connection stays outside any transaction,
        // its settings untouched. The row is inserted answered with the
        // acknowledgement, which most deliveries answer: committing it needs no other
        // write. sqlx begins the transaction with this statement, so it knows one is
        // open: a handler's `begin()` on it is a savepoint. The only values written
        // into the statement's text are hex digests, which by their type can carry no
        // SQL, and durations.
        let [wait, run] = bounds.settings();
        let begin = || {
            format!(
                "EXECUTE {prefix}_claim('{key}', '{fingerprint}', '{wait}', '{run}'); \
                 BEGIN; SET LOCAL lock_timeout TO DEFAULT",
                prefix = self.statements.prefix,
                key = key.as_str(),
                fingerprint = fingerprint.as_str(),
            )
        };
        let mut claimed = PgTransactionManager::begin(connection, Some(begin().into())).await;
        if matches!(&claimed, Err(error) if is_sqlstate(error, INVALID_SQL_STATEMENT_NAME)) {
            // The first claim on this connection: its statements are prepared once per
            // session (each on its own, in case the other one is there already).
            for prepare in self.prepare_statements() {
                match connection.execute(prepare.as_str()).await {
                    Err(error) if !is_sqlstate(&error, DUPLICATE_PREPARED_STATEMENT) => {
                        return Err(StoreError::new(error))
                    }
                    _ => {}
                }
            }
            claimed = PgTransactionManager::begin(connection, Some(begin().into())).await;
        }
        match claimed {
            Ok(()) => Ok(Claim::Claimed(OpenTransaction { held: Some(held) })),
            Err(error) if is_sqlstate(&error, LOCK_NOT_AVAILABLE) => Ok(Claim::StillRunning),
            // The copy it waited for, or one just before it, committed: its answer, read
            // on the same connection.
            Err(error) if is_sqlstate(&error, UNIQUE_VIOLATION) => {
                let read = sqlx::query(&self.statements.read).bind(key.as_str());
                let row = read
                    .fetch_optional(&mut *held.connection)
                    .await
                    .map_err(StoreError::new)?;
                held.pass_on();
                Claim::recorded(row.as_ref())
            }
            Err(error) => Err(StoreError::new(error)),
        }
    }

    /// The claim on a connection handed on inside the empty transaction that the
    /// commit of its last delivery chained: the insert goes into that transaction as
    /// one statement sqlx has prepared, which saves the `ROLLBACK`, the `BEGIN` and the
    /// `SET LOCAL` between them, and the parsing of the claim. The connection back,
    /// outside any transaction once its queued `ROLLBACK` is sent, when the insert
    /// failed for another reason than the key's (a copy committed it, or holds it
    /// still): the claim is then made as on any other connection.
    async fn claim_chained(
        &self,
        mut held: Held,
        key: &HexDigest,
        fingerprint: &HexDigest,
        bounds: Bounds,
    ) -> Result<Result<Claim, StoreError>, Held> {
        let [wait, run] = bounds.settings();
        let claim = sqlx::query(&self.statements.chained_claim)
            .bind(key.as_str())
            .bind(fingerprint.as_str())
            .bind(wait)
            .bind(run);
        let error = match claim.execute(&mut *held.connection).await {
            Ok(_) => return Ok(Ok(Claim::Claimed(OpenTransaction { held: Some(held) }))),
            Err(error) => error,
        };
        if is_sqlstate(&error, UNIQUE_VIOLATION) {
            // The failed transaction rolled back, the committed answer read, and an
            // empty transaction begun again, in one round trip, so that sqlx's count of
            // one open transaction stays true and the connection can go on as it came.
            // Simple queries answer in text, which the row's decoding reads as well.
            let read = format!(
                "ROLLBACK; {} WHERE key = '{}'; BEGIN",
                self.statements.select,
                key.as_str()
            );
            let rows = held.connection.fetch_all(read.as_str()).await;
            return Ok(match rows {
                Ok(rows) => {
                    held.pass_on();
                    Claim::recorded(rows.first())
                }
                Err(error) => Err(StoreError::new(error)),
            });
        }
        PgTransactionManager::start_rollback(&mut held.connection);
        if is_sqlstate(&error, LOCK_NOT_AVAILABLE) {
            return Ok(Ok(Claim::StillRunning));
        }
        Err(held)
    }

    /// The statements each session prepares once: the claim's insert, and the check
    /// that the connection is still in the claim's transaction.
    fn prepare_statements(&self) -> [String; 2] {
        let Statements { prefix, insert, .. } = &*self.statements;
        let claim = format!("PREPARE {prefix}_claim (text, text, text, text) AS {insert}");
        // No column to describe or send: what it checks is whether it raises.
        let open = format!("PREPARE {prefix}_open AS SELECT WHERE {CLAIM_IS_OPEN}");
        [claim, open]
    }

    /// Marks `key` committed without an answer, after a handler's own `COMMIT` ended
    /// the delivery's transaction: its row was inserted saying acknowledged, and what
    /// the handler did after its `COMMIT` is not known. A duplicate that reads the row
    /// between that `COMMIT` and this mark (on another instance: this one's copies wait
    /// at the gate) is replayed the acknowledgement.
    pub(crate) async fn mark_unanswered(&self, key: &HexDigest) -> Result<(), StoreError> {
        let mark = format!(
            "UPDATE {table} SET status = NULL, content_type = NULL, body = NULL \
             WHERE key = $1",
            table = self.table
        );
        sqlx::query(&mark)
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::new)
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

/// What a claim may wait, and how long the server lets its transaction stay idle or
/// in one statement; both under 2³¹ ms (the layer's builders check it).
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) wait: Duration,
    pub(crate) run: Duration,
}

impl Bounds {
    /// The wait and the run as the values of timeout settings.
    fn settings(self) -> [String; 2] {
        [self.wait, self.run].map(|bound| format!("{}ms", bound.as_millis().max(1)))
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

impl Claim {
    /// The committed answer in `row`, the key's, read after its insert was refused.
    fn recorded(row: Option<&PgRow>) -> Result<Self, StoreError> {
        let row = row.ok_or_else(|| StoreError::new("the claim's row vanished"))?;
        Recorded::from_row(row).map(Self::Recorded)
    }
}

/// A committed record.
pub(crate) struct Recorded {
    pub(crate) fingerprint: String,
    pub(crate) response: StoredResponse,
}

impl Recorded {
    fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        Ok(Self {
            fingerprint: row.try_get("fingerprint").map_err(StoreError::new)?,
            response: answer_of(row)?
                .ok_or_else(|| StoreError::new("a record without an answer"))?,
        })
    }
}

/// The answer a duplicate gets from a row's `status`, `content_type` and `body`;
/// `None` when the row has no status (committed without an answer).
pub(super) fn answer_of(row: &PgRow) -> Result<Option<StoredResponse>, StoreError> {
    let Some(status) = row
        .try_get::<Option<i32>, _>("status")
        .map_err(StoreError::new)?
    else {
        return Ok(None);
    };
    let status = u16::try_from(status)
        .map_err(|_| StoreError::new(format!("a recorded status of {status}")))?;
    let body: Option<Vec<u8>> = row.try_get("body").map_err(StoreError::new)?;
    Ok(Some(match body {
        Some(body) => StoredResponse {
            status,
            content_type: row.try_get("content_type").map_err(StoreError::new)?,
            body: Bytes::from(body),
        },
        // The acknowledgement, which the row says from its claim on, or a 2xx answer
        // purged past the retention: the delivery was applied, and that is what it says.
        None => StoredResponse {
            status,
            content_type: Some(APPLIED_CONTENT_TYPE.to_owned()),
            body: Bytes::from_static(APPLIED_BODY.as_bytes()),
        },
    }))
}

/// What a delivery whose answer was purged, or was the acknowledgement, is answered,
/// with its recorded status.
const APPLIED_BODY: &str = r#"{"status":"ok"}"#;
const APPLIED_CONTENT_TYPE: &str = "application/json";
/// The status a claim's row is inserted with: the acknowledgement's.
const ACKNOWLEDGED: u16 = 200;

/// The delivery's transaction, begun with its claim. Dropped before it ends (a panic,
/// a dropped request), it is rolled back before the connection is used again.
pub(crate) struct OpenTransaction {
    /// There until the transaction ends.
    held: Option<Held>,
}

impl OpenTransaction {
    pub(crate) fn connection(&mut self) -> Option<&mut PgConnection> {
        self.held.as_mut().map(|held| &mut *held.connection)
    }

    /// Records `response` under `key` and commits, in one round trip; `false`, rolling
    /// back what it can, when the transaction is no longer the claim's: the handler
    /// ended it itself (a raw `COMMIT` or `ROLLBACK`).
    pub(crate) fn record_and_commit<'a>(
        self,
        store: &'a PostgresStore,
        key: &'a HexDigest,
        response: &'a StoredResponse,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.record_and_commit_now(store, key, response))
    }

    async fn record_and_commit_now(
        mut self,
        store: &PostgresStore,
        key: &HexDigest,
        response: &StoredResponse,
    ) -> Result<bool, StoreError> {
        // One simple query, whose statements run in order until one fails. The check
        // (the prepared one, or in the `UPDATE` that records another answer) fails
        // outside the claim's transaction (the handler's own `COMMIT` or
        // `ROLLBACK` ended it) and in a transaction a statement of the handler's
        // aborted, where a bare `COMMIT` would roll back without an error; nothing
        // after it runs. `COMMIT AND CHAIN` leaves an empty transaction open, so that
        // sqlx's count of open transactions stays true: the next delivery handed the
        // connection claims in it, and a connection going back to the pool has its
        // `ROLLBACK` queued, to go with the ping sqlx sends then.
        let recording;
        let statement = if is_acknowledgement(response) {
            store.statements.commit.as_str()
        } else {
            recording = format!("{}{COMMIT}", record_statement(&store.table, key, response));
            recording.as_str()
        };
        let Some(connection) = self.connection() else {
            return Err(StoreError::new("the delivery's transaction has ended"));
        };
        // A query without arguments goes as a simple query, several statements in one.
        match connection.execute(statement).await {
            Ok(_) => {
                // Its answer has just been read in full: the next delivery may use it.
                if let Some(held) = self.committed() {
                    held.pass_on();
                }
                Ok(true)
            }
            Err(error) if is_sqlstate(&error, INVALID_TEXT_REPRESENTATION) => Ok(false),
            Err(error) => Err(StoreError::new(error)),
        }
    }

    /// Rolls back; a connection that cannot is closed when it returns to the pool.
    pub(crate) fn rollback(mut self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Some(connection) = self.connection() {
                let _ = PgTransactionManager::rollback(connection).await;
            }
        })
    }

    /// The connection after its commit: in the empty transaction that `COMMIT AND
    /// CHAIN` opened, when that is the one transaction sqlx counts; otherwise (a
    /// savepoint the handler left open) as [`end`](Self::end) leaves it.
    fn committed(&mut self) -> Option<Held> {
        let depth = self
            .connection()
            .map(|c| PgTransactionManager::get_transaction_depth(c));
        if depth == Some(1) {
            self.held.take()
        } else {
            self.end()
        }
    }

    /// The connection, outside any transaction once its queued `ROLLBACK`s are sent.
    fn end(&mut self) -> Option<Held> {
        let mut held = self.held.take()?;
        held.leave_transactions();
        Some(held)
    }
}

/// Whether `response` is what the claim's row already says: 200, JSON,
/// `{"status":"ok"}`.
fn is_acknowledgement(response: &StoredResponse) -> bool {
    response.status == ACKNOWLEDGED
        && response.content_type.as_deref() == Some(APPLIED_CONTENT_TYPE)
        && response.body == APPLIED_BODY.as_bytes()
}

/// The `UPDATE` that records `response` in the claim's row, its values written in as
/// hex digits and integers only, so that no byte of the answer is read as SQL; it
/// checks that the transaction is still the claim's, as the prepared check does.
fn record_statement(table: &str, key: &HexDigest, response: &StoredResponse) -> String {
    let content_type = response.content_type.as_ref().map_or_else(
        || "NULL".to_owned(),
        |content_type| {
            format!(
                "convert_from(decode('{}', 'hex'), 'UTF8')",
                lower_hex(content_type.as_bytes())
            )
        },
    );
    format!(
        "UPDATE {table} SET status = {status}, content_type = {content_type}, \
         body = decode('{body}', 'hex'), purged = false WHERE key = '{key}' \
         AND {CLAIM_IS_OPEN}; ",
        status = response.status,
        body = lower_hex(&response.body),
        key = key.as_str(),
    )
}

/// The names of the statements each session prepares, and the commit built on them.
struct Statements {
    /// The start of each name: one set per table, so that stores on other tables can
    /// share a pool.
    prefix: String,
    /// The claim's insert, with the bounds of its transaction: `set_config(.., true)`
    /// is `SET LOCAL`, evaluated before the row is inserted, so the lock timeout
    /// bounds the insert's wait for a copy that holds the key and the other bounds
    /// hold for every statement after it.
    insert: String,
    /// The claim in a transaction open already, by sqlx's statement cache, which
    /// parses it once per connection: the insert, then the lock timeout back to its
    /// default (`set_config` of NULL) in the same statement.
    chained_claim: String,
    /// The check and the commit, for an answer the claim's row holds already.
    commit: String,
    /// The columns a duplicate is answered from, a `WHERE` to follow.
    select: String,
    /// Those of the row whose key is `$1`.
    read: String,
}

impl Statements {
    fn of(table: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(table.as_bytes());
        let prefix = format!("aghanim_webhook_{}", lower_hex(&digest[..8]));
        let commit = format!("EXECUTE {prefix}_open; {COMMIT}");
        // `purged` is true: `set_config` returns the value it set, never NULL. Setting
        // the bounds in the row's own values, not in a subquery, spares a plan node.
        let insert = format!(
            "INSERT INTO {table} (key, fingerprint, status, purged) \
             VALUES ($1, $2, {ACKNOWLEDGED}, \
             set_config('lock_timeout', $3, true) IS NOT NULL \
             AND set_config('statement_timeout', $4, true) IS NOT NULL \
             AND set_config('idle_in_transaction_session_timeout', $4, true) IS NOT NULL \
             AND set_config('{CLAIM_OPEN}', 'on', true) IS NOT NULL)"
        );
        let chained_claim = format!("{insert} RETURNING set_config('lock_timeout', NULL, true)");
        let select = format!("SELECT fingerprint, status, content_type, body FROM {table}");
        let read = format!("{select} WHERE key = $1");
        Self {
            prefix,
            insert,
            chained_claim,
            commit,
            select,
            read,
        }
    }
}

/// Commits, leaving an empty transaction open (see `record_and_commit_now`).
const COMMIT: &str = "COMMIT AND CHAIN";

/// The name of a setting `on` only inside a delivery's transaction: set with the
/// claim, gone with the transaction however it ends.
macro_rules! claim_open {
    () => {
        "aghanim_webhook.claim_open"
    };
}
const CLAIM_OPEN: &str = claim_open!();
/// True in the claim's transaction; outside it the setting reads '', which is no
/// boolean: `INVALID_TEXT_REPRESENTATION`.
const CLAIM_IS_OPEN: &str = concat!("current_setting('", claim_open!(), "')::boolean");

/// Raised when `lock_timeout` passes.
pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
pub(super) const UNIQUE_VIOLATION: &str = "23505";
/// Raised by the check outside the claim's transaction.
const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// Raised by `PREPARE` of a name the session has prepared already.
const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// Raised by `EXECUTE` of a statement the session has not prepared.
const INVALID_SQL_STATEMENT_NAME: &str = "26000";

pub(super) fn is_sqlstate(error: &sqlx::Error, code: &str) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some(code))
}
