//! A full stack driven with `oneshot` (the layer around an echo service) against the same
//! echo behind nothing but body collection: what the layer adds beyond reading the body
//! and the HMAC pass. `scripts/bench-ratios.py` prints the overheads.

use std::hint::black_box;

use aghanim_webhook::AghanimSignatureLayer;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tower::{service_fn, Layer, ServiceExt};

#[path = "../tests/common/executor.rs"]
mod executor;
use executor::run;

#[path = "../tests/common/bench_stack.rs"]
mod stack;
use stack::{echo, signed as request, SECRET, TIMESTAMP};

fn layer(c: &mut Criterion) {
    let verified = AghanimSignatureLayer::new(SECRET)
        .clock(|| TIMESTAMP)
        .layer(service_fn(echo));
    let collected = service_fn(echo);

    // Each response is dropped inside the measured routine, as a server frees it before
    // its next request (and as `peer-bench` does): kept alive by criterion for a whole
    // batch, the responses left the figures to the allocator's trimming.

    for (size, name) in [(1024, "1KiB"), (64 * 1024, "64KiB")] {
        let body = Bytes::from(vec![b'x'; size]);
        for frames in [1, 16] {
            let mut group = c.benchmark_group(format!("layer/{name}/{frames}-frames"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("collect", |b| {
                b.iter_batched(
                    || request(&body, frames),
                    |request| drop(black_box(run(collected.oneshot(black_box(request))))),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function("layer", |b| {
                b.iter_batched(
                    || request(&body, frames),
                    |request| drop(black_box(run(verified.clone().oneshot(black_box(request))))),
                    BatchSize::SmallInput,
                )
            });
            group.finish();
        }
    }
}

criterion_group!(benches, layer);
criterion_main!(benches);
