//! Dead letters on every store: authentic deliveries that were not applied are kept,
//! listed, and replayed exactly once; forged ones never are, and a flood stays within
//! the bound.

use crate::common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use aghanim_webhook::{
    body::{BufferedBody, ResponseBody},
    dead_letter::{
        replay, DeadLetter, DeadLetters, Filter, Kept, MemoryDeadLetters, Reason, ReplayError,
        Replayed,
    },
    dispatch::Dispatch,
    events::{
        Ack, ErrorCode, Event, EventType, ItemChange, PlayerVerify, PlayerVerifyResponse,
        WebhookError,
    },
    idempotency::{DeliveryTransaction, IdempotencyLayer, MemoryStore},
    sign_headers, unix_now, AghanimSignatureLayer,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{util::BoxCloneService, ServiceBuilder, ServiceExt};

const SECRET: &str = "whsec_dead_letters";

type Stack = BoxCloneService<
    Request<Full<Bytes>>,
    Response<ResponseBody<ResponseBody<BufferedBody>>>,
    std::convert::Infallible,
>;

/// One store the layer keeps its records and letters in.
struct Case {
    name: &'static str,
    idempotency: IdempotencyLayer,
    letters: Arc<dyn DeadLetters>,
    /// Kept alive for the test's length.
    _database: Option<Box<dyn std::any::Any + Send>>,
}

async fn cases() -> Vec<Case> {
    let memory = MemoryStore::new();
    let mut cases = vec![Case {
        name: "memory",
        idempotency: IdempotencyLayer::new(memory.clone()),
        letters: Arc::new(memory),
        _database: None,
    }];
    #[cfg(feature = "redis")]
    if let Some(server) = common::redis_server::RedisServer::shared() {
        let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
            .await
            .unwrap()
            .prefix(common::redis_server::prefix());
        cases.push(Case {
            name: "redis",
            idempotency: IdempotencyLayer::new(store.clone()),
            letters: Arc::new(store),
            _database: None,
        });
    }
    #[cfg(feature = "redis-cluster")]
    if let Some(cluster) = common::redis_server::RedisCluster::shared() {
        let connection = redis::cluster::ClusterClient::new(cluster.urls())
            .unwrap()
            .get_async_connection()
            .await
            .unwrap();
        let store = aghanim_webhook::idempotency::RedisStore::with_connection(connection)
            .prefix(common::redis_server::prefix());
        cases.push(Case {
            name: "redis-cluster",
            idempotency: IdempotencyLayer::new(store.clone()),
            letters: Arc::new(store),
            _database: None,
        });
    }
    #[cfg(feature = "postgres")]
    for (name, database) in [
        ("postgres", crate::postgres::database().await),
        (
            "postgres behind pgbouncer",
            crate::postgres::database_behind_pgbouncer().await,
        ),
    ] {
        if let Some(database) = database {
            let store = aghanim_webhook::idempotency::PostgresStore::new(database.pool.clone());
            cases.push(Case {
                name,
                idempotency: IdempotencyLayer::transactional(store.clone()),
                letters: Arc::new(store),
                _database: Some(Box::new(database.pool.clone())),
            });
        }
    }
    // A pool of one connection: the letter is kept after the delivery's connection is
    // given back, never while it is held.
    #[cfg(feature = "postgres")]
    if let Some(database) = crate::postgres::database().await {
        let one = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&database.url)
            .await
            .unwrap();
        let store = aghanim_webhook::idempotency::PostgresStore::new(one.clone());
        cases.push(Case {
            name: "postgres pool of one",
            idempotency: IdempotencyLayer::transactional(store.clone()),
            letters: Arc::new(store),
            _database: Some(Box::new(one)),
        });
    }
    // Where CI requires the servers, every store is tested, not only memory.
    let required = [
        "AGHANIM_REQUIRE_REDIS",
        "AGHANIM_REQUIRE_POSTGRES",
        "AGHANIM_REQUIRE_PGBOUNCER",
    ];
    if required.iter().all(|name| std::env::var_os(name).is_some())
        && cfg!(feature = "redis-cluster")
    {
        let names: Vec<_> = cases.iter().map(|case| case.name).collect();
        assert_eq!(names.len(), 6, "{names:?}");
    }
    cases
}

/// A game whose `item.add` handler fails until it is fixed, and counts its credits.
#[derive(Clone, Default)]
struct Shop {
    fixed: Arc<AtomicBool>,
    credits: Arc<AtomicUsize>,
    /// How long a credit takes once fixed.
    slow: Arc<AtomicBool>,
}

impl Shop {
    fn dispatch(&self) -> Dispatch<Shop> {
        Dispatch::with_state(self.clone())
            .on(EventType::ItemAdd, credit)
            .on(EventType::PlayerVerify, |_: Event<PlayerVerify>| async {
                PlayerVerifyResponse::new("p1", "Player")
            })
    }

    fn stack(&self, signature: AghanimSignatureLayer, idempotency: IdempotencyLayer) -> Stack {
        self.stack_of(signature, idempotency, self.dispatch())
    }

    fn stack_of(
        &self,
        signature: AghanimSignatureLayer,
        idempotency: IdempotencyLayer,
        dispatch: Dispatch<Shop>,
    ) -> Stack {
        BoxCloneService::new(
            ServiceBuilder::new()
                .layer(signature)
                .layer(idempotency)
                .service(dispatch),
        )
    }

    fn credits(&self) -> usize {
        self.credits.load(Ordering::SeqCst)
    }
}

async fn credit(
    shop: Shop,
    transaction: Option<DeliveryTransaction>,
    _event: Event<ItemChange>,
) -> Result<Ack, WebhookError> {
    if !shop.fixed.load(Ordering::SeqCst) {
        return Err(WebhookError::new(
            ErrorCode::Custom("internal".into()),
            "inventory constraint violated",
        )
        .with_status(StatusCode::INTERNAL_SERVER_ERROR));
    }
    if shop.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(transaction) = transaction {
        let mut connection = transaction
            .connection()
            .await
            .map_err(|e| WebhookError::validation(e.to_string()))?;
        sqlx::query("SELECT 1")
            .execute(&mut *connection)
            .await
            .map_err(|e| WebhookError::validation(e.to_string()))?;
    }
    shop.credits.fetch_add(1, Ordering::SeqCst);
    Ok(Ack)
}

fn purchase(order: &str) -> String {
    delivery(
        "item.add",
        order,
        r#"{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}"#,
    )
}

