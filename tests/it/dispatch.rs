//! `Dispatch` behind the signature layer, driven through `oneshot`.
#![cfg(feature = "events")]

use crate::common;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use aghanim_webhook::{dispatch::Dispatch, events::*, AghanimSignatureLayer};
use bytes::Bytes;
use common::{body_text, keyed, layer, signed_with};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};

async fn send<S>(dispatch: Dispatch<S>, body: &str) -> (StatusCode, Value)
where
    S: Clone + Send + Sync + 'static,
{
    let request = signed_with(Full::<Bytes>::from(body.to_owned()), body.as_bytes());
    let response = layer().layer(dispatch).oneshot(request).await.unwrap();
    read(response).await
}

async fn read<B>(response: Response<B>) -> (StatusCode, Value)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = body_text(response).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

fn event(event_type: &str, data: Value) -> String {
    keyed(event_type, &data.to_string(), "key_1")
}

async fn verify(event: Event<PlayerVerify>) -> Result<PlayerVerifyResponse, WebhookError> {
    match event.event_data.player_id.as_str() {
        "testplayer" => Ok(PlayerVerifyResponse::new("testplayer", "Test Player")),
        _ => Err(WebhookError::not_found("Player not found")),
    }
}

fn game() -> Dispatch {
    Dispatch::new()
        .on(EventType::PlayerVerify, verify)
        .on("item.add", |_: Event<ItemChange>| async { Ack })
}

