//! A full stack driven with `oneshot` (the layer around an echo service) against the same
//! echo behind nothing but body collection: what the layer adds beyond reading the body
//! and the HMAC pass. `scripts/bench-ratios.py` prints the overheads.

use std::{
    collections::VecDeque,
    convert::Infallible,
    hint::black_box,
    pin::Pin,
    task::{Context, Poll},
};

use aghanim_webhook::{sign_headers, AghanimSignatureLayer};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};

#[path = "../tests/common/executor.rs"]
mod executor;
use executor::run;

const SECRET: &str = "whsec_benchmark_secret";
const TIMESTAMP: u64 = 1_700_000_000;

/// The body in `frames` equal frames, as a client streaming it would send it.
struct Frames(VecDeque<Bytes>, u64);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.1)
    }
}

fn request(body: &Bytes, frames: usize) -> Request<Frames> {
    let size = body.len() / frames;
    let chunks = (0..frames)
        .map(|i| body.slice(i * size..(i + 1) * size))
        .collect();
    let mut request = Request::post("/webhook")
        .body(Frames(chunks, body.len() as u64))
        .unwrap();
    sign_headers(request.headers_mut(), SECRET, TIMESTAMP, body);
    request
}

async fn echo<B: Body<Data = Bytes>>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, B::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}

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