/// A delivery of `event_type` for the game `gm_dl`, keyed by `order`.
fn delivery(event_type: &str, order: &str, event_data: &str) -> String {
    format!(
        r#"{{"event_id":"whevt_{order}","event_type":"{event_type}","game_id":"gm_dl","idempotency_key":"{order}","event_data":{event_data}}}"#
    )
}

fn signed_at(body: &str, timestamp: u64) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhook")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    sign_headers(request.headers_mut(), SECRET, timestamp, body);
    request
}

async fn status(stack: &Stack, request: Request<Full<Bytes>>) -> StatusCode {
    stack.clone().oneshot(request).await.unwrap().status()
}

/// An order id of its own: each case's store is its own (a new memory store, a new
/// Redis prefix, a new database).
fn order(case: &Case, what: &str) -> String {
    format!("ord_{}_{what}", case.name.replace(' ', "_"))
}

async fn unresolved(case: &Case, order: &str) -> Vec<DeadLetter> {
    let all = case
        .letters
        .list(&Filter::unresolved().game("gm_dl"))
        .await
        .unwrap();
    all.into_iter()
        .filter(|letter| letter.delivery_id == order)
        .collect()
}

#[tokio::test]
async fn a_failing_purchase_is_kept_then_replayed_once_after_the_fix() {
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "fix");
        let body = purchase(&order);
        for _ in 0..3 {
            let answered = status(&stack, signed_at(&body, unix_now())).await;
            assert_eq!(answered, StatusCode::INTERNAL_SERVER_ERROR, "{}", case.name);
        }
        let kept = unresolved(&case, &order).await;
        assert_eq!(kept.len(), 1, "{}: one letter per key", case.name);
        let letter = &kept[0];
        assert_eq!(
            (letter.reason, letter.status, letter.attempts),
            (Reason::HandlerFailed, 500, 3),
            "{}",
            case.name
        );
        assert_eq!(letter.body, body.as_bytes(), "{}", case.name);
        assert_eq!(
            (letter.event_type.as_str(), letter.game_id.as_str()),
            ("item.add", "gm_dl")
        );
        assert!(
            letter.detail.contains("inventory constraint violated"),
            "{}: {}",
            case.name,
            letter.detail
        );

        // Replayed before the fix: it fails again, and its letter says so.
        let early = replay(&*case.letters, letter, SECRET, stack.clone())
            .await
            .unwrap();
        assert_eq!(
            (early.status, early.resolved),
            (500, false),
            "{}",
            case.name
        );
        let again = case.letters.get(&letter.key).await.unwrap().unwrap();
        assert_eq!(again.attempts, 4, "{}", case.name);

        shop.fixed.store(true, Ordering::SeqCst);
        let first = replay(&*case.letters, letter, SECRET, stack.clone())
            .await
            .unwrap();
        assert_eq!(
            (first.status, first.was_applied_before, first.resolved),
            (200, false, true),
            "{}",
            case.name
        );
        // Replayed again, it is not sent: it was applied.
        let second = replay(&*case.letters, letter, SECRET, stack.clone()).await;
        assert!(matches!(second, Err(ReplayError::Applied)), "{}", case.name);
        // Sent again anyway (Aghanim's own retry), it is answered from its record.
        let retried = stack
            .clone()
            .oneshot(signed_at(&body, unix_now()))
            .await
            .unwrap();
        assert_eq!(retried.status(), 200);
        assert!(
            retried.headers().contains_key("idempotent-replayed"),
            "{}",
            case.name
        );
        assert_eq!(shop.credits(), 1, "{}: credited once", case.name);
        assert!(
            unresolved(&case, &order).await.is_empty(),
            "{}: resolved",
            case.name
        );
        let resolved = case.letters.get(&letter.key).await.unwrap().unwrap();
        assert!(resolved.resolved, "{}", case.name);
    }
}

#[tokio::test]
async fn a_replay_racing_aghanims_own_retry_credits_once() {
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "race");
        let body = purchase(&order);
        assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 500);
        let letter = unresolved(&case, &order).await.remove(0);
        shop.fixed.store(true, Ordering::SeqCst);
        shop.slow.store(true, Ordering::SeqCst);
        let (replayed, retried, replayed_again) = tokio::join!(
            replay(&*case.letters, &letter, SECRET, stack.clone()),
            status(&stack, signed_at(&body, unix_now())),
            replay(&*case.letters, &letter, SECRET, stack.clone()),
        );
        // A replay that finds the letter resolved by the other is not sent (0 here).
        let status_of = |replayed: Result<Replayed, ReplayError<_>>| match replayed {
            Ok(replayed) => replayed.status,
            Err(ReplayError::Applied) => 0,
            Err(other) => panic!("{other}"),
        };
        let answers = [
            status_of(replayed),
            retried.as_u16(),
            status_of(replayed_again),
        ];
        assert!(
            answers
                .iter()
                .all(|&status| [0, 200, 503].contains(&status)),
            "{}: {answers:?}",
            case.name
        );
        assert_eq!(
            shop.credits(),
            1,
            "{}: credited once, answers {answers:?}",
            case.name
        );
        assert!(unresolved(&case, &order).await.is_empty(), "{}", case.name);
    }
}

#[tokio::test]
async fn a_stale_authentic_delivery_is_kept_answered_403_and_replayed_once() {
    for case in cases().await {
        let shop = Shop::default();
        shop.fixed.store(true, Ordering::SeqCst);
        let signature = AghanimSignatureLayer::new(SECRET).keep_stale(&case.idempotency);
        let stack = shop.stack(signature, case.idempotency.clone());
        let order = order(&case, "stale");
        let body = purchase(&order);
        let an_hour_ago = unix_now() - 3600;
        assert_eq!(
            status(&stack, signed_at(&body, an_hour_ago)).await,
            StatusCode::FORBIDDEN,
            "{}",
            case.name
        );
        assert_eq!(shop.credits(), 0);
        let letter = unresolved(&case, &order).await.remove(0);
        assert_eq!(letter.reason, Reason::Stale, "{}", case.name);
        assert_eq!(letter.status, 403);
        assert!(
            letter.detail.starts_with("36"),
            "{}: the age, {}",
            case.name,
            letter.detail
        );
        let first = replay(&*case.letters, &letter, SECRET, stack.clone()).await;
        assert_eq!(first.unwrap().status, 200, "{}", case.name);
        let second = replay(&*case.letters, &letter, SECRET, stack.clone()).await;
        assert!(matches!(second, Err(ReplayError::Applied)), "{}", case.name);
        assert_eq!(shop.credits(), 1, "{}", case.name);
        assert!(unresolved(&case, &order).await.is_empty(), "{}", case.name);
    }
}

