#![cfg(feature = "idempotency")]
//! The idempotency layer behind the signature layer, on the memory store and, when
//! `redis-server` can run here, on a private Redis: every row of the answer table.

use crate::common;

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use aghanim_webhook::{
    body::{BufferedBody, ResponseBody},
    idempotency::{
        Claim, IdempotencyLayer, IdempotencyOutcome, IdempotencyStore, MemoryStore, Policy,
    },
};
use bytes::Bytes;
use common::{
    keyed, layer,
    sent::{send_owned, Sent},
    signed_text,
    stores::{Faulty, Unreachable},
    GAME_ID,
};
use http::{header, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::Full;
use tower::{util::BoxCloneService, ServiceBuilder};

type Body = ResponseBody<ResponseBody<Delayed>>;
type Stack = BoxCloneService<Request<Full<Bytes>>, Response<Body>, String>;

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Status(u16),
    /// `{"status":"error","code":…}` with this status.
    Refuse(u16, &'static str),
    /// 200 at once, its body only after this long.
    SlowBody(Duration),
    Fail,
    Panic,
}

/// A response body that yields its one frame after a delay.
struct Delayed {
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
    body: Full<Bytes>,
}

impl http_body::Body for Delayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(delay) = self.delay.as_mut() {
            ready!(delay.as_mut().poll(cx));
            self.delay = None;
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// The handler: answers from a script (then 200), counts its runs, keeps the claims.
#[derive(Clone, Default)]
struct Handler {
    script: Arc<Mutex<VecDeque<(Duration, Answer)>>>,
    runs: Arc<AtomicUsize>,
    /// Runs that got past their scripted pause: a cancelled or timed-out run never does.
    finished: Arc<AtomicUsize>,
    claims: Arc<Mutex<Vec<Claim>>>,
}

impl Handler {
    fn then(self, after: Duration, answer: Answer) -> Self {
        self.script.lock().unwrap().push_back((after, answer));
        self
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn attempts(&self) -> Vec<u64> {
        self.claims
            .lock()
            .unwrap()
            .iter()
            .map(Claim::attempt)
            .collect()
    }

    async fn handle(self, request: Request<BufferedBody>) -> Result<Response<Delayed>, String> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(claim) = request.extensions().get::<Claim>() {
            self.claims.lock().unwrap().push(claim.clone());
        }
        let step = self.script.lock().unwrap().pop_front();
        let (after, answer) = step.unwrap_or((Duration::ZERO, Answer::Ok));
        tokio::time::sleep(after).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        let mut body = format!(r#"{{"run":{run}}}"#);
        let mut delay = None;
        let status = match answer {
            Answer::Ok => 200,
            Answer::Status(status) => status,
            Answer::Refuse(status, code) => {
                body = format!(r#"{{"status":"error","code":"{code}","message":"run {run}"}}"#);
                status
            }
            Answer::SlowBody(after) => {
                delay = Some(Box::pin(tokio::time::sleep(after)));
                200
            }
            Answer::Fail => return Err(format!("run {run} failed")),
            Answer::Panic => panic!("run {run} panicked"),
        };
        let body = Full::from(body);
        let mut response = Response::new(Delayed { delay, body });
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }
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

fn delivery(event_type: &str, key: &str, data: &str) -> Request<Full<Bytes>> {
    signed_text(keyed(event_type, data, key))
}

const ITEMS: &str = r#"{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}"#;

fn item_add(key: &str) -> Request<Full<Bytes>> {
    delivery("item.add", key, ITEMS)
}

async fn send(stack: &Stack, request: Request<Full<Bytes>>) -> Result<Sent, String> {
    send_owned(stack.clone(), request).await
}

/// The stores every test runs on: memory, and Redis (one server, and a three-node
/// cluster, shared by the tests of this process, each under its own key prefix) when
/// `redis-server` can run here.
struct Backend {
    name: &'static str,
    store: Arc<dyn IdempotencyStore>,
}

async fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend {
        name: "memory",
        store: Arc::new(MemoryStore::new()),
    }];
    #[cfg(feature = "redis")]
    if let Some(server) = common::redis_server::RedisServer::shared() {
        let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
            .await
            .expect("connects to the private redis-server")
            .prefix(common::redis_server::prefix());
        backends.push(Backend {
            name: "redis",
            store: Arc::new(store),
        });
    }
    #[cfg(feature = "redis-cluster")]
    if let Some(cluster) = common::redis_server::RedisCluster::shared() {
        let connection = redis::cluster::ClusterClient::new(cluster.urls())
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("connects to the private cluster");
        let store = aghanim_webhook::idempotency::RedisStore::with_connection(connection)
            .prefix(common::redis_server::prefix());
        backends.push(Backend {
            name: "redis-cluster",
            store: Arc::new(store),
        });
    }
    backends
}

#[tokio::test]
async fn a_delivery_runs_once_and_its_duplicates_are_replayed() {
    for backend in backends().await {
        let handler = Handler::default();
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let first = send(&stack, item_add("ord_1")).await.unwrap();
        assert_eq!(first.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(first.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
        assert!(!first.replayed);
        for _ in 0..2 {
            let again = send(&stack, item_add("ord_1")).await.unwrap();
            assert_eq!(again.status, StatusCode::OK);
            assert_eq!(again.outcome, Some(IdempotencyOutcome::Replayed));
            assert!(again.replayed, "{}", backend.name);
            assert_eq!(again.body, first.body);
        }
        assert_eq!(handler.runs(), 1, "{}", backend.name);
        assert_eq!(handler.attempts(), [1]);
        let claims = handler.claims.lock().unwrap().clone();
        assert_eq!(
            claims[0].dedupe_key(),
            format!("{GAME_ID}:live:item.add:ord_1")
        );
    }
}

#[tokio::test]
async fn concurrent_duplicates_through_separate_layers_run_the_handler_once() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(200), Answer::Ok);
        // Three "instances": three layers sharing one store.
        let instances: Vec<Stack> = (0..3)
            .map(|_| stack(IdempotencyLayer::new(backend.store.clone()), &handler))
            .collect();
        let sends: Vec<_> = (0..30)
            .map(|i| {
                let stack = instances[i % 3].clone();
                tokio::spawn(send_owned(stack, item_add("ord_race")))
            })
            .collect();
        let mut replays = 0;
        for sent in sends {
            let sent = sent.await.unwrap().unwrap();
            assert_eq!(sent.status, StatusCode::OK, "{}", backend.name);
            assert_eq!(sent.body, r#"{"run":1}"#);
            replays += usize::from(sent.replayed);
        }
        assert_eq!(handler.runs(), 1, "{}", backend.name);
        assert_eq!(replays, 29);
    }
}

#[tokio::test]
async fn a_duplicate_waits_and_runs_when_the_original_is_released() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(300), Answer::Status(503));
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let original = tokio::spawn({
            let stack = stack.clone();
            send_owned(stack, item_add("ord_2"))
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let duplicate = send(&stack, item_add("ord_2")).await.unwrap();
        let original = original.await.unwrap().unwrap();
        assert_eq!(original.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            original.outcome,
            Some(IdempotencyOutcome::Released { attempt: 1 })
        );
        assert_eq!(duplicate.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(
            duplicate.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 2 })
        );
        assert_eq!(handler.attempts(), [1, 2]);
    }
}

#[tokio::test]
async fn a_duplicate_still_in_progress_after_the_wait_gets_503_never_2xx_or_4xx() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(800), Answer::Ok);
        let idempotency =
            IdempotencyLayer::new(backend.store.clone()).wait(Duration::from_millis(200));
        let stack = stack(idempotency, &handler);
        let original = tokio::spawn({
            let stack = stack.clone();
            send_owned(stack, item_add("ord_3"))
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = send(&stack, item_add("ord_3")).await.unwrap();
        assert_eq!(
            busy.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            backend.name
        );
        assert_eq!(busy.outcome, Some(IdempotencyOutcome::StillInProgress));
        let retry_after: u64 = busy.retry_after.unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry_after));
        assert_eq!(original.await.unwrap().unwrap().status, StatusCode::OK);
        let later = send(&stack, item_add("ord_3")).await.unwrap();
        assert!(later.replayed && later.status == StatusCode::OK);
        assert_eq!(handler.runs(), 1);
    }
}

