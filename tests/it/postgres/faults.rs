//! The store under the database's everyday behaviour: a request dropped at every await,
//! a lock on the table, a handler that ignores an error or ends the transaction itself,
//! a deploy's `migrate()`, session state and the pool's hooks. Each on a pool of one
//! connection, where a connection left inside a transaction is the next delivery's.

use super::*;
use common::sent::Sent;
use sqlx::AssertSqlSafe;

/// The credits written for the delivery of `key`.
async fn credits_of(db: &Database, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM credits WHERE dedupe_key LIKE '%:' || $1")
        .bind(key)
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

/// Waits, at most 5 s, until no session on the database but this one is inside a
/// transaction or running a statement; panics with those that still are.
async fn settled(db: &Database) {
    let busy = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT format('%s %s: %s', pid, state, query) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND (state LIKE 'idle in transaction%' OR state = 'active')",
        )
        .fetch_all(&db.admin)
        .await
        .unwrap()
    };
    for _ in 0..100 {
        if busy().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sessions left busy: {:?}", busy().await);
}

/// A lock on the store's table, held by another session until the transaction drops.
async fn table_locked(db: &Database) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = db.admin.begin().await.unwrap();
    sqlx::raw_sql("LOCK TABLE aghanim_idempotency IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

/// The delivery of `key`, answered `first`, was refused with nothing kept (`None`: the
/// handler's error went up the stack); its retry, the handler's script run out, runs
/// and credits once.
async fn refused_then_credited_once(
    db: &Database,
    stack: &Stack,
    key: &str,
    first: Option<Sent>,
    outcome: Option<IdempotencyOutcome>,
) {
    if let Some(first) = first {
        assert_eq!(
            (first.status, first.outcome),
            (StatusCode::SERVICE_UNAVAILABLE, outcome.or(first.outcome)),
            "{key}: {first:?}"
        );
    }
    assert_eq!(credits_of(db, key).await, 0, "{key}");
    let retry = send_owned(stack.clone(), item_add(key)).await.unwrap();
    assert_eq!(
        retry.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 }),
        "{key}: {retry:?}"
    );
    assert_eq!(credits_of(db, key).await, 1, "{key}");
}

/// Sends `key`'s delivery and drops it, unanswered, after `after`.
async fn dropped_after(stack: &Stack, key: &str, after: Duration) {
    let sent = tokio::time::timeout(after, send_owned(stack.clone(), item_add(key))).await;
    assert!(
        sent.is_err(),
        "{key} was answered before it was dropped: {sent:?}"
    );
}

async fn a_delivery_dropped_at_any_point_leaves_no_transaction_and_its_retry_credits_once(
    db: Database,
) {
    sqlx::raw_sql(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON credits \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
         WHEN (NEW.dedupe_key LIKE '%:ord_drop_commit') EXECUTE FUNCTION slow_commit()",
    )
    .execute(&db.admin)
    .await
    .unwrap();
    let single = pool(&db.url, 1).await;
    let handler = Handler::default();
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(single.clone()))
            .wait(Duration::from_secs(5)),
        &handler,
    );
    let settle = Duration::from_millis(300);

    // Waiting for the pool's one connection.
    let hog = single.acquire().await.unwrap();
    dropped_after(&stack, "ord_drop_acquire", settle).await;
    drop(hog);
    settled(&db).await;

    // The claim sent, waiting for a lock on the table.
    let lock = table_locked(&db).await;
    dropped_after(&stack, "ord_drop_claim", settle).await;
    lock.rollback().await.unwrap();
    settled(&db).await;
    // The next purchase on the pool's one connection commits only its own claim.
    let next = send_owned(stack.clone(), item_add("ord_drop_next"))
        .await
        .unwrap();
    assert_eq!(
        next.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 }),
        "{next:?}"
    );

    // In the handler, its credit written.
    let slow = Handler::default().then(Answer::SlowOk(Duration::from_secs(30)));
    let slow_stack = stack_on(&single, &slow);
    let running = tokio::spawn({
        let slow_stack = slow_stack.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                send_owned(slow_stack, item_add("ord_drop_handler")),
            )
            .await
        }
    });
    slow.until_written(1).await;
    running.abort();
    let _ = running.await;
    settled(&db).await;

    // In the commit, held by a deferred trigger.
    let committing = tokio::spawn({
        let stack = stack.clone();
        async move { send_owned(stack, item_add("ord_drop_commit")).await }
    });
    handler.until_written(2).await;
    tokio::time::sleep(settle).await;
    committing.abort();
    let _ = committing.await;
    settled(&db).await;

    for key in [
        "ord_drop_acquire",
        "ord_drop_claim",
        "ord_drop_handler",
        "ord_drop_commit",
        "ord_drop_next",
    ] {
        let retry = send_owned(stack.clone(), item_add(key)).await.unwrap();
        assert_eq!(retry.status, StatusCode::OK, "{key}: {retry:?}");
        assert_eq!(credits_of(&db, key).await, 1, "{key}");
    }
    settled(&db).await;
}

