//! The PostgreSQL store's dead letters: a table beside the records, `<table>_failed`,
//! one row per delivery key. A letter is resolved exactly when its key's record is
//! committed with an answer: the listing reads the records, so the two can never
//! disagree, and a successful delivery writes nothing more. Forgetting a record marks
//! its letter resolved for good (`resolved_at`), since a replay would then apply it
//! again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sqlx::{postgres::PgRow, AssertSqlSafe, Row};

use super::PostgresStore;
use crate::dead_letter::{DeadLetter, DeadLetters, Filter, Kept, Reason, DEFAULT_MAX_DEAD_LETTERS};
use crate::idempotency::{StoreError, StoreFuture};

/// The columns a [`DeadLetter`] is read from, `l` the letters and `r` the records.
const COLUMNS: &str = "l.key, l.game_id, l.sandbox, l.event_type, l.delivery_id, l.body, \
     l.reason, l.detail, l.status, l.attempts, \
     extract(epoch from l.first_seen)::float8 AS first_seen, \
     extract(epoch from l.last_seen)::float8 AS last_seen, \
     (r.status IS NOT NULL OR l.resolved_at IS NOT NULL) AS resolved";

impl PostgresStore {
    /// The letters' table: the records' table's name with `_failed`.
    pub(super) fn letters_table(&self) -> String {
        format!("{}_failed", self.table_name())
    }

    /// The SQL that creates the letters' table and its index.
    pub(super) fn letters_migration(&self) -> String {
        let letters = self.letters_table();
        let index = letters.rsplit('.').next().unwrap_or(&letters).to_owned() + "_last_seen";
        format!(
            "CREATE TABLE IF NOT EXISTS {letters} (\n    \
                 key         text PRIMARY KEY,\n    \
                 game_id     text NOT NULL,\n    \
                 sandbox     boolean NOT NULL,\n    \
                 event_type  text NOT NULL,\n    \
                 delivery_id text NOT NULL,\n    \
                 body        bytea NOT NULL,\n    \
                 reason      text NOT NULL,\n    \
                 detail      text NOT NULL,\n    \
                 status      integer NOT NULL,\n    \
                 attempts    bigint NOT NULL DEFAULT 1,\n    \
                 first_seen  timestamptz NOT NULL DEFAULT now(),\n    \
                 last_seen   timestamptz NOT NULL DEFAULT now(),\n    \
                 resolved_at timestamptz\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {index} ON {letters} (last_seen);\n"
        )
    }

    /// The most letters kept: [`DEFAULT_MAX_DEAD_LETTERS`] unless set with
    /// [`max_dead_letters`](Self::max_dead_letters).
    fn letters_bound(&self) -> i64 {
        i64::try_from(self.max_letters.unwrap_or(DEFAULT_MAX_DEAD_LETTERS)).unwrap_or(i64::MAX)
    }