#[tokio::test]
async fn business_refusals_are_recorded_and_replayed() {
    for backend in backends().await {
        let handler = Handler::default()
            .then(Duration::ZERO, Answer::Refuse(400, "declined"))
            .then(Duration::ZERO, Answer::Refuse(400, "banned"))
            .then(Duration::ZERO, Answer::Status(409));
        let idempotency = IdempotencyLayer::new(backend.store.clone())
            .final_refusal(StatusCode::BAD_REQUEST, "banned")
            .final_status(StatusCode::CONFLICT);
        let stack = stack(idempotency, &handler);
        for key in ["ord_4a", "ord_4b", "ord_4c"] {
            let refused = send(&stack, item_add(key)).await.unwrap();
            assert_eq!(
                refused.outcome,
                Some(IdempotencyOutcome::Ran { attempt: 1 })
            );
            let again = send(&stack, item_add(key)).await.unwrap();
            assert_eq!(again.status, refused.status, "{} {key}", backend.name);
            assert!(again.replayed, "{} {key}", backend.name);
            assert_eq!(again.body, refused.body);
        }
        assert_eq!(
            handler.runs(),
            3,
            "{}: a retry turned a refusal into a credit",
            backend.name
        );
    }
}

#[tokio::test]
async fn answers_about_todays_code_are_not_recorded_and_the_next_delivery_runs() {
    for backend in backends().await {
        let handler = Handler::default()
            .then(Duration::ZERO, Answer::Refuse(400, "validation_error"))
            .then(Duration::ZERO, Answer::Refuse(400, "unknown_event_type"))
            .then(Duration::ZERO, Answer::Status(404))
            .then(Duration::ZERO, Answer::Status(408))
            .then(Duration::ZERO, Answer::Refuse(409, "declined"));
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        for attempt in 1..=5 {
            let sent = send(&stack, item_add("ord_4d")).await.unwrap();
            assert!(!sent.status.is_success());
            assert!(
                !sent.replayed,
                "{}: attempt {attempt} replayed",
                backend.name
            );
            assert_eq!(sent.outcome, Some(IdempotencyOutcome::Released { attempt }));
        }
        // The fix is deployed: the same delivery now credits, and that sticks.
        let fixed = send(&stack, item_add("ord_4d")).await.unwrap();
        assert_eq!(fixed.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(fixed.outcome, Some(IdempotencyOutcome::Ran { attempt: 6 }));
        assert!(send(&stack, item_add("ord_4d")).await.unwrap().replayed);
        assert_eq!(handler.runs(), 6);
    }
}

#[tokio::test]
async fn server_errors_and_failures_release_the_claim_for_the_retry() {
    for backend in backends().await {
        let handler = Handler::default()
            .then(Duration::ZERO, Answer::Status(500))
            .then(Duration::ZERO, Answer::Status(429))
            .then(Duration::ZERO, Answer::Fail);
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let first = send(&stack, item_add("ord_5")).await.unwrap();
        assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            first.outcome,
            Some(IdempotencyOutcome::Released { attempt: 1 })
        );
        let second = send(&stack, item_add("ord_5")).await.unwrap();
        assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
        let third = send(&stack, item_add("ord_5")).await;
        assert_eq!(
            third.err().as_deref(),
            Some("run 3 failed"),
            "{}",
            backend.name
        );
        let fourth = send(&stack, item_add("ord_5")).await.unwrap();
        assert_eq!(fourth.outcome, Some(IdempotencyOutcome::Ran { attempt: 4 }));
        assert_eq!(handler.attempts(), [1, 2, 3, 4]);
    }
}