async fn a_table_lock_during_a_claim_ends_it_at_the_wait_and_its_retry_credits_once(db: Database) {
    let single = pool(&db.url, 1).await;
    let handler = Handler::default();
    let stack = stack(
        IdempotencyLayer::transactional(PostgresStore::new(single))
            .wait(Duration::from_millis(300)),
        &handler,
    );
    let lock = table_locked(&db).await;
    // The claim's lock timeout is in force before its insert asks for the table: the
    // server ends the wait, and the delivery is answered while the lock is held.
    let locked_out = tokio::time::timeout(
        Duration::from_secs(10),
        send_owned(stack.clone(), item_add("ord_table_lock")),
    )
    .await
    .expect("answered while the table is locked")
    .unwrap();
    assert_eq!(locked_out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        locked_out.outcome,
        Some(IdempotencyOutcome::StillInProgress),
        "{locked_out:?}"
    );
    lock.rollback().await.unwrap();
    settled(&db).await;
    let next = send_owned(stack.clone(), item_add("ord_after_lock"))
        .await
        .unwrap();
    assert_eq!(next.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    let retry = send_owned(stack, item_add("ord_table_lock")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    assert_eq!(credits_of(&db, "ord_table_lock").await, 1);
    assert_eq!(credits_of(&db, "ord_after_lock").await, 1);
}

async fn a_failed_savepoint_after_a_swallowed_error_never_credits_outside_the_delivery(
    db: Database,
) {
    let single = pool(&db.url, 1).await;
    let handler = Handler::default()
        .then(Answer::SwallowedErrorThenBegin)
        .then(Answer::SwallowedErrorThenBegin)
        .then(Answer::SwallowedErrorThenBegin);
    let stack = stack_on(&single, &handler);
    for _ in 1..3 {
        let sent = send_owned(stack.clone(), item_add("ord_swallowed"))
            .await
            .unwrap();
        assert_eq!(sent.status, StatusCode::SERVICE_UNAVAILABLE, "{sent:?}");
        assert_eq!(credits_of(&db, "ord_swallowed").await, 0);
    }
    // The third attempt, then the handler fixed: the next retry credits once.
    let third = send_owned(stack.clone(), item_add("ord_swallowed"))
        .await
        .unwrap();
    refused_then_credited_once(&db, &stack, "ord_swallowed", Some(third), None).await;
    settled(&db).await;
}

async fn a_handlers_own_rollback_then_writes_keeps_nothing_and_the_retry_credits_once(
    db: Database,
) {
    let single = pool(&db.url, 1).await;
    // Rolled back after a statement, or first thing, by a helper that takes sqlx's own
    // connection type.
    for (key, answer) in [
        ("ord_own_rollback", Answer::RollbackThenCredit),
        ("ord_helper_rollback", Answer::HelperRollsBackFirst),
    ] {
        let handler = Handler::default().then(answer);
        let stack = stack_on(&single, &handler);
        let lost = send_owned(stack.clone(), item_add(key)).await.unwrap();
        // The write after its ROLLBACK was refused, not committed on its own.
        let lost_outcome = Some(IdempotencyOutcome::TransactionLost);
        refused_then_credited_once(&db, &stack, key, Some(lost), lost_outcome).await;
    }
    settled(&db).await;
}

async fn a_handlers_own_commit_commits_nothing_and_the_retry_credits_once(db: Database) {
    let single = pool(&db.url, 1).await;
    // A helper's COMMIT whose error the handler passes on, or ignores before a 500.
    for (key, answer) in [
        ("ord_commit_error", Answer::Raw("COMMIT")),
        (
            "ord_commit_500",
            Answer::RawIgnoringErrorThen("COMMIT", 500),
        ),
    ] {
        let handler = Handler::default().then(answer);
        let stack = stack_on(&single, &handler);
        let first = send_owned(stack.clone(), item_add(key)).await.ok();
        let lost_outcome = Some(IdempotencyOutcome::TransactionLost);
        refused_then_credited_once(&db, &stack, key, first, lost_outcome).await;
    }
    settled(&db).await;
}

/// A key committed without an answer (by a version of the store without the trigger
/// that refuses a handler's `COMMIT`, or with the trigger dropped) is neither run nor
/// replayed until an operator decides, and they see it.
async fn a_key_committed_without_an_answer_is_refused_and_listed_as_stuck(db: Database) {
    let handler = Handler::default();
    let stack = stack_on(&db.pool, &handler);
    let claimed = send_owned(stack.clone(), item_add("ord_unanswered"))
        .await
        .unwrap();
    assert_eq!(
        claimed.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 })
    );
    sqlx::raw_sql("UPDATE aghanim_idempotency SET status = NULL")
        .execute(&db.admin)
        .await
        .unwrap();
    for _ in 0..2 {
        let retry = send_owned(stack.clone(), item_add("ord_unanswered"))
            .await
            .unwrap();
        assert_eq!(
            (retry.status, retry.replayed, retry.outcome),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                false,
                Some(IdempotencyOutcome::TransactionLost)
            )
        );
    }
    assert_eq!(handler.runs(), 1);
    let stuck = PostgresStore::new(db.admin.clone())
        .stuck(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        stuck.iter().filter(|claim| claim.key.is_some()).count(),
        1,
        "{stuck:?}"
    );
}

