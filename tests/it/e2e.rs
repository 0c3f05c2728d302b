#![cfg(feature = "events")]
//! The examples' stacks over real TCP sockets, with raw HTTP/1.1 so that headers and
//! framing can lie.

use crate::common;

#[path = "../../examples/hyper_server/app.rs"]
mod hyper_app;
use crate::server_app;

use std::net::SocketAddr;

use aghanim_webhook::{idempotency::DEFAULT_RUN_TIMEOUT, sign, unix_now};
use common::{keyed, SECRET};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

async fn axum_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            server_app::in_memory(SECRET, DEFAULT_RUN_TIMEOUT).router,
        )
        .await
    });
    address
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { hyper_app::serve(listener, SECRET).await });
    address
}

struct Reply {
    status: u16,
    /// Whether the answer carries `idempotent-replayed: true`.
    replayed: bool,
    body: String,
}

/// Writes `head` (request line and headers, without the blank line) and `body` as given,
/// and reads the whole reply.
async fn exchange(address: SocketAddr, head: &str, body: &[u8]) -> Reply {
    exchange_then(address, head, body, false).await
}

/// Like [`exchange`]; with `hang_up`, the client stops sending after `body`.
async fn exchange_then(address: SocketAddr, head: &str, body: &[u8], hang_up: bool) -> Reply {
    let reply = exchange_bytes(address, head, body, hang_up).await;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let replayed = head
        .to_ascii_lowercase()
        .contains("\r\nidempotent-replayed: true");
    Reply {
        status,
        replayed,
        body: body.to_owned(),
    }
}

/// The whole reply as text, every interim response included.
async fn exchange_raw(address: SocketAddr, head: &str, body: &[u8]) -> String {
    exchange_bytes(address, head, body, false).await
}

async fn exchange_bytes(address: SocketAddr, head: &str, body: &[u8], hang_up: bool) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("{head}connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The server may answer (413) and close before the body is all written.
    let _ = stream.write_all(body).await;
    if hang_up {
        let _ = stream.shutdown().await;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply).into_owned()
}

fn signed_head(body: &[u8], timestamp: u64, extra: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         x-aghanim-signature-timestamp: {timestamp}\r\nx-aghanim-signature: {}\r\n{extra}",
        sign(SECRET, timestamp, body)
    )
}

async fn post_signed(address: SocketAddr, body: &str) -> Reply {
    let head = signed_head(
        body.as_bytes(),
        unix_now(),
        &format!("content-length: {}\r\n", body.len()),
    );
    exchange(address, &head, body.as_bytes()).await
}

/// The "Testing" request of Aghanim's "Handle webhooks" page, byte for byte: no
/// `event_time`, no `game_id`, a multi-line body.
const DOCS_TEST_REQUEST: &str = include_str!("../../examples/events/docs-test-request.json");

#[tokio::test]
async fn aghanim_docs_test_request_is_answered_with_the_player() {
    assert!(DOCS_TEST_REQUEST.contains("\n\"event_data\": {\n"));
    let mut request = http::Request::post("/webhook")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(DOCS_TEST_REQUEST))
        .unwrap();
    aghanim_webhook::sign_headers(request.headers_mut(), SECRET, unix_now(), DOCS_TEST_REQUEST);
    let response = tower::ServiceExt::oneshot(
        server_app::in_memory(SECRET, DEFAULT_RUN_TIMEOUT).router,
        request,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let player: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(player["player_id"], "testplayer");

    let reply = post_signed(axum_server().await, DOCS_TEST_REQUEST).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let player: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(player["player_id"], "testplayer");
    assert!(player["name"].is_string() && player["attributes"].is_object());
}

