#![cfg(all(feature = "testing", feature = "axum", feature = "idempotency"))]
//! The test kit as a game developer uses it: an axum `Router` of their own, fed by the
//! `Sender` and `SignedRequest`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use aghanim_webhook::{
    events::{Ack, ErrorCode, EventType, ItemChange, WebhookError},
    idempotency::IdempotencyLayer,
    testing::{Reply, Sample, Sender, SignedRequest},
    AghanimEvent, AghanimSignatureLayer,
};
use axum::{extract::State, routing::post, Router};
use http::StatusCode;
use tower::ServiceExt;

const SECRET: &str = "whsec_kit";

/// Credits per player, and how many times the handler should fail before it credits.
#[derive(Clone, Default)]
struct Game {
    credits: Arc<Mutex<HashMap<String, u32>>>,
    failures_left: Arc<Mutex<u32>>,
}

impl Game {
    fn credits(&self, player: &str) -> u32 {
        self.credits
            .lock()
            .unwrap()
            .get(player)
            .copied()
            .unwrap_or(0)
    }
}

/// A handler as a game writes it: slow enough that copies overlap, not idempotent by
/// itself.
async fn item_add(
    State(game): State<Game>,
    AghanimEvent(event): AghanimEvent<ItemChange>,
) -> Result<Ack, WebhookError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        let mut failures = game.failures_left.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(WebhookError::new(
                ErrorCode::Custom("internal_error".into()),
                "the database blinked",
            )
            .with_status(StatusCode::INTERNAL_SERVER_ERROR));
        }
    }
    *game
        .credits
        .lock()
        .unwrap()
        .entry(event.event_data.player_id)
        .or_default() += 1;
    Ok(Ack)
}

fn router(game: &Game, idempotency: Option<IdempotencyLayer>) -> Router {
    let routes = Router::new()
        .route("/webhook", post(item_add))
        .with_state(game.clone());
    let routes = match idempotency {
        Some(idempotency) => routes.layer(idempotency),
        None => routes,
    };
    routes.layer(AghanimSignatureLayer::new(SECRET))
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_retries_and_a_hang_up_credit_once_behind_the_idempotency_layer() {
    let game = Game::default();
    let app = router(&game, Some(IdempotencyLayer::in_memory()));
    let purchase = Sample::with_ids(EventType::ItemAdd, "player-1", "kit1");

    let answers = Sender::new(SECRET)
        .copies(3)
        .reserialize_retries()
        .hang_up_first(Duration::ZERO)
        .deliver(app, purchase)
        .await;

    assert!(answers.succeeded(), "{answers:?}");
    assert_eq!(game.credits("player-1"), 1);
    assert!(
        matches!(answers.all()[0].reply, Reply::HungUp),
        "{answers:?}"
    );
    // The copy that hung up may have claimed before it went (its run goes on, and all
    // three others replay) or not (one of them runs): never two runs.
    assert!(answers.replayed() >= 2, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_deliveries_credit_more_than_once_without_it() {
    // What the kit is for: the handler alone is not exactly-once, and the test says so.
    let game = Game::default();
    let app = router(&game, None);
    let answers = Sender::new(SECRET)
        .copies(3)
        .deliver(
            app,
            Sample::with_ids(EventType::ItemAdd, "player-2", "kit2"),
        )
        .await;
    assert!(answers.succeeded());
    assert_eq!(game.credits("player-2"), 3);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_re_serialized_and_credits_once() {
    let game = Game::default();
    *game.failures_left.lock().unwrap() = 2;
    let app = router(&game, Some(IdempotencyLayer::in_memory()));
    let answers = Sender::new(SECRET)
        .attempts(3)
        .reserialize_retries()
        .deliver(
            app,
            Sample::with_ids(EventType::ItemAdd, "player-3", "kit3"),
        )
        .await;
    assert_eq!(
        answers.statuses(),
        [500, 500, 200].map(|status| StatusCode::from_u16(status).unwrap())
    );
    let reserialized: Vec<bool> = answers
        .all()
        .iter()
        .map(|answer| answer.reserialized)
        .collect();
    assert_eq!(reserialized, [false, true, true]);
    assert!(answers.succeeded());
    assert_eq!(game.credits("player-3"), 1);

    let failing = Game {
        failures_left: Arc::new(Mutex::new(5)),
        ..Game::default()
    };
    let exhausted = Sender::new(SECRET)
        .attempts(2)
        .deliver(router(&failing, None), Sample::new(EventType::ItemAdd))
        .await;
    assert_eq!(exhausted.all().len(), 2);
    assert!(!exhausted.succeeded());
}

#[tokio::test]
async fn signed_requests_pass_and_stale_forged_or_refused_types_do_not() {
    let game = Game::default();
    let app = router(&game, None);
    let purchase = Sample::with_ids(EventType::ItemAdd, "player-4", "kit4");
    let status = |request: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    let signed = SignedRequest::new(SECRET, &purchase);
    assert_eq!(status(signed.clone().build()).await, StatusCode::OK);
    assert_eq!(
        status(signed.clone().reserialized().build()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(signed.clone().stale().build()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(signed.forged().build()).await, StatusCode::FORBIDDEN);
    let refund = Sample::new(EventType::ItemRemove);
    assert_eq!(
        status(SignedRequest::new(SECRET, &refund).build()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(game.credits("player-4"), 2);
}

#[tokio::test]
async fn the_first_copy_hangs_up_even_when_the_service_answers_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let instant = tower::service_fn(move |_: http::Request<_>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
    });
    let answers = Sender::new(SECRET)
        .hang_up_first(Duration::ZERO)
        .deliver(instant, Sample::new(EventType::ItemAdd))
        .await;
    assert_eq!(answers.hung_up(), 1, "{answers:?}");
    assert!(
        matches!(answers.all()[0].reply, Reply::HungUp),
        "{answers:?}"
    );
    // The copy that hung up was sent whole: the service was called for it too.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(answers.succeeded(), "{answers:?}");
}

#[tokio::test]
async fn a_sample_takes_a_purchase_built_from_the_constructors() {
    use aghanim_webhook::events::Item;
    let game = Game::default();
    let purchase = Sample::with_ids(EventType::ItemAdd, "player-4", "kit4").data(
        ItemChange::new("player-5", vec![Item::new("sword").quantity(2)]).reason("Order paid"),
    );
    let sent = purchase.typed::<ItemChange>().unwrap();
    assert_eq!(sent.event_data.items[0].sku, "sword");
    assert_eq!(sent.event_data.items[0].quantity, 2);
    assert_eq!(sent.idempotency_key.as_deref(), Some("ord_kit4"));
    let answers = Sender::new(SECRET)
        .deliver(router(&game, None), purchase)
        .await;
    assert!(answers.succeeded(), "{answers:?}");
    assert_eq!(game.credits("player-5"), 1);
}

#[test]
#[should_panic(expected = "is not the event_data of item.remove")]
fn a_sample_refuses_data_of_another_event_type() {
    let _ = Sample::new(EventType::ItemRemove).data(ItemChange::new("p1", vec![]));
}