/// Waits, at most 10 s, until the handler has started `runs` runs.
async fn until_runs(handler: &Handler, runs: usize) {
    let started = async {
        while handler.runs() < runs {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the handler started in time");
}

#[tokio::test]
async fn a_panicking_handler_is_never_recorded_and_its_claim_is_released() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::ZERO, Answer::Panic);
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let panicked = tokio::spawn(send_owned(stack.clone(), item_add("ord_6")));
        assert!(panicked.await.unwrap_err().is_panic());

        // The release happens in the background; the next delivery waits for it, if
        // it has to, and runs.
        let retry = tokio::time::timeout(Duration::from_secs(10), send(&stack, item_add("ord_6")))
            .await
            .expect("the claim was released")
            .unwrap();
        assert_eq!(retry.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 2 }));
        assert_eq!(handler.attempts(), [1, 2]);
    }
}

#[tokio::test]
async fn a_request_dropped_after_its_handler_started_is_recorded_and_never_run_again() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(300), Answer::Ok);
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        // The client hangs up (or a timeout outside fires) while the handler runs.
        let dropped = tokio::spawn(send_owned(stack.clone(), item_add("ord_6b")));
        until_runs(&handler, 1).await;
        dropped.abort();
        assert!(dropped.await.unwrap_err().is_cancelled());

        // Aghanim's retry waits for the run it abandoned and gets its answer.
        let retry = send(&stack, item_add("ord_6b")).await.unwrap();
        assert_eq!(retry.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(retry.outcome, Some(IdempotencyOutcome::Replayed));
        assert_eq!(retry.body, r#"{"run":1}"#);
        assert_eq!(handler.runs(), 1, "{}: the handler ran twice", backend.name);
    }
}

