//! What `Dispatch` costs per event: the signature layer in front of `Dispatch` with a
//! typed `item.add` handler, against the same layer in front of a handler that answers
//! without parsing; the difference is dispatch (envelope, typed data, handler, answer),
//! to compare with `serde_json::from_slice::<Event<ItemChange>>` of the same bytes.
//! `scripts/bench-ratios.py` prints the ratio.
//!
//! ```text
//! cargo bench --bench dispatch
//! ```

use std::{convert::Infallible, hint::black_box};

use aghanim_webhook::{
    body::BufferedBody,
    dispatch::Dispatch,
    events::{Ack, Event, EventType, ItemChange},
    sign_headers, AghanimSignatureLayer,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};

#[path = "../tests/common/executor.rs"]
mod executor;
use executor::run;

const SECRET: &str = "whsec_benchmark_secret";
const TIMESTAMP: u64 = 1_700_000_000;

/// A realistic `item.add` of about 1 KiB, as Aghanim documents it.
fn body() -> Bytes {
    let item = r#"{"id":"itm_eSeXmERbUGh","name":"100 gems","description":"A pouch of gems for the hub store","sku":"gems_100","quantity":1,"price":199,"price_decimal":1.99,"currency":"USD","type":"item","nested_items":null,"image_url":"https://cdn.example/gems_100.png"}"#;
    let items = [item; 3].join(",");
    Bytes::from(format!(
        r#"{{"event_id":"whevt_eSeXmERbUGh","game_id":"gm_exoqPsmvqRu","event_type":"item.add","event_time":{TIMESTAMP},"event_data":{{"player_id":"testplayer","reason":"Order paid ord_eSeXmERbUGh","items":[{items}]}},"idempotency_key":"ord_eSeXmERbUGh","request_id":null,"sandbox":false,"trigger":null,"transaction_id":"whtx_eSeXmERbUGh","context":{{"player":{{"level":42,"country":"DE"}},"attribution":{{"campaign":"winter"}}}}}}"#
    ))
}

/// The body `scripts/load-compare.py` sends: 1 KiB, one item, padded with a long `reason`.
fn load_body() -> Bytes {
    let envelope = |reason: &str| {
        format!(
            r#"{{"event_id":"whevt_load","game_id":"gm_load","event_type":"item.add","event_time":{TIMESTAMP},"event_data":{{"player_id":"testplayer","items":[{{"sku":"gems_100","quantity":1,"price":199,"currency":"USD"}}],"reason":"{reason}"}},"idempotency_key":"ord_load","request_id":null,"sandbox":false,"trigger":null,"transaction_id":"whtx_load","context":null}}"#
        )
    };
    let padding = "x".repeat(1024 - envelope("").len());
    Bytes::from(envelope(&padding))
}

fn request(body: &Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhook")
        .body(Full::new(body.clone()))
        .unwrap();
    sign_headers(request.headers_mut(), SECRET, TIMESTAMP, body);
    request
}

async fn credit(event: Event<ItemChange>) -> Ack {
    black_box(&event.event_data.items);
    Ack
}

async fn answer_unparsed(
    _request: Request<BufferedBody>,
) -> Result<Response<BufferedBody>, Infallible> {
    let answer = Bytes::from_static(br#"{"status":"ok"}"#);
    Ok(Response::new(BufferedBody::from(answer)))
}

fn dispatch(c: &mut Criterion) {
    let layer = AghanimSignatureLayer::new(SECRET).clock(|| TIMESTAMP);
    let dispatched = layer
        .clone()
        .layer(Dispatch::new().on(EventType::ItemAdd, credit));
    let undispatched = layer.layer(service_fn(answer_unparsed));

    for (name, body) in [("documented", body()), ("load", load_body())] {
        let mut group = c.benchmark_group(format!("dispatch/{name}-{}B", body.len()));
        group.bench_function("serde_json", |b| {
            b.iter(|| serde_json::from_slice::<Event<ItemChange>>(black_box(&body)).unwrap())
        });
        group.bench_function("layer", |b| {
            b.iter_batched(
                || request(&body),
                |request| run(undispatched.clone().oneshot(black_box(request))),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("layer+dispatch", |b| {
            b.iter_batched(
                || request(&body),
                |request| run(dispatched.clone().oneshot(black_box(request))),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
