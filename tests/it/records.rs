#![cfg(feature = "redis")]
//! What an operator reads and changes in a store: `RedisStore`'s record, stuck and
//! forget (PostgreSQL's are in `postgres.rs`), and the `records` command against the
//! example server's webhook on a private PostgreSQL and Redis.

use crate::common;

use std::time::Duration;

use aghanim_webhook::{
    events::EventType,
    idempotency::{
        ClaimRequest, IdempotencyStore, OwnerToken, RecordKey, RecordState, RedisStore,
        StoredResponse,
    },
};
use common::redis_server::{prefix, RedisServer};

async fn redis_store() -> Option<RedisStore> {
    let server = RedisServer::shared()?;
    let store = RedisStore::connect(&server.url()).await.unwrap();
    Some(store.prefix(prefix()))
}

fn key(id: &str) -> RecordKey {
    RecordKey::new("gm_ops", false, &EventType::ItemAdd, id)
}

async fn claim(store: &RedisStore, id: &str, lease: Duration) -> OwnerToken {
    let owner = OwnerToken::random();
    let request = ClaimRequest::new(owner.clone(), "fp", lease, Duration::from_secs(600));
    store.claim(key(id).as_str(), &request).await.unwrap();
    owner
}

#[tokio::test]
async fn redis_records_show_every_state_and_a_running_claim_is_not_forgotten() {
    let Some(store) = redis_store().await else {
        return;
    };
    assert_eq!(store.record(&key("none")).await.unwrap(), None);

    let owner = claim(&store, "running", Duration::from_secs(30)).await;
    let running = store.record(&key("running")).await.unwrap().unwrap();
    let RecordState::Running {
        lease_remaining: Some(lease),
    } = running.state
    else {
        panic!("{running:?}");
    };
    assert!(lease > Duration::from_secs(25) && lease <= Duration::from_secs(30));
    assert_eq!(running.attempts, Some(1));
    assert!(running.claimed_at.is_some());
    assert!(store.forget(&key("running")).await.is_err());
    assert!(store.record(&key("running")).await.unwrap().is_some());

    claim(&store, "expired", Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = store.record(&key("expired")).await.unwrap().unwrap();
    assert_eq!(expired.state, RecordState::Expired);

    let released = claim(&store, "released", Duration::from_secs(30)).await;
    store
        .release(key("released").as_str(), &released)
        .await
        .unwrap();
    assert_eq!(
        store.record(&key("released")).await.unwrap().unwrap().state,
        RecordState::Released
    );

    let answer = StoredResponse {
        status: 200,
        content_type: Some("application/json".into()),
        body: bytes::Bytes::from_static(br#"{"status":"ok"}"#),
    };
    let done = claim(&store, "completed", Duration::from_secs(30)).await;
    store
        .complete(
            key("completed").as_str(),
            &done,
            &answer,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let completed = store.record(&key("completed")).await.unwrap().unwrap();
    assert_eq!(
        completed.state,
        RecordState::Completed {
            status: 200,
            content_type: Some("application/json".into()),
            body: bytes::Bytes::from_static(br#"{"status":"ok"}"#),
        }
    );
    assert!(completed.completed_at >= completed.claimed_at);

    // Stuck: the running and the expired claim, not the answered or released ones.
    let mut stuck: Vec<_> = store
        .stuck(Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|claim| (claim.key.unwrap(), claim.holder))
        .collect();
    stuck.sort();
    let mut expected = [key("expired"), key("running")].map(|key| key.to_string());
    expected.sort();
    assert_eq!(
        stuck.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(),
        expected,
        "{stuck:?}"
    );
    assert!(store
        .stuck(Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());

    // Forgotten, the key is claimed again as a first delivery would be.
    assert_eq!(
        store.forget(&key("completed")).await.unwrap(),
        Some(completed)
    );
    assert_eq!(store.record(&key("completed")).await.unwrap(), None);
    drop(owner);
}

#[cfg(all(feature = "cli", feature = "postgres"))]
mod cli {
    use super::common;
    use crate::server_app;

    use std::process::Command;

    use aghanim_webhook::idempotency::DEFAULT_RUN_TIMEOUT;
    use common::{postgres_server::PostgresServer, redis_server::RedisServer, SECRET};

    const TOOL: &str = env!("CARGO_BIN_EXE_aghanim-webhook");

    /// Runs the tool with `args` and the store's URL variable; success and stdout.
    async fn tool(args: &[&str], store: (&str, &str)) -> (bool, String) {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let (variable, url) = (store.0.to_owned(), store.1.to_owned());
        let output = tokio::task::spawn_blocking(move || {
            Command::new(TOOL)
                .args(&args)
                .env_remove("DATABASE_URL")
                .env_remove("REDIS_URL")
                .env(variable, url)
                .env("AGHANIM_WEBHOOK_SECRET", SECRET)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (output.status.success(), format!("{stdout}{stderr}"))
    }

    /// A purchase sent by the tool, found from its ids, forgotten, sent again: the
    /// second delivery runs the handler (not a replay) and is found completed again.
    async fn purchase_found_forgotten_and_sent_again(router: axum::Router, store: (&str, &str)) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let send = ["send", "item.add", "--id", "ops1", "--url", &url];
        let ids = [
            "--game",
            "gm_cli",
            "--sandbox",
            "--event-type",
            "item.add",
            "--key",
            "ord_ops1",
        ];
        let show: Vec<&str> = ["records", "show"].iter().chain(&ids).copied().collect();
        let forget: Vec<&str> = ["records", "forget"].iter().chain(&ids).copied().collect();

        let (ok, out) = tool(&show, store).await;
        assert!(ok && out.contains("state      unknown"), "{out}");
        let (ok, out) = tool(&send, store).await;
        assert!(
            ok && out.starts_with("#1 200 ") && !out.contains("replayed"),
            "{out}"
        );
        let (ok, out) = tool(&show, store).await;
        assert!(ok, "{out}");
        assert!(
            out.contains("delivery   gm_cli:sandbox:item.add:ord_ops1"),
            "{out}"
        );
        assert!(out.contains("state      completed\n"), "{out}");
        assert!(
            out.contains("status     200\n") && out.contains("claimed    20"),
            "{out}"
        );

        // Without --yes nothing is removed.
        let (ok, out) = tool(&forget, store).await;
        assert!(!ok && out.contains("pass --yes"), "{out}");
        assert!(tool(&show, store).await.1.contains("state      completed"));
        let yes: Vec<&str> = forget.iter().copied().chain(["--yes"]).collect();
        let (ok, out) = tool(&yes, store).await;
        assert!(
            ok && out.contains("forgotten:") && out.contains("status     200"),
            "{out}"
        );
        let (ok, out) = tool(&show, store).await;
        assert!(ok && out.contains("state      unknown"), "{out}");

        let (ok, out) = tool(&send, store).await;
        assert!(
            ok && out.starts_with("#1 200 ") && !out.contains("replayed"),
            "{out}"
        );
        let (ok, out) = tool(&send, store).await;
        assert!(ok && out.contains("(replayed)"), "{out}");
        assert!(tool(&show, store)
            .await
            .1
            .contains("state      completed\n"));
        let (ok, out) = tool(&["records", "stuck", "--older-than", "0"], store).await;
        assert!(ok && out.contains("no claim open"), "{out}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_records_command_on_postgres() {
        let Some(server) = PostgresServer::shared() else {
            return;
        };
        let url = server.database();
        let app = server_app::on_postgres(SECRET, &url, DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        purchase_found_forgotten_and_sent_again(app.router, ("DATABASE_URL", &url)).await;
    }

    /// The example server on a database of its own, its inventory refusing every
    /// credit (a constraint the tests drop to fix it).
    struct Broken {
        url: String,
        pool: sqlx::PgPool,
        endpoint: String,
    }

    async fn broken_inventory() -> Option<Broken> {
        let url = PostgresServer::shared()?.database();
        let app = server_app::on_postgres(SECRET, &url, DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.router).await });
        sqlx::raw_sql("ALTER TABLE inventory ADD CONSTRAINT nothing_credited CHECK (quantity < 0)")
            .execute(&pool)
            .await
            .unwrap();
        Some(Broken {
            url,
            pool,
            endpoint,
        })
    }

    /// The gems in the inventory, every player's.
    async fn held(pool: &sqlx::PgPool) -> i64 {
        let held: Option<i64> = sqlx::query_scalar("SELECT sum(quantity)::bigint FROM inventory")
            .fetch_one(pool)
            .await
            .unwrap();
        held.unwrap_or(0)
    }

    /// The example server on PostgreSQL, its inventory broken by a constraint: every
    /// delivery of a purchase fails and is kept; `records failed` and `records show`
    /// say so; once the constraint is dropped, `records replay` applies it, once,
    /// however often it is replayed or Aghanim retries it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_purchase_is_listed_and_replayed_once_by_the_tool_on_postgres() {
        let Some(Broken {
            url,
            pool,
            endpoint,
        }) = broken_inventory().await
        else {
            return;
        };
        let store = ("DATABASE_URL", url.as_str());

        let send = [
            "send", "item.add", "--id", "dl1", "--url", &endpoint, "--repeat", "3",
        ];
        let (ok, out) = tool(&send, store).await;
        assert!(
            !ok && out.contains("#1 503") && out.contains("#3 503"),
            "{out}"
        );
        let (ok, out) = tool(&["records", "failed"], store).await;
        assert!(ok, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(
            lines[0].contains("item.add  gm_cli sandbox  ord_dl1  handler_failed  3 attempts  503"),
            "{out}"
        );
        let ids = [
            "--game",
            "gm_cli",
            "--sandbox",
            "--event-type",
            "item.add",
            "--key",
            "ord_dl1",
        ];
        let show: Vec<&str> = ["records", "show"].iter().chain(&ids).copied().collect();
        let (ok, out) = tool(&show, store).await;
        assert!(
            ok && out.contains(
                "state      failed 3 times, last because handler failed (503 unavailable"
            ),
            "{out}"
        );
        assert_eq!(held(&pool).await, 0);

        sqlx::raw_sql("ALTER TABLE inventory DROP CONSTRAINT nothing_credited")
            .execute(&pool)
            .await
            .unwrap();
        let replay = [
            "records",
            "replay",
            "--all",
            "--event-type",
            "item.add",
            "--url",
            &endpoint,
        ];
        let (ok, out) = tool(&replay, store).await;
        assert!(
            ok && out.contains("ord_dl1") && out.contains(" 200 resolved"),
            "{out}"
        );
        let credited = held(&pool).await;
        assert!(credited > 0);
        let (ok, out) = tool(&["records", "failed"], store).await;
        assert!(
            ok && out.contains("no failed delivery kept unresolved"),
            "{out}"
        );

        // Replayed again by its ids, and retried by Aghanim: applied once.
        let by_ids: Vec<&str> = ["records", "replay", "--url", &endpoint, "--resolved"]
            .iter()
            .chain(&ids)
            .copied()
            .collect();
        let (ok, out) = tool(&by_ids, store).await;
        assert!(
            ok && out.contains("resolved since (applied, or declined): not replayed"),
            "{out}"
        );
        let (ok, out) = tool(&send[..6], store).await;
        assert!(ok && out.contains("(replayed)"), "{out}");
        assert_eq!(held(&pool).await, credited);
        let (ok, out) = tool(&show, store).await;
        assert!(
            ok && out.contains("state      completed")
                && out.contains("(resolved: a delivery of its key was answered finally since"),
            "{out}"
        );
    }

    /// A purchase failed, was replayed and applied; its record is later deleted by the
    /// retention job (`forget_older_than`), which marks its letter resolved for good.
    /// `records replay` by its ids, or `--all --resolved`, does not send it again.
    #[tokio::test(flavor = "multi_thread")]
    async fn records_replay_never_sends_a_resolved_letter_whose_record_is_gone() {
        let Some(Broken {
            url,
            pool,
            endpoint,
        }) = broken_inventory().await
        else {
            return;
        };
        let store = ("DATABASE_URL", url.as_str());
        let send = ["send", "item.add", "--id", "adv4", "--url", &endpoint];
        let (ok, out) = tool(&send, store).await;
        assert!(!ok && out.contains("#1 503"), "{out}");
        sqlx::raw_sql("ALTER TABLE inventory DROP CONSTRAINT nothing_credited")
            .execute(&pool)
            .await
            .unwrap();
        let replay_all = ["records", "replay", "--all", "--url", &endpoint];
        let (ok, out) = tool(&replay_all, store).await;
        assert!(ok && out.contains(" 200 resolved"), "{out}");
        let once = held(&pool).await;
        assert!(once > 0);

        // The retention job.
        let records = aghanim_webhook::idempotency::PostgresStore::new(pool.clone());
        assert!(
            records
                .forget_older_than(std::time::Duration::ZERO)
                .await
                .unwrap()
                >= 1
        );
        let (ok, out) = tool(&["records", "failed"], store).await;
        assert!(
            ok && out.contains("no failed delivery kept unresolved"),
            "{out}"
        );

        let by_ids = [
            "records",
            "replay",
            "--url",
            &endpoint,
            "--game",
            "gm_cli",
            "--sandbox",
            "--event-type",
            "item.add",
            "--key",
            "ord_adv4",
        ];
        let (ok, out) = tool(&by_ids, store).await;
        assert!(
            ok && out.contains("resolved since (applied, or declined): not replayed"),
            "{out}"
        );
        let (ok, out) = tool(&[&replay_all[..], &["--resolved"]].concat(), store).await;
        assert!(
            ok && out.contains("resolved since (applied, or declined): not replayed"),
            "{out}"
        );
        assert_eq!(
            held(&pool).await,
            once,
            "credited again by a replay of a resolved letter"
        );
    }

    /// The example server on Redis, its inventory broken (the player's inventory key
    /// holds a string, so every credit fails): the purchase is kept, listed, and once the
    /// key is removed, replayed and applied once.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_purchase_is_listed_and_replayed_once_by_the_tool_on_redis() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let url = server.url();
        let app = server_app::on_redis(SECRET, &url, DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.router).await });
        let store = ("REDIS_URL", url.as_str());
        let mut redis = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let inventory = "game:{testplayer}:inventory";
        let () = redis::cmd("SET")
            .arg(inventory)
            .arg("broken")
            .query_async(&mut redis)
            .await
            .unwrap();

        let send = [
            "send", "item.add", "--id", "dlr", "--url", &endpoint, "--repeat", "2",
        ];
        let (ok, out) = tool(&send, store).await;
        assert!(!ok && out.contains("#2 503"), "{out}");
        let (ok, out) = tool(&["records", "failed", "--event-type", "item.add"], store).await;
        assert!(
            ok && out.contains("ord_dlr  handler_failed  2 attempts  503"),
            "{out}"
        );

        let () = redis::cmd("DEL")
            .arg(inventory)
            .query_async(&mut redis)
            .await
            .unwrap();
        let replay = ["records", "replay", "--all", "--url", &endpoint];
        let (ok, out) = tool(&replay, store).await;
        assert!(
            ok && out.contains("ord_dlr") && out.contains(" 200 resolved"),
            "{out}"
        );
        let (ok, out) = tool(&replay, store).await;
        assert!(ok && out.contains("nothing to replay"), "{out}");
        let (ok, out) = tool(&send[..6], store).await;
        assert!(ok && out.contains("(replayed)"), "{out}");
        let gems: Option<i64> = redis::cmd("HGET")
            .arg(inventory)
            .arg("gems_100")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(gems.is_some_and(|gems| gems > 0), "{gems:?}");
        let (_, out) = tool(&["records", "failed", "--resolved"], store).await;
        assert!(out.contains("ord_dlr") && out.contains("resolved"), "{out}");
        let once = gems;
        let (_, _) = tool(&replay, store).await;
        let gems: Option<i64> = redis::cmd("HGET")
            .arg(inventory)
            .arg("gems_100")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(gems, once, "credited once");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_records_command_on_redis() {
        // A server of its own: the example's records go under the default prefix.
        let Some(server) = RedisServer::start() else {
            return;
        };
        let url = server.url();
        let app = server_app::on_redis(SECRET, &url, DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        purchase_found_forgotten_and_sent_again(app.router, ("REDIS_URL", &url)).await;
    }

    #[tokio::test]
    async fn the_records_command_refuses_two_stores_and_bad_keys() {
        let output = Command::new(TOOL)
            .args(["records", "show", "--store-key", &"a".repeat(64)])
            .env("DATABASE_URL", "postgres://nowhere/x")
            .env("REDIS_URL", "redis://nowhere")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("give one"), "{stderr}");
        let output = Command::new(TOOL)
            .args(["records", "show", "--store-key", "abc"])
            .env_remove("REDIS_URL")
            .env("DATABASE_URL", "postgres://127.0.0.1:1/x")
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("not a store key of 64 hex digits"),
            "{stderr}"
        );
    }
}