async fn a_handler_cannot_change_the_records_while_its_claim_is_open(db: Database) {
    let single = pool(&db.url, 1).await;
    for (key, sql, status) in [
        ("ord_delete_ack", "DELETE FROM aghanim_idempotency", 200),
        ("ord_delete_answer", "DELETE FROM aghanim_idempotency", 201),
        (
            "ord_rekey",
            "UPDATE aghanim_idempotency SET key = 'moved'",
            200,
        ),
        ("ord_truncate", "TRUNCATE aghanim_idempotency", 200),
    ] {
        let handler = Handler::default().then(Answer::RawIgnoringErrorThen(sql, status));
        let stack = stack_on(&single, &handler);
        let first = send_owned(stack.clone(), item_add(key)).await.unwrap();
        refused_then_credited_once(&db, &stack, key, Some(first), None).await;
    }
    settled(&db).await;
}

async fn a_handlers_own_savepoint_rolled_back_to_and_reset_all_keep_the_delivery(db: Database) {
    let single = pool(&db.url, 1).await;
    // Its own SQL savepoint, a failure in it, and the way back out of it.
    let handler = Handler::default().then(Answer::RawSavepointRolledBack);
    let stack = stack_on(&single, &handler);
    ran_then_replayed(stack, "ord_own_savepoint").await;
    assert_eq!(credits_of(&db, "ord_own_savepoint").await, 1);
    // `RESET ALL` between two credits: the delivery's transaction is still its own.
    let handler = Handler::default().then(Answer::RawIgnoringErrorThen("RESET ALL", 200));
    let stack = stack_on(&single, &handler);
    ran_then_replayed(stack, "ord_reset_all").await;
    assert_eq!(credits_of(&db, "ord_reset_all").await, 2);
    settled(&db).await;
}

async fn a_second_transactional_layer_inside_the_first_passes_the_delivery_through(db: Database) {
    let handler = Handler::default();
    let outer = IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()));
    let inner = IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()));
    let stack = ServiceBuilder::new()
        .layer(layer())
        .layer(outer)
        .layer(inner)
        .service_fn({
            let handler = handler.clone();
            move |request| handler.clone().handle(request)
        });
    ran_then_replayed(stack, "ord_two_layers").await;
    assert_eq!(
        (handler.runs(), credits_of(&db, "ord_two_layers").await),
        (1, 1)
    );
}

