use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use sqlx::{postgres::PgRow, AssertSqlSafe, Executor, PgPool, Row, SqlSafeStr};

use super::failure::{ClaimError, CommitError};
use super::gate::{Gate, Gates};
use super::transaction::OpenTransaction;
use crate::idempotency::key::HexDigest;
use crate::idempotency::{StoreError, StoredResponse};
use crate::sign::lower_hex;

/// The name of a setting `on` only inside a delivery's transaction: set with the
/// claim, gone with the transaction however it ends.
macro_rules! claim_open {
    () => {
        "aghanim_webhook.claim_open"
    };
}
/// The name of the setting the layer's own commit sets (see [`COMMITTING`]).
macro_rules! committing {
    () => {
        "aghanim_webhook.committing"
    };
}

/// The table unless configured otherwise.
pub const DEFAULT_POSTGRES_TABLE: &str = "aghanim_idempotency";

/// How many records [`PostgresStore::purge_expired`] and
/// [`PostgresStore::forget_older_than`] change per statement, so that neither ever
/// holds many row locks at once.
const PURGE_BATCH: i64 = 1_000;

/// How long [`PostgresStore::migrate`] waits for a lock before it gives up and tries
/// again, and how many times it tries: a migration queued behind a long delivery would
/// otherwise hold every new claim behind it.
const MIGRATION_LOCK_TIMEOUT: &str = "2s";
const MIGRATION_TRIES: u32 = 10;

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
/// The pool is sqlx 0.9's [`PgPool`] (what `cargo add sqlx` gives), so the game's own
/// pool fits; sqlx 0.9 needs Rust 1.94. Within one process, copies of one delivery go
/// to the database one at a time (the others wait in memory, up to the layer's wait),
/// so a burst of copies holds one pooled connection, not one each. Every delivery takes
/// its connection from the pool and gives it back, outside any transaction, so the
/// pool's `before_acquire` and `after_release` hooks run for each.
///
/// The store keeps nothing in a database session between transactions: its statements
/// are simple queries (no prepared statement of its own, whatever sqlx's statement
/// cache is set to) and its bounds are set with `SET LOCAL`, so it works behind a
/// transaction pooler (PgBouncer in transaction mode, Supavisor, Neon's pooler):
/// [poolers](#poolers-and-managed-postgresql).
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
/// `idle_in_transaction_session_timeout`, set with `SET LOCAL` right after `BEGIN`, so
/// they end with it: an instance frozen or cut off while it holds a claim has its
/// transaction ended by the server within that time, and the next delivery runs
/// elsewhere. The claim's `lock_timeout` (what is left of the layer's wait) is set
/// before the claim takes its first lock, so a lock on the table bounds the claim too;
/// it is set back to the session's own value before the handler's statements. A
/// connection the server cannot reach any more (a host gone) is found by TCP
/// keepalive: set the server's `tcp_keepalives_idle` short for the pool, as the example
/// server does through its connection options.
///
/// # Table
///
/// One row per completed delivery; keys are SHA-256 hex digests of the delivery's
/// scope, as in the other stores, and fingerprints those of the payload's JSON value:
/// their bytes are the store format, pinned by `tests/vectors/idempotency.json` (whose
/// script documents them), and a change to them is a breaking change of this table's
/// format. [`migration`](Self::migration) gives the SQL and
/// [`migrate`](Self::migrate) runs it when the table or one of its indexes is missing:
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
/// `migrate` also adds a trigger function and two triggers: a claim's row commits only
/// with the layer's own `COMMIT` (the layer sets `aghanim_webhook.committing` in the
/// statement before it; a handler's own `COMMIT` fails and rolls the delivery back),
/// and nothing changes the records while a delivery's claim is open on the session.
/// [`migration`](Self::migration) has them. So a claim's row is inserted as the
/// acknowledgement (status 200, no body: it replays `{"status":"ok"}`), out of the
/// unpurged index, and committing a delivery answered with [`Ack`](crate::events::Ack)
/// writes nothing more; another final answer is written into the row, with its bytes,
/// for [`purge_expired`](Self::purge_expired) to find. A row without a status can only
/// be one an older version of this store left when a handler's own `COMMIT` went
/// through: its duplicates are answered 503 until an operator decides, and
/// `aghanim-webhook records stuck` lists it. With the triggers disabled
/// (`session_replication_role = replica`, `ALTER TABLE .. DISABLE TRIGGER`), a
/// handler's own `COMMIT` would commit the claim as acknowledged: `migrate` enables
/// them again, as `ALWAYS`, so that they fire under `session_replication_role =
/// replica` too.
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
    gates: Arc<Gates>,
    pub(super) max_letters: Option<usize>,
}

