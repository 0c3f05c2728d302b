//! What the idempotency layer costs per request, on the memory store, on a private
//! `redis-server` and on a private PostgreSQL, both over a unix socket: a first delivery
//! (claim, handler, record) and a replayed duplicate (one call answering with the
//! record), against the same signed stack without the layer. Each request is a signed 1 KiB-class `item.add`;
//! signing happens outside the timed part.
//!
//! ```text
//! cargo bench --bench idempotency
//! ```

// The tests' private servers; the benchmark uses only what starts one.
#[path = "../tests/common/servers/mod.rs"]
#[allow(dead_code)]
mod servers;

use servers::{postgres_server, redis_server};

use std::{
    convert::Infallible,
    sync::atomic::{AtomicU64, Ordering},
};

use aghanim_webhook::{
    body::BufferedBody,
    idempotency::{IdempotencyLayer, MemoryStore, PostgresStore, RedisStore},
    sign_headers, AghanimSignatureLayer,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::runtime::Runtime;
use tower::{util::BoxCloneService, ServiceBuilder, ServiceExt};

const SECRET: &str = "whsec_benchmark_secret";
const NOW: u64 = 1_700_000_000;

type Stack = BoxCloneService<Request<Full<Bytes>>, Response<Bytes>, Infallible>;

fn delivery(key: u64) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"event_id":"whevt_{key}","game_id":"gm_bench","event_type":"item.add","event_time":{NOW},"idempotency_key":"ord_{key}","sandbox":false,"event_data":{{"player_id":"testplayer","reason":"Order paid ord_{key}","items":[{{"id":"itm_1","sku":"gems_100","name":"100 gems","quantity":1,"price":199,"currency":"USD","type":"item"}}]}}}}"#
    );
    let mut request = Request::post("/webhook")
        .body(Full::from(body.clone()))
        .unwrap();
    sign_headers(request.headers_mut(), SECRET, NOW, &body);
    request
}

async fn acknowledge(_request: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from(r#"{"status":"ok"}"#)))
}

/// The whole answer, read as a client would.
async fn collect<B: http_body::Body<Data = Bytes>>(
    response: Response<B>,
) -> Result<Response<Bytes>, Infallible> {
    let (parts, body) = response.into_parts();
    let bytes = BodyExt::collect(body).await.map(|body| body.to_bytes());
    Ok(Response::from_parts(parts, bytes.unwrap_or_default()))
}

/// The signed stack, with `idempotency` between the signature layer and the handler.
fn stack(idempotency: Option<IdempotencyLayer>) -> Stack {
    let signature = AghanimSignatureLayer::new(SECRET).clock(|| NOW);
    match idempotency {
        Some(idempotency) => BoxCloneService::new(
            ServiceBuilder::new()
                .and_then(collect)
                .layer(signature)
                .layer(idempotency)
                .service_fn(acknowledge),
        ),
        None => BoxCloneService::new(
            ServiceBuilder::new()
                .and_then(collect)
                .layer(signature)
                .service_fn(acknowledge),
        ),
    }
}

fn bench_stack(c: &mut Criterion, runtime: &Runtime, name: &str, stack: &Stack) {
    static KEYS: AtomicU64 = AtomicU64::new(0);
    let mut group = c.benchmark_group(name);
    group.bench_function("first delivery", |b| {
        b.iter_batched(
            || delivery(KEYS.fetch_add(1, Ordering::Relaxed)),
            |request| runtime.block_on(stack.clone().oneshot(request)),
            BatchSize::SmallInput,
        );
    });
    let replayed = KEYS.fetch_add(1, Ordering::Relaxed);
    runtime
        .block_on(stack.clone().oneshot(delivery(replayed)))
        .unwrap();
    group.bench_function("duplicate", |b| {
        b.iter_batched(
            || delivery(replayed),
            |request| runtime.block_on(stack.clone().oneshot(request)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn idempotency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_stack(c, &runtime, "without the layer", &stack(None));
    let memory = IdempotencyLayer::new(MemoryStore::new());
    bench_stack(c, &runtime, "memory store", &stack(Some(memory)));
    match redis_server::RedisServer::start() {
        Some(server) => {
            let store: RedisStore = runtime
                .block_on(RedisStore::connect(&server.url()))
                .unwrap();
            let layer = IdempotencyLayer::new(store);
            bench_stack(c, &runtime, "redis store", &stack(Some(layer)));
            drop(server);
        }
        None => eprintln!("no redis-server: the Redis store is not measured"),
    }
    match postgres_server::PostgresServer::start() {
        Some(server) => {
            // A pool that does not ping each connection it hands out, so that only the
            // store's own round trips are measured.
            let pool = runtime
                .block_on(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(4)
                        .test_before_acquire(false)
                        .connect(&server.url()),
                )
                .unwrap();
            let store = PostgresStore::new(pool);
            runtime.block_on(store.migrate()).unwrap();
            let layer = IdempotencyLayer::transactional(store);
            bench_stack(c, &runtime, "postgres store", &stack(Some(layer)));
            drop(server);
        }
        None => eprintln!("no PostgreSQL: the PostgreSQL store is not measured"),
    }
}

criterion_group!(benches, idempotency);
criterion_main!(benches);
