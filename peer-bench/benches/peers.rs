//! aghanim-webhook against the closest published peers, in one run on one machine.
//!
//! ```text
//! cd peer-bench && cargo bench
//! ```
//!
//! - `layer/*`: a verified request through `AghanimSignatureLayer`, through
//!   `tower-github-webhook` 0.2 (the only other published buffering HMAC-SHA256 tower
//!   middleware) and through nothing but a body collect, around the same echo service,
//!   polled without a runtime; 1 KiB and 64 KiB bodies in 1 and 16 frames.
//! - `verify/*`: `Verifier::verify` against `standardwebhooks::Webhook::verify` and
//!   against Aghanim's template recipe written literally in Rust (`format!` of the
//!   message, a key per call, a hex string compare), at 256 B, 1 KiB and 64 KiB.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::{pin, Pin},
    task::{Context, Poll, Waker},
};

use aghanim_webhook::{sign, sign_headers, AghanimSignatureLayer, Secret, Verifier};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;
use tower::{service_fn, Layer, ServiceExt};
use tower_github_webhook::ValidateGitHubWebhookLayer;

const SECRET: &str = "whsec_benchmark_secret";
const TIMESTAMP: u64 = 1_700_000_000;

/// The body in equal frames, ending with `is_end_stream()` true: `tower-github-webhook`
/// asks `is_end_stream()` before every poll and spins forever on a body that never says
/// it has ended.
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

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.1)
    }
}

fn frames(body: &Bytes, count: usize) -> Frames {
    let size = body.len() / count;
    let chunks = (0..count)
        .map(|i| body.slice(i * size..(i + 1) * size))
        .collect();
    Frames(chunks, body.len() as u64)
}

fn ours(body: &Bytes, count: usize) -> Request<Frames> {
    let mut request = Request::post("/webhook").body(frames(body, count)).unwrap();
    sign_headers(request.headers_mut(), SECRET, TIMESTAMP, body);
    request
}

fn github(body: &Bytes, count: usize) -> Request<Frames> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut request = Request::post("/webhook").body(frames(body, count)).unwrap();
    request.headers_mut().insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&signature).unwrap(),
    );
    request
}

/// Polls `future` to completion; nothing here waits, so no runtime is measured. The
/// peer wakes itself between states, which this loop absorbs.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

async fn echo<B: Body<Data = Bytes>>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, B::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}

fn layers(c: &mut Criterion) {
    let aghanim = AghanimSignatureLayer::new(SECRET)
        .clock(|| TIMESTAMP)
        .layer(service_fn(echo));
    let peer = ValidateGitHubWebhookLayer::new(SECRET).layer(service_fn(echo));
    let collect = service_fn(echo);

    for (size, name) in [(1024, "1KiB"), (64 * 1024, "64KiB")] {
        let body = Bytes::from(vec![b'x'; size]);
        for count in [1, 16] {
            let mut group = c.benchmark_group(format!("layer/{name}/{count}-frames"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("collect", |b| {
                b.iter_batched(
                    || ours(&body, count),
                    |request| run(collect.oneshot(black_box(request))),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function("aghanim-webhook", |b| {
                b.iter_batched(
                    || ours(&body, count),
                    |request| run(aghanim.clone().oneshot(black_box(request))),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function("tower-github-webhook", |b| {
                b.iter_batched(
                    || github(&body, count),
                    |request| run(peer.clone().oneshot(black_box(request))),
                    BatchSize::SmallInput,
                )
            });
            group.finish();
        }
    }
}

/// Aghanim's Python template, line for line in Rust: the message built as a string, the
/// key set up on every call, the expected tag as a hex string, compared in constant time
/// as `hmac.compare_digest` does.
fn template_verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let message = format!("{timestamp}.{}", String::from_utf8_lossy(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn verifiers(c: &mut Criterion) {
    let verifier = Verifier::new(Secret::new(SECRET).unwrap());
    let timestamp = TIMESTAMP.to_string();
    let standard =
        standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();

    for (size, name) in [(256, "256B"), (1024, "1KiB"), (64 * 1024, "64KiB")] {
        let body = vec![b'x'; size];
        let signature = sign(SECRET, TIMESTAMP, &body);
        // Standard Webhooks checks the timestamp against the real clock: sign with now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let standard_signature = standard.sign("msg_bench", now, &body).unwrap();
        let mut standard_headers = HeaderMap::new();
        standard_headers.insert("webhook-id", HeaderValue::from_static("msg_bench"));
        standard_headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        standard_headers.insert("webhook-signature", standard_signature.parse().unwrap());
        assert!(standard.verify(&body, &standard_headers).is_ok());
        assert!(template_verify(SECRET, &timestamp, &body, &signature));

        let mut group = c.benchmark_group(format!("verify/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("aghanim-webhook", |b| {
            b.iter(|| {
                verifier.verify(
                    black_box(timestamp.as_bytes()),
                    black_box(signature.as_bytes()),
                    black_box(&body),
                    TIMESTAMP,
                )
            })
        });
        group.bench_function("standardwebhooks", |b| {
            b.iter(|| standard.verify(black_box(&body), black_box(&standard_headers)))
        });
        group.bench_function("template-recipe", |b| {
            b.iter(|| {
                template_verify(
                    SECRET,
                    black_box(&timestamp),
                    black_box(&body),
                    black_box(&signature),
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, layers, verifiers);
criterion_main!(benches);
