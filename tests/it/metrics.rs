#![cfg(feature = "metrics")]
//! What the layers record through the `metrics` facade, read back from `metrics-util`'s
//! debugging recorder, installed for each test alone.

use crate::common;

use std::{
    collections::{HashMap, HashSet},
    io,
    sync::Arc,
    time::Duration,
};

use aghanim_webhook::{
    dispatch::Dispatch,
    events::{Ack, Event, ItemChange},
    idempotency::{IdempotencyLayer, MemoryStore},
    RejectionKind, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use bytes::Bytes;
use common::{
    forged, keyed, layer, run, signed, signed_text, signed_with, stack,
    stores::{Faulty, Unreachable},
    Frames, NOW,
};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{ServiceBuilder, ServiceExt};

const EVENT: &str = r#"{"event_type":"item.add","event_data":{"player_id":"p1"}}"#;

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Each metric's value by name and sorted labels.
fn read(snapshotter: &Snapshotter) -> HashMap<Series, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn counter(values: &HashMap<Series, DebugValue>, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    labels.sort();
    match values.get(&(name.to_owned(), labels)) {
        Some(DebugValue::Counter(count)) => *count,
        _ => 0,
    }
}

fn with_header(
    mut request: Request<Full<Bytes>>,
    name: &http::HeaderName,
    value: &str,
) -> Request<Full<Bytes>> {
    request
        .headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
    request
}

#[test]
fn every_verified_and_refused_delivery_is_counted_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let send = |layer: aghanim_webhook::AghanimSignatureLayer, request: Request<Frames>| {
            let (service, _) = stack(layer);
            run(service.oneshot(request)).unwrap().status()
        };
        let frames = |body: &'static str| Frames::data([Bytes::from_static(body.as_bytes())]);
        let signed_frames = |frames: Frames| signed_with(frames, EVENT.as_bytes());
        let from = |request: Request<Full<Bytes>>| {
            let (parts, _) = request.into_parts();
            Request::from_parts(parts, frames(EVENT))
        };

        assert_eq!(send(layer(), signed_frames(frames(EVENT))), StatusCode::OK);
        let mut unsigned = from(signed(EVENT, NOW));
        unsigned.headers_mut().remove(&TIMESTAMP_HEADER);
        send(layer(), unsigned);
        send(
            layer(),
            from(with_header(signed(EVENT, NOW), &TIMESTAMP_HEADER, "soon")),
        );
        let mut no_signature = from(signed(EVENT, NOW));
        no_signature.headers_mut().remove(&SIGNATURE_HEADER);
        send(layer(), no_signature);
        send(
            layer(),
            from(with_header(signed(EVENT, NOW), &SIGNATURE_HEADER, "zz")),
        );
        send(layer(), from(forged(EVENT)));
        send(layer(), from(signed(EVENT, NOW - 1_000)));
        send(layer().body_limit(8), signed_frames(frames(EVENT)));
        send(layer(), signed_frames(frames(EVENT).then_error()));
        send(
            layer(),
            signed_frames(frames(EVENT).then_error_of(io::ErrorKind::TimedOut)),
        );
        send(layer().buffer_budget(8), signed_frames(frames(EVENT)));
    });

    let values = read(&snapshotter);
    let deliveries = "aghanim_webhook_deliveries_total";
    assert_eq!(counter(&values, deliveries, &[("outcome", "verified")]), 1);
    for kind in RejectionKind::ALL {
        assert_eq!(
            counter(&values, deliveries, &[("outcome", kind.as_str())]),
            1,
            "{kind:?}"
        );
    }
    // One verified delivery, signed at the clock's own second.
    let age = values.get(&(
        "aghanim_webhook_delivery_age_seconds".to_owned(),
        Vec::new(),
    ));
    assert!(matches!(age, Some(DebugValue::Histogram(ages)) if ages.len() == 1 && ages[0] == 0.0));
    // Every body read has ended, and given its budget back.
    let gauge = |name: &str| match values.get(&(name.to_owned(), Vec::new())) {
        Some(DebugValue::Gauge(value)) => value.0,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge("aghanim_webhook_bodies_reading"), 0.0);
    assert_eq!(gauge("aghanim_webhook_buffer_budget_bytes_in_use"), 0.0);
}