#[tokio::test]
async fn a_request_dropped_while_the_answer_is_recorded_still_records_it() {
    for backend in backends().await {
        let handler = Handler::default();
        let store = Arc::new(Faulty::new(backend.store.clone()));
        store.slow_complete.store(true, Ordering::SeqCst);
        let stack = stack(IdempotencyLayer::new(store.clone()), &handler);
        let dropped = tokio::spawn(send_owned(stack.clone(), item_add("ord_6c")));
        let completing = async {
            while store.completes.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), completing)
            .await
            .unwrap();
        dropped.abort();
        let _ = dropped.await;
        store.slow_complete.store(false, Ordering::SeqCst);

        let retry = send(&stack, item_add("ord_6c")).await.unwrap();
        assert_eq!(
            retry.outcome,
            Some(IdempotencyOutcome::Replayed),
            "{}",
            backend.name
        );
        assert_eq!(handler.runs(), 1);
    }
}

#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_released_at_once_not_after_its_lease() {
    for backend in backends().await {
        let handler = Handler::default();
        let store = Arc::new(Faulty::new(backend.store.clone()));
        let idempotency = IdempotencyLayer::new(store.clone()).wait(Duration::from_millis(300));
        let stack = stack(idempotency, &handler);
        store.lose_claim_replies.store(true, Ordering::SeqCst);
        let lost = send(&stack, item_add("ord_6d")).await.unwrap();
        assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(lost.outcome, Some(IdempotencyOutcome::StoreUnavailable));
        store.lose_claim_replies.store(false, Ordering::SeqCst);

        // The claim was applied, twice asked; its release followed in the background,
        // so the retry runs within the wait instead of getting 503 for the whole
        // 15 s lease.
        let retry = send(&stack, item_add("ord_6d")).await.unwrap();
        assert_eq!(retry.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 2 }));
        assert_eq!(handler.runs(), 1);
    }
}

#[tokio::test]
async fn the_lease_is_renewed_while_the_answer_is_collected_and_after_a_failed_renewal() {
    for backend in backends().await {
        let handler = Handler::default().then(
            Duration::ZERO,
            Answer::SlowBody(Duration::from_millis(1600)),
        );
        let store = Arc::new(Faulty::new(backend.store.clone()));
        // The first renewal (at 333 ms) fails; it is tried again within the lease.
        store.failing_renewals.store(1, Ordering::SeqCst);
        let idempotency = IdempotencyLayer::new(store.clone())
            .lease(Duration::from_secs(1))
            .wait(Duration::from_millis(100));
        let stack = stack(idempotency, &handler);
        let original = tokio::spawn(send_owned(stack.clone(), item_add("ord_6e")));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // Past the first lease, while the body is still being collected: still held.
        let duplicate = send(&stack, item_add("ord_6e")).await.unwrap();
        assert_eq!(
            duplicate.outcome,
            Some(IdempotencyOutcome::StillInProgress),
            "{}",
            backend.name
        );
        let original = original.await.unwrap().unwrap();
        assert_eq!(
            original.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 1 })
        );
        assert_eq!(handler.runs(), 1);
    }
}