#[tokio::test]
async fn expect_continue_without_a_valid_signature_header_gets_403_and_no_continue() {
    let address = axum_server().await;
    let body = keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k9");
    for headers in [
        String::new(),
        format!("x-aghanim-signature-timestamp: {}\r\n", unix_now()),
        format!(
            "x-aghanim-signature-timestamp: {}\r\nx-aghanim-signature: not-hex\r\n",
            unix_now()
        ),
    ] {
        let head = format!(
            "POST /webhook HTTP/1.1\r\nhost: localhost\r\n{headers}\
             expect: 100-continue\r\ncontent-length: {}\r\n",
            body.len()
        );
        // The client waits for `100 Continue` before sending: it sends no body at all.
        let reply = exchange_raw(address, &head, b"").await;
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
        assert!(!reply.contains("100 Continue"), "{reply}");
    }
}

#[tokio::test]
async fn bytes_after_a_zero_content_length_are_not_the_body() {
    let address = axum_server().await;
    let body = keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k10");
    // Signed over the bytes that follow; the body the server reads is empty.
    let head = signed_head(body.as_bytes(), unix_now(), "content-length: 0\r\n");
    let reply = exchange_raw(address, &head, body.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
}

#[tokio::test]
async fn trailers_over_the_wire_are_not_part_of_the_signed_body() {
    let address = axum_server().await;
    let body = keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k11");
    let head = signed_head(
        body.as_bytes(),
        unix_now(),
        "transfer-encoding: chunked\r\ntrailer: x-extra\r\n",
    );
    let mut encoded = chunked(body.as_bytes(), 9);
    encoded.truncate(encoded.len() - 2);
    encoded.extend_from_slice(b"x-extra: unsigned\r\n\r\n");
    let reply = exchange(address, &head, &encoded).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("testplayer"), "{}", reply.body);
}

