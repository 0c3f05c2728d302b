//! The verification core against its floor: one HMAC-SHA256 pass over
//! `"{timestamp}.{body}"` from a keyed state prepared once, plus the constant-time
//! 32-byte compare. `scripts/bench-ratios.py` prints each size's ratio.

use std::hint::black_box;

use aghanim_webhook::{sign, Secret, Verifier};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &str = "whsec_benchmark_secret";
const TIMESTAMP: u64 = 1_700_000_000;
const SIZES: [(usize, &str); 5] = [
    (256, "256B"),
    (1024, "1KiB"),
    (4096, "4KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];

fn verify(c: &mut Criterion) {
    let keyed = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    let verifier = Verifier::new(Secret::new(SECRET).unwrap());
    let timestamp = TIMESTAMP.to_string();

    for (size, name) in SIZES {
        let body = vec![b'x'; size];
        let signature = sign(SECRET, TIMESTAMP, &body);
        let tag = hex::decode(&signature).unwrap();

        let mut group = c.benchmark_group(format!("verify/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("floor", |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(timestamp.as_bytes()));
                mac.update(b".");
                mac.update(black_box(&body));
                mac.verify_slice(black_box(&tag)).is_ok()
            })
        });
        group.bench_function("verifier", |b| {
            b.iter(|| {
                verifier.verify(
                    black_box(timestamp.as_bytes()),
                    black_box(signature.as_bytes()),
                    black_box(&body),
                    TIMESTAMP,
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