#[tokio::test]
async fn without_keep_stale_a_stale_delivery_is_not_kept() {
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "stale_off");
        assert_eq!(
            status(&stack, signed_at(&purchase(&order), unix_now() - 3600)).await,
            403
        );
        assert!(unresolved(&case, &order).await.is_empty(), "{}", case.name);
    }
}

#[tokio::test]
async fn a_forged_request_is_never_kept() {
    for case in cases().await {
        let shop = Shop::default();
        let signature = AghanimSignatureLayer::new(SECRET).keep_stale(&case.idempotency);
        let stack = shop.stack(signature, case.idempotency.clone());
        let order = order(&case, "forged");
        let body = purchase(&order);
        for timestamp in [unix_now(), unix_now() - 3600] {
            let mut request = Request::post("/webhook")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            sign_headers(request.headers_mut(), "not the secret", timestamp, &body);
            assert_eq!(status(&stack, request).await, 403);
        }
        assert!(
            unresolved(&case, &order).await.is_empty(),
            "{}: nothing before the MAC check is stored",
            case.name
        );
    }
}

#[tokio::test]
async fn deliveries_no_handler_takes_are_kept_whatever_the_fallback_answers() {
    for case in cases().await {
        for accept in [false, true] {
            let shop = Shop::default();
            let dispatch = if accept {
                shop.dispatch().accept_unhandled()
            } else {
                shop.dispatch()
            };
            let stack = shop.stack_of(
                AghanimSignatureLayer::new(SECRET),
                case.idempotency.clone(),
                dispatch,
            );
            let expected = if accept {
                StatusCode::ACCEPTED
            } else {
                StatusCode::BAD_REQUEST
            };
            // A type nobody documents (passed through), and a documented notification
            // without a handler (deduplicated per payload).
            for (event_type, what) in [
                ("quest.completed", "quest"),
                ("payment.succeeded", "payment"),
            ] {
                let order = order(&case, &format!("{what}_{accept}"));
                let body = delivery(event_type, &order, r#"{}"#);
                assert_eq!(
                    status(&stack, signed_at(&body, unix_now())).await,
                    expected,
                    "{} {event_type}",
                    case.name
                );
                let kept = unresolved(&case, &order).await;
                assert_eq!(kept.len(), 1, "{} {event_type} accept {accept}", case.name);
                assert_eq!(kept[0].reason, Reason::NoHandler);
                assert_eq!(kept[0].status, expected.as_u16());
            }
            // A read without a handler is not kept: there is nothing to apply later.
            let order = order(&case, &format!("verify_{accept}"));
            let verify = delivery("player.lookup", &order, r#"{}"#);
            status(&stack, signed_at(&verify, unix_now())).await;
            assert!(unresolved(&case, &order).await.is_empty(), "{}", case.name);
        }
    }
}

#[tokio::test]
async fn a_fallback_answering_a_documented_type_took_it_and_nothing_is_kept() {
    for case in cases().await {
        let shop = Shop::default();
        let dispatch = shop.dispatch().fallback(|_: Event| async { Ack });
        let stack = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            dispatch,
        );
        for (event_type, kept) in [("payment.succeeded", false), ("quest.completed", true)] {
            let order = order(&case, event_type);
            let body = delivery(event_type, &order, r#"{}"#);
            assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 200);
            assert_eq!(
                unresolved(&case, &order).await.len(),
                usize::from(kept),
                "{} {event_type}",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn a_payload_the_parser_refuses_is_kept_naming_the_field() {
    for case in cases().await {
        let shop = Shop::default();
        shop.fixed.store(true, Ordering::SeqCst);
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "invalid");
        let body = delivery(
            "item.add",
            &order,
            r#"{"player_id":"p1","items":[{"sku":"gems","quantity":"five"}]}"#,
        );
        assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 400);
        let kept = unresolved(&case, &order).await;
        assert_eq!(kept.len(), 1, "{}", case.name);
        assert_eq!(kept[0].reason, Reason::Invalid);
        assert!(
            kept[0].detail.contains("quantity"),
            "{}: {}",
            case.name,
            kept[0].detail
        );
        assert_eq!(shop.credits(), 0);
    }
}

#[tokio::test]
async fn ten_thousand_distinct_failures_stay_within_the_bound_through_the_layer() {
    let letters = MemoryDeadLetters::with_limits(500, 64 * 1024 * 1024);
    let store = MemoryStore::new().with_dead_letters(letters.clone());
    let shop = Shop::default();
    let stack = shop.stack(
        AghanimSignatureLayer::new(SECRET),
        IdempotencyLayer::new(store),
    );
    // One purchase resolves early, so there is something to make room with.
    let early = purchase("ord_bound_early");
    for (index, chunk) in (0..10_000).collect::<Vec<_>>().chunks(200).enumerate() {
        for n in chunk {
            let request = signed_at(&purchase(&format!("ord_bound_{n}")), unix_now());
            assert_eq!(status(&stack, request).await, 500);
        }
        if index == 0 {
            assert_eq!(status(&stack, signed_at(&early, unix_now())).await, 500);
            shop.fixed.store(true, Ordering::SeqCst);
            assert_eq!(status(&stack, signed_at(&early, unix_now())).await, 200);
            shop.fixed.store(false, Ordering::SeqCst);
        }
        assert!(letters.len() <= 500, "{} letters", letters.len());
    }
    assert_eq!(letters.len(), 500);
    let kept = letters.list(&Filter::unresolved()).await.unwrap();
    assert_eq!(
        kept.len(),
        500,
        "the resolved letter made room; then new ones were refused"
    );
    // The oldest failures are kept: Aghanim has stopped retrying those.
    assert!(kept
        .iter()
        .any(|letter| letter.delivery_id == "ord_bound_0"));
    assert!(!kept
        .iter()
        .any(|letter| letter.delivery_id == "ord_bound_9999"));
}

/// Each store's own bound, filled with 10,000 distinct letters: the oldest resolved
/// letter makes room, and once every letter is unresolved new ones are not kept.
#[tokio::test]
async fn ten_thousand_distinct_letters_stay_within_each_stores_bound() {
    for case in bounded_cases(100).await {
        let mut kept = 0;
        let mut full = 0;
        for n in 0..10_000 {
            let body = purchase(&format!("ord_{}_flood_{n}", case.name.replace(' ', "_")));
            let letter = DeadLetter::of_delivery(
                body.as_bytes(),
                false,
                Reason::HandlerFailed,
                500,
                "broken",
            )
            .unwrap();
            match case.letters.keep(&letter).await.unwrap() {
                Kept::Created => kept += 1,
                Kept::Full => full += 1,
                other => panic!("{}: distinct keys, yet {other:?}", case.name),
            }
        }
        let listed = case
            .letters
            .list(&Filter::unresolved().with_resolved())
            .await
            .unwrap();
        assert_eq!(listed.len(), 100, "{}", case.name);
        assert_eq!((kept, full), (100, 9_900), "{}", case.name);
    }
}

/// The stores with a bound of `max` letters, each under keys of its own.
async fn bounded_cases(max: usize) -> Vec<Case> {
    let memory =
        MemoryStore::new().with_dead_letters(MemoryDeadLetters::with_limits(max, usize::MAX));
    let mut cases = vec![Case {
        name: "memory",
        idempotency: IdempotencyLayer::new(memory.clone()),
        letters: Arc::new(memory),
        _database: None,
    }];
    #[cfg(feature = "redis")]
    if let Some(server) = common::redis_server::RedisServer::shared() {
        let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
            .await
            .unwrap()
            .prefix(common::redis_server::prefix())
            .max_dead_letters(max);
        cases.push(Case {
            name: "redis",
            idempotency: IdempotencyLayer::new(store.clone()),
            letters: Arc::new(store),
            _database: None,
        });
    }
    #[cfg(feature = "postgres")]
    if let Some(database) = crate::postgres::database().await {
        let store = aghanim_webhook::idempotency::PostgresStore::new(database.pool.clone())
            .max_dead_letters(max);
        cases.push(Case {
            name: "postgres",
            idempotency: IdempotencyLayer::transactional(store.clone()),
            letters: Arc::new(store),
            _database: Some(Box::new(database.pool.clone())),
        });
    }
    cases
}

#[tokio::test]
async fn a_request_dropped_while_the_handler_runs_is_kept_and_its_retry_resolves_it() {
    for case in cases().await {
        let shop = Shop::default();
        shop.fixed.store(true, Ordering::SeqCst);
        shop.slow.store(true, Ordering::SeqCst);
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "dropped");
        let body = purchase(&order);
        // The client hangs up 100 ms into a 300 ms handler.
        let hung_up = tokio::time::timeout(
            Duration::from_millis(100),
            status(&stack, signed_at(&body, unix_now())),
        )
        .await;
        assert!(hung_up.is_err());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let kept = unresolved(&case, &order).await;
        if case.name.starts_with("postgres") {
            // Rolled back with its transaction: kept, then applied by the retry.
            assert_eq!(kept.len(), 1, "{}", case.name);
            assert_eq!(kept[0].reason, Reason::Dropped, "{}", case.name);
            assert_eq!(
                shop.credits(),
                0,
                "{}: the handler was dropped with its transaction",
                case.name
            );
        } else {
            // The run went on in a task of its own and was applied: nothing to keep.
            assert!(kept.is_empty(), "{}", case.name);
        }
        assert_eq!(
            status(&stack, signed_at(&body, unix_now())).await,
            200,
            "{}",
            case.name
        );
        assert_eq!(shop.credits(), 1, "{}", case.name);
        assert!(
            unresolved(&case, &order).await.is_empty(),
            "{}: resolved by the retry",
            case.name
        );
    }
}

#[tokio::test]
async fn a_panicking_handler_is_kept() {
    for case in cases().await {
        let shop = Shop::default();
        let dispatch = Dispatch::with_state(shop.clone()).on(
            EventType::ItemAdd,
            |_: Shop, _: Event<ItemChange>| async {
                if true {
                    panic!("the handler panics");
                }
                Ack
            },
        );
        let stack = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            dispatch,
        );
        let order = order(&case, "panic");
        let request = signed_at(&purchase(&order), unix_now());
        let panicked = tokio::spawn(async move { stack.oneshot(request).await }).await;
        assert!(panicked.is_err(), "{}", case.name);
        let kept = common::eventually(|| async {
            let kept = unresolved(&case, &order).await;
            (!kept.is_empty()).then_some(kept)
        })
        .await
        .unwrap_or_else(|| panic!("{}: not kept", case.name));
        assert_eq!(kept[0].reason, Reason::HandlerFailed, "{}", case.name);
        assert!(
            kept[0].detail.contains("panicked"),
            "{}: {}",
            case.name,
            kept[0].detail
        );
    }
}

#[tokio::test]
async fn ids_with_a_nul_character_are_still_kept() {
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "nul");
        let body = format!(
            r#"{{"event_id":"whevt_{order}","event_type":"item.add","game_id":"gm_dl","idempotency_key":"{order}\u0000","event_data":{{"player_id":"p1","items":[]}}}}"#
        );
        assert_eq!(
            status(&stack, signed_at(&body, unix_now())).await,
            500,
            "{}",
            case.name
        );
        let kept = case
            .letters
            .list(&Filter::unresolved().game("gm_dl"))
            .await
            .unwrap();
        assert!(
            kept.iter()
                .any(|letter| letter.delivery_id == format!("{order}\u{fffd}")),
            "{}: {kept:?}",
            case.name
        );
    }
}