    async fn keep_letter(&self, letter: &DeadLetter) -> Result<Kept, StoreError> {
        let letters = self.letters_table();
        let upsert = format!(
            "INSERT INTO {letters} AS l (key, game_id, sandbox, event_type, delivery_id, body, \
             reason, detail, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (key) DO UPDATE SET body = excluded.body, reason = excluded.reason, \
             detail = excluded.detail, status = excluded.status, attempts = l.attempts + 1, \
             last_seen = now() RETURNING (xmax = 0) AS created"
        );
        let mut pinned = self.pinned().await?;
        // One keeping at a time, so that concurrent ones count each other's letters
        // against the bound (each would count only committed rows).
        sqlx::raw_sql("SELECT pg_advisory_xact_lock(hashtext('aghanim-webhook dead letters'))")
            .execute(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        let created: bool = sqlx::query_scalar(AssertSqlSafe(upsert))
            .bind(&letter.key)
            .bind(&letter.game_id)
            .bind(letter.sandbox)
            .bind(&letter.event_type)
            .bind(&letter.delivery_id)
            .bind(letter.body.as_ref())
            .bind(letter.reason.as_str())
            .bind(&letter.detail)
            .bind(i32::from(letter.status))
            .fetch_one(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        let kept = if created {
            self.within_bound(&mut pinned, letter).await?
        } else {
            Kept::Updated
        };
        pinned.commit().await.map_err(StoreError::new)?;
        Ok(kept)
    }

    /// Past the bound, the resolved letters seen longest ago make room for the new
    /// `letter`, then those no handler took (a type a studio acknowledges without a
    /// handler would otherwise fill the bound for good); when too few are, it goes.
    async fn within_bound(
        &self,
        pinned: &mut sqlx::PgConnection,
        letter: &DeadLetter,
    ) -> Result<Kept, StoreError> {
        let (letters, records) = (self.letters_table(), self.table_name());
        let count = format!("SELECT count(*) FROM {letters}");
        let kept: i64 = sqlx::query_scalar(AssertSqlSafe(count))
            .fetch_one(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        let over = kept - self.letters_bound();
        if over <= 0 {
            return Ok(Kept::Created);
        }
        let make_room = format!(
            "DELETE FROM {letters} WHERE key IN (SELECT l.key FROM {letters} l \
             LEFT JOIN {records} r ON r.key = l.key \
             WHERE (r.status IS NOT NULL OR l.resolved_at IS NOT NULL OR l.reason = 'no_handler') \
             AND l.key <> $2 \
             ORDER BY (r.status IS NULL AND l.resolved_at IS NULL), l.last_seen LIMIT $1)"
        );
        let freed = sqlx::query(AssertSqlSafe(make_room))
            .bind(over)
            .bind(&letter.key)
            .execute(&mut *pinned)
            .await
            .map_err(StoreError::new)?
            .rows_affected();
        if i64::try_from(freed).unwrap_or(i64::MAX) >= over {
            return Ok(Kept::Created);
        }
        let drop_new = format!("DELETE FROM {letters} WHERE key = $1 AND attempts = 1");
        sqlx::query(AssertSqlSafe(drop_new))
            .bind(&letter.key)
            .execute(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        Ok(Kept::Full)
    }

    async fn list_letters(&self, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
        let (letters, records) = (self.letters_table(), self.table_name());
        let list = format!(
            "SELECT {COLUMNS} FROM {letters} l LEFT JOIN {records} r ON r.key = l.key \
             WHERE ($1::text IS NULL OR l.event_type = $1) \
             AND ($2::text IS NULL OR l.game_id = $2) \
             AND ($3::float8 IS NULL OR l.first_seen <= now() - make_interval(secs => $3)) \
             AND ($4::float8 IS NULL OR l.last_seen >= now() - make_interval(secs => $4)) \
             AND ($5 OR (r.status IS NULL AND l.resolved_at IS NULL)) \
             ORDER BY l.last_seen DESC LIMIT $6"
        );
        let seconds = |age: Option<Duration>| age.map(|age| age.as_secs_f64());
        let mut pinned = self.pinned().await?;
        let rows = sqlx::query(AssertSqlSafe(list))
            .bind(filter.event_type.as_deref())
            .bind(filter.game_id.as_deref())
            .bind(seconds(filter.older_than))
            .bind(seconds(filter.newer_than))
            .bind(filter.resolved)
            .bind(
                filter
                    .limit
                    .map(|limit| i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .fetch_all(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        pinned.commit().await.map_err(StoreError::new)?;
        rows.iter().map(letter_of).collect()
    }

    async fn letter(&self, key: &str, forget: bool) -> Result<Option<DeadLetter>, StoreError> {
        let (letters, records) = (self.letters_table(), self.table_name());
        let statement = if forget {
            format!(
                "WITH l AS (DELETE FROM {letters} WHERE key = $1 RETURNING *) \
                 SELECT {COLUMNS} FROM l LEFT JOIN {records} r ON r.key = l.key"
            )
        } else {
            format!(
                "SELECT {COLUMNS} FROM {letters} l LEFT JOIN {records} r ON r.key = l.key \
                 WHERE l.key = $1"
            )
        };
        let mut pinned = self.pinned().await?;
        let row = sqlx::query(AssertSqlSafe(statement))
            .bind(key)
            .fetch_optional(&mut *pinned)
            .await
            .map_err(StoreError::new)?;
        pinned.commit().await.map_err(StoreError::new)?;
        row.as_ref().map(letter_of).transpose()
    }
}

/// Its dead letters are kept in `<table>_failed`, beside the records, each in a short
/// transaction of its own after the delivery's has rolled back; a letter is resolved
/// when its key's record is committed.
impl DeadLetters for PostgresStore {
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept> {
        Box::pin(self.keep_letter(letter))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(self.list_letters(filter))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        Box::pin(self.letter(key, false))
    }

    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        Box::pin(self.letter(key, true))
    }
}

fn letter_of(row: &PgRow) -> Result<DeadLetter, StoreError> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(StoreError::new);
    let at = |column: &str| -> Result<SystemTime, StoreError> {
        let seconds: f64 = row.try_get(column).map_err(StoreError::new)?;
        Ok(UNIX_EPOCH + Duration::try_from_secs_f64(seconds).unwrap_or_default())
    };
    let reason = text("reason")?;
    let status: i32 = row.try_get("status").map_err(StoreError::new)?;
    let attempts: i64 = row.try_get("attempts").map_err(StoreError::new)?;
    let body: Vec<u8> = row.try_get("body").map_err(StoreError::new)?;
    Ok(DeadLetter {
        key: text("key")?,
        game_id: text("game_id")?,
        sandbox: row.try_get("sandbox").map_err(StoreError::new)?,
        event_type: text("event_type")?,
        delivery_id: text("delivery_id")?,
        body: Bytes::from(body),
        reason: Reason::parse(&reason).ok_or_else(|| {
            StoreError::new(format!("a letter with the unknown reason {reason:?}"))
        })?,
        detail: text("detail")?,
        status: u16::try_from(status).unwrap_or_default(),
        attempts: u64::try_from(attempts).unwrap_or_default(),
        first_seen: at("first_seen")?,
        last_seen: at("last_seen")?,
        resolved: row.try_get("resolved").map_err(StoreError::new)?,
    })
}