impl PostgresStore {
    /// A store on `pool`, in the table [`DEFAULT_POSTGRES_TABLE`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_POSTGRES_TABLE.into(),
            gates: Arc::default(),
            max_letters: None,
        }
    }

    /// Keeps at most `max` [dead letters](crate::dead_letter) instead of
    /// [`DEFAULT_MAX_DEAD_LETTERS`](crate::dead_letter::DEFAULT_MAX_DEAD_LETTERS).
    #[must_use]
    pub fn max_dead_letters(mut self, max: usize) -> Self {
        self.max_letters = Some(max);
        self
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

    /// The SQL that creates the table and its indexes, if they do not exist.
    pub fn migration(&self) -> String {
        let table = &self.table;
        let [recorded_at, unpurged] = self.index_names();
        let index = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
        let (recorded_at, unpurged) = (index(&recorded_at), index(&unpurged));
        let function = self.function_name();
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
             CREATE INDEX IF NOT EXISTS {recorded_at} ON {table} (recorded_at);\n\
             CREATE INDEX IF NOT EXISTS {unpurged} ON {table} (recorded_at) WHERE NOT purged;\n\
             -- A claim's row commits only with the layer's own COMMIT, never with a\n\
             -- handler's (the layer sets {committing} just before it), and a\n\
             -- handler changes no record while its delivery's claim is open.\n\
             CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN\n    \
                 IF current_setting('{committing}', true) IS DISTINCT FROM 'on'\n       \
                    AND (TG_OP = 'INSERT' OR current_setting('{claim_open}', true) = 'on') THEN\n        \
                     RAISE EXCEPTION 'aghanim-webhook: a delivery''s claim and the records \
                         change only through the layer, never through its handler'\n            \
                         USING ERRCODE = '{ONLY_THE_LAYER_COMMITS}';\n    \
                 END IF;\n    \
                 RETURN NULL;\n\
             END $$;\n\
             DO $$ BEGIN\n    \
                 IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = '{table}'::regclass\n                \
                                AND tgname = '{TRIGGER}') THEN\n        \
                     CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT ON {table}\n            \
                         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}();\n    \
                 END IF;\n    \
                 IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = '{table}'::regclass\n                \
                                AND tgname = '{RECORDS_TRIGGER}') THEN\n        \
                     CREATE TRIGGER {RECORDS_TRIGGER} BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}\n            \
                         FOR EACH STATEMENT EXECUTE FUNCTION {function}();\n    \
                 END IF;\n\
             END $$;\n\
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {TRIGGER};\n\
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {RECORDS_TRIGGER};\n\
             -- Authentic deliveries that were not applied: crate::dead_letter.\n\
             {letters}",
            committing = committing!(),
            claim_open = claim_open!(),
            letters = self.letters_migration(),
        )
    }

    /// The trigger's function, in the table's schema when it names one.
    fn function_name(&self) -> String {
        match self.table.rsplit_once('.') {
            Some((schema, _)) => format!("{schema}.{TRIGGER}_only_the_layer_commits"),
            None => format!("{TRIGGER}_only_the_layer_commits"),
        }
    }

    /// The indexes' names, in the table's schema when it names one.
    fn index_names(&self) -> [String; 2] {
        let table = &*self.table;
        ["recorded_at", "unpurged"].map(|suffix| format!("{table}_{suffix}"))
    }

    /// Creates the table and its indexes when one of them is missing, and does nothing
    /// else: an instance starting while deliveries run takes no lock that a claim
    /// would wait for.
    ///
    /// It reads the catalog first; only when something is missing does it run
    /// [`migration`](Self::migration), in a transaction that holds an advisory lock
    /// (instances starting together would otherwise race in `CREATE TABLE IF NOT
    /// EXISTS`) under a 2 s `lock_timeout`, tried again up to ten times when a lock is
    /// not to be had: DDL queued behind a long delivery would hold every new claim
    /// behind it.
    ///
    /// # Errors
    ///
    /// When the database refuses it, or a lock it needs stays held through every try.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            if self.schema_is_current().await? {
                return Ok(());
            }
            match self.run_migration().await {
                Ok(()) => return Ok(()),
                Err(error) if is_sqlstate(&error, LOCK_NOT_AVAILABLE) => {
                    tries += 1;
                    if tries >= MIGRATION_TRIES {
                        return Err(StoreError::new(error));
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(tries))).await;
                }
                Err(error) => return Err(StoreError::new(error)),
            }
        }
    }

    /// Whether the table, its `purged` column and its indexes are all there; reading
    /// the catalog takes no lock on the table.
    async fn schema_is_current(&self) -> Result<bool, StoreError> {
        let [recorded_at, unpurged] = self.index_names();
        let mut pinned = self.pinned().await?;
        let current = sqlx::query_scalar(
            "SELECT to_regclass($1) IS NOT NULL \
             AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) \
                         AND attname = 'purged' AND NOT attisdropped) \
             AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL \
             AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) \
                  AND tgname IN ($4, $5) AND tgenabled = 'A') = 2 \
             AND to_regclass($6) IS NOT NULL",
        )
        .bind(&*self.table)
        .bind(recorded_at)
        .bind(unpurged)
        .bind(TRIGGER)
        .bind(RECORDS_TRIGGER)
        .bind(self.letters_table())
        .fetch_one(&mut *pinned)
        .await
        .map_err(StoreError::new)?;
        pinned.commit().await.map_err(StoreError::new)?;
        Ok(current)
    }

    async fn run_migration(&self) -> Result<(), sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let lock = format!(
            "SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'; \
             SELECT pg_advisory_xact_lock(hashtext('aghanim-webhook migration'));\n{}",
            self.migration()
        );
        sqlx::raw_sql(AssertSqlSafe(lock))
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await
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
            format!(
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
        // A failed delivery kept for a forgotten key stays resolved (see `forget`).
        let (table, letters) = (&self.table, self.letters_table());
        self.in_batches(
            format!(
                "WITH gone AS (SELECT key, status FROM {table} \
                 WHERE recorded_at < now() - make_interval(secs => $1) LIMIT $2), \
                 resolved AS (UPDATE {letters} l SET resolved_at = now() FROM gone \
                 WHERE l.key = gone.key AND gone.status IS NOT NULL) \
                 DELETE FROM {table} WHERE key IN (SELECT key FROM gone)"
            ),
            age,
        )
        .await
    }

    /// A transaction of its own on a pooled connection, for a statement with bound
    /// parameters: sqlx sends its parse and its bind in two exchanges, and a transaction
    /// pooler (PgBouncer in transaction mode) may give each to another server
    /// connection unless a transaction holds the one.
    pub(super) async fn pinned(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(StoreError::new)
    }

    /// Runs `statement` with `age` and the batch size until it changes fewer rows than
    /// a batch; how many it changed.
    async fn in_batches(&self, statement: String, age: Duration) -> Result<u64, StoreError> {
        let statement = AssertSqlSafe(statement).into_sql_str();
        let mut changed = 0;
        loop {
            let mut pinned = self.pinned().await?;
            let done = sqlx::query(statement.clone())
                .bind(age.as_secs_f64())
                .bind(PURGE_BATCH)
                .execute(&mut *pinned)
                .await
                .map_err(StoreError::new)?
                .rows_affected();
            pinned.commit().await.map_err(StoreError::new)?;
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
    /// claimed. PostgreSQL logs each duplicate's refused insert as an error.
    ///
    /// Dropped at any point (a timeout around it, a client that hangs up), the
    /// connection is closed, never given back to the pool with the claim's
    /// transaction in an unknown state.
    pub(crate) async fn claim(
        &self,
        key: &HexDigest,
        fingerprint: &HexDigest,
        bounds: Bounds,
    ) -> Result<Claim, ClaimError> {
        let connection = self.pool.acquire().await.map_err(ClaimError::Acquire)?;
        // From here until the reply says where the transaction stands, dropping the
        // claim closes the connection.
        let mut open = OpenTransaction::new(connection);
        let [wait, run] = bounds.settings();
        // The only values written into the text are hex digests, which by their type
        // can carry no SQL, and durations. The lock timeout is in force before the
        // insert takes its first lock (the table's), and the session's own is saved to
        // be set back for the handler's statements; the settings are one statement,
        // whose `WHERE` reads the session's lock timeout, saved, before the row's
        // values set the claim's. The transaction's id, which no setting of the
        // handler's can change, is what tells later that it is still the delivery's.
        let claim = format!(
            "BEGIN; \
             SELECT set_config('lock_timeout', '{wait}', true), \
                    set_config('statement_timeout', '{run}', true), \
                    set_config('idle_in_transaction_session_timeout', '{run}', true), \
                    set_config('{CLAIM_OPEN}', 'on', true) \
             FROM (SELECT set_config('{SESSION_LOCK_TIMEOUT}', current_setting('lock_timeout'), \
                                     true) AS saved) AS session WHERE saved IS NOT NULL; \
             INSERT INTO {table} (key, fingerprint, status, purged) \
             VALUES ('{key}', '{fingerprint}', {ACKNOWLEDGED}, true) \
             RETURNING txid_current() AS transaction_id, \
                 set_config('lock_timeout', current_setting('{SESSION_LOCK_TIMEOUT}'), true)",
            table = self.table,
            key = key.as_str(),
            fingerprint = fingerprint.as_str(),
        );
        let pg = open.connection().pooled_mut();
        let error = match pg.fetch_all(sqlx::raw_sql(AssertSqlSafe(claim))).await {
            Ok(rows) => {
                let claimed = rows
                    .last()
                    .and_then(|row| row.try_get::<i64, _>("transaction_id").ok())
                    .ok_or_else(|| {
                        ClaimError::Read(StoreError::new("the claim gave no transaction id"))
                    })?;
                open.connection().claimed(claimed);
                return Ok(Claim::Claimed(open));
            }
            Err(error) => error,
        };
        // The insert failed inside the transaction `BEGIN` opened.
        if is_sqlstate(&error, LOCK_NOT_AVAILABLE) {
            pg.execute("ROLLBACK").await.map_err(ClaimError::Claim)?;
            open.ended();
            return Ok(Claim::StillRunning(error));
        }
        if !is_sqlstate(&error, UNIQUE_VIOLATION) {
            return Err(ClaimError::Claim(error));
        }
        // The copy it waited for, or one just before it, committed: its answer, read on
        // the same connection, after the `ROLLBACK`, in one round trip. Simple queries
        // answer in text, which the row's decoding reads as well.
        let read = format!(
            "ROLLBACK; SELECT fingerprint, status, content_type, body FROM {} WHERE key = '{}'",
            self.table,
            key.as_str()
        );
        let row = pg
            .fetch_optional(sqlx::raw_sql(AssertSqlSafe(read)))
            .await
            .map_err(ClaimError::Claim)?;
        open.ended();
        let row = row.ok_or(ClaimError::Vanished)?;
        match answer_of(&row).map_err(ClaimError::Read)? {
            Some(response) => Ok(Claim::Recorded(Recorded {
                fingerprint: row.try_get("fingerprint").map_err(ClaimError::Claim)?,
                response,
            })),
            None => Ok(Claim::Unanswered),
        }
    }

    /// Records `response` under `key` in the delivery's transaction and commits it, in
    /// one round trip: a dropped savepoint's rollback if one is left, one statement that
    /// raises unless the transaction is still the delivery's (not ended by the handler;
    /// an aborted one raises by itself) and sets what the table's trigger asks of a
    /// commit, the answer written into the claim's row when the row does not say it
    /// already, then `COMMIT`.
    pub(crate) async fn record_and_commit(
        &self,
        open: &mut OpenTransaction,
        key: &HexDigest,
        response: &StoredResponse,
    ) -> Result<(), CommitError> {
        let connection = open.connection();
        if connection.savepoints_open() > 0 {
            return Err(CommitError::SavepointLeftOpen);
        }
        let commit = format!(
            "{}SELECT {COMMITTING} WHERE 1 / coalesce((txid_current_if_assigned() = {})::int, 0) = 1; \
             {}COMMIT",
            connection.owed_rollback(),
            connection.transaction_id(),
            record_statement(&self.table, key, response),
        );
        connection
            .pooled_mut()
            .execute(sqlx::raw_sql(AssertSqlSafe(commit)))
            .await
            .map_err(CommitError::of)?;
        open.ended();
        Ok(())
    }

    /// Rolls the delivery's transaction back, and says whether it was still the
    /// delivery's: `false` when the handler had ended it itself. A connection that
    /// cannot roll back is closed.
    pub(crate) async fn release(open: &mut OpenTransaction) -> Result<bool, sqlx::Error> {
        let claim_was_open = match open.connection().claim_is_open().await {
            Ok(open) => open,
            Err(error) if is_sqlstate(&error, IN_FAILED_SQL_TRANSACTION) => true,
            Err(error) => return Err(error),
        };
        Self::rollback(open).await?;
        Ok(claim_was_open)
    }

    /// Rolls the delivery's transaction back, savepoints and all; a connection that
    /// cannot is closed.
    pub(crate) async fn rollback(open: &mut OpenTransaction) -> Result<(), sqlx::Error> {
        open.connection().pooled_mut().execute("ROLLBACK").await?;
        open.ended();
        Ok(())
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
    /// Another copy still holds the key after the wait, or something holds a lock on
    /// the table: the lock timeout's error.
    StillRunning(sqlx::Error),
    /// The key was committed without an answer, by something other than the layer (a
    /// handler's own `COMMIT`): what happened is not known, so it is neither run nor
    /// replayed until an operator decides.
    Unanswered,
}

/// A committed record.
pub(crate) struct Recorded {
    pub(crate) fingerprint: String,
    pub(crate) response: StoredResponse,
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
        // The acknowledgement, recorded as its status alone, or a 2xx answer purged
        // past the retention: the delivery was applied, and that is what it says.
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

/// Whether `response` is the acknowledgement: 200, JSON, `{"status":"ok"}`.
fn is_acknowledgement(response: &StoredResponse) -> bool {
    response.status == ACKNOWLEDGED
        && response.content_type.as_deref() == Some(APPLIED_CONTENT_TYPE)
        && response.body == APPLIED_BODY.as_bytes()
}

/// The `UPDATE` that records `response` in the claim's row, its values written in as
/// hex digits and integers only, so that no byte of the answer is read as SQL; nothing
/// for the acknowledgement, which the row says from its insert.
fn record_statement(table: &str, key: &HexDigest, response: &StoredResponse) -> String {
    if is_acknowledgement(response) {
        // What the claim's row says already.
        return String::new();
    }
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
         body = decode('{body}', 'hex'), purged = false WHERE key = '{key}'; ",
        status = response.status,
        body = lower_hex(&response.body),
        key = key.as_str(),
    )
}

/// `on` inside a delivery's transaction, for the table's trigger.
const CLAIM_OPEN: &str = claim_open!();
/// Set by the layer's own commit alone, in the statement before its `COMMIT`: the
/// trigger on the table refuses to commit a claim's row without it. With it, the
/// commit waits for its WAL to be flushed even where `synchronous_commit` is `off` or
/// `local` for the database or the session: a 2xx is never answered for a commit a
/// crash of the server could lose.
const COMMITTING: &str = concat!(
    "set_config('",
    committing!(),
    "', 'on', true), set_config('synchronous_commit', \
     CASE WHEN current_setting('synchronous_commit') IN ('off', 'local') THEN 'on' \
     ELSE current_setting('synchronous_commit') END, true)"
);
/// The trigger that refuses a claim's row a `COMMIT` other than the layer's, and the
/// SQLSTATE its refusal raises.
const TRIGGER: &str = "aghanim_webhook_claim";
/// The trigger that refuses a handler's changes to the records while its claim is open.
const RECORDS_TRIGGER: &str = "aghanim_webhook_records";
const ONLY_THE_LAYER_COMMITS: &str = "AGW01";
/// The status a claim's row is inserted with: the acknowledgement's, which most
/// deliveries answer, so committing it needs no other write.
const ACKNOWLEDGED: u16 = 200;
/// The session's own `lock_timeout`, kept while the claim's is in force.
const SESSION_LOCK_TIMEOUT: &str = "aghanim_webhook.session_lock_timeout";

/// Raised when `lock_timeout` passes.
pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
pub(super) const UNIQUE_VIOLATION: &str = "23505";
/// Raised by the commit's check when the transaction is no longer the delivery's.
const DIVISION_BY_ZERO: &str = "22012";
pub(super) const IN_FAILED_SQL_TRANSACTION: &str = "25P02";

pub(super) fn is_sqlstate(error: &sqlx::Error, code: &str) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some(code))
}

/// Whether the commit's check failed because the transaction is no longer the
/// delivery's: the handler ended it itself.
pub(super) fn is_transaction_ended(error: &sqlx::Error) -> bool {
    is_sqlstate(error, DIVISION_BY_ZERO)
}