/// What a dead letter costs in Redis: a thousand letters of a 394-byte `item.add`
/// delivery, each hash and its entry in the index, by the growth of `used_memory` on a
/// server of the test's own.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_dead_letter_of_a_purchase_costs_under_2200_bytes_in_redis() {
    let Some(server) = common::redis_server::RedisServer::start() else {
        return;
    };
    let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let used = |info: String| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|bytes| bytes.trim().parse().ok())
            .unwrap()
    };
    let before = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await
            .unwrap(),
    );
    for n in 0..1_000 {
        let body = format!(
            r#"{{"event_id":"whevt_{n:024}","event_type":"item.add","game_id":"gm_2qLJ6z7q","idempotency_key":"ord_{n:024}","event_data":{{"player_id":"player_{n:016}","items":[{{"sku":"gems_pack_500","name":"500 gems","quantity":1,"price":499,"currency":"USD"}}],"order_id":"ord_{n:024}","transaction_id":"tx_{n:024}"}},"sandbox":false}}"#
        );
        let detail = "500 internal: inventory constraint violated";
        let letter =
            DeadLetter::of_delivery(body.as_bytes(), false, Reason::HandlerFailed, 500, detail)
                .unwrap();
        assert_eq!(store.keep(&letter).await.unwrap(), Kept::Created);
    }
    let after = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await
            .unwrap(),
    );
    let per_letter = after.saturating_sub(before) / 1_000;
    eprintln!("a dead letter in Redis: {per_letter} bytes (used_memory {before} -> {after})");
    assert!(per_letter < 2_200, "{per_letter} bytes per dead letter");
}

