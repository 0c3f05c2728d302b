#![cfg(feature = "tracing")]
//! What the layers report through `tracing`: one event per rejection at the level
//! docs/logs.md states, with its fields, and never the secret, an expected MAC or the
//! body.

use crate::common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use aghanim_webhook::{idempotency::IdempotencyLayer, sign};
use bytes::Bytes;
use common::{forged, layer, signed, stack, NOW, SECRET};
use http::Request;
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes, as text.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

pub(crate) fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

const BODY: &str = r#"{"event_type":"item.add","event_id":"whevt_trace","game_id":"gm_trace","idempotency_key":"ord_trace","event_data":{"player_id":"p-secretive","items":[{"sku":"gems"}]}}"#;

#[tokio::test(flavor = "current_thread")]
async fn rejections_are_reported_with_their_fields_and_no_secret() {
    let (captured, _guard) = capture();
    let (service, _) = stack(layer());

    // A forgery: the right headers, a MAC that does not match. The expected MAC is the
    // one the verifier computed; it must not be printed.
    let expected = sign(SECRET, NOW, BODY);
    service.clone().oneshot(forged(BODY)).await.unwrap();

    // Authentic but 400 s late.
    service
        .clone()
        .oneshot(signed(BODY, NOW - 400))
        .await
        .unwrap();

    // No headers at all.
    let unsigned = Request::post("/webhook")
        .body(Full::<Bytes>::from(BODY))
        .unwrap();
    service.oneshot(unsigned).await.unwrap();

    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    for field in [
        "kind=SignatureMismatch",
        "method=POST",
        "path=\"/webhook\"",
        &format!("body_read={}", BODY.len()),
    ] {
        assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
    }
    assert!(lines[1].contains("WARN") && lines[1].contains("kind=TimestampOutsideTolerance"));
    assert!(
        lines[1].contains(&format!("claimed_timestamp={}", NOW - 400)),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("clock_skew_secs=400"), "{}", lines[1]);
    // Authentic: the purchase it carried can be found again from its ids.
    for field in [
        "event_type=\"item.add\"",
        "event_id=\"whevt_trace\"",
        "idempotency_key=\"ord_trace\"",
        "game_id=\"gm_trace\"",
    ] {
        assert!(lines[1].contains(field), "{field} missing: {}", lines[1]);
    }
    // Nothing read from a body whose MAC did not match, nor from an unsigned one.
    for line in [lines[0], lines[2]] {
        assert!(!line.contains("_trace"), "{line}");
    }
    assert!(
        lines[2].contains("DEBUG") && lines[2].contains("kind=MissingTimestamp"),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("body_read=0"));

    assert!(!text.contains(SECRET), "the secret: {text}");
    assert!(!text.contains(&expected[..16]), "the expected MAC: {text}");
    assert!(!text.contains("p-secretive"), "the body: {text}");
}

#[tokio::test(flavor = "current_thread")]
async fn idempotency_decisions_are_reported() {
    let (captured, _guard) = capture();
    let service = ServiceBuilder::new()
        .layer(layer())
        .layer(IdempotencyLayer::in_memory())
        .service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from("{}")))
        });
    for _ in 0..2 {
        service.clone().oneshot(signed(BODY, NOW)).await.unwrap();
    }
    let text = captured.text();
    assert!(
        text.contains("claimed") && text.contains("attempt=1"),
        "{text}"
    );
    assert!(text.contains("ran and recorded"), "{text}");
    assert!(text.contains("replayed the recorded answer"), "{text}");
    assert!(
        text.contains("dedupe_key=\"gm_trace:live:item.add:ord_trace\""),
        "{text}"
    );
}

/// What `Dispatch` logged about `request`, one entry per line.
async fn dispatch_lines(request: Request<Full<Bytes>>, behind_the_layer: bool) -> Vec<String> {
    use aghanim_webhook::{
        dispatch::Dispatch,
        events::{Ack, Event, EventType, ItemChange},
    };
    let (captured, _guard) = capture();
    let dispatch = Dispatch::new().on(EventType::ItemAdd, |_: Event<ItemChange>| async { Ack });
    let status = if behind_the_layer {
        tower::Layer::layer(&layer(), dispatch)
            .oneshot(request)
            .await
            .unwrap()
            .status()
    } else {
        dispatch.oneshot(request).await.unwrap().status()
    };
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    captured
        .text()
        .lines()
        .filter(|line| line.contains("aghanim_webhook::dispatch"))
        .map(str::to_owned)
        .collect()
}

fn assert_fields(line: &str, fields: &[&str]) {
    for field in fields {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

const IDS: [&str; 4] = [
    "event_id=\"whevt_ord_refused\"",
    "idempotency_key=\"ord_refused\"",
    "game_id=\"gm_exoqPsmvqRu\"",
    "sandbox=false",
];

#[tokio::test(flavor = "current_thread")]
async fn a_purchase_dispatch_refuses_as_invalid_is_logged_once_at_warn_with_the_field_and_ids() {
    let body = common::keyed(
        "item.add",
        r#"{"player_id":"p1","items":[{"sku":"gems","quantity":"2"}]}"#,
        "ord_refused",
    );
    let lines = dispatch_lines(common::signed_text(body), true).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert_fields(&lines[0], &IDS);
    assert_fields(
        &lines[0],
        &[
            "reason=\"validation_error\"",
            "event_type=\"item.add\"",
            "event_data.items[0].quantity: invalid type",
        ],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_type_without_a_handler_is_logged_once_at_warn_with_its_ids() {
    let body = common::keyed("order.paid", r#"{"id":"ord_1"}"#, "ord_refused");
    let lines = dispatch_lines(common::signed_text(body), true).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert_fields(&lines[0], &IDS);
    assert_fields(
        &lines[0],
        &["reason=\"unknown_event_type\"", "event_type=\"order.paid\""],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dispatch_outside_the_layer_is_logged_as_misconfigured_reading_nothing_of_the_body() {
    let body = common::keyed(
        "item.add",
        r#"{"player_id":"p1","items":[]}"#,
        "ord_refused",
    );
    let unverified = Request::post("/webhook")
        .body(Full::<Bytes>::from(body))
        .unwrap();
    let lines = dispatch_lines(unverified, false).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert_fields(&lines[0], &["reason=\"misconfigured\"", "status=500"]);
    assert!(!lines[0].contains("ord_refused"), "{}", lines[0]);
}