#[tokio::test]
async fn a_stale_owner_cannot_overwrite_the_record_of_the_owner_that_took_over() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(2000), Answer::Ok);
        let store: Arc<dyn IdempotencyStore> =
            Arc::new(Faulty::never_renewing(backend.store.clone()));
        let idempotency = IdempotencyLayer::new(store).lease(Duration::from_secs(1));
        let stack = stack(idempotency, &handler);
        let stale = tokio::spawn({
            let stack = stack.clone();
            send_owned(stack, item_add("ord_7"))
        });
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let took_over = send(&stack, item_add("ord_7")).await.unwrap();
        assert_eq!(
            took_over.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 2 }),
            "{}",
            backend.name
        );
        assert_eq!(took_over.body, r#"{"run":2}"#);

        let stale = stale.await.unwrap().unwrap();
        assert_eq!(
            stale.outcome,
            Some(IdempotencyOutcome::LeaseLost { attempt: 1 })
        );
        assert_eq!(stale.body, r#"{"run":1}"#);
        let later = send(&stack, item_add("ord_7")).await.unwrap();
        assert!(later.replayed);
        assert_eq!(
            later.body, r#"{"run":2}"#,
            "the stale owner overwrote the record"
        );
    }
}

#[tokio::test]
async fn a_changed_payload_is_refused_for_items_and_claimed_on_its_own_for_notifications() {
    for backend in backends().await {
        let handler = Handler::default();
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        assert_eq!(
            send(&stack, item_add("ord_8")).await.unwrap().status,
            StatusCode::OK
        );
        let changed = r#"{"player_id":"p1","items":[{"sku":"gems","quantity":500}]}"#;
        let reused = send(&stack, delivery("item.add", "ord_8", changed))
            .await
            .unwrap();
        assert_eq!(
            reused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            backend.name
        );
        assert!(reused.body.contains("idempotency_key_reused"));
        assert_eq!(handler.runs(), 1);

        let payment = |amount: u32| {
            delivery(
                "payment.succeeded",
                "pay_1",
                &format!(r#"{{"amount":{amount}}}"#),
            )
        };
        assert_eq!(
            send(&stack, payment(100)).await.unwrap().outcome,
            Some(IdempotencyOutcome::Ran { attempt: 1 })
        );
        assert!(send(&stack, payment(100)).await.unwrap().replayed);
        // A change runs once, under a claim of its own; its copies are replayed.
        let updates: Vec<_> = (0..4)
            .map(|_| tokio::spawn(send_owned(stack.clone(), payment(150))))
            .collect();
        let mut ran = 0;
        for update in updates {
            let update = update.await.unwrap().unwrap();
            assert_eq!(update.status, StatusCode::OK, "{}", backend.name);
            ran += usize::from(update.outcome == Some(IdempotencyOutcome::Ran { attempt: 1 }));
        }
        assert_eq!(ran, 1, "{}", backend.name);
        assert_eq!(handler.runs(), 3);

        // Configurable: payments refused too.
        let strict = stack_with_policy(&backend, &handler);
        assert!(send(&strict, delivery("payment.succeeded", "pay_2", "{}"))
            .await
            .unwrap()
            .status
            .is_success());
        let refused = send(&strict, delivery("payment.succeeded", "pay_2", "[]"))
            .await
            .unwrap();
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}

/// `item.add` for `key` whose envelope and `event_data` are written by another
/// serializer: keys reordered, spaced out, escaped, numbers spelled otherwise.
fn item_add_rewritten(key: &str) -> Request<Full<Bytes>> {
    let original: serde_json::Value = serde_json::from_str(&keyed("item.add", ITEMS, key)).unwrap();
    let mut rewritten = serde_json::to_string_pretty(&original).unwrap();
    for (plain, respelled) in [
        ("\"quantity\": 5", "\"quantity\": 5.0"),
        ("\"sku\": \"gems\"", "\"\\u0073ku\": \"g\\u0065ms\""),
    ] {
        assert!(rewritten.contains(plain));
        rewritten = rewritten.replace(plain, respelled);
    }
    signed_text(rewritten)
}

#[tokio::test]
async fn a_duplicate_written_differently_is_a_duplicate_not_a_conflict() {
    for backend in backends().await {
        let handler = Handler::default();
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let first = send(&stack, item_add("ord_8b")).await.unwrap();
        assert_eq!(first.status, StatusCode::OK);
        let rewritten = send(&stack, item_add_rewritten("ord_8b")).await.unwrap();
        assert_eq!(
            rewritten.status,
            StatusCode::OK,
            "{}: {}",
            backend.name,
            rewritten.body
        );
        assert_eq!(rewritten.outcome, Some(IdempotencyOutcome::Replayed));
        assert_eq!(handler.runs(), 1);
    }
}

#[tokio::test]
async fn a_released_record_never_refuses_another_payload() {
    for backend in backends().await {
        let handler =
            Handler::default().then(Duration::ZERO, Answer::Refuse(400, "validation_error"));
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let bad = delivery(
            "item.add",
            "ord_8c",
            r#"{"player_id":"p1","items":[{"sku":"gems","quantity":1.5}]}"#,
        );
        let refused = send(&stack, bad).await.unwrap();
        assert_eq!(
            refused.outcome,
            Some(IdempotencyOutcome::Released { attempt: 1 })
        );
        // Aghanim corrects the payload and sends it under the same key.
        let corrected = send(&stack, item_add("ord_8c")).await.unwrap();
        assert_eq!(corrected.status, StatusCode::OK, "{}", backend.name);
        assert_eq!(
            corrected.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 2 })
        );
    }
}