/// An operator forgets the record of a purchase that failed, then was applied: its
/// letter stays resolved, so that `records failed` never offers to replay (and apply
/// again) a purchase already applied.
#[tokio::test]
async fn a_resolved_letter_stays_resolved_when_its_record_is_forgotten() {
    #[cfg(feature = "postgres")]
    if let Some(database) = crate::postgres::database().await {
        let store = aghanim_webhook::idempotency::PostgresStore::new(database.pool.clone());
        let case = Case {
            name: "postgres",
            idempotency: IdempotencyLayer::transactional(store.clone()),
            letters: Arc::new(store.clone()),
            _database: None,
        };
        for (order, forget_all) in [("ord_forget_one", false), ("ord_forget_all", true)] {
            let letter = failed_then_applied(&case, order).await;
            if forget_all {
                assert!(store.forget_older_than(Duration::ZERO).await.unwrap() >= 1);
            } else {
                let key = aghanim_webhook::idempotency::RecordKey::from_hex(&letter.key).unwrap();
                assert!(store.forget(&key).await.unwrap().is_some());
            }
            assert!(
                case.letters
                    .get(&letter.key)
                    .await
                    .unwrap()
                    .unwrap()
                    .resolved,
                "{order}"
            );
            assert!(unresolved(&case, order).await.is_empty(), "{order}");
        }
    }
    #[cfg(feature = "redis")]
    if let Some(server) = common::redis_server::RedisServer::shared() {
        let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
            .await
            .unwrap()
            .prefix(common::redis_server::prefix());
        let case = Case {
            name: "redis",
            idempotency: IdempotencyLayer::new(store.clone()),
            letters: Arc::new(store.clone()),
            _database: None,
        };
        let letter = failed_then_applied(&case, "ord_forget_one").await;
        let key = aghanim_webhook::idempotency::RecordKey::from_hex(&letter.key).unwrap();
        assert!(store.forget(&key).await.unwrap().is_some());
        assert!(
            case.letters
                .get(&letter.key)
                .await
                .unwrap()
                .unwrap()
                .resolved
        );
    }
}

/// A purchase that failed once, then succeeded on Aghanim's retry: its letter.
async fn failed_then_applied(case: &Case, order: &str) -> DeadLetter {
    let shop = Shop::default();
    let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
    let body = purchase(order);
    assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 500);
    let letter = unresolved(case, order).await.remove(0);
    shop.fixed.store(true, Ordering::SeqCst);
    assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 200);
    assert!(
        case.letters
            .get(&letter.key)
            .await
            .unwrap()
            .unwrap()
            .resolved,
        "{}",
        case.name
    );
    letter
}

/// A captured delivery replayed in a flood after its window: every copy is refused 403,
/// and the store is written once, not once per copy.
#[tokio::test]
async fn a_stale_delivery_replayed_in_a_flood_is_written_once() {
    for case in cases().await {
        let shop = Shop::default();
        let signature = AghanimSignatureLayer::new(SECRET).keep_stale(&case.idempotency);
        let stack = shop.stack(signature, case.idempotency.clone());
        let order = order(&case, "flood");
        let body = purchase(&order);
        let captured = unix_now() - 3600;
        for _ in 0..50 {
            assert_eq!(status(&stack, signed_at(&body, captured)).await, 403);
        }
        let kept = unresolved(&case, &order).await;
        assert_eq!(kept.len(), 1, "{}", case.name);
        assert_eq!(kept[0].attempts, 1, "{}", case.name);
    }
}

/// Behind PgBouncer in transaction mode, the store's calls with bound parameters
/// (letters, records, purge) run at once from many clients: none may get another
/// client's statement. sqlx parses and binds in two exchanges, which the pooler would
/// give to two server connections outside a transaction.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn operator_calls_behind_pgbouncer_never_mix_their_statements() {
    let Some(database) = crate::postgres::database_behind_pgbouncer().await else {
        return;
    };
    let store = aghanim_webhook::idempotency::PostgresStore::new(database.pool.clone());
    let calls = (0..16).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                let body = purchase(&format!("ord_mix_{n}_{round}"));
                let letter = DeadLetter::of_delivery(
                    body.as_bytes(),
                    false,
                    Reason::HandlerFailed,
                    500,
                    "x",
                )
                .unwrap();
                store.keep(&letter).await.unwrap();
                store.list(&Filter::unresolved().limit(5)).await.unwrap();
                store.get(&letter.key).await.unwrap();
                let key = aghanim_webhook::idempotency::RecordKey::from_hex(&letter.key).unwrap();
                store.record(&key).await.unwrap();
                store
                    .purge_expired(Duration::from_secs(3600))
                    .await
                    .unwrap();
            }
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
}

/// On PostgreSQL, a handler that commits the delivery's transaction itself is answered
/// 503 and nothing of it stays: the delivery is kept.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_handler_ending_the_delivery_transaction_itself_is_kept() {
    for case in cases()
        .await
        .into_iter()
        .filter(|case| case.name.starts_with("postgres"))
    {
        let shop = Shop::default();
        let dispatch = Dispatch::with_state(shop.clone()).on(
            EventType::ItemAdd,
            |_: Shop, transaction: DeliveryTransaction, _: Event<ItemChange>| async move {
                let mut connection = transaction.connection().await.unwrap();
                let _ = sqlx::raw_sql("COMMIT").execute(&mut *connection).await;
                Ack
            },
        );
        let stack = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            dispatch,
        );
        let order = order(&case, "own_commit");
        assert_eq!(
            status(&stack, signed_at(&purchase(&order), unix_now())).await,
            503,
            "{}",
            case.name
        );
        let kept = unresolved(&case, &order).await;
        assert_eq!(kept.len(), 1, "{}", case.name);
        assert_eq!(kept[0].reason, Reason::HandlerFailed, "{}", case.name);
        assert!(
            kept[0].detail.contains("ended the delivery's transaction"),
            "{}: {}",
            case.name,
            kept[0].detail
        );
    }
}

