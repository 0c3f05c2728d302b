#![cfg(feature = "postgres")]
//! The idempotency layer on `PostgresStore`, against a private PostgreSQL server the
//! tests start themselves: the claim, the handler's writes and the recorded answer in
//! one transaction.

use crate::common;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use aghanim_webhook::{
    body::{BufferedBody, ResponseBody},
    idempotency::{
        Claim, DeliveryTransaction, IdempotencyLayer, IdempotencyOutcome, PostgresStore,
    },
};
use bytes::Bytes;
use common::{
    keyed, layer, pgbouncer::PgBouncer, postgres_server::PostgresServer, sent::send_owned,
    signed_text,
};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sqlx::{postgres::PgPoolOptions, PgPool};
use tower::{util::BoxCloneService, ServiceBuilder, ServiceExt};

type Stack = BoxCloneService<
    Request<Full<Bytes>>,
    Response<ResponseBody<ResponseBody<Full<Bytes>>>>,
    String,
>;

/// Each test on a database reached straight, and through PgBouncer in transaction
/// mode.
macro_rules! straight_and_pooled {
    ($($name:ident),* $(,)?) => {
        mod straight {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::database().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
        mod behind_pgbouncer {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::database_behind_pgbouncer().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

straight_and_pooled!(
    a_delivery_credits_once_and_its_duplicates_are_replayed,
    thirty_copies_through_three_instances_credit_once,
    a_killed_connection_mid_handler_rolls_back_and_never_answers_2xx,
    a_duplicate_waits_for_the_running_copy_then_replays_or_gets_503,
    a_nested_begin_committed_then_a_500_leaves_nothing_and_the_retry_credits_once,
    a_nested_begin_rolled_back_keeps_the_credit_and_the_duplicate_is_replayed,
    a_handler_that_ends_the_delivery_transaction_itself_is_never_answered_2xx,
    a_2xx_over_a_failed_statement_is_never_answered_2xx_and_the_retry_credits_once,
);

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Status(u16),
    Panic,
    /// Credits, then waits this long before answering 200.
    SlowOk(Duration),
    /// Credits, then waits this long before answering with this status.
    SlowStatus(Duration, u16),
    /// Credits inside a nested `begin()` that it commits, then answers this status.
    NestedCommitThen(u16),
    /// Credits, then grants a bonus inside a nested `begin()` that it rolls back, then
    /// answers 200.
    BonusRolledBack,
    /// Credits, then runs this SQL itself, then answers 200.
    Raw(&'static str),
    /// Credits, then runs this SQL itself, then answers the acknowledgement
    /// (`{"status":"ok"}`), which the store does not write again at the commit.
    RawThenAck(&'static str),
    /// Credits, then runs a statement that fails, ignores the error and answers the
    /// acknowledgement: the transaction is aborted, and its `COMMIT` would roll back.
    FailedStatementThenAck,
    /// Credits, then takes advisory lock 42, waiting for whoever holds it; then 200.
    AdvisoryLock,
    /// Credits, runs this SQL itself, ignoring its error, then credits again (ignoring
    /// any error) and answers this status (200: the acknowledgement).
    RawIgnoringErrorThen(&'static str, u16),
    /// Credits, rolls back itself (raw `ROLLBACK`), then credits again, ignoring any
    /// error, and answers the acknowledgement.
    RollbackThenCredit,
    /// Runs a statement that fails and ignores it, opens a nested `begin()` and ignores
    /// its failure, then credits, ignoring any error, and answers the acknowledgement;
    /// no credit before.
    SwallowedErrorThenBegin,
    /// Before anything else, hands the connection to a helper written over any
    /// executor, which rolls back; then credits, ignoring any error, and answers the
    /// acknowledgement.
    HelperRollsBackFirst,
    /// Credits, then a bonus step in a savepoint of its own SQL that fails and is
    /// rolled back to (`SAVEPOINT`, a failing statement, `ROLLBACK TO SAVEPOINT`,
    /// `RELEASE`), then answers the acknowledgement.
    RawSavepointRolledBack,
    /// No credit first; then, up to five times, each within 300 ms: a savepoint, a
    /// credit in it, advisory lock 42 (held elsewhere), and the savepoint's commit;
    /// then the acknowledgement. An attempt cut by its timeout drops its savepoint,
    /// the next one's rollback of it may be cut too.
    SavepointRetriedOnTimeout,
    /// Credits; then a bonus in a savepoint, a lookup it gives up on after 1 ms (still
    /// running on the connection), and the savepoint's commit given up on after 50 ms;
    /// the commit cut, the bonus again in a new savepoint; then the acknowledgement.
    SavepointCommitCut,
    /// Notes the session's `app.tenant`, sets it to the run's number for the session,
    /// credits, answers 200.
    Tenant,
}

/// Credits one row in `credits` through the delivery's transaction, then answers as
/// scripted (then 200); counts its runs.
#[derive(Clone, Default)]
struct Handler {
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// The tenants `Answer::Tenant` found set when its run began.
    tenants: Arc<Mutex<Vec<String>>>,
    runs: Arc<AtomicUsize>,
    /// Runs that have written their credit (not yet committed).
    written: Arc<AtomicUsize>,
}

impl Handler {
    fn then(self, answer: Answer) -> Self {
        self.script.lock().unwrap().push_back(answer);
        self
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Waits, at most 10 s, until `runs` runs have written their credit.
    async fn until_written(&self, runs: usize) {
        at_least(&self.written, runs).await;
    }

    async fn handle(self, request: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, String> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let claim = request
            .extensions()
            .get::<Claim>()
            .cloned()
            .ok_or("no claim")?;
        let transaction = request
            .extensions()
            .get::<DeliveryTransaction>()
            .cloned()
            .ok_or("no transaction")?;
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Ok);
        let credit = |key: String, run: i32| {
            sqlx::query("INSERT INTO credits (dedupe_key, run) VALUES ($1, $2)")
                .bind(key)
                .bind(run)
        };
        {
            let failed = |e: sqlx::Error| e.to_string();
            let mut connection = transaction.connection().await.map_err(|e| e.to_string())?;
            let key = claim.dedupe_key().to_owned();
            if let Answer::SavepointCommitCut = answer {
                credit(key.clone(), run as i32)
                    .execute(&mut *connection)
                    .await
                    .map_err(failed)?;
                let mut bonus = connection.begin().await.map_err(failed)?;
                credit(key.clone(), -(run as i32))
                    .execute(&mut *bonus)
                    .await
                    .map_err(failed)?;
                let lookup = sqlx::query("SELECT pg_sleep(0.2)").execute(&mut *bonus);
                let _ = tokio::time::timeout(Duration::from_millis(1), lookup).await;
                let commit = tokio::time::timeout(Duration::from_millis(50), bonus.commit());
                if commit.await.is_err() {
                    let mut again = connection.begin().await.map_err(failed)?;
                    credit(key.clone(), -(run as i32))
                        .execute(&mut *again)
                        .await
                        .map_err(failed)?;
                    again.commit().await.map_err(failed)?;
                }
            } else if let Answer::SavepointRetriedOnTimeout = answer {
                for _ in 0..5 {
                    let attempt = tokio::time::timeout(Duration::from_millis(300), async {
                        let mut savepoint = connection.begin().await?;
                        credit(key.clone(), run as i32)
                            .execute(&mut *savepoint)
                            .await?;
                        sqlx::query("SELECT pg_advisory_xact_lock(42)")
                            .execute(&mut *savepoint)
                            .await?;
                        savepoint.commit().await
                    })
                    .await;
                    if matches!(attempt, Ok(Ok(()))) {
                        break;
                    }
                }
            } else if let Answer::HelperRollsBackFirst = answer {
                roll_back(&mut *connection).await.map_err(failed)?;
                let _ = credit(key.clone(), run as i32)
                    .execute(&mut *connection)
                    .await;
            } else if let Answer::SwallowedErrorThenBegin = answer {
                let _ = sqlx::query("SELECT 1 / 0").execute(&mut *connection).await;
                let _ = connection.begin().await;
                for _ in 0..2 {
                    let _ = credit(key.clone(), run as i32)
                        .execute(&mut *connection)
                        .await;
                }
            } else if let Answer::NestedCommitThen(_) = answer {
                let mut nested = connection.begin().await.map_err(failed)?;
                credit(key.clone(), run as i32)
                    .execute(&mut *nested)
                    .await
                    .map_err(failed)?;
                nested.commit().await.map_err(failed)?;
            } else {
                credit(key.clone(), run as i32)
                    .execute(&mut *connection)
                    .await
                    .map_err(failed)?;
            }
            match answer {
                Answer::BonusRolledBack => {
                    let mut bonus = connection.begin().await.map_err(failed)?;
                    credit(key, -(run as i32))
                        .execute(&mut *bonus)
                        .await
                        .map_err(failed)?;
                    bonus.rollback().await.map_err(failed)?;
                }
                Answer::Raw(sql) | Answer::RawThenAck(sql) => {
                    // Through `Executor`, whose future is `Send` (`RawSql::execute`'s
                    // is not provably so inside a service).
                    sqlx::Executor::execute(&mut *connection, sqlx::raw_sql(sql))
                        .await
                        .map_err(failed)?;
                }
                Answer::FailedStatementThenAck => {
                    let failed = sqlx::query("SELECT 1 / 0").execute(&mut *connection).await;
                    assert!(failed.is_err());
                }
                Answer::AdvisoryLock => {
                    sqlx::query("SELECT pg_advisory_xact_lock(42)")
                        .execute(&mut *connection)
                        .await
                        .map_err(failed)?;
                }
                Answer::RawIgnoringErrorThen(sql, _) => {
                    let _ = sqlx::Executor::execute(&mut *connection, sqlx::raw_sql(sql)).await;
                    let _ = credit(key, run as i32).execute(&mut *connection).await;
                }
                Answer::RawSavepointRolledBack => {
                    for sql in ["SAVEPOINT bonus", "SELECT 1 / 0"] {
                        let _ = sqlx::Executor::execute(&mut *connection, sqlx::raw_sql(sql)).await;
                    }
                    for sql in ["ROLLBACK TO SAVEPOINT bonus", "RELEASE SAVEPOINT bonus"] {
                        sqlx::Executor::execute(&mut *connection, sqlx::raw_sql(sql))
                            .await
                            .map_err(failed)?;
                    }
                }
                Answer::RollbackThenCredit => {
                    sqlx::Executor::execute(&mut *connection, sqlx::raw_sql("ROLLBACK"))
                        .await
                        .map_err(failed)?;
                    let _ = credit(key, run as i32).execute(&mut *connection).await;
                }
                Answer::Tenant => {
                    let tenant: Option<String> =
                        sqlx::query_scalar("SELECT current_setting('app.tenant', true)")
                            .fetch_one(&mut *connection)
                            .await
                            .map_err(failed)?;
                    self.tenants
                        .lock()
                        .unwrap()
                        .push(tenant.unwrap_or_default());
                    sqlx::query("SELECT set_config('app.tenant', $1, false)")
                        .bind(format!("player {run}"))
                        .execute(&mut *connection)
                        .await
                        .map_err(failed)?;
                }
                _ => {}
            }
        }
        self.written.fetch_add(1, Ordering::SeqCst);
        let status = match answer {
            Answer::Ok => 200,
            Answer::Status(status) => status,
            Answer::Panic => panic!("run {run} panicked"),
            Answer::SlowOk(after) => {
                tokio::time::sleep(after).await;
                200
            }
            Answer::SlowStatus(after, status) => {
                tokio::time::sleep(after).await;
                status
            }
            Answer::RawIgnoringErrorThen(_, 200) => return Ok(acknowledgement()),
            Answer::NestedCommitThen(status) | Answer::RawIgnoringErrorThen(_, status) => status,
            Answer::BonusRolledBack | Answer::Raw(_) | Answer::AdvisoryLock | Answer::Tenant => 200,
            Answer::RawThenAck(_)
            | Answer::FailedStatementThenAck
            | Answer::RollbackThenCredit
            | Answer::RawSavepointRolledBack
            | Answer::HelperRollsBackFirst
            | Answer::SavepointRetriedOnTimeout
            | Answer::SavepointCommitCut
            | Answer::SwallowedErrorThenBegin => {
                return Ok(acknowledgement());
            }
        };
        let mut response = Response::new(Full::from(format!(r#"{{"run":{run}}}"#)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }
}

/// Sends `key`'s delivery, which runs, then a copy, which is replayed its answer.
async fn ran_then_replayed<S, B>(stack: S, key: &str)
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let sent = send_owned(stack.clone(), item_add(key)).await.unwrap();
    assert_eq!(
        sent.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 }),
        "{key}: {sent:?}"
    );
    let copy = send_owned(stack, item_add(key)).await.unwrap();
    assert!(copy.replayed, "{key}: {copy:?}");
}

/// A helper of the game's, written for any executor.
async fn roll_back<'c>(connection: impl sqlx::PgExecutor<'c>) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(connection, sqlx::raw_sql("ROLLBACK"))
        .await
        .map(drop)
}

/// Waits, at most 10 s, until `count` is at least `least`.
async fn at_least(count: &AtomicUsize, least: usize) {
    let reached = async {
        while count.load(Ordering::SeqCst) < least {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .expect("the handler got there in time");
}

/// A database of the test's own, with the credits table and the store's.
pub(crate) struct Database {
    /// How the store reaches it: straight, or through PgBouncer.
    pub(crate) url: String,
    pub(crate) pool: PgPool,
    /// Straight to the server, for what a pooler does not pass (locks held across
    /// statements, `pg_stat_activity`).
    pub(crate) admin: PgPool,
    /// The server, when the test has one of its own (to stop it).
    server: Option<PostgresServer>,
}

/// A new database on the server the tests share.
pub(crate) async fn database() -> Option<Database> {
    let url = PostgresServer::shared()?.database();
    Some(prepared(url, None).await)
}

/// A new database on the server the tests share, reached through PgBouncer in
/// transaction mode with fewer server connections than the pool's.
pub(crate) async fn database_behind_pgbouncer() -> Option<Database> {
    let server = PostgresServer::shared()?;
    let bouncer = PgBouncer::shared()?;
    let name = server.database_name();
    let mut db = prepared(server.url_of(&name), None).await;
    db.url = bouncer.url(&name);
    db.pool = pool(&db.url, 10).await;
    Some(db)
}

/// A server of the test's own.
async fn database_on_its_own_server() -> Option<Database> {
    let server = PostgresServer::start()?;
    Some(prepared(server.url(), Some(server)).await)
}

async fn prepared(url: String, server: Option<PostgresServer>) -> Database {
    let pool = pool(&url, 10).await;
    sqlx::raw_sql(
        "CREATE TABLE credits (dedupe_key text NOT NULL, run integer NOT NULL, \
         credited_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&pool)
    .await
    .unwrap();
    PostgresStore::new(pool.clone()).migrate().await.unwrap();
    Database {
        url,
        admin: pool.clone(),
        pool,
        server,
    }
}

/// A transaction holding advisory lock 42, which `Answer::AdvisoryLock` waits for.
async fn advisory_lock_42(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(42)")
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}

async fn pool(url: &str, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .expect("connects to the private server")
}

fn stack(idempotency: IdempotencyLayer, handler: &Handler) -> Stack {
    let handler = handler.clone();
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(layer())
            .layer(idempotency)
            .service_fn(move |request| handler.clone().handle(request)),
    )
}

fn item_add(key: &str) -> Request<Full<Bytes>> {
    let items = r#"{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}"#;
    signed_text(keyed("item.add", items, key))
}

async fn credits(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM credits")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn records(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM aghanim_idempotency")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_acknowledged_row_is_the_claims_and_stays_out_of_the_purge_index() {
    let Some(db) = database().await else { return };
    let handler = Handler::default()
        .then(Answer::RawThenAck("SELECT 1"))
        .then(Answer::Ok);
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    for key in ["ord_acknowledged", "ord_answered"] {
        let sent = send_owned(stack.clone(), item_add(key)).await.unwrap();
        assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    }
    let rows: Vec<(Option<i32>, bool, bool)> = sqlx::query_as(
        "SELECT status, body IS NULL, purged FROM aghanim_idempotency ORDER BY recorded_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // The acknowledgement is what the claim inserted (no body, out of the index that
    // `purge_expired` reads); another answer is written into the row at the commit.
    assert_eq!(rows, [(Some(200), true, true), (Some(200), false, false)]);
}

async fn a_delivery_credits_once_and_its_duplicates_are_replayed(db: Database) {
    let handler = Handler::default();
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let first = send_owned(stack.clone(), item_add("ord_1")).await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    for _ in 0..2 {
        let again = send_owned(stack.clone(), item_add("ord_1")).await.unwrap();
        assert_eq!((again.status, again.replayed), (StatusCode::OK, true));
        assert_eq!(again.body, first.body);
    }
    assert_eq!(handler.runs(), 1);
    assert_eq!(credits(&db.pool).await, 1);
    assert_eq!(records(&db.pool).await, 1);
}

async fn thirty_copies_through_three_instances_credit_once(db: Database) {
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_millis(200)));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let pool = pool(&db.url, 10).await;
        instances.push(stack(
            IdempotencyLayer::transactional(PostgresStore::new(pool)),
            &handler,
        ));
    }
    let copies: Vec<_> = (0..30)
        .map(|i| tokio::spawn(send_owned(instances[i % 3].clone(), item_add("ord_race"))))
        .collect();
    let mut replays = 0;
    for copy in copies {
        let sent = copy.await.unwrap().unwrap();
        assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
        assert_eq!(sent.body, r#"{"run":1}"#);
        replays += usize::from(sent.replayed);
    }
    assert_eq!(handler.runs(), 1);
    assert_eq!(replays, 29);
    assert_eq!(credits(&db.pool).await, 1);
}

#[tokio::test]
async fn the_handlers_writes_are_visible_only_once_the_answer_is_recorded() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_millis(500)));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let running = tokio::spawn(send_owned(stack.clone(), item_add("ord_2")));
    handler.until_written(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        credits(&db.pool).await,
        0,
        "a credit was visible before the commit"
    );
    assert_eq!(records(&db.pool).await, 0);
    assert_eq!(running.await.unwrap().unwrap().status, StatusCode::OK);
    assert_eq!(credits(&db.pool).await, 1);
    assert_eq!(records(&db.pool).await, 1);
}

#[tokio::test]
async fn a_failed_run_leaves_nothing_and_the_next_delivery_runs_at_once() {
    let Some(db) = database().await else { return };
    let handler = Handler::default()
        .then(Answer::Status(500))
        .then(Answer::Status(400))
        .then(Answer::Panic)
        .then(Answer::SlowOk(Duration::from_secs(30)));
    let idempotency = IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
        .wait(Duration::from_millis(300));
    let stack = stack(idempotency, &handler);
    for status in [500, 400] {
        let failed = send_owned(stack.clone(), item_add("ord_3")).await.unwrap();
        assert_eq!(failed.status.as_u16(), status);
        assert_eq!(
            failed.outcome,
            Some(IdempotencyOutcome::Released { attempt: 1 })
        );
        assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
    }
    let panicked = tokio::spawn(send_owned(stack.clone(), item_add("ord_3")));
    assert!(panicked.await.unwrap_err().is_panic());
    // The client goes away mid-handler: the request future is dropped.
    let dropped = tokio::spawn(send_owned(stack.clone(), item_add("ord_3")));
    handler.until_written(4).await;
    dropped.abort();
    let _ = dropped.await;
    // Each left no row, and the key is free at once: no lease to wait out.
    let next = send_owned(stack.clone(), item_add("ord_3")).await.unwrap();
    assert_eq!(next.status, StatusCode::OK, "{next:?}");
    assert_eq!(next.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!(handler.runs(), 5);
    assert_eq!(credits(&db.pool).await, 1);
}

async fn a_killed_connection_mid_handler_rolls_back_and_never_answers_2xx(db: Database) {
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_millis(500)));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let running = tokio::spawn(send_owned(stack.clone(), item_add("ord_4")));
    handler.until_written(1).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE state = 'idle in transaction' AND datname = current_database() \
         AND pid <> pg_backend_pid()",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    let cut = running.await.unwrap().unwrap();
    assert_eq!(cut.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(cut.retry_after.is_some());
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
    let retry = send_owned(stack, item_add("ord_4")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!(credits(&db.pool).await, 1);
}

async fn a_duplicate_waits_for_the_running_copy_then_replays_or_gets_503(db: Database) {
    let handler = Handler::default()
        .then(Answer::SlowOk(Duration::from_millis(300)))
        .then(Answer::SlowOk(Duration::from_secs(2)));
    let patient = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let original = tokio::spawn(send_owned(patient.clone(), item_add("ord_5")));
    handler.until_written(1).await;
    let duplicate = send_owned(patient.clone(), item_add("ord_5"))
        .await
        .unwrap();
    assert_eq!(
        (duplicate.status, duplicate.replayed),
        (StatusCode::OK, true)
    );
    assert_eq!(original.await.unwrap().unwrap().body, duplicate.body);

    let hasty = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
            .wait(Duration::from_millis(200)),
        &handler,
    );
    let slow = tokio::spawn(send_owned(hasty.clone(), item_add("ord_6")));
    handler.until_written(2).await;
    let busy = send_owned(hasty, item_add("ord_6")).await.unwrap();
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.outcome, Some(IdempotencyOutcome::StillInProgress));
    assert!(busy.retry_after.is_some());
    assert_eq!(slow.await.unwrap().unwrap().status, StatusCode::OK);
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_refused() {
    let Some(db) = database().await else { return };
    let handler = Handler::default();
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    assert_eq!(
        send_owned(stack.clone(), item_add("ord_7"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    let other = r#"{"player_id":"p1","items":[{"sku":"gems","quantity":500}]}"#;
    let reused = send_owned(stack, signed_text(keyed("item.add", other, "ord_7")))
        .await
        .unwrap();
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn no_connection_from_the_pool_in_time_is_503_not_a_hang() {
    let Some(db) = database().await else { return };
    let one = pool(&db.url, 1).await;
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(3)));
    let idempotency = IdempotencyLayer::transactional(PostgresStore::new(one))
        .store_timeout(Duration::from_millis(300))
        .wait(Duration::from_millis(100));
    let stack = stack(idempotency, &handler);
    let holder = tokio::spawn(send_owned(stack.clone(), item_add("ord_8")));
    handler.until_written(1).await;
    let started = tokio::time::Instant::now();
    let starved = send_owned(stack, item_add("ord_9")).await.unwrap();
    assert_eq!(starved.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(starved.outcome, Some(IdempotencyOutcome::StoreUnavailable));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(holder.await.unwrap().unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn a_postgres_restart_mid_run_is_503_and_then_correct_answers() {
    let Some(db) = database_on_its_own_server().await else {
        return;
    };
    let server = db.server.as_ref().expect("a server of its own");
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_millis(500)));
    let idempotency = IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
        .store_timeout(Duration::from_millis(500));
    let stack = stack(idempotency, &handler);
    let running = tokio::spawn(send_owned(stack.clone(), item_add("ord_10")));
    handler.until_written(1).await;
    server.stop_immediate();
    assert_eq!(
        running.await.unwrap().unwrap().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let down = send_owned(stack.clone(), item_add("ord_10")).await.unwrap();
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    server.start_server();
    let answered = common::eventually(|| async {
        let sent = send_owned(stack.clone(), item_add("ord_10")).await.unwrap();
        (sent.status == StatusCode::OK).then_some(sent)
    })
    .await
    .expect("answers again after the restart");
    assert_eq!(
        answered.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 })
    );
    assert_eq!(credits(&db.pool).await, 1);
    assert!(
        send_owned(stack, item_add("ord_10"))
            .await
            .unwrap()
            .replayed
    );
}

/// Moves the records of `keys` (dedupe keys of `item_add`) `days` into the past.
async fn age(pool: &PgPool, days: i32) {
    sqlx::query("UPDATE aghanim_idempotency SET recorded_at = now() - make_interval(days => $1)")
        .bind(days)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_resend_after_the_retention_purge_is_replayed_and_never_credited_again() {
    let Some(db) = database().await else { return };
    let store = PostgresStore::new(db.pool.clone());
    let handler = Handler::default();
    let stack = stack(IdempotencyLayer::transactional(store.clone()), &handler);
    assert_eq!(
        send_owned(stack.clone(), item_add("ord_old"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    age(&db.pool, 8).await;
    assert_eq!(
        send_owned(stack.clone(), item_add("ord_new"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );

    let purged = store
        .purge_expired(Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(purged, 1, "only the expired answer is purged");
    assert_eq!(records(&db.pool).await, 2, "the keys stay");
    let bodies: i64 = sqlx::query_scalar("SELECT count(body) FROM aghanim_idempotency")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(bodies, 1, "the expired answer's bytes are freed");

    // The same purchase, delivered again long after (signed afresh).
    let resent = send_owned(stack.clone(), item_add("ord_old"))
        .await
        .unwrap();
    assert_eq!((resent.status, resent.replayed), (StatusCode::OK, true));
    assert_eq!(resent.outcome, Some(IdempotencyOutcome::Replayed));
    assert_eq!(resent.body, r#"{"status":"ok"}"#);
    assert!(
        send_owned(stack, item_add("ord_new"))
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(handler.runs(), 2);
    assert_eq!(credits(&db.pool).await, 2);
    assert_eq!(
        store
            .purge_expired(Duration::from_secs(7 * 24 * 3600))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn only_an_explicit_horizon_forgets_keys() {
    let Some(db) = database().await else { return };
    let store = PostgresStore::new(db.pool.clone());
    let handler = Handler::default();
    let stack = stack(IdempotencyLayer::transactional(store.clone()), &handler);
    for key in ["ord_a", "ord_b"] {
        assert_eq!(
            send_owned(stack.clone(), item_add(key))
                .await
                .unwrap()
                .status,
            StatusCode::OK
        );
    }
    age(&db.pool, 400).await;
    assert_eq!(
        send_owned(stack.clone(), item_add("ord_c"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    store
        .purge_expired(Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(records(&db.pool).await, 3);
    let forgotten = store
        .forget_older_than(Duration::from_secs(365 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(forgotten, 2);
    assert_eq!(records(&db.pool).await, 1);
}

#[tokio::test]
async fn a_purged_record_costs_under_320_bytes_with_its_indexes() {
    let Some(db) = database().await else { return };
    // A hundred thousand purged rows, as the layer leaves them: digest key and
    // fingerprint, a status, no answer; committed as the layer commits.
    sqlx::raw_sql(
        "BEGIN; SELECT set_config('aghanim_webhook.committing', 'on', true); \
         INSERT INTO aghanim_idempotency (key, fingerprint, status, recorded_at, purged) \
         SELECT encode(sha256(i::text::bytea), 'hex'), encode(sha256((-i)::text::bytea), 'hex'), 200, \
         now() - interval '30 days', true FROM generate_series(1, 100000) AS i; COMMIT",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE aghanim_idempotency")
        .execute(&db.pool)
        .await
        .unwrap();
    let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('aghanim_idempotency')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let per_row = bytes / 100_000;
    eprintln!("a purged record: {per_row} bytes with its indexes ({bytes} bytes for 100000)");
    assert!(per_row < 320, "{per_row} bytes per purged record");
}

/// What a dead letter costs in PostgreSQL: ten thousand letters of a 394-byte
/// `item.add` delivery, with the primary key and the `last_seen` index.
#[tokio::test]
async fn a_dead_letter_of_a_purchase_costs_under_900_bytes_with_its_indexes() {
    let Some(db) = database().await else { return };
    sqlx::raw_sql(
        "INSERT INTO aghanim_idempotency_failed (key, game_id, sandbox, event_type, delivery_id, \
         body, reason, detail, status) \
         SELECT encode(sha256(i::text::bytea), 'hex'), 'gm_2qLJ6z7q', false, 'item.add', \
         'ord_' || lpad(i::text, 24, '0'), convert_to(repeat('x', 394), 'UTF8'), 'handler_failed', \
         '500 internal: inventory constraint violated', 500 FROM generate_series(1, 10000) AS i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE aghanim_idempotency_failed")
        .execute(&db.pool)
        .await
        .unwrap();
    let bytes: i64 =
        sqlx::query_scalar("SELECT pg_total_relation_size('aghanim_idempotency_failed')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let per_row = bytes / 10_000;
    eprintln!("a dead letter: {per_row} bytes with its indexes ({bytes} bytes for 10000)");
    assert!(per_row < 900, "{per_row} bytes per dead letter");
}

async fn a_nested_begin_committed_then_a_500_leaves_nothing_and_the_retry_credits_once(
    db: Database,
) {
    let handler = Handler::default()
        .then(Answer::NestedCommitThen(500))
        .then(Answer::NestedCommitThen(200));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let failed = send_owned(stack.clone(), item_add("ord_nested"))
        .await
        .unwrap();
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
    let retry = send_owned(stack.clone(), item_add("ord_nested"))
        .await
        .unwrap();
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert!(
        send_owned(stack, item_add("ord_nested"))
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(credits(&db.pool).await, 1);
}

async fn a_nested_begin_rolled_back_keeps_the_credit_and_the_duplicate_is_replayed(db: Database) {
    let handler = Handler::default().then(Answer::BonusRolledBack);
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let first = send_owned(stack.clone(), item_add("ord_bonus"))
        .await
        .unwrap();
    assert_eq!(first.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    let runs: Vec<i32> = sqlx::query_scalar("SELECT run FROM credits")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        runs,
        [1],
        "the credit stays, the bonus rolled back to its savepoint"
    );
    let again = send_owned(stack, item_add("ord_bonus")).await.unwrap();
    assert_eq!((again.status, again.replayed), (StatusCode::OK, true));
    assert_eq!(handler.runs(), 1);
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (1, 1));
}

async fn a_handler_that_ends_the_delivery_transaction_itself_is_never_answered_2xx(db: Database) {
    // Its own COMMIT is refused (only the layer's commits a claim) and rolls back, its
    // own ROLLBACK rolls back; either way the handler goes on, ignoring the error, and
    // answers the acknowledgement or a 500.
    for sql in [
        "ROLLBACK",
        "ROLLBACK; BEGIN",
        "COMMIT",
        "COMMIT; BEGIN",
        "COMMIT AND CHAIN",
    ] {
        for status in [200, 500] {
            sqlx::raw_sql("TRUNCATE credits, aghanim_idempotency")
                .execute(&db.pool)
                .await
                .unwrap();
            let handler = Handler::default().then(Answer::RawIgnoringErrorThen(sql, status));
            let stack = stack(
                IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
                &handler,
            );
            let lost = send_owned(stack.clone(), item_add("ord_raw"))
                .await
                .unwrap();
            assert_eq!(
                (lost.status, lost.outcome),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(IdempotencyOutcome::TransactionLost)
                ),
                "{sql}, then {status}: {lost:?}"
            );
            // Nothing the handler wrote, before or after, is kept: the retry runs.
            assert_eq!(credits(&db.pool).await, 0, "{sql}, then {status}");
            let retry = send_owned(stack, item_add("ord_raw")).await.unwrap();
            assert_eq!(
                retry.outcome,
                Some(IdempotencyOutcome::Ran { attempt: 1 }),
                "{sql}, then {status}"
            );
            assert_eq!(credits(&db.pool).await, 1, "{sql}, then {status}");
        }
    }
}

async fn a_2xx_over_a_failed_statement_is_never_answered_2xx_and_the_retry_credits_once(
    db: Database,
) {
    let handler = Handler::default().then(Answer::FailedStatementThenAck);
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    // The failed statement aborted the transaction: its credit and claim are lost, so
    // the handler's 2xx must not reach Aghanim.
    let first = send_owned(stack.clone(), item_add("ord_aborted"))
        .await
        .unwrap();
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
    let retry = send_owned(stack, item_add("ord_aborted")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (1, 1));
}

#[tokio::test]
async fn a_transaction_made_read_only_by_a_handler_after_its_credit_commits_it() {
    let Some(db) = database().await else { return };
    let small = pool(&db.url, 1).await;
    let handler = Handler::default().then(Answer::RawThenAck("SET TRANSACTION READ ONLY"));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(small)),
        &handler,
    );
    // The acknowledgement is what the claim's row says already: the commit writes
    // nothing, so read-only or not, the credit commits with its claim.
    ran_then_replayed(stack.clone(), "ord_read_only").await;
    ran_then_replayed(stack, "ord_after_read_only").await;
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (2, 2));
}

#[tokio::test]
async fn the_claims_lock_timeout_does_not_apply_to_the_handlers_statements() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::AdvisoryLock);
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
            .wait(Duration::from_millis(100)),
        &handler,
    );
    let holder = advisory_lock_42(&db.pool).await;
    let waiting = tokio::spawn(send_owned(stack, item_add("ord_lock")));
    tokio::time::sleep(Duration::from_millis(600)).await;
    holder.commit().await.unwrap();
    let sent = waiting.await.unwrap().unwrap();
    assert_eq!(
        sent.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 }),
        "{sent:?}"
    );
    assert_eq!(credits(&db.pool).await, 1);
}

#[tokio::test]
async fn a_hung_handler_is_rolled_back_at_the_run_timeout() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(3600)));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
            .run_timeout(Duration::from_millis(500)),
        &handler,
    );
    let hung = send_owned(stack.clone(), item_add("ord_hung"))
        .await
        .unwrap();
    assert_eq!(hung.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        hung.outcome,
        Some(IdempotencyOutcome::TimedOut { attempt: 1 })
    );
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
    let retry = send_owned(stack, item_add("ord_hung")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!(credits(&db.pool).await, 1);
}

#[tokio::test]
async fn a_cancelled_run_is_rolled_back_before_cancel_in_flight_returns() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(3600)));
    let idempotency = IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()));
    let stack = stack(idempotency.clone(), &handler);
    let running = tokio::spawn(send_owned(stack, item_add("ord_drain")));
    handler.until_written(1).await;
    assert_eq!(idempotency.cancel_in_flight().await, 1);
    let cut = running.await.unwrap().unwrap();
    assert_eq!(
        cut.outcome,
        Some(IdempotencyOutcome::Cancelled { attempt: 1 })
    );
    assert_eq!((credits(&db.pool).await, records(&db.pool).await), (0, 0));
}

#[tokio::test]
async fn fifty_copies_on_a_pool_of_ten_never_starve_another_delivery() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(2)));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let copies: Vec<_> = (0..50)
        .map(|_| tokio::spawn(send_owned(stack.clone(), item_add("ord_burst"))))
        .collect();
    handler.until_written(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another purchase, and the readiness probe's query, while the copies wait.
    let started = tokio::time::Instant::now();
    let other = send_owned(stack.clone(), item_add("ord_other"))
        .await
        .unwrap();
    assert_eq!(
        other.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 }),
        "{other:?}"
    );
    let probe = tokio::time::timeout(
        Duration::from_millis(500),
        sqlx::query("SELECT 1").execute(&db.pool),
    )
    .await;
    assert!(
        probe.is_ok_and(|done| done.is_ok()),
        "the pool had no connection for the probe"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for copy in copies {
        let sent = copy.await.unwrap().unwrap();
        assert!(
            sent.status == StatusCode::OK || sent.status == StatusCode::SERVICE_UNAVAILABLE,
            "{sent:?}"
        );
    }
    assert_eq!(handler.runs(), 2);
    assert_eq!(credits(&db.pool).await, 2);
}

#[tokio::test]
async fn a_dispatch_handler_credits_through_the_delivery_transaction() {
    use aghanim_webhook::{
        dispatch::Dispatch,
        events::{Ack, Event, ItemChange, WebhookError},
    };

    let Some(db) = database().await else { return };
    async fn credit(
        _state: (),
        transaction: DeliveryTransaction,
        event: Event<ItemChange>,
    ) -> Result<Ack, WebhookError> {
        let mut connection = transaction
            .connection()
            .await
            .map_err(|_| WebhookError::validation("no transaction"))?;
        for item in &event.event_data.items {
            sqlx::query("INSERT INTO credits (dedupe_key, run) VALUES ($1, $2)")
                .bind(&item.sku)
                .bind(item.quantity as i32)
                .execute(&mut *connection)
                .await
                .map_err(|_| WebhookError::validation("credit failed"))?;
        }
        Ok(Ack)
    }
    let dispatch = Dispatch::new().on("item.add", credit);
    let transactional = ServiceBuilder::new()
        .layer(layer())
        .layer(IdempotencyLayer::transactional(PostgresStore::new(
            db.pool.clone(),
        )))
        .service(dispatch.clone());
    for _ in 0..3 {
        let response = transactional
            .clone()
            .oneshot(item_add("ord_11"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(credits(&db.pool).await, 1);

    // The same handler behind a layer without transactions cannot run: a 500 that
    // names the fix, and no credit.
    let leased = ServiceBuilder::new()
        .layer(layer())
        .layer(IdempotencyLayer::in_memory())
        .service(dispatch);
    let response = leased.oneshot(item_add("ord_12")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("IdempotencyLayer::transactional"));
    assert_eq!(credits(&db.pool).await, 1);
}

#[tokio::test]
async fn a_duplicate_waiting_on_a_copy_that_rolls_back_runs_itself() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowStatus(Duration::from_millis(300), 503));
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone())),
        &handler,
    );
    let original = tokio::spawn(send_owned(stack.clone(), item_add("ord_13")));
    handler.until_written(1).await;
    let duplicate = send_owned(stack, item_add("ord_13")).await.unwrap();
    assert_eq!(duplicate.status, StatusCode::OK, "{duplicate:?}");
    assert_eq!(
        duplicate.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 })
    );
    let original = original.await.unwrap().unwrap();
    assert_eq!(original.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(handler.runs(), 2);
    assert_eq!(credits(&db.pool).await, 1);
}

#[tokio::test]
async fn the_table_name_is_configurable_and_checked() {
    let Some(db) = database().await else { return };
    for bad in ["", "x; DROP TABLE credits", "1abc", "a.b.c", "na-me"] {
        assert!(
            PostgresStore::new(db.pool.clone()).table(bad).is_err(),
            "{bad}"
        );
    }
    sqlx::raw_sql("CREATE SCHEMA game")
        .execute(&db.pool)
        .await
        .unwrap();
    let store = PostgresStore::new(db.pool.clone())
        .table("game.webhook_records")
        .unwrap();
    assert!(store
        .migration()
        .contains("CREATE TABLE IF NOT EXISTS game.webhook_records"));
    store.migrate().await.unwrap();
    let handler = Handler::default();
    let stack = stack(IdempotencyLayer::transactional(store), &handler);
    assert_eq!(
        send_owned(stack.clone(), item_add("ord_14"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    assert!(
        send_owned(stack, item_add("ord_14"))
            .await
            .unwrap()
            .replayed
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM game.webhook_records")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((recorded, records(&db.pool).await), (1, 0));
}

#[tokio::test]
async fn an_axum_handler_extracts_the_delivery_transaction() {
    use aghanim_webhook::{
        events::{Ack, ItemChange, WebhookError},
        AghanimEvent,
    };
    use axum::{routing::post, Router};

    let Some(db) = database().await else { return };
    async fn credit(
        transaction: DeliveryTransaction,
        claim: Claim,
        AghanimEvent(_event): AghanimEvent<ItemChange>,
    ) -> Result<Ack, WebhookError> {
        let mut connection = transaction
            .connection()
            .await
            .map_err(|_| WebhookError::validation("no transaction"))?;
        sqlx::query("INSERT INTO credits (dedupe_key, run) VALUES ($1, 1)")
            .bind(claim.dedupe_key())
            .execute(&mut *connection)
            .await
            .map_err(|_| WebhookError::validation("credit failed"))?;
        Ok(Ack)
    }
    let app = Router::new()
        .route("/webhook", post(credit))
        .layer(IdempotencyLayer::transactional(PostgresStore::new(
            db.pool.clone(),
        )))
        .layer(layer());
    for _ in 0..2 {
        let response = app.clone().oneshot(item_add("ord_15")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(credits(&db.pool).await, 1);
}

/// What `records show`, `records stuck` and `records forget` read and change.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sees_each_state_of_a_record_and_forgets_one_to_run_it_again() {
    use aghanim_webhook::{
        events::EventType,
        idempotency::{RecordKey, RecordState},
    };
    let Some(db) = database().await else { return };
    let store = PostgresStore::new(db.pool.clone());
    let key = |id: &str| RecordKey::new(common::GAME_ID, false, &EventType::ItemAdd, id);
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(2)));
    let stack = stack(IdempotencyLayer::transactional(store.clone()), &handler);

    assert_eq!(store.record(&key("ord_ops")).await.unwrap(), None);
    // Held by a delivery's open transaction: not visible as a row, found by its lock.
    let running = tokio::spawn(send_owned(stack.clone(), item_add("ord_ops")));
    handler.until_written(1).await;
    let held = store.record(&key("ord_ops")).await.unwrap().unwrap();
    assert_eq!(
        held.state,
        RecordState::Running {
            lease_remaining: None
        }
    );
    assert!(store.forget(&key("ord_ops")).await.is_err());
    let stuck = store.stuck(Duration::ZERO).await.unwrap();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert!(
        stuck[0].key.is_none() && stuck[0].holder.starts_with("open transaction: pid "),
        "{stuck:?}"
    );
    assert!(store
        .stuck(Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(running.await.unwrap().unwrap().status, StatusCode::OK);

    let completed = store.record(&key("ord_ops")).await.unwrap().unwrap();
    let RecordState::Completed { status, body, .. } = &completed.state else {
        panic!("{completed:?}");
    };
    assert_eq!((*status, body.as_ref()), (200, &br#"{"run":1}"#[..]));
    assert!(completed.claimed_at.is_some());

    // A claim committed without an answer (by a version of the store that let a
    // handler's own COMMIT through) stays until forgotten.
    send_owned(stack.clone(), item_add("ord_unanswered"))
        .await
        .unwrap();
    sqlx::query("UPDATE aghanim_idempotency SET status = NULL WHERE key = $1")
        .bind(key("ord_unanswered").as_str())
        .execute(&db.pool)
        .await
        .unwrap();
    let unanswered = store.record(&key("ord_unanswered")).await.unwrap().unwrap();
    assert_eq!(unanswered.state, RecordState::Unanswered);
    let stuck = store.stuck(Duration::ZERO).await.unwrap();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(
        stuck[0].key.as_deref(),
        Some(key("ord_unanswered").as_str())
    );

    // Forgotten, the delivery runs again; nothing else changed.
    let removed = store.forget(&key("ord_ops")).await.unwrap().unwrap();
    assert_eq!(removed, completed);
    assert_eq!(store.record(&key("ord_ops")).await.unwrap(), None);
    assert_eq!(store.forget(&key("ord_ops")).await.unwrap(), None);
    assert_eq!(credits(&db.pool).await, 2);
    let again = send_owned(stack, item_add("ord_ops")).await.unwrap();
    assert_eq!(again.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!(credits(&db.pool).await, 3);
}

/// The crate's own acknowledgement, as a handler answers it.
fn acknowledgement() -> Response<Full<Bytes>> {
    use aghanim_webhook::events::{Ack, IntoWebhookResponse};
    Ack.into_webhook_response().map(Full::new)
}

mod faults;