fn stack_with_policy(backend: &Backend, handler: &Handler) -> Stack {
    let idempotency = IdempotencyLayer::new(backend.store.clone())
        .policy("payment.succeeded", Policy::Deduplicate);
    stack(idempotency, handler)
}

#[tokio::test]
async fn reads_and_deliveries_without_ids_pass_through_every_time() {
    for backend in backends().await {
        let handler = Handler::default();
        let stack = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        for _ in 0..3 {
            let verify = send(
                &stack,
                delivery("player.verify", "k", r#"{"player_id":"p1"}"#),
            )
            .await;
            assert_eq!(
                verify.unwrap().outcome,
                Some(IdempotencyOutcome::PassedThrough)
            );
            let body = format!(r#"{{"event_type":"item.add","event_data":{ITEMS}}}"#);
            let sent = send(&stack, signed_text(body)).await.unwrap();
            assert_eq!(sent.outcome, Some(IdempotencyOutcome::PassedThrough));
        }
        assert_eq!(handler.runs(), 6, "{}", backend.name);
        assert!(
            handler.attempts().is_empty(),
            "a pass-through ran under a claim"
        );
    }
}

#[tokio::test]
async fn forged_requests_never_reach_the_store() {
    for backend in backends().await {
        let handler = Handler::default();
        let store = Arc::new(Faulty::new(backend.store.clone()));
        let stack = stack(IdempotencyLayer::new(store.clone()), &handler);
        let forged = common::forged(keyed("item.add", ITEMS, "ord_9"));
        let refused = send(&stack, forged).await.unwrap();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.outcome, None);
        assert_eq!(store.claims.load(Ordering::SeqCst), 0, "{}", backend.name);
        let real = send(&stack, item_add("ord_9")).await.unwrap();
        assert_eq!(real.outcome, Some(IdempotencyOutcome::Ran { attempt: 1 }));
        assert_eq!(store.claims.load(Ordering::SeqCst), 1, "{}", backend.name);
    }
}

#[tokio::test]
async fn an_unreachable_store_fails_closed_unless_told_to_fail_open() {
    let handler = Handler::default();
    let closed = stack(IdempotencyLayer::new(Unreachable), &handler);
    let sent = send(&closed, item_add("ord_10")).await.unwrap();
    assert_eq!(sent.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sent.retry_after.as_deref(), Some("1"));
    assert_eq!(sent.outcome, Some(IdempotencyOutcome::StoreUnavailable));
    assert_eq!(handler.runs(), 0);

    let open = stack(IdempotencyLayer::new(Unreachable).fail_open(), &handler);
    let sent = send(&open, item_add("ord_10")).await.unwrap();
    assert_eq!(sent.status, StatusCode::OK);
    assert_eq!(sent.outcome, Some(IdempotencyOutcome::FailedOpen));
    assert_eq!(handler.runs(), 1);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_going_down_answers_503_and_coming_back_recovers() {
    // A server of its own: this test kills it.
    let Some(mut server) = common::redis_server::RedisServer::start() else {
        return;
    };
    let store = aghanim_webhook::idempotency::RedisStore::connect(&server.url())
        .await
        .expect("connects to the private redis-server");
    let handler = Handler::default();
    let idempotency = IdempotencyLayer::new(store).store_timeout(Duration::from_millis(500));
    let stack = stack(idempotency, &handler);
    assert_eq!(
        send(&stack, item_add("ord_11")).await.unwrap().status,
        StatusCode::OK
    );

    server.kill();
    let down = send(&stack, item_add("ord_12")).await.unwrap();
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.outcome, Some(IdempotencyOutcome::StoreUnavailable));
    assert_eq!(handler.runs(), 1);

    server.restart();
    let recovered = common::eventually(|| async {
        let sent = send(&stack, item_add("ord_12")).await.unwrap();
        (sent.status == StatusCode::OK).then_some(sent)
    })
    .await
    .expect("the store recovered after the restart");
    assert_eq!(
        recovered.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 })
    );
    // A restart without persistence forgot ord_11: it runs again. Tier 2 is the backstop.
    let forgotten = send(&stack, item_add("ord_11")).await.unwrap();
    assert_eq!(
        forgotten.outcome,
        Some(IdempotencyOutcome::Ran { attempt: 1 })
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_owners_claim_blocks_its_key_for_at_most_the_default_lease() {
    // The owner hangs and its renewals never reach the store, as if its process had
    // been stopped: only the lease frees the key.
    let handler = Handler::default().then(Duration::from_secs(3600), Answer::Ok);
    let store: Arc<dyn IdempotencyStore> =
        Arc::new(Faulty::never_renewing(Arc::new(MemoryStore::new())));
    let stack = stack(IdempotencyLayer::new(store), &handler);
    let claimed_at = tokio::time::Instant::now();
    let _stuck = tokio::spawn(send_owned(stack.clone(), item_add("ord_13")));
    until_runs(&handler, 1).await;

    let busy = send(&stack, item_add("ord_13")).await.unwrap();
    assert_eq!(busy.outcome, Some(IdempotencyOutcome::StillInProgress));
    let retry_after: u64 = busy.retry_after.unwrap().parse().unwrap();
    assert!(retry_after <= 15, "retry-after {retry_after}");

    tokio::time::sleep_until(claimed_at + aghanim_webhook::idempotency::DEFAULT_LEASE).await;
    let retry = send(&stack, item_add("ord_13")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Ran { attempt: 2 }));
    assert!(claimed_at.elapsed() <= Duration::from_secs(16));
}

