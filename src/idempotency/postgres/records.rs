//! What an operator asks of the table: one delivery's record, the claims that stay
//! open, and forgetting a key so that its delivery runs again.

use std::time::{Duration, SystemTime};

use sqlx::{postgres::PgRow, AssertSqlSafe, Row};

use super::{
    store::{answer_of, is_sqlstate, LOCK_NOT_AVAILABLE, UNIQUE_VIOLATION},
    PostgresStore,
};
use crate::idempotency::{Record, RecordKey, RecordState, StoreError, StuckClaim};

/// The columns a [`Record`] is read from.
const COLUMNS: &str =
    "status, content_type, body, extract(epoch from recorded_at)::float8 AS claimed_at";

impl PostgresStore {
    /// The record of `key`: completed (with its answer, or purged), committed without
    /// an answer, or held right now by a delivery's open transaction; `None` when the
    /// table has no such key. For an operator's question "was this purchase
    /// applied?" (`aghanim-webhook records show`).
    ///
    /// A claim in progress is not visible to other sessions: to tell it from no
    /// record, this inserts the key in a transaction of its own with a 100 ms lock
    /// timeout and rolls it back (a delivery arriving meanwhile waits those 100 ms).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn record(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let read = format!("SELECT {COLUMNS} FROM {} WHERE key = $1", self.table_name());
        match self.one_row(read, key).await? {
            Some(row) => record_of(&row).map(Some),
            None => self.held(key).await,
        }
    }

    /// Deletes the record of `key` and returns what it held, so that the next delivery
    /// of that key runs the handler again: for a purchase an operator decided to run
    /// again. It changes nothing else, least of all the player's inventory.
    ///
    /// # Errors
    ///
    /// When a delivery's transaction holds the key right now (nothing is deleted), or
    /// the database cannot be reached.
    pub async fn forget(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        // A failed delivery kept for the key stays resolved: forgotten, its record no
        // longer says the purchase was applied, and a replay would apply it again.
        let delete = format!(
            "WITH gone AS (DELETE FROM {table} WHERE key = $1 RETURNING *), \
             resolved AS (UPDATE {letters} l SET resolved_at = now() FROM gone \
                          WHERE l.key = gone.key AND gone.status IS NOT NULL) \
             SELECT {COLUMNS} FROM gone",
            table = self.table_name(),
            letters = self.letters_table(),
        );
        match self.one_row(delete, key).await? {
            Some(row) => record_of(&row).map(Some),
            None => match self.held(key).await? {
                Some(_) => Err(StoreError::new(format!(
                    "a delivery's transaction holds {key}: not forgotten"
                ))),
                None => Ok(None),
            },
        }
    }

    /// The claims open for `age` or longer: keys committed without an answer (a
    /// handler's own `COMMIT`; duplicates get 503 until the key is forgotten), and the
    /// sessions whose delivery transaction is that old, with their process id, state
    /// and client (their key is not visible outside their transaction; the server
    /// ends them at the layer's run timeout plus its store timeout).
    ///
    /// The first part reads the whole table: run it when asked, not on a schedule.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn stuck(&self, age: Duration) -> Result<Vec<StuckClaim>, StoreError> {
        let table = self.table_name();
        let unanswered = format!(
            "SELECT key, extract(epoch from now() - recorded_at)::float8 AS age FROM {table} \
             WHERE status IS NULL AND recorded_at <= now() - make_interval(secs => $1) \
             ORDER BY recorded_at"
        );
        let mut stuck = Vec::new();
        let mut pinned = self.pinned().await?;
        for row in sqlx::query(AssertSqlSafe(unanswered))
            .bind(age.as_secs_f64())
            .fetch_all(&mut *pinned)
            .await
            .map_err(StoreError::new)?
        {
            stuck.push(StuckClaim {
                key: Some(row.try_get("key").map_err(StoreError::new)?),
                age: seconds(&row, "age")?,
                holder: "committed without an answer: duplicates get 503 until it is forgotten"
                    .to_owned(),
            });
        }
        // Every delivery's transaction holds the table in ROW EXCLUSIVE mode from its
        // claim until it ends.
        let sessions = "SELECT a.pid, coalesce(a.state, '') AS state, \
             coalesce(host(a.client_addr), 'local') AS client, a.application_name, \
             extract(epoch from now() - a.xact_start)::float8 AS age \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'relation' AND l.relation = to_regclass($2) \
             AND l.mode = 'RowExclusiveLock' AND l.granted AND a.pid <> pg_backend_pid() \
             AND a.xact_start <= now() - make_interval(secs => $1) ORDER BY a.xact_start";
        for row in sqlx::query(sessions)
            .bind(age.as_secs_f64())
            .bind(table)
            .fetch_all(&mut *pinned)
            .await
            .map_err(StoreError::new)?
        {
            let pid: i32 = row.try_get("pid").map_err(StoreError::new)?;
            let state: String = row.try_get("state").map_err(StoreError::new)?;
            let client: String = row.try_get("client").map_err(StoreError::new)?;
            let application: String = row.try_get("application_name").map_err(StoreError::new)?;
            stuck.push(StuckClaim {
                key: None,
                age: seconds(&row, "age")?,
                holder: format!(
                    "open transaction: pid {pid}, {state}, client {client}{}",
                    if application.is_empty() {
                        String::new()
                    } else {
                        format!(", application {application}")
                    }
                ),
            });
        }
        pinned.commit().await.map_err(StoreError::new)?;
        Ok(stuck)
    }

    /// The row `statement` returns for `key` (bound as `$1`), if any.
    async fn one_row(
        &self,
        statement: String,
        key: &RecordKey,
    ) -> Result<Option<PgRow>, StoreError> {
        let mut pinned = self.pinned().await?;
        let row = sqlx::query(AssertSqlSafe(statement))
            .bind(key.as_str())
            .fetch_optional(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        pinned.commit().await.map_err(StoreError::new)?;
        Ok(row)
    }

    /// Whether a delivery's open transaction holds `key`: an insert of the key waits
    /// for it, then gives up after 100 ms; rolled back whatever happens.
    async fn held(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        // A record key is a hex digest: it can carry no SQL.
        let probe = format!(
            "SET LOCAL lock_timeout = '100ms'; \
             INSERT INTO {table} (key, fingerprint) VALUES ('{key}', '')",
            table = self.table_name(),
            key = key.as_str(),
        );
        let mut transaction = self.pool().begin().await.map_err(StoreError::new)?;
        let probed = sqlx::raw_sql(AssertSqlSafe(probe))
            .execute(&mut *transaction)
            .await;
        let _ = transaction.rollback().await;
        match probed {
            Ok(_) => Ok(None),
            Err(error) if is_sqlstate(&error, LOCK_NOT_AVAILABLE) => Ok(Some(Record {
                state: RecordState::Running {
                    lease_remaining: None,
                },
                claimed_at: None,
                completed_at: None,
                attempts: None,
            })),
            // Committed between the read and the probe: read it again.
            Err(error) if is_sqlstate(&error, UNIQUE_VIOLATION) => Box::pin(self.record(key)).await,
            Err(error) => Err(StoreError::new(error)),
        }
    }
}

fn record_of(row: &PgRow) -> Result<Record, StoreError> {
    let state = match answer_of(row)? {
        None => RecordState::Unanswered,
        Some(answer) => RecordState::Completed {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
        },
    };
    Ok(Record {
        state,
        claimed_at: seconds(row, "claimed_at")?.map(|since| SystemTime::UNIX_EPOCH + since),
        completed_at: None,
        attempts: None,
    })
}

/// A column of seconds (since the epoch, or an age) as a duration; `None` for null.
fn seconds(row: &PgRow, column: &str) -> Result<Option<Duration>, StoreError> {
    let seconds: Option<f64> = row.try_get(column).map_err(StoreError::new)?;
    Ok(seconds
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64))
}