fn item_add(key: &str, quantity: u32) -> Request<Full<Bytes>> {
    let data = format!(r#"{{"player_id":"p1","items":[{{"sku":"gems","quantity":{quantity}}}]}}"#);
    signed_text(keyed("item.add", &data, key))
}

/// A handler that sleeps `slow` for `ord_slow*` keys, answers 503 for `ord_fail`, and
/// acknowledges the rest.
fn dispatch() -> Dispatch {
    Dispatch::new().on("item.add", |event: Event<ItemChange>| async move {
        let key = event.idempotency_key.clone().unwrap_or_default();
        if key.starts_with("ord_slow") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if key == "ord_fail" {
            return Err(aghanim_webhook::events::WebhookError::validation(
                "not today",
            ));
        }
        Ok(Ack)
    })
}

#[test]
fn every_idempotency_decision_is_counted_and_store_calls_are_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let stack = |idempotency: IdempotencyLayer| {
                ServiceBuilder::new()
                    .layer(layer())
                    .layer(idempotency)
                    .service(dispatch())
            };
            let memory =
                stack(IdempotencyLayer::new(MemoryStore::new()).wait(Duration::from_millis(500)));
            let status = |request| {
                let service = memory.clone();
                async move { service.oneshot(request).await.unwrap().status() }
            };
            assert_eq!(status(item_add("ord_1", 5)).await, StatusCode::OK); // claimed, recorded
            assert_eq!(status(item_add("ord_1", 5)).await, StatusCode::OK); // replayed
            assert_eq!(
                status(item_add("ord_1", 6)).await,
                StatusCode::UNPROCESSABLE_ENTITY
            ); // key reused
            assert_eq!(
                status(item_add("ord_fail", 1)).await,
                StatusCode::BAD_REQUEST
            ); // released
            let slow = tokio::spawn(status(item_add("ord_slow", 1)));
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(
                status(item_add("ord_slow", 1)).await,
                StatusCode::SERVICE_UNAVAILABLE
            ); // waited, busy
            assert_eq!(slow.await.unwrap(), StatusCode::OK);

            let unreachable = stack(IdempotencyLayer::new(Unreachable));
            let down = unreachable.oneshot(item_add("ord_2", 1)).await.unwrap();
            assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE); // store unavailable

            // A stale owner: its lease runs out (no renewal), another delivery takes over.
            let stale = stack(
                IdempotencyLayer::new(Faulty::never_renewing(Arc::new(MemoryStore::new())))
                    .lease(Duration::from_secs(1)),
            );
            let first = tokio::spawn(stale.clone().oneshot(item_add("ord_slow_2", 1)));
            tokio::time::sleep(Duration::from_millis(1_300)).await;
            assert_eq!(
                stale
                    .oneshot(item_add("ord_slow_2", 1))
                    .await
                    .unwrap()
                    .status(),
                StatusCode::OK
            );
            assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK); // lease lost
        })
    });

    let values = read(&snapshotter);
    let decisions = "aghanim_webhook_idempotency_decisions_total";
    let count = |decision| counter(&values, decisions, &[("decision", decision)]);
    assert_eq!(
        count("claimed"),
        5,
        "ord_1, ord_fail, ord_slow, and ord_slow_2 twice"
    );
    assert_eq!(count("recorded"), 3);
    assert_eq!(count("replayed"), 1);
    assert_eq!(count("key_reused"), 1);
    assert_eq!(count("released"), 1);
    assert_eq!(count("waited"), 1);
    assert_eq!(count("busy"), 1);
    assert_eq!(count("store_unavailable"), 1);
    assert_eq!(count("lease_lost"), 1);
    let timed = |store: &str, operation: &str| {
        let mut labels = vec![
            ("operation".to_owned(), operation.to_owned()),
            ("store".to_owned(), store.to_owned()),
        ];
        labels.sort();
        let key = (
            "aghanim_webhook_idempotency_store_duration_seconds".to_owned(),
            labels,
        );
        match values.get(&key) {
            Some(DebugValue::Histogram(durations)) => durations.len(),
            _ => 0,
        }
    };
    assert!(timed("memory", "claim") >= 6);
    // ord_1, ord_slow, and both owners of ord_slow_2 (the stale one's is refused).
    assert_eq!(timed("memory", "complete"), 4);
    assert_eq!(timed("memory", "release"), 1);
    assert_eq!(timed("custom", "claim"), 2, "one claim and its retry");
}