#[tokio::test]
async fn axum_known_player_is_verified() {
    let address = axum_server().await;
    let reply = post_signed(
        address,
        &keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k1"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let player: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(player["player_id"], "testplayer");
    assert!(player["name"].is_string());
    assert!(player["attributes"].is_object());
}

#[tokio::test]
async fn axum_unknown_player_is_not_found() {
    let address = axum_server().await;
    let reply = post_signed(
        address,
        &keyed("player.verify", r#"{"player_id":"nobody"}"#, "k2"),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains(r#""code":"not_found""#),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn axum_item_events_are_acknowledged_and_a_repeat_is_replayed_not_credited() {
    let address = axum_server().await;
    let items = r#"{"player_id":"testplayer","items":[{"sku":"gems","quantity":5}],"reason":"Order paid ord_1"}"#;
    let purchase = keyed("item.add", items, "ord_1");
    let first = post_signed(address, &purchase).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    assert!(!first.replayed);
    let repeat = post_signed(address, &purchase).await;
    assert_eq!(
        (repeat.status, repeat.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    assert!(repeat.replayed, "the idempotency layer answered the repeat");
    assert_eq!(owned(address, "gems").await, 5, "credited once");
    // The refund's removal under the purchase's key is its own delivery.
    let refund = post_signed(address, &keyed("item.remove", items, "ord_1")).await;
    assert_eq!((refund.status, refund.replayed), (200, false));
    assert_eq!(owned(address, "gems").await, 0);
}

#[tokio::test]
async fn axum_unknown_event_type_and_non_envelopes_are_bad_requests() {
    let address = axum_server().await;
    for body in [
        keyed("nonsense.event", "{}", "k3"),
        "not json".into(),
        "[1,2]".into(),
        "{}".into(),
    ] {
        let reply = post_signed(address, &body).await;
        assert_eq!(reply.status, 400, "{body}");
    }
}

#[tokio::test]
async fn axum_notifications_are_acknowledged() {
    let address = axum_server().await;
    for event_type in [
        "order.paid",
        "payment.succeeded",
        "subscription.renewed",
        "player.update",
    ] {
        let reply = post_signed(address, &keyed(event_type, "{}", event_type)).await;
        assert_eq!(reply.status, 200, "{event_type}");
    }
}

#[tokio::test]
async fn axum_rejects_forged_stale_and_unsigned_requests() {
    let address = axum_server().await;
    let body = keyed("item.add", r#"{"player_id":"testplayer","items":[]}"#, "k4");
    let length = format!("content-length: {}\r\n", body.len());

    let forged = signed_head(b"something else", unix_now(), &length);
    let stale = signed_head(body.as_bytes(), unix_now() - 3600, &length);
    let unsigned = format!("POST /webhook HTTP/1.1\r\nhost: x\r\n{length}");
    for head in [forged, stale, unsigned] {
        let reply = exchange(address, &head, body.as_bytes()).await;
        assert_eq!(reply.status, 403, "{head}");
        assert_eq!(
            reply.body,
            r#"{"status":"error","code":"invalid_signature","message":"Invalid signature"}"#
        );
    }
}

#[tokio::test]
async fn axum_refuses_a_declared_oversized_body_without_reading_it() {
    let address = axum_server().await;
    let head = signed_head(b"", unix_now(), "content-length: 2000000\r\n");
    let reply = exchange(address, &head, b"").await;
    assert_eq!(reply.status, 413);
}

fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut encoded = Vec::new();
    for chunk in body.chunks(size) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

#[tokio::test]
async fn axum_accepts_chunked_bodies_and_limits_them() {
    let address = axum_server().await;
    let body = keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k5");
    let head = signed_head(
        body.as_bytes(),
        unix_now(),
        "transfer-encoding: chunked\r\n",
    );
    let reply = exchange(address, &head, &chunked(body.as_bytes(), 7)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let huge = vec![b' '; 1024 * 1024 + 1];
    let head = signed_head(&huge, unix_now(), "transfer-encoding: chunked\r\n");
    let reply = exchange(address, &head, &chunked(&huge, 16 * 1024)).await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn axum_lying_content_length_never_passes() {
    let address = axum_server().await;
    let body = keyed("item.add", r#"{"player_id":"testplayer","items":[]}"#, "k6");
    // Shorter than the body: the server reads a prefix, whose signature cannot match.
    let head = signed_head(body.as_bytes(), unix_now(), "content-length: 10\r\n");
    let reply = exchange(address, &head, body.as_bytes()).await;
    assert_eq!(reply.status, 403);
    // Longer than the body, then the client stops sending: a 4xx, never a 2xx, a 5xx
    // or silence (status 0).
    let head = signed_head(body.as_bytes(), unix_now(), "content-length: 5000\r\n");
    let reply = exchange_then(address, &head, body.as_bytes(), true).await;
    assert!((400..500).contains(&reply.status), "{}", reply.status);
}

#[tokio::test]
async fn axum_serves_concurrent_requests() {
    let address = axum_server().await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(async move {
                let valid = i % 2 == 0;
                let body = keyed("player.verify", r#"{"player_id":"testplayer"}"#, "k7");
                let timestamp = unix_now();
                let length = format!("content-length: {}\r\n", body.len());
                let head = if valid {
                    signed_head(body.as_bytes(), timestamp, &length)
                } else {
                    signed_head(b"forged", timestamp, &length)
                };
                (
                    valid,
                    exchange(address, &head, body.as_bytes()).await.status,
                )
            })
        })
        .collect();
    for task in tasks {
        let (valid, status) = task.await.unwrap();
        assert_eq!(status, if valid { 200 } else { 403 });
    }
}

#[tokio::test]
async fn hyper_stack_verifies_and_rejects() {
    let address = hyper_server().await;
    let body = keyed("item.add", r#"{"player_id":"p","items":[]}"#, "k8");
    let reply = post_signed(address, &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"ok"}"#);

    let length = format!("content-length: {}\r\n", body.len());
    let forged = signed_head(b"{}", unix_now(), &length);
    assert_eq!(
        exchange(address, &forged, body.as_bytes()).await.status,
        403
    );

    let oversized = signed_head(b"", unix_now(), "content-length: 1048577\r\n");
    assert_eq!(exchange(address, &oversized, b"").await.status, 413);
}

/// What `player.verify` says `testplayer` owns of `sku`.
async fn owned(address: SocketAddr, sku: &str) -> i64 {
    let reply = post_signed(
        address,
        &keyed("player.verify", r#"{"player_id":"testplayer"}"#, "verify"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let player: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    player["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|balance| balance["sku"] == sku)
        .map_or(0, |balance| balance["quantity"].as_i64().unwrap())
}

/// `event_data` crediting `testplayer` five gems.
const FIVE_GEMS: &str = r#"{"player_id":"testplayer","items":[{"sku":"gems","quantity":5}]}"#;

/// Sends `purchase` twelve times at once, alternately to `a` and `b`; each must be
/// answered 200. How many of them ran the handler (were not replayed).
async fn twelve_copies_runs(a: SocketAddr, b: SocketAddr, purchase: &str) -> usize {
    let deliveries: Vec<_> = (0..12)
        .map(|i| {
            let purchase = purchase.to_owned();
            let instance = if i % 2 == 0 { a } else { b };
            tokio::spawn(async move { post_signed(instance, &purchase).await })
        })
        .collect();
    let mut runs = 0;
    for delivery in deliveries {
        let reply = delivery.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        runs += usize::from(!reply.replayed);
    }
    runs
}

/// One more example server instance on the private Redis.
async fn serve_on_redis(redis: &common::redis_server::RedisServer) -> SocketAddr {
    let app = server_app::on_redis(SECRET, &redis.url(), DEFAULT_RUN_TIMEOUT)
        .await
        .unwrap();
    serve(app.router).await
}

/// One more example server instance on the private PostgreSQL.
#[cfg(feature = "postgres")]
async fn serve_on_postgres(url: &str) -> SocketAddr {
    let app = server_app::on_postgres(SECRET, url, DEFAULT_RUN_TIMEOUT)
        .await
        .unwrap();
    serve(app.router).await
}

#[tokio::test]
async fn two_instances_sharing_redis_credit_each_purchase_once() {
    let Some(redis) = common::redis_server::RedisServer::start() else {
        return;
    };
    let [a, b] = [serve_on_redis(&redis).await, serve_on_redis(&redis).await];
    let purchase = keyed("item.add", FIVE_GEMS, "ord_shared");
    // The layer, not the inventory's marker, kept it to one run: every other delivery
    // was answered with the recorded answer.
    assert_eq!(twelve_copies_runs(a, b, &purchase).await, 1);
    assert_eq!(owned(a, "gems").await, 5);
    assert_eq!(owned(b, "gems").await, 5);

    // The layer's records are lost (eviction, a failover): the retry runs the handler
    // again, and the inventory's own marker still credits once.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("aghanim:idem:v1:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!records.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&records)
        .query_async(&mut connection)
        .await
        .unwrap();
    let rerun = post_signed(b, &purchase).await;
    assert_eq!((rerun.status, rerun.replayed), (200, false));
    assert_eq!(owned(a, "gems").await, 5);
}

#[tokio::test]
async fn the_redis_inventory_never_leaves_a_marker_without_its_credit() {
    let Some(redis) = common::redis_server::RedisServer::start() else {
        return;
    };
    let server = serve_on_redis(&redis).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let inventory = "game:{testplayer}:inventory";
    // Something else wrote a value HINCRBY cannot add to, after the first item.
    let _: () = redis::cmd("HSET")
        .arg(inventory)
        .arg("shield")
        .arg("not a number")
        .query_async(&mut connection)
        .await
        .unwrap();
    let purchase = keyed(
        "item.add",
        r#"{"player_id":"testplayer","items":[{"sku":"gems","quantity":5},{"sku":"shield","quantity":1}]}"#,
        "ord_broken",
    );
    assert_eq!(post_signed(server, &purchase).await.status, 503);
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("game:{testplayer}:applied:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        markers.is_empty(),
        "a marker without its credit: {markers:?}"
    );
    let gems: Option<i64> = redis::cmd("HGET")
        .arg(inventory)
        .arg("gems")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(gems, None, "half a purchase was credited");

    let _: () = redis::cmd("HSET")
        .arg(inventory)
        .arg("shield")
        .arg("0")
        .query_async(&mut connection)
        .await
        .unwrap();
    let retried = post_signed(server, &purchase).await;
    assert_eq!((retried.status, retried.replayed), (200, false));
    assert_eq!(owned(server, "gems").await, 5);
    assert_eq!(owned(server, "shield").await, 1);
}

#[tokio::test]
async fn axum_a_duplicate_written_by_another_serializer_is_replayed_and_credits_once() {
    let address = axum_server().await;
    let purchase = keyed("item.add", FIVE_GEMS, "ord_reserialized");
    let first = post_signed(address, &purchase).await;
    assert_eq!((first.status, first.replayed), (200, false));
    // Keys sorted, indented, the quantity spelled 5.0: the same JSON value.
    let value: serde_json::Value = serde_json::from_str(&purchase).unwrap();
    let rewritten = serde_json::to_string_pretty(&value)
        .unwrap()
        .replace("\"quantity\": 5", "\"quantity\": 5.0");
    assert_ne!(rewritten, purchase);
    let again = post_signed(address, &rewritten).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.replayed);
    assert_eq!(owned(address, "gems").await, 5);
}

#[tokio::test]
async fn axum_a_validation_error_is_not_replayed_and_the_corrected_delivery_credits() {
    let address = axum_server().await;
    let unparsable = keyed(
        "item.add",
        r#"{"player_id":"testplayer","items":[{"sku":"gems","quantity":1.5}]}"#,
        "ord_fixed_later",
    );
    for _ in 0..2 {
        let refused = post_signed(address, &unparsable).await;
        assert_eq!(refused.status, 400);
        assert!(
            refused.body.contains("validation_error"),
            "{}",
            refused.body
        );
        assert!(!refused.replayed, "a validation error was replayed");
    }
    let good = keyed(
        "item.add",
        r#"{"player_id":"testplayer","items":[{"sku":"gems","quantity":2}]}"#,
        "ord_fixed_later",
    );
    let credited = post_signed(address, &good).await;
    assert_eq!((credited.status, credited.replayed), (200, false));
    assert_eq!(owned(address, "gems").await, 2);
}

#[tokio::test]
async fn a_request_cut_by_the_outer_timeout_after_its_effect_is_replayed_not_rerun() {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    use aghanim_webhook::{
        dispatch::Dispatch,
        events::{Ack, EventType},
        idempotency::IdempotencyLayer,
        AghanimSignatureLayer,
    };
    use axum::routing::post_service;
    use tower_http::timeout::TimeoutLayer;

    // The example's stack, with a handler slower than the deadline outside it.
    let runs = Arc::new(AtomicUsize::new(0));
    let dispatch = Dispatch::with_state(Arc::clone(&runs)).on(
        EventType::ItemAdd,
        |runs: Arc<AtomicUsize>, _event: aghanim_webhook::events::Event| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            runs.fetch_add(1, Ordering::SeqCst);
            Ack
        },
    );
    let router = axum::Router::new()
        .route("/webhook", post_service(dispatch))
        .layer(IdempotencyLayer::in_memory())
        .layer(AghanimSignatureLayer::new(SECRET))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(150),
        ));
    let address = serve(router).await;
    let purchase = keyed("item.add", r#"{"player_id":"p","items":[]}"#, "ord_slow");
    assert_eq!(post_signed(address, &purchase).await.status, 408);
    // The run goes on without the request, and is recorded.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let retry = post_signed(address, &purchase).await;
    assert_eq!(
        (retry.status, retry.replayed),
        (200, true),
        "{}",
        retry.body
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran twice");
}

#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn the_redis_inventory_script_applies_once_on_a_cluster() {
    let Some(cluster) = common::redis_server::RedisCluster::start() else {
        return;
    };
    let mut connection = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    // Players whose keys land on different nodes: each script runs on its own slot.
    for player in ["testplayer", "player_2", "p3", "p4"] {
        for expected in [true, false] {
            let changes = [("gems", 5), ("shield", 1)].into_iter();
            let applied = server_app::apply_once_in_redis(
                &mut connection,
                "gm_1:live:item.add:ord_cluster",
                player,
                changes,
            )
            .await
            .expect("the marker and the inventory share a slot");
            assert_eq!(applied, expected, "{player}");
        }
        let owned: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(format!("game:{{{player}}}:inventory"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(owned.get("gems"), Some(&5), "{player}");
        assert_eq!(owned.get("shield"), Some(&1), "{player}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn two_instances_sharing_postgres_credit_each_purchase_once() {
    let Some(postgres) = common::postgres_server::PostgresServer::shared() else {
        return;
    };
    let url = postgres.database();
    let [a, b] = [serve_on_postgres(&url).await, serve_on_postgres(&url).await];
    let purchase = keyed("item.add", FIVE_GEMS, "ord_pg");
    assert_eq!(twelve_copies_runs(a, b, &purchase).await, 1);
    assert_eq!(owned(a, "gems").await, 5);
    assert_eq!(owned(b, "gems").await, 5);
    // A refund's removal under the purchase's key is its own delivery, and applies.
    let refund = keyed("item.remove", FIVE_GEMS, "ord_pg");
    assert_eq!(post_signed(b, &refund).await.status, 200);
    assert_eq!(owned(a, "gems").await, 0);
}

/// `GET path` over TCP: the status.
async fn get_status(address: SocketAddr, path: &str) -> u16 {
    exchange(
        address,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n"),
        b"",
    )
    .await
    .status
}

#[tokio::test]
async fn ops_routes_report_liveness_and_the_stores_readiness() {
    let memory = server_app::in_memory(SECRET, DEFAULT_RUN_TIMEOUT);
    assert_eq!(memory.idempotency.runs_in_flight(), 0);
    let ops = serve(server_app::ops_router(memory.backing, None)).await;
    assert_eq!(get_status(ops, "/health/live").await, 200);
    assert_eq!(get_status(ops, "/health/ready").await, 200);
    assert_eq!(
        get_status(ops, "/metrics").await,
        404,
        "no recorder was given"
    );

    if let Some(mut redis) = common::redis_server::RedisServer::start() {
        let app = server_app::on_redis(SECRET, &redis.url(), DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        let ops = serve(server_app::ops_router(app.backing, None)).await;
        assert_eq!(get_status(ops, "/health/ready").await, 200);
        redis.kill();
        assert_eq!(get_status(ops, "/health/ready").await, 503);
        assert_eq!(get_status(ops, "/health/live").await, 200);
    }
    #[cfg(feature = "postgres")]
    if let Some(postgres) = common::postgres_server::PostgresServer::start() {
        let app = server_app::on_postgres(SECRET, &postgres.url(), DEFAULT_RUN_TIMEOUT)
            .await
            .unwrap();
        let ops = serve(server_app::ops_router(app.backing, None)).await;
        assert_eq!(get_status(ops, "/health/ready").await, 200);
        postgres.stop_immediate();
        assert_eq!(get_status(ops, "/health/ready").await, 503);
    }
}

/// The example server binary, which `cargo test` builds beside the test binaries.
fn example_server() -> std::path::PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile = test_binary
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    profile.join("examples").join("server")
}

/// Which of the example server's outputs the caller reads; the others are discarded.
#[derive(Clone, Copy, PartialEq)]
enum Piped {
    Nothing,
    /// Its log.
    Stdout,
    /// Its start-up warnings, read before anything else: the server is not waited for.
    Stderr,
}

/// The example server binary started on a free loopback port with the tests' secret,
/// no store variable but those in `env`, no ops port; killed when dropped. Unless its
/// standard error is `piped`, this waits until the server listens.
async fn start_example(env: &[(&str, &str)], piped: Piped) -> (tokio::process::Child, SocketAddr) {
    use std::process::Stdio;

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = tokio::process::Command::new(example_server());
    command
        .env("PORT", port.to_string())
        .env("AGHANIM_WEBHOOK_SECRET", SECRET);
    for name in ["DATABASE_URL", "REDIS_URL", "OPS_PORT", "LOG_LEVEL"] {
        command.env_remove(name);
    }
    let pipe = |output| {
        if piped == output {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let server = command
        .envs(env.iter().copied())
        .stdout(pipe(Piped::Stdout))
        .stderr(pipe(Piped::Stderr))
        .kill_on_drop(true)
        .spawn()
        .expect("the example server starts");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    if piped != Piped::Stderr {
        let up = until(std::time::Duration::from_secs(20), || async {
            TcpStream::connect(address).await.is_ok()
        })
        .await;
        assert!(up, "the example server never listened");
    }
    (server, address)
}

#[tokio::test]
async fn a_stale_authentic_delivery_is_logged_with_its_ids_and_a_forged_one_without() {
    use tokio::io::AsyncBufReadExt;

    let (mut server, address) = start_example(&[], Piped::Stdout).await;
    let purchase = keyed("item.add", FIVE_GEMS, "ord_stale_e2e");
    let stale = unix_now() - 400;
    let head = signed_head(
        purchase.as_bytes(),
        stale,
        &format!("content-length: {}\r\n", purchase.len()),
    );
    assert_eq!(
        exchange(address, &head, purchase.as_bytes()).await.status,
        403
    );
    let forged = keyed("item.add", FIVE_GEMS, "ord_forged_e2e");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         x-aghanim-signature-timestamp: {now}\r\nx-aghanim-signature: {}\r\ncontent-length: {}\r\n",
        sign("not-the-secret", unix_now(), &forged),
        forged.len(),
        now = unix_now(),
    );
    assert_eq!(
        exchange(address, &head, forged.as_bytes()).await.status,
        403
    );

    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while log.len() < 2 {
            match lines.next_line().await {
                Ok(Some(line)) if line.contains("webhook rejected") => log.push(line),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    })
    .await;
    assert!(read.is_ok() && log.len() == 2, "{log:?}");
    let stale_line = &log[0];
    for field in [
        "WARN",
        "TimestampOutsideTolerance",
        "event_type=\"item.add\"",
        "idempotency_key=\"ord_stale_e2e\"",
        "event_id=\"whevt_ord_stale_e2e\"",
        &format!("game_id=\"{}\"", common::GAME_ID),
        &format!("claimed_timestamp={stale}"),
    ] {
        assert!(stale_line.contains(field), "{field} missing: {stale_line}");
    }
    assert!(log[1].contains("SignatureMismatch"), "{}", log[1]);
    assert!(!log[1].contains("ord_forged_e2e"), "{}", log[1]);
}

#[tokio::test]
async fn sigterm_lets_a_delivery_in_flight_finish_refuses_new_connections_and_exits_0() {
    use std::time::Duration;

    let (mut server, address) = start_example(&[("DRAIN_SECONDS", "10")], Piped::Nothing).await;

    // A delivery whose body is still arriving when SIGTERM comes.
    let purchase = keyed("item.add", FIVE_GEMS, "ord_sigterm");
    let head = signed_head(
        purchase.as_bytes(),
        unix_now(),
        &format!("content-length: {}\r\n", purchase.len()),
    );
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(format!("{head}connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (first, rest) = purchase.as_bytes().split_at(purchase.len() / 2);
    slow.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = server.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections were still accepted after SIGTERM");

    slow.write_all(rest).await.unwrap();
    let mut reply = Vec::new();
    slow.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let exited = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server exits once the delivery is done")
        .unwrap();
    assert_eq!(exited.code(), Some(0));
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_purchase_resent_after_its_record_was_purged_and_the_server_restarted_credits_once() {
    use std::time::Duration;

    let Some(postgres) = common::postgres_server::PostgresServer::shared() else {
        return;
    };
    let url = postgres.database();
    let first = serve_on_postgres(&url).await;
    let purchase = keyed("item.add", FIVE_GEMS, "ord_purged");
    assert_eq!(post_signed(first, &purchase).await.status, 200);
    assert_eq!(owned(first, "gems").await, 5);

    // Eight days later, past the retention; a restarted instance purges at start.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE aghanim_idempotency SET recorded_at = now() - interval '8 days'")
        .execute(&pool)
        .await
        .unwrap();
    let restarted = serve_on_postgres(&url).await;
    let purged = until(Duration::from_secs(10), || async {
        let answers: i64 = sqlx::query_scalar("SELECT count(body) FROM aghanim_idempotency")
            .fetch_one(&pool)
            .await
            .unwrap();
        answers == 0
    })
    .await;
    assert!(
        purged,
        "the restarted server did not purge the expired answer"
    );

    // The same purchase again (a manual resend), signed now.
    let resent = post_signed(restarted, &purchase).await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert!(resent.replayed);
    assert_eq!(owned(restarted, "gems").await, 5, "credited a second time");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_frozen_instance_holding_a_claim_frees_it_and_never_answers_2xx_when_it_resumes() {
    use std::time::{Duration, Instant};

    let Some(postgres) = common::postgres_server::PostgresServer::shared() else {
        return;
    };
    let url = postgres.database();
    let other = serve_on_postgres(&url).await;
    // The inventory row exists, so that the test can hold it.
    assert_eq!(
        post_signed(other, &keyed("item.add", FIVE_GEMS, "ord_seed"))
            .await
            .status,
        200
    );

    let env = [("DATABASE_URL", url.as_str()), ("RUN_TIMEOUT_SECONDS", "2")];
    let (server, frozen) = start_example(&env, Piped::Nothing).await;
    let pid = server.id().expect("running").to_string();

    // The instance claims the purchase and its credit waits on a row the test holds;
    // then the instance is frozen, and the row let go: the server finishes the credit
    // and the frozen instance's transaction sits idle, holding the claim.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT 1 FROM inventory WHERE player_id = 'testplayer' AND sku = 'gems' FOR UPDATE",
    )
    .execute(&mut *holder)
    .await
    .unwrap();
    let purchase = keyed("item.add", FIVE_GEMS, "ord_frozen");
    let held = tokio::spawn({
        let purchase = purchase.clone();
        async move { post_signed(frozen, &purchase).await }
    });
    let waiting = until(Duration::from_secs(10), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting == 1
    })
    .await;
    assert!(
        waiting,
        "the instance's credit never waited on the held row"
    );
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {name}");
    };
    signal("-STOP");
    holder.commit().await.unwrap();
    let frozen_at = Instant::now();

    // Another instance gets the purchase through, within the bound.
    let (credited, replayed) = loop {
        let reply = post_signed(other, &purchase).await;
        if reply.status == 200 {
            break (frozen_at.elapsed(), reply.replayed);
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(
            frozen_at.elapsed() < Duration::from_secs(30),
            "still 503 after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("the frozen instance's claim was freed and the purchase credited after {credited:?}");
    assert!(credited < Duration::from_secs(15), "{credited:?}");
    assert_eq!(
        owned(other, "gems").await,
        10,
        "seed and purchase, once each"
    );

    // Resumed, the frozen instance must not answer 2xx for what the server ended.
    signal("-CONT");
    let late = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the resumed instance answers")
        .unwrap();
    // Only a commit made before the freeze took hold (a loaded machine can run the
    // instance for a moment after `kill -STOP`) may answer 2xx, and then the other
    // instance replayed it rather than ran it.
    if late.status / 100 == 2 {
        assert!(
            replayed,
            "a 2xx after the server ended the transaction: {}",
            late.body
        );
        eprintln!("the instance committed before the freeze took hold: the frozen path was not exercised this run");
    }
    assert_eq!(owned(other, "gems").await, 10);
    assert_eq!(owned(frozen, "gems").await, 10);
}

/// Whether `check` comes true within `limit`, asked every 50 ms.
async fn until<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn the_redis_example_warns_at_start_when_its_credits_would_not_survive_a_restart() {
    use std::time::Duration;
    use tokio::io::AsyncBufReadExt;

    // The tests' Redis runs with `--appendonly no`.
    let Some(redis) = common::redis_server::RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let (mut server, _) = start_example(&[("REDIS_URL", url.as_str())], Piped::Stderr).await;
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let warned = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("WARNING: this Redis has no append-only file") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        warned,
        Ok(true),
        "no warning about the missing append-only file"
    );
}