/// When the letters seen longest ago are unresolved, the resolved ones behind them still
/// make room for a new failure (found by the adversarial review: Redis looked only at
/// the ten oldest).
#[tokio::test]
async fn a_full_store_of_mostly_resolved_letters_keeps_a_new_failure() {
    let mut outcomes = Vec::new();
    for case in bounded_cases(30).await {
        let tag = case.name.replace(' ', "_");
        // 10 purchases that keep failing: the oldest letters, never resolved.
        let broken = Shop::default();
        let stack = broken.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        for n in 0..10 {
            let body = purchase(&format!("ord_adv1_{tag}_old_{n}"));
            assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 500);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // 20 purchases that failed once, then were applied by Aghanim's retry.
        for n in 0..20 {
            failed_then_applied(&case, &format!("ord_adv1_{tag}_fixed_{n}")).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let all = case
            .letters
            .list(&Filter::unresolved().with_resolved())
            .await
            .unwrap();
        let unresolved_now = all.iter().filter(|l| !l.resolved).count();
        assert_eq!((all.len(), unresolved_now), (30, 10), "{}", case.name);
        // A new purchase fails: 20 resolved letters could make room for it.
        let body = purchase(&format!("ord_adv1_{tag}_new"));
        let letter =
            DeadLetter::of_delivery(body.as_bytes(), false, Reason::HandlerFailed, 500, "x")
                .unwrap();
        let kept = case.letters.keep(&letter).await.unwrap();
        outcomes.push((case.name, kept));
    }
    assert!(
        outcomes.iter().all(|(_, kept)| *kept == Kept::Created),
        "20 of 30 letters are resolved, yet: {outcomes:?}"
    );
}

/// A captured copy of an applied purchase, sent stale once its record is gone (Redis:
/// expired with the retention; PostgreSQL: `forget_older_than`): signed more than half
/// the retention ago, it is not kept, so no replay can apply it again.
#[tokio::test]
async fn a_stale_copy_signed_past_half_the_retention_is_not_kept_and_never_credited_twice() {
    let mut outcomes = Vec::new();
    for case in cases().await {
        let retention = Duration::from_secs(1);
        let idempotency = case.idempotency.clone().retention(retention);
        let shop = Shop::default();
        shop.fixed.store(true, Ordering::SeqCst);
        let signature = AghanimSignatureLayer::new(SECRET).keep_stale(&idempotency);
        let stack = shop.stack(signature, idempotency);
        let order = order(&case, "adv2b");
        let body = purchase(&order);
        let captured_at = unix_now();
        assert_eq!(
            status(&stack, signed_at(&body, captured_at)).await,
            200,
            "{}",
            case.name
        );
        #[cfg(feature = "postgres")]
        if case.name.starts_with("postgres") {
            let pool = case
                ._database
                .as_ref()
                .unwrap()
                .downcast_ref::<sqlx::PgPool>()
                .unwrap()
                .clone();
            let store = aghanim_webhook::idempotency::PostgresStore::new(pool);
            store.forget_older_than(Duration::ZERO).await.unwrap();
        }
        if case.name == "memory" {
            continue; // expiry is swept lazily: see the memory test above
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            status(&stack, signed_at(&body, captured_at - 3600)).await,
            403
        );
        let kept = unresolved(&case, &order).await;
        if let Some(letter) = kept.first() {
            let replayed = replay(&*case.letters, letter, SECRET, stack.clone())
                .await
                .unwrap();
            eprintln!(
                "{}: replay {:?}",
                case.name,
                (replayed.status, replayed.was_applied_before)
            );
        }
        outcomes.push((case.name, kept.len(), shop.credits()));
    }
    assert!(
        outcomes
            .iter()
            .all(|(_, listed, credits)| (*listed, *credits) == (0, 1)),
        "(store, listed as failed, credits): {outcomes:?}"
    );
}

/// A type the crate does not document, with no handler: kept (no_handler). Once a
/// handler is deployed, its letter replayed twice is applied once and resolved: such
/// types are deduplicated by their key by default.
#[tokio::test]
async fn an_undocumented_types_letter_replayed_twice_is_applied_once() {
    let mut outcomes = Vec::new();
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "adv3");
        let body = delivery("item.grant", &order, r#"{"player_id":"p1","sku":"gems"}"#);
        assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 400);
        let letter = unresolved(&case, &order).await.remove(0);
        assert_eq!(letter.reason, Reason::NoHandler);
        // The fix: a handler for the new type.
        let fixed = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            shop.dispatch().on(
                EventType::from("item.grant"),
                |shop: Shop, _: Event| async move {
                    shop.credits.fetch_add(1, Ordering::SeqCst);
                    Ack
                },
            ),
        );
        let first = replay(&*case.letters, &letter, SECRET, fixed.clone())
            .await
            .unwrap();
        assert_eq!((first.status, first.resolved), (200, true), "{}", case.name);
        // Sent again despite the letter (Aghanim's retry): answered from its record.
        assert_eq!(status(&fixed, signed_at(&body, unix_now())).await, 200);
        outcomes.push((
            case.name,
            shop.credits(),
            unresolved(&case, &order).await.len(),
        ));
    }
    assert!(
        outcomes
            .iter()
            .all(|(_, credits, left)| (*credits, *left) == (1, 0)),
        "(store, credits, still unresolved): {outcomes:?}"
    );
}

/// The memory letters' byte bound holds for updates too: a key's letter updated with a
/// larger body keeps its own when the larger one does not fit.
#[tokio::test]
async fn an_updated_letter_stays_within_the_byte_bound() {
    let letters = MemoryDeadLetters::with_limits(10, 1_000);
    let small = purchase("ord_adv5");
    let letter = DeadLetter::of_delivery(small.as_bytes(), false, Reason::Stale, 403, "x").unwrap();
    assert_eq!(letters.keep(&letter).await.unwrap(), Kept::Created);
    let padding = "g".repeat(50_000);
    let large = small.replace("\"gems\"", &format!("\"{padding}\""));
    let bigger = DeadLetter::of_delivery(large.as_bytes(), false, Reason::Stale, 403, "x").unwrap();
    assert_eq!(bigger.key, letter.key);
    let kept = letters.keep(&bigger).await.unwrap();
    assert!(
        letters.bytes() <= 1_000,
        "{kept:?}: {} bytes kept, bound 1,000",
        letters.bytes()
    );
}