async fn a_savepoint_whose_rollback_a_timeout_cut_is_still_rolled_back(db: Database) {
    let single = pool(&db.url, 1).await;
    let handler = Handler::default().then(Answer::SavepointRetriedOnTimeout);
    let stack = stack_on(&single, &handler);
    // The first attempts wait for the lock past their timeout; the lock goes, and a
    // later attempt credits.
    let holder = advisory_lock_42(&db.admin).await;
    let sending = tokio::spawn(send_owned(stack.clone(), item_add("ord_retried_savepoint")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    holder.commit().await.unwrap();
    let sent = sending.await.unwrap().unwrap();
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    assert_eq!(credits_of(&db, "ord_retried_savepoint").await, 1);
    let copy = send_owned(stack, item_add("ord_retried_savepoint"))
        .await
        .unwrap();
    assert!(copy.replayed, "{copy:?}");
    assert_eq!(credits_of(&db, "ord_retried_savepoint").await, 1);
    settled(&db).await;
}

async fn a_savepoint_whose_commit_a_timeout_cut_is_rolled_back(db: Database) {
    let single = pool(&db.url, 1).await;
    let handler = Handler::default().then(Answer::SavepointCommitCut);
    let stack = stack_on(&single, &handler);
    ran_then_replayed(stack, "ord_cut_commit").await;
    // The credit, and the bonus once: the cut commit's savepoint rolled back.
    assert_eq!(credits_of(&db, "ord_cut_commit").await, 2);
    settled(&db).await;
}

straight_and_pooled!(
    a_delivery_dropped_at_any_point_leaves_no_transaction_and_its_retry_credits_once,
    a_table_lock_during_a_claim_ends_it_at_the_wait_and_its_retry_credits_once,
    a_failed_savepoint_after_a_swallowed_error_never_credits_outside_the_delivery,
    a_handlers_own_rollback_then_writes_keeps_nothing_and_the_retry_credits_once,
    a_handlers_own_commit_commits_nothing_and_the_retry_credits_once,
    a_key_committed_without_an_answer_is_refused_and_listed_as_stuck,
    a_handler_cannot_change_the_records_while_its_claim_is_open,
    a_handlers_own_savepoint_rolled_back_to_and_reset_all_keep_the_delivery,
    a_second_transactional_layer_inside_the_first_passes_the_delivery_through,
    a_savepoint_whose_rollback_a_timeout_cut_is_still_rolled_back,
    a_savepoint_whose_commit_a_timeout_cut_is_rolled_back,
);

fn stack_on(pool: &PgPool, handler: &Handler) -> Stack {
    stack(
        IdempotencyLayer::transactional(PostgresStore::new(pool.clone())),
        handler,
    )
}

#[tokio::test]
async fn a_handlers_own_commit_is_refused_on_a_session_in_replica_mode_too() {
    let Some(db) = database().await else { return };
    // Sessions of a replication tool's pool skip triggers enabled the ordinary way.
    let replica = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::raw_sql("SET session_replication_role = replica")
                    .execute(connection)
                    .await
                    .map(drop)
            })
        })
        .connect(&db.url)
        .await
        .unwrap();
    let handler = Handler::default().then(Answer::RawIgnoringErrorThen("COMMIT", 500));
    let stack = stack_on(&replica, &handler);
    let first = send_owned(stack.clone(), item_add("ord_replica"))
        .await
        .ok();
    let lost_outcome = Some(IdempotencyOutcome::TransactionLost);
    refused_then_credited_once(&db, &stack, "ord_replica", first, lost_outcome).await;
}

#[tokio::test]
async fn a_delivery_answered_2xx_survives_a_crash_where_commits_are_asynchronous() {
    let Some(db) = database_on_its_own_server().await else {
        return;
    };
    let server = db.server.as_ref().expect("a server of its own");
    // A common tuning: commits answered before their WAL is flushed.
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    )))
    .execute(&db.admin)
    .await
    .unwrap();
    let asynchronous = pool(&db.url, 2).await;
    let handler = Handler::default();
    let stack = stack_on(&asynchronous, &handler);
    let sent = send_owned(stack, item_add("ord_async_commit"))
        .await
        .unwrap();
    assert_eq!(sent.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
    // The server crashes right after the 2xx.
    server.stop_immediate();
    server.start_server();
    let admin = pool(&db.url, 1).await;
    let credited: i64 = sqlx::query_scalar("SELECT count(*) FROM credits")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(credited, 1, "a purchase answered 2xx was lost in the crash");
}