#[test]
fn outside_a_tokio_runtime_a_deduplicated_delivery_is_a_500_that_touches_nothing() {
    let handler = Handler::default();
    let store = MemoryStore::new();
    let stack = stack(IdempotencyLayer::new(store.clone()), &handler);
    let sent = common::run(send(&stack, item_add("ord_14"))).unwrap();
    assert_eq!(sent.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(sent.body.contains("needs a Tokio runtime"), "{}", sent.body);
    assert_eq!(handler.runs(), 0);
    assert!(store.is_empty());
}

// Real time: the Redis stores answer over real sockets.
#[tokio::test]
async fn a_shutdown_past_its_drain_deadline_cancels_the_runs_then_frees_their_keys() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(1500), Answer::Ok);
        let idempotency =
            IdempotencyLayer::new(backend.store.clone()).wait(Duration::from_millis(100));
        let instance = stack(idempotency.clone(), &handler);
        let stuck = tokio::spawn(send_owned(instance.clone(), item_add("ord_15")));
        until_runs(&handler, 1).await;
        assert_eq!(idempotency.runs_in_flight(), 1, "{}", backend.name);
        assert_eq!(idempotency.cancel_in_flight().await, 1, "{}", backend.name);
        assert_eq!(idempotency.runs_in_flight(), 0);
        let cut = stuck.await.unwrap().unwrap();
        assert_eq!(cut.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            cut.outcome,
            Some(IdempotencyOutcome::Cancelled { attempt: 1 })
        );

        // Another instance's retry runs at once, and the cancelled handler never
        // finishes beside it.
        let other = stack(IdempotencyLayer::new(backend.store.clone()), &handler);
        let retry = send(&other, item_add("ord_15")).await.unwrap();
        assert_eq!(
            retry.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 2 }),
            "{}",
            backend.name
        );
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(handler.runs(), 2);
        assert_eq!(
            handler.finished.load(Ordering::SeqCst),
            1,
            "{}",
            backend.name
        );
    }
}

