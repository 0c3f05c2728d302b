//! aghanim-webhook against the closest published peers, in one run on one machine.
//!
//! ```text
//! cd peer-bench && cargo bench && python3 ratios.py --criterion
//! ```
//!
//! Criterion measures one layer after the other; `python3 ratios.py` alternates them
//! (through `src/bin/profile.rs`) and judges the ratios against the goals.
//!
//! - `layer/*`: a verified request through `AghanimSignatureLayer`, through
//!   `tower-github-webhook` 0.2 (the only other published buffering HMAC-SHA256 tower
//!   middleware) and through nothing but a body collect, around the same echo service,
//!   polled without a runtime; 1 KiB and 64 KiB bodies in 1 and 16 frames.
//! - `verify/*`: `Verifier::verify` against `standardwebhooks::Webhook::verify` and
//!   against Aghanim's template recipe written literally in Rust (`format!` of the
//!   message, a key per call, a hex string compare), at 256 B, 1 KiB and 64 KiB.

use std::hint::black_box;

use aghanim_webhook::{sign, AghanimSignatureLayer, Secret, Verifier};
use aghanim_webhook_peer_bench::{echo, github, ours, run, SECRET, TIMESTAMP};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use tower::{service_fn, Layer, ServiceExt};
use tower_github_webhook::ValidateGitHubWebhookLayer;

fn layers(c: &mut Criterion) {
    let aghanim = AghanimSignatureLayer::new(SECRET)
        .clock(|| TIMESTAMP)
        .layer(service_fn(echo));
    let peer = ValidateGitHubWebhookLayer::new(SECRET).layer(service_fn(echo));
    let collect = service_fn(echo);

    // Each response is dropped inside the measured routine, as a server frees it before
    // its next request: kept alive by criterion for a whole batch, the 64 KiB bodies left
    // the figures to the allocator's trimming and page faults (a plain collect moved
    // from 4 to 22 µs between runs).
    for (size, name) in [(1024, "1KiB"), (64 * 1024, "64KiB")] {
        let body = Bytes::from(vec![b'x'; size]);
        for count in [1, 16] {
            let mut group = c.benchmark_group(format!("layer/{name}/{count}-frames"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("collect", |b| {
                b.iter_batched(
                    || ours(&body, count),
                    |request| drop(black_box(run(collect.oneshot(black_box(request))))),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function("aghanim-webhook", |b| {
                b.iter_batched(
                    || ours(&body, count),
                    |request| drop(black_box(run(aghanim.clone().oneshot(black_box(request))))),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function("tower-github-webhook", |b| {
                b.iter_batched(
                    || github(&body, count),
                    |request| drop(black_box(run(peer.clone().oneshot(black_box(request))))),
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