#[tokio::test]
async fn migrate_on_a_current_schema_waits_for_no_delivery() {
    let Some(db) = database().await else { return };
    let handler = Handler::default().then(Answer::SlowOk(Duration::from_secs(3)));
    let store = PostgresStore::new(db.pool.clone());
    let stack = stack_on(&db.pool, &handler);
    let running = tokio::spawn(send_owned(stack.clone(), item_add("ord_during_deploy")));
    handler.until_written(1).await;
    // A deploy's instances start while the delivery holds its row and the table.
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(1), store.migrate()).await
            })
        })
        .collect();
    for started in starting {
        let migrated = started.await.unwrap();
        assert!(matches!(migrated, Ok(Ok(()))), "{migrated:?}");
    }
    // New claims are not queued behind a migration.
    let next = tokio::time::timeout(
        Duration::from_secs(1),
        send_owned(stack, item_add("ord_after_deploy")),
    )
    .await
    .expect("claimed while the first delivery runs")
    .unwrap();
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(running.await.unwrap().unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn instances_starting_together_migrate_a_new_table_once() {
    let Some(db) = database().await else { return };
    let starting: Vec<_> = (0..6)
        .map(|_| {
            let store = PostgresStore::new(db.pool.clone())
                .table("fresh_records")
                .unwrap();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for started in starting {
        started.await.unwrap().unwrap();
    }
    let indexes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'fresh_records'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(indexes, 3);
}

#[tokio::test]
async fn session_state_a_handler_sets_is_never_seen_by_the_next_delivery() {
    let Some(db) = database().await else { return };
    // The game's pool resets what its code may set on a session when a connection
    // comes back; the store gives every delivery's connection back to it.
    let released = Arc::new(AtomicUsize::new(0));
    let single = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_release({
            let released = Arc::clone(&released);
            move |connection, _| {
                released.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    sqlx::query("SELECT set_config('app.tenant', '', false)")
                        .execute(connection)
                        .await?;
                    Ok(true)
                })
            }
        })
        .connect(&db.url)
        .await
        .unwrap();
    let handler = Handler::default();
    for _ in 0..6 {
        handler.script.lock().unwrap().push_back(Answer::Tenant);
    }
    let stack = stack_on(&single, &handler);
    let sending: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(send_owned(
                stack.clone(),
                item_add(&format!("ord_tenant_{n}")),
            ))
        })
        .collect();
    for sent in sending {
        assert_eq!(sent.await.unwrap().unwrap().status, StatusCode::OK);
    }
    let tenants = handler.tenants.lock().unwrap().clone();
    assert_eq!(tenants, vec![String::new(); 6]);
    assert!(released.load(Ordering::SeqCst) >= 6);
}

/// What an operator sees of a 503 the store caused: one line at warn with the reason and
/// the database's SQLSTATE, and a count by reason.
#[cfg(all(feature = "tracing", feature = "metrics"))]
#[test]
fn a_store_failure_is_logged_once_with_its_sqlstate_and_counted_by_reason() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (captured, _guard) = crate::tracing::capture();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let Some(db) = database().await else { return };
            let handler = Handler::default()
                .then(Answer::FailedStatementThenAck)
                .then(Answer::RollbackThenCredit);
            let stack = stack_on(&db.pool, &handler);
            for key in ["ord_aborted_logged", "ord_ended_logged"] {
                let sent = send_owned(stack.clone(), item_add(key)).await.unwrap();
                assert_eq!(sent.status, StatusCode::SERVICE_UNAVAILABLE, "{sent:?}");
            }
            // A lock on the table, which looks like a copy in progress to the claim.
            let waiting = super::stack(
                IdempotencyLayer::transactional(PostgresStore::new(db.pool.clone()))
                    .wait(Duration::from_millis(200)),
                &handler,
            );
            let lock = table_locked(&db).await;
            let sent = send_owned(waiting, item_add("ord_locked_logged"))
                .await
                .unwrap();
            assert_eq!(sent.status, StatusCode::SERVICE_UNAVAILABLE, "{sent:?}");
            lock.rollback().await.unwrap();
        })
    });
    let text = captured.text();
    let failures: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("store failed: 503"))
        .collect();
    if failures.is_empty() && !text.contains("ord_aborted_logged") {
        return; // no PostgreSQL here: the database helper said so
    }
    assert_eq!(failures.len(), 3, "{text}");
    assert!(
        failures[0].contains("WARN")
            && failures[0].contains("reason=\"transaction_aborted\"")
            && failures[0].contains("sqlstate=\"25P02\"")
            && failures[0].contains("ord_aborted_logged"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("reason=\"transaction_ended\"")
            && failures[1].contains("ord_ended_logged"),
        "{}",
        failures[1]
    );
    let snapshot = snapshotter.snapshot().into_vec();
    let counted = |reason: &str| {
        snapshot
            .iter()
            .filter(|(key, _, _, _)| {
                let key = key.key();
                key.name() == "aghanim_webhook_idempotency_store_failures_total"
                    && key
                        .labels()
                        .any(|label| label.key() == "reason" && label.value() == reason)
            })
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(count) => *count,
                _ => 0,
            })
            .sum::<u64>()
    };
    assert!(
        failures[2].contains("reason=\"lock_timeout\"")
            && failures[2].contains("sqlstate=\"55P03\"")
            && failures[2].contains("ord_locked_logged"),
        "{}",
        failures[2]
    );
    assert_eq!(counted("lock_timeout"), 1);
    assert_eq!(counted("transaction_aborted"), 1);
    assert_eq!(counted("transaction_ended"), 1);
}