#[test]
fn events_are_counted_by_type_and_class_and_no_label_comes_from_the_request() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let service = ServiceBuilder::new().layer(layer()).service(dispatch());
        let send = |body: String| {
            run(service.clone().oneshot(signed_text(body)))
                .unwrap()
                .status()
        };
        let items = r#"{"player_id":"p1","items":[]}"#;
        assert_eq!(send(keyed("item.add", items, "k_1")), StatusCode::OK);
        assert_eq!(
            send(keyed("item.add", items, "ord_fail")),
            StatusCode::BAD_REQUEST
        );
        // Request-made names: an unknown type, an analytics event, junk.
        assert_eq!(
            send(keyed("x.attacker_chosen_type", "{}", "k_2")),
            StatusCode::BAD_REQUEST
        );
        send(keyed("analytics.hub.anything_at_all", "{}", "k_3"));
        assert_eq!(send("not json".to_owned()), StatusCode::BAD_REQUEST);
    });

    let values = read(&snapshotter);
    let events = "aghanim_webhook_events_total";
    let count = |event_type, class| {
        counter(
            &values,
            events,
            &[("class", class), ("event_type", event_type)],
        )
    };
    assert_eq!(count("item.add", "2xx"), 1);
    assert_eq!(count("item.add", "4xx"), 1);
    assert_eq!(count("other", "4xx"), 3);

    let documented: HashSet<&str> = aghanim_webhook::events::EventType::DOCUMENTED
        .iter()
        .map(|event_type| event_type.as_str())
        .collect();
    let outcomes: HashSet<&str> = RejectionKind::ALL
        .iter()
        .map(RejectionKind::as_str)
        .chain(["verified"])
        .collect();
    for (name, labels) in values.keys() {
        for (label, value) in labels {
            let bounded = match label.as_str() {
                "event_type" => value == "other" || documented.contains(value.as_str()),
                "class" => ["2xx", "4xx", "5xx", "other"].contains(&value.as_str()),
                "outcome" => outcomes.contains(value.as_str()),
                "reason" => ["validation_error", "unknown_event_type", "misconfigured"]
                    .contains(&value.as_str()),
                _ => false,
            };
            assert!(bounded, "{name}: {label}={value} is not from a bounded set");
        }
    }
}

#[test]
fn dispatch_refusals_are_counted_by_reason_and_event_type() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let service = ServiceBuilder::new().layer(layer()).service(dispatch());
        let send = |body: String| {
            run(service.clone().oneshot(signed_text(body)))
                .unwrap()
                .status()
        };
        let quantity_as_text = r#"{"player_id":"p1","items":[{"sku":"gems","quantity":"2"}]}"#;
        assert_eq!(
            send(keyed("item.add", quantity_as_text, "k_1")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send(keyed("order.paid", r#"{"id":"ord_1"}"#, "k_2")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(send("not json".to_owned()), StatusCode::BAD_REQUEST);
        // The handler's own refusal is its answer, not one of Dispatch's.
        assert_eq!(
            send(keyed(
                "item.add",
                r#"{"player_id":"p1","items":[]}"#,
                "ord_fail"
            )),
            StatusCode::BAD_REQUEST
        );
        let unverified = Request::post("/webhook")
            .body(Full::<Bytes>::from(keyed("item.add", "{}", "k_3")))
            .unwrap();
        let status = run(dispatch().oneshot(unverified)).unwrap().status();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    });

    let values = read(&snapshotter);
    let refusals = |reason, event_type| {
        counter(
            &values,
            "aghanim_webhook_dispatch_refusals_total",
            &[("event_type", event_type), ("reason", reason)],
        )
    };
    assert_eq!(refusals("validation_error", "item.add"), 1);
    assert_eq!(refusals("validation_error", "other"), 1);
    assert_eq!(refusals("unknown_event_type", "order.paid"), 1);
    assert_eq!(refusals("misconfigured", "other"), 1);
    let total: u64 = values
        .iter()
        .filter(|((name, _), _)| name == "aghanim_webhook_dispatch_refusals_total")
        .map(|(_, value)| match value {
            DebugValue::Counter(count) => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 4, "the handler's own 400 is not Dispatch's refusal");
}
