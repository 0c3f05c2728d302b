//! The axum extractor behind the layer.
#![cfg(feature = "axum")]

use crate::common;

use aghanim_webhook::{
    events::{Ack, ItemChange, ItemRemove, PlayerVerify, PlayerVerifyResponse},
    AghanimEvent,
};
use axum::{routing::post, Router};
use bytes::Bytes;
use common::{body_text, layer, signed_with};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;

fn app() -> Router {
    Router::new()
        .route(
            "/verify",
            post(
                |AghanimEvent(event): AghanimEvent<PlayerVerify>| async move {
                    PlayerVerifyResponse::new(event.event_data.player_id, "Name")
                },
            ),
        )
        .route(
            "/items",
            post(
                |AghanimEvent(_): AghanimEvent<ItemChange>, body: String| async move {
                    assert!(body.contains("item.add"), "the body is still there: {body}");
                    Ack
                },
            ),
        )
        .route(
            "/removals",
            post(|AghanimEvent(event): AghanimEvent<ItemRemove>| async move {
                assert_eq!(event.event_data.player_id, "p");
                Ack
            }),
        )
        .route(
            "/any",
            post(|AghanimEvent(event): AghanimEvent| async move {
                assert!(event.event_data.is_object());
                Ack
            }),
        )
}

async fn oneshot_signed(app: Router, uri: &str, body: &'static str) -> (StatusCode, String) {
    let mut request = signed_with(Full::<Bytes>::from(body), body.as_bytes());
    *request.uri_mut() = uri.parse().unwrap();
    let response = app.oneshot(request).await.unwrap();
    (response.status(), body_text(response).await)
}

#[tokio::test]
async fn extractor_reads_the_verified_event() {
    let body = r#"{"event_id":"e","event_type":"player.verify","event_time":1,"event_data":{"player_id":"p9"}}"#;
    let (status, text) = oneshot_signed(app().layer(layer()), "/verify", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, r#"{"player_id":"p9","name":"Name","attributes":{}}"#);
}

#[tokio::test]
async fn extractor_leaves_the_body_for_other_extractors() {
    let body = r#"{"event_id":"e","event_type":"item.add","event_time":1,"event_data":{"player_id":"p","items":[]}}"#;
    let (status, text) = oneshot_signed(app().layer(layer()), "/items", body).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
}

#[tokio::test]
async fn extractor_rejects_data_of_the_wrong_shape_naming_the_field() {
    let body = r#"{"event_id":"e","event_type":"player.verify","event_time":1,"event_data":{"player":"p9"}}"#;
    let (status, text) = oneshot_signed(app().layer(layer()), "/verify", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains(r#""code":"validation_error""#), "{text}");
    assert!(
        text.contains("event_data: missing field `player_id`"),
        "{text}"
    );
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_configuration_error() {
    let body = r#"{"event_id":"e","event_type":"player.verify","event_time":1,"event_data":{"player_id":"p"}}"#;
    let request = Request::post("/verify")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// A route's data type decides which events it takes: a refund sent to the purchase
/// route is refused, not credited, and a `player_id` alone does not make a
/// `player.verify`.
#[tokio::test]
async fn extractor_refuses_event_types_its_data_is_not_for() {
    let remove = r#"{"event_type":"item.remove","event_data":{"player_id":"p","items":[]}}"#;
    let lookalike = r#"{"event_type":"store.get","event_data":{"player_id":"p9"}}"#;
    for (uri, body) in [("/items", remove), ("/verify", lookalike)] {
        let (status, text) = oneshot_signed(app().layer(layer()), uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert!(text.contains(r#""code":"unknown_event_type""#), "{text}");
    }
    for uri in ["/removals", "/any"] {
        let (status, text) = oneshot_signed(app().layer(layer()), uri, remove).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    }
}