/// On PostgreSQL, a purchase whose commit fails (a deferred constraint the handler's
/// write breaks, checked at COMMIT) is answered 503 and rolled back, and kept.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_purchase_whose_commit_fails_is_kept() {
    let Some(database) = crate::postgres::database().await else {
        return;
    };
    sqlx::raw_sql(
        "CREATE TABLE adv6 (n int, CONSTRAINT adv6_unique UNIQUE (n) DEFERRABLE INITIALLY DEFERRED); \
         INSERT INTO adv6 VALUES (1);",
    )
    .execute(&database.pool)
    .await
    .unwrap();
    let store = aghanim_webhook::idempotency::PostgresStore::new(database.pool.clone());
    let idempotency = IdempotencyLayer::transactional(store.clone());
    let shop = Shop::default();
    let dispatch = writing(&shop, "INSERT INTO adv6 VALUES (1)");
    let stack = shop.stack_of(AghanimSignatureLayer::new(SECRET), idempotency, dispatch);
    let body = purchase("ord_adv6");
    let answered = status(&stack, signed_at(&body, unix_now())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = store.list(&Filter::unresolved()).await.unwrap();
    assert_eq!(
        kept.len(),
        1,
        "answered {answered}, not applied, kept: {kept:?}"
    );
}

/// `dead_letter::replay` refuses a resolved letter: once the key's record is past the
/// retention, sending it would apply the purchase again (found by the second review).
#[tokio::test]
async fn the_library_replay_refuses_a_resolved_letter_past_the_retention() {
    let mut outcomes = Vec::new();
    for case in cases().await {
        if case.name.starts_with("postgres") {
            continue; // records kept for good
        }
        let idempotency = case.idempotency.clone().retention(Duration::from_secs(1));
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), idempotency);
        let order = order(&case, "adv40_resolved");
        let body = purchase(&order);
        assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 500);
        shop.fixed.store(true, Ordering::SeqCst);
        assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 200);
        let letter = case
            .letters
            .list(&Filter::unresolved().with_resolved().game("gm_dl"))
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.delivery_id == order)
            .unwrap();
        assert!(letter.resolved, "{}", case.name);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Resolved, or on Redis expired with its record: not sent either way.
        let replayed = replay(&*case.letters, &letter, SECRET, stack.clone()).await;
        assert!(
            matches!(replayed, Err(ReplayError::Applied | ReplayError::Gone)),
            "{}",
            case.name
        );
        outcomes.push((case.name, 0, shop.credits()));
    }
    assert!(
        outcomes.iter().all(|(_, _, credits)| *credits == 1),
        "(store, replay status, credits): {outcomes:?}"
    );
}

/// A dispatcher that acknowledges types the game does not care about (202): each such
/// delivery is an unresolved letter for good, and at the bound they make room for a
/// failing purchase (found by the second review: the purchase was not kept).
#[tokio::test]
async fn acknowledged_unknown_types_make_room_for_a_failing_purchase() {
    let mut outcomes = Vec::new();
    for case in bounded_cases(3).await {
        let shop = Shop::default();
        let stack = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            shop.dispatch().accept_unhandled(),
        );
        for n in 0..3 {
            let id = format!("q_{}_{n}", case.name);
            let body = format!(
                r#"{{"event_id":"{id}","event_type":"quest.completed","game_id":"gm_dl","event_data":{{"player_id":"p1"}}}}"#
            );
            assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 202);
        }
        let order = order(&case, "adv40_full");
        assert_eq!(
            status(&stack, signed_at(&purchase(&order), unix_now())).await,
            500
        );
        outcomes.push((case.name, unresolved(&case, &order).await.len()));
    }
    assert!(
        outcomes.iter().all(|(_, kept)| *kept == 1),
        "(store, failing purchase kept): {outcomes:?}"
    );
}

/// A type the crate does not know, its retry carrying a changed field: one letter for
/// the one key, applied once by the replays (found by the second review: deduplicated
/// per payload, it was two letters, applied twice).
#[tokio::test]
async fn an_unknown_types_retry_with_another_payload_is_one_letter_applied_once() {
    let mut outcomes = Vec::new();
    for case in cases().await {
        let shop = Shop::default();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        let order = order(&case, "adv40_pp");
        for attempt in 1..=2 {
            let body = delivery(
                "item.grant",
                &order,
                &format!(r#"{{"player_id":"p1","sku":"gems","attempt":{attempt}}}"#),
            );
            assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 400);
        }
        let fixed = shop.stack_of(
            AghanimSignatureLayer::new(SECRET),
            case.idempotency.clone(),
            shop.dispatch().on(
                EventType::from("item.grant"),
                |shop: Shop, _: Event| async move {
                    shop.credits.fetch_add(1, Ordering::SeqCst);
                    Ack
                },
            ),
        );
        let letters = unresolved(&case, &order).await;
        for letter in &letters {
            replay(&*case.letters, letter, SECRET, fixed.clone())
                .await
                .unwrap();
        }
        outcomes.push((case.name, letters.len(), shop.credits()));
    }
    assert!(
        outcomes.iter().all(|(_, _, credits)| *credits == 1),
        "(store, letters for one order, credits): {outcomes:?}"
    );
}

/// PostgreSQL on a pool of ONE: a commit that times out is kept; its connection is
/// closed before the keeping needs one (found by the second review).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_a_pool_of_one_a_commit_timing_out_is_kept() {
    commit_timing_out_is_kept(1).await;
}

/// The same on a pool of five.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_a_pool_of_five_a_commit_timing_out_is_kept() {
    commit_timing_out_is_kept(5).await;
}