#[tokio::test]
async fn registered_handler_answers_with_its_typed_response() {
    let (status, body) = send(
        game(),
        &event("player.verify", json!({"player_id": "testplayer"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"player_id": "testplayer", "name": "Test Player", "attributes": {}})
    );

    let (status, body) = send(
        game(),
        &event("player.verify", json!({"player_id": "ghost"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn unregistered_type_is_a_bad_request_naming_the_type() {
    let (status, body) = send(game(), &event("order.paid", json!({"id": "ord_1"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "unknown_event_type");
    assert!(body["message"].as_str().unwrap().contains("order.paid"));
}

#[tokio::test]
async fn fallback_replaces_the_unknown_type_answer() {
    let dispatch = game().fallback(|event: Event| async move {
        assert_eq!(event.event_type, EventType::OrderPaid);
        Ack
    });
    let (status, body) = send(dispatch, &event("order.paid", json!({"id": "ord_1"}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn handlers_share_the_dispatch_state() {
    let credited = Arc::new(AtomicUsize::new(0));
    let dispatch = Dispatch::with_state(Arc::clone(&credited)).on(
        EventType::ItemAdd,
        |credited: Arc<AtomicUsize>, event: Event<ItemChange>| async move {
            credited.fetch_add(event.event_data.items.len(), Ordering::SeqCst);
            Ack
        },
    );
    let body = event(
        "item.add",
        json!({"player_id": "p1", "items": [{"sku": "a"}, {"sku": "b"}]}),
    );
    assert_eq!(send(dispatch.clone(), &body).await.0, StatusCode::OK);
    assert_eq!(send(dispatch, &body).await.0, StatusCode::OK);
    assert_eq!(credited.load(Ordering::SeqCst), 4);
}

async fn validation_message(body: &str) -> String {
    let (status, body) = send(game(), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "validation_error", "{body}");
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bodies_that_are_not_envelopes_are_validation_errors() {
    for body in [
        "not json",
        "[1,2,3]",
        "{}",
        "null",
        r#"{"event_type":"player.verify"}"#,
        "{} trailing",
    ] {
        let message = validation_message(body).await;
        assert!(message.starts_with("event"), "{body}: {message}");
    }
    // Only event_type and event_data are required: what is missing here is the data's.
    let message = validation_message(r#"{"event_type":"item.add","event_data":{}}"#).await;
    assert!(
        message.starts_with("event_data: missing field `player_id`"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_data_field_is_named_with_its_path() {
    let message = validation_message(&event("item.add", json!({"player_id": "p1"}))).await;
    assert!(
        message.starts_with("event_data: missing field `items`"),
        "{message}"
    );

    let message = validation_message(&event(
        "item.add",
        json!({"player_id": "p1", "items": [{"quantity": 1}]}),
    ))
    .await;
    assert!(
        message.starts_with("event_data.items[0]: missing field `sku`"),
        "{message}"
    );

    let bad_type = json!({"player_id": "p1", "items": [{"sku": "a", "quantity": "two"}]});
    let message = validation_message(&event("item.add", bad_type)).await;
    assert!(
        message.starts_with("event_data.items[0].quantity: invalid type"),
        "{message}"
    );
}

#[tokio::test]
async fn wrong_envelope_field_is_named_with_its_path() {
    let body = r#"{"event_id":"whevt_1","event_type":"player.verify","event_time":"yesterday","event_data":{}}"#;
    let message = validation_message(body).await;
    assert!(message.starts_with("event_time: invalid type"), "{message}");
}

#[tokio::test]
async fn dispatch_without_the_layer_is_a_configuration_error() {
    let request = Request::post("/webhook")
        .body(Full::<Bytes>::from(event(
            "player.verify",
            json!({"player_id": "testplayer"}),
        )))
        .unwrap();
    let (status, body) = read(game().oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("AghanimSignatureLayer"));
}

#[tokio::test]
async fn unverified_requests_never_reach_a_handler() {
    let called = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&called);
    let dispatch = Dispatch::new().on(EventType::ItemAdd, move |_: Event<ItemChange>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ack }
    });
    let body = event("item.add", json!({"player_id": "p1", "items": []}));
    let request = Request::post("/").body(Full::<Bytes>::from(body)).unwrap();
    let response = AghanimSignatureLayer::new("s")
        .layer(dispatch)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

/// The message of the panic `build` raises, or `None`.
fn panic_of(build: impl FnOnce() + std::panic::UnwindSafe) -> Option<String> {
    let payload = std::panic::catch_unwind(build).err()?;
    payload.downcast_ref::<String>().cloned().or_else(|| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
    })
}

async fn credit(_event: Event<ItemChange>) -> Ack {
    Ack
}

async fn revoke(_event: Event<ItemRemove>) -> Ack {
    Ack
}

#[test]
fn a_credit_registered_for_item_remove_is_refused_when_built_naming_both() {
    let message = panic_of(|| {
        let _ = Dispatch::new().on(EventType::ItemRemove, credit);
    })
    .expect("a credit on item.remove must not build");
    assert!(
        message.contains("ItemChange") && message.contains("item.remove"),
        "{message}"
    );
    assert!(
        message.contains("ItemRemove"),
        "names the right data: {message}"
    );
}

#[test]
fn a_revoke_registered_for_item_add_is_refused_when_built_naming_both() {
    let message = panic_of(|| {
        let _ = Dispatch::new().on("item.add", revoke);
    })
    .expect("a revoke on item.add must not build");
    assert!(
        message.contains("ItemRemove") && message.contains("item.add"),
        "{message}"
    );
}

#[test]
fn a_player_verify_handler_registered_for_item_add_is_refused_when_built_naming_both() {
    let message = panic_of(|| {
        let _ = Dispatch::new().on(EventType::ItemAdd, verify);
    })
    .expect("a player.verify handler on item.add must not build");
    assert!(
        message.contains("PlayerVerify") && message.contains("item.add"),
        "{message}"
    );
}

#[test]
fn a_fallback_on_data_of_one_event_type_is_refused_when_built() {
    let message = panic_of(|| {
        let _ = Dispatch::new().fallback(credit);
    })
    .expect("a fallback taking ItemChange must not build");
    assert!(message.contains("ItemChange"), "{message}");
}

#[tokio::test]
async fn item_remove_is_handled_by_a_handler_of_item_remove_data() {
    let taken = Arc::new(AtomicUsize::new(0));
    let dispatch = Dispatch::with_state(Arc::clone(&taken))
        .on(
            EventType::ItemAdd,
            |_: Arc<AtomicUsize>, _: Event<ItemChange>| async { Ack },
        )
        .on(
            EventType::ItemRemove,
            |taken: Arc<AtomicUsize>, event: Event<ItemRemove>| async move {
                taken.fetch_add(event.event_data.items.len(), Ordering::SeqCst);
                Ack
            },
        );
    let refund = event(
        "item.remove",
        json!({"player_id": "p1", "items": [{"sku": "a"}, {"sku": "b"}]}),
    );
    assert_eq!(send(dispatch, &refund).await.0, StatusCode::OK);
    assert_eq!(taken.load(Ordering::SeqCst), 2);
}

/// Data of one's own that is for every documented type, but not for `quest.done`.
#[derive(serde::Deserialize)]
struct AllButQuests {}

impl EventData for AllButQuests {
    fn is_for(event_type: &EventType) -> bool {
        event_type.as_str() != "quest.done"
    }
}

#[tokio::test]
async fn a_fallback_never_runs_on_a_type_its_data_is_not_for() {
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let dispatch = Dispatch::new().fallback(move |_: Event<AllButQuests>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ack }
    });
    let (status, body) = send(dispatch, &event("quest.done", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "unknown_event_type");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