#[tokio::test(start_paused = true)]
async fn runs_that_start_after_the_cancellation_are_cancelled_too() {
    let handler = Handler::default().then(Duration::from_secs(1), Answer::Ok);
    let idempotency = IdempotencyLayer::in_memory();
    let stack = stack(idempotency.clone(), &handler);
    assert_eq!(idempotency.cancel_in_flight().await, 0);
    let late = send(&stack, item_add("ord_late")).await.unwrap();
    assert_eq!(
        late.outcome,
        Some(IdempotencyOutcome::Cancelled { attempt: 1 })
    );
    assert_eq!(handler.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_a_run_whose_client_hung_up() {
    let handler = Handler::default().then(Duration::from_secs(3), Answer::Ok);
    let idempotency = IdempotencyLayer::in_memory();
    let stack = stack(idempotency.clone(), &handler);
    let hung_up = tokio::spawn(send_owned(stack.clone(), item_add("ord_16")));
    until_runs(&handler, 1).await;
    hung_up.abort();
    let started = tokio::time::Instant::now();
    idempotency.runs_finished().await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "returned before the run ended"
    );
    assert_eq!(handler.finished.load(Ordering::SeqCst), 1);
    let retry = send(&stack, item_add("ord_16")).await.unwrap();
    assert_eq!(retry.outcome, Some(IdempotencyOutcome::Replayed));
}

#[tokio::test]
async fn a_hung_handler_is_cancelled_at_the_run_timeout_and_its_key_runs_again() {
    for backend in backends().await {
        let handler = Handler::default().then(Duration::from_millis(1500), Answer::Ok);
        let idempotency =
            IdempotencyLayer::new(backend.store.clone()).run_timeout(Duration::from_millis(300));
        let stack = stack(idempotency, &handler);
        let hung = send(&stack, item_add("ord_17")).await.unwrap();
        assert_eq!(
            hung.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            backend.name
        );
        assert_eq!(
            hung.outcome,
            Some(IdempotencyOutcome::TimedOut { attempt: 1 })
        );
        let retry = send(&stack, item_add("ord_17")).await.unwrap();
        assert_eq!(
            retry.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 2 }),
            "{}",
            backend.name
        );
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            handler.finished.load(Ordering::SeqCst),
            1,
            "{}",
            backend.name
        );
    }
}

#[tokio::test]
async fn a_complete_that_fails_once_is_tried_again_and_the_handler_runs_once() {
    for backend in backends().await {
        let handler = Handler::default();
        let store = Arc::new(Faulty::new(backend.store.clone()));
        store.failing_completes.store(1, Ordering::SeqCst);
        let idempotency = IdempotencyLayer::new(store.clone() as Arc<dyn IdempotencyStore>)
            .lease(Duration::from_secs(1));
        let stack = stack(idempotency, &handler);
        let first = send(&stack, item_add("ord_18")).await.unwrap();
        assert_eq!(
            first.outcome,
            Some(IdempotencyOutcome::Ran { attempt: 1 }),
            "{}",
            backend.name
        );
        assert_eq!(store.completes.load(Ordering::SeqCst), 2);
        // Past the lease: a claim left without its answer would run again now.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let again = send(&stack, item_add("ord_18")).await.unwrap();
        assert_eq!(
            again.outcome,
            Some(IdempotencyOutcome::Replayed),
            "{}",
            backend.name
        );
        assert_eq!(handler.runs(), 1);
    }
}

#[test]
fn settings_that_cannot_be_expressed_are_refused_when_the_layer_is_built() {
    // PostgreSQL's timeouts are 32-bit milliseconds; a deadline must fit a clock.
    let too_long = Duration::from_millis(1 << 31);
    type Builder = fn(Duration) -> IdempotencyLayer;
    let builders: [(&str, Builder); 5] = [
        ("wait", |d| IdempotencyLayer::in_memory().wait(d)),
        ("lease", |d| IdempotencyLayer::in_memory().lease(d)),
        ("store_timeout", |d| {
            IdempotencyLayer::in_memory().store_timeout(d)
        }),
        ("run_timeout", |d| {
            IdempotencyLayer::in_memory().run_timeout(d)
        }),
        ("retention", |d| {
            IdempotencyLayer::in_memory().retention(d * 10_000_000)
        }),
    ];
    for (setting, build) in builders {
        let built = std::panic::catch_unwind(|| build(too_long));
        assert!(built.is_err(), "{setting} of {too_long:?} was accepted");
    }
    // The longest accepted settings still give deadlines that never overflow.
    let _ = IdempotencyLayer::in_memory()
        .wait(Duration::from_millis((1 << 30) - 1))
        .store_timeout(Duration::from_millis((1 << 30) - 1))
        .run_timeout(Duration::from_millis((1 << 30) - 1))
        .retention(Duration::from_secs(99 * 365 * 24 * 3600));
}