#[cfg(feature = "postgres")]
async fn commit_timing_out_is_kept(connections: u32) {
    let Some(database) = crate::postgres::database().await else {
        return;
    };
    sqlx::raw_sql(
        "CREATE TABLE adv40_slow (n int); \
         CREATE FUNCTION adv40_slow_fail() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM pg_sleep(1.5); RAISE EXCEPTION 'adv40 deferred failure'; END $$; \
         CREATE CONSTRAINT TRIGGER adv40_slow_check AFTER INSERT ON adv40_slow \
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION adv40_slow_fail();",
    )
    .execute(&database.pool)
    .await
    .unwrap();
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database.url)
        .await
        .unwrap();
    let store = aghanim_webhook::idempotency::PostgresStore::new(one.clone());
    let idempotency =
        IdempotencyLayer::transactional(store.clone()).store_timeout(Duration::from_millis(500));
    let shop = Shop::default();
    let dispatch = writing(&shop, "INSERT INTO adv40_slow VALUES (1)");
    let stack = shop.stack_of(AghanimSignatureLayer::new(SECRET), idempotency, dispatch);
    let body = purchase("ord_adv40_slow");
    let answered = status(&stack, signed_at(&body, unix_now())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = store
        .record(
            &aghanim_webhook::idempotency::RecordKey::of_delivery(body.as_bytes(), false).unwrap(),
        )
        .await
        .unwrap();
    let kept = store.list(&Filter::unresolved()).await.unwrap();
    assert_eq!(
        kept.len(),
        1,
        "answered {answered}, record {record:?}, not applied, kept: {kept:?}"
    );
}

/// Forty distinct keepings at once into an empty store with a bound of five keep five
/// (found by the second review: Redis kept none, PostgreSQL sometimes six).
#[tokio::test]
async fn concurrent_keeps_stay_within_the_bound() {
    let mut outcomes = Vec::new();
    for case in bounded_cases(5).await {
        let letters = case.letters.clone();
        let mut tasks = Vec::new();
        for n in 0..40 {
            let letters = letters.clone();
            let name = case.name;
            tasks.push(tokio::spawn(async move {
                let body = purchase(&format!("ord_adv40_c_{}_{n}", name));
                let letter = DeadLetter::of_delivery(
                    body.as_bytes(),
                    false,
                    Reason::HandlerFailed,
                    500,
                    "x",
                )
                .unwrap();
                letters.keep(&letter).await.unwrap()
            }));
        }
        let mut kept = Vec::new();
        for task in tasks {
            kept.push(task.await.unwrap());
        }
        let created = kept.iter().filter(|k| **k == Kept::Created).count();
        let listed = letters
            .list(&Filter::unresolved().with_resolved())
            .await
            .unwrap()
            .len();
        outcomes.push((case.name, created, listed));
    }
    assert!(
        outcomes.iter().all(|(_, _, listed)| *listed == 5),
        "40 distinct failures at once into an empty store, bound 5; (store, Created, letters held): {outcomes:?}"
    );
}

/// An unknown type's letter is under the key its ids give (`records` by ids finds it).
#[tokio::test]
async fn an_unknown_types_letter_is_found_by_its_ids() {
    let memory = MemoryStore::new();
    let shop = Shop::default();
    let stack = shop.stack(
        AghanimSignatureLayer::new(SECRET),
        IdempotencyLayer::new(memory.clone()),
    );
    let body = r#"{"event_id":"whevt_adv40_q","event_type":"quest.completed","game_id":"gm_dl","idempotency_key":"q_adv40","event_data":{"player_id":"p1"}}"#;
    assert_eq!(status(&stack, signed_at(body, unix_now())).await, 400);
    let letter = memory.list(&Filter::unresolved()).await.unwrap().remove(0);
    let by_ids = aghanim_webhook::idempotency::RecordKey::new(
        "gm_dl",
        false,
        &EventType::from("quest.completed"),
        "q_adv40",
    );
    assert!(
        memory.get(by_ids.as_str()).await.unwrap().is_some(),
        "the letter's key {} is not the key its ids give, {}",
        letter.key,
        by_ids.as_str()
    );
}

/// A dispatcher whose `item.add` handler runs `statement` in the delivery's
/// transaction, then acknowledges.
#[cfg(feature = "postgres")]
fn writing(shop: &Shop, statement: &'static str) -> Dispatch<Shop> {
    Dispatch::with_state(shop.clone()).on(
        EventType::ItemAdd,
        move |_: Shop, transaction: Option<DeliveryTransaction>, _: Event<ItemChange>| async move {
            let transaction = transaction.unwrap();
            let mut connection = transaction.connection().await.unwrap();
            sqlx::query(statement)
                .execute(&mut *connection)
                .await
                .unwrap();
            Ok::<_, WebhookError>(Ack)
        },
    )
}

/// A run past the run timeout, and runs cancelled at a drain, are kept with their
/// reason; a duplicate answered from a record is never kept.
#[tokio::test]
async fn timed_out_and_cancelled_runs_are_kept_and_a_replayed_duplicate_is_not() {
    for case in cases().await {
        let shop = Shop::default();
        shop.fixed.store(true, Ordering::SeqCst);
        // Applied, then delivered again: replayed from its record, nothing kept.
        let order_applied = order(&case, "applied");
        let body = purchase(&order_applied);
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), case.idempotency.clone());
        for _ in 0..2 {
            assert_eq!(status(&stack, signed_at(&body, unix_now())).await, 200);
        }
        let all = case
            .letters
            .list(&Filter::unresolved().with_resolved())
            .await
            .unwrap();
        assert!(
            !all.iter().any(|letter| letter.delivery_id == order_applied),
            "{}",
            case.name
        );
        shop.slow.store(true, Ordering::SeqCst);
        // The handler takes 300 ms.
        let short = case
            .idempotency
            .clone()
            .run_timeout(Duration::from_millis(100));
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), short);
        let order_timed_out = order(&case, "timed_out");
        let answered = status(&stack, signed_at(&purchase(&order_timed_out), unix_now())).await;
        assert_eq!(answered, 503, "{}", case.name);
        let kept = unresolved(&case, &order_timed_out).await;
        assert_eq!(kept.len(), 1, "{}", case.name);
        assert_eq!(
            (kept[0].reason, kept[0].status),
            (Reason::TimedOut, 503),
            "{}",
            case.name
        );

        // Last: cancelling the runs of a layer cancels its later runs too.
        let draining = case.idempotency.clone();
        let stack = shop.stack(AghanimSignatureLayer::new(SECRET), draining.clone());
        let order_cancelled = order(&case, "cancelled");
        let request = signed_at(&purchase(&order_cancelled), unix_now());
        let running = tokio::spawn({
            let stack = stack.clone();
            async move { stack.oneshot(request).await.unwrap().status() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(draining.cancel_in_flight().await, 1, "{}", case.name);
        assert_eq!(running.await.unwrap(), 503, "{}", case.name);
        let kept = unresolved(&case, &order_cancelled).await;
        assert_eq!(kept.len(), 1, "{}", case.name);
        assert_eq!(kept[0].reason, Reason::Cancelled, "{}", case.name);
    }
}
