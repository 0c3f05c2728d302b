//! One case of the layer benchmark, many times, for a profiler or for a quick ratio:
//!
//! ```text
//! cargo build --release --bin profile
//! target/release/profile ratio 1024 16 101        # ours / peer, alternating blocks
//! target/release/profile ratio 1024 16 15 5000    # the same with colder requests
//! target/release/profile aghanim 1024 16 100000   # ns per request, five rounds
//! target/release/profile sizes 1024 1 1           # the two futures' sizes
//! target/release/profile headers 1024 1 2000000   # Verifier::begin_headers alone
//! valgrind --tool=callgrind --toggle-collect='*through_aghanim*' \
//!     target/release/profile aghanim 1024 16 2000 # instructions in the layer's path
//! ```
//!
//! Requests are built in batches before the clock starts, as criterion's `iter_batched`
//! does, so only the layer, the echo service and the drops are timed.

use std::{hint::black_box, time::Instant};

use aghanim_webhook::{sign, AghanimSignatureLayer, Secret, Verifier};
use aghanim_webhook_peer_bench::{echo, github, ours, run, Frames, SECRET, TIMESTAMP};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{Request, Response, StatusCode};
use sha2::Sha256;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_github_webhook::ValidateGitHubWebhookLayer;

/// Requests built before the clock starts, unless a fifth argument says otherwise.
/// Criterion's `iter_batched` with `SmallInput` builds up to a tenth of a sample's
/// iterations at once, thousands here: a larger batch leaves the requests colder, as
/// in its largest samples.
const DEFAULT_BATCH: usize = 500;

/// Requests per block in `ratio` (at least a batch): small blocks alternate often, so
/// that the machine's drift reaches both layers alike.
const BLOCK: usize = 2_000;

fn status<S, B>(service: &S, request: Request<Frames>) -> StatusCode
where
    S: Service<Request<Frames>, Response = Response<B>> + Clone,
{
    run(service.clone().oneshot(request)).map_or(StatusCode::INTERNAL_SERVER_ERROR, |r| r.status())
}

// One function per path, never inlined, so that a profiler can select a path by name.
#[inline(never)]
fn through_aghanim<S, B>(service: &S, request: Request<Frames>) -> StatusCode
where
    S: Service<Request<Frames>, Response = Response<B>> + Clone,
{
    status(service, request)
}

#[inline(never)]
fn through_peer<S, B>(service: &S, request: Request<Frames>) -> StatusCode
where
    S: Service<Request<Frames>, Response = Response<B>> + Clone,
{
    status(service, request)
}

#[inline(never)]
fn through_collect<S, B>(service: &S, request: Request<Frames>) -> StatusCode
where
    S: Service<Request<Frames>, Response = Response<B>> + Clone,
{
    status(service, request)
}

/// The physical floor of the check: HMAC-SHA256 from a keyed state over the timestamp,
/// the dot and the contiguous body, compared in constant time; ns per request.
fn hmac_floor(body: &[u8], iterations: usize) -> f64 {
    let keyed = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    let timestamp = TIMESTAMP.to_string();
    let signature = hex::decode(sign(SECRET, TIMESTAMP, body)).unwrap();
    let started = Instant::now();
    for _ in 0..iterations {
        let mut mac = keyed.clone();
        mac.update(black_box(timestamp.as_bytes()));
        mac.update(b".");
        mac.update(black_box(body));
        assert!(mac.verify_slice(black_box(&signature)).is_ok());
    }
    started.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, size, count, iterations) = (
        args[1].as_str(),
        args[2].parse::<usize>().unwrap(),
        args[3].parse::<usize>().unwrap(),
        args[4].parse::<usize>().unwrap(),
    );
    let batch_size = args
        .get(5)
        .map_or(DEFAULT_BATCH, |batch| batch.parse().unwrap());
    let body = Bytes::from(vec![b'x'; size]);
    let aghanim = AghanimSignatureLayer::new(SECRET)
        .clock(|| TIMESTAMP)
        .layer(service_fn(echo));
    let peer = ValidateGitHubWebhookLayer::new(SECRET).layer(service_fn(echo));
    let collect = service_fn(echo);
    if which == "headers" {
        // `Verifier::begin_headers` on the two signature headers alone and among the ten
        // a webhook arrives with behind a proxy.
        let verifier = Verifier::new(Secret::new(SECRET).unwrap());
        let signed = ours(&body, count).headers().clone();
        let mut proxied = http::HeaderMap::new();
        for (name, value) in [
            ("host", "game.example"),
            ("user-agent", "aghanim-webhooks/1.0"),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("accept", "*/*"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ] {
            proxied.insert(name, value.parse().unwrap());
        }
        proxied.extend(signed.clone());
        for (label, headers) in [("2 headers", &signed), ("10 headers", &proxied)] {
            let best = (0..5)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        black_box(verifier.begin_headers(black_box(headers)).is_ok());
                    }
                    started.elapsed().as_nanos() as f64 / iterations as f64
                })
                .fold(f64::MAX, f64::min);
            println!("Verifier::begin_headers, {label}: {best:.1} ns");
        }
        return;
    }
    if which == "sizes" {
        let ours_future = aghanim.clone().oneshot(ours(&body, count));
        let peer_future = peer.clone().oneshot(github(&body, count));
        println!(
            "oneshot future: ours {} bytes, peer {} bytes; Verification {} bytes, request parts {} bytes",
            std::mem::size_of_val(&ours_future),
            std::mem::size_of_val(&peer_future),
            std::mem::size_of::<aghanim_webhook::Verification>(),
            std::mem::size_of::<http::request::Parts>(),
        );
        return;
    }
    // ns per request over `iterations` requests through one path.
    let measure = |which: &str, iterations: usize| {
        if which == "hmac" {
            return hmac_floor(&body, iterations);
        }
        let mut elapsed = std::time::Duration::ZERO;
        let mut done = 0;
        while done < iterations {
            let batch: Vec<_> = (0..batch_size.min(iterations - done))
                .map(|_| match which {
                    "peer" => github(&body, count),
                    _ => ours(&body, count),
                })
                .collect();
            done += batch.len();
            let started = Instant::now();
            for request in batch {
                let request = black_box(request);
                let status = match which {
                    "aghanim" => through_aghanim(&aghanim, request),
                    "peer" => through_peer(&peer, request),
                    _ => through_collect(&collect, request),
                };
                assert_eq!(status, StatusCode::OK, "{which}");
            }
            elapsed += started.elapsed();
        }
        elapsed.as_nanos() as f64 / iterations as f64
    };
    if which == "ratio" {
        // Each round times one block of each path, in an order that turns every round;
        // the median of the per-round ratios is reported with its spread.
        let paths = ["aghanim", "peer", "collect", "hmac"];
        let rounds: Vec<[f64; 4]> = (0..iterations)
            .map(|round| {
                let mut times = [0.0; 4];
                for step in 0..paths.len() {
                    let path = (round + step) % paths.len();
                    times[path] = measure(paths[path], BLOCK.max(batch_size));
                }
                times
            })
            .collect();
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            (
                values[values.len() / 2],
                values[0],
                values[values.len() - 1],
            )
        };
        let (ratio, low, high) = median(rounds.iter().map(|t| t[0] / t[1]).collect());
        let (own, _, _) = median(rounds.iter().map(|t| t[0] - t[2] - t[3]).collect());
        let (peer_own, _, _) = median(rounds.iter().map(|t| t[1] - t[2] - t[3]).collect());
        let (ours_ns, _, _) = median(rounds.iter().map(|t| t[0]).collect());
        let (peer_ns, _, _) = median(rounds.iter().map(|t| t[1]).collect());
        // The fastest block of each path: noise only ever adds time.
        let [ours_best, peer_best, collect_best, hmac_best] =
            [0, 1, 2, 3].map(|path| rounds.iter().map(|t| t[path]).fold(f64::MAX, f64::min));
        let (count_of_rounds, block) = (rounds.len(), BLOCK.max(batch_size));
        println!(
            "{size} B in {count} frame(s): ours/peer {ratio:.3} (min {low:.3}, max {high:.3}, {count_of_rounds} rounds of {block}, built {batch_size} at a time); ours {ours_ns:.0} ns, peer {peer_ns:.0} ns; own work ours {own:.0} ns, peer {peer_own:.0} ns; fastest blocks: ours {ours_best:.0}, peer {peer_best:.0}, collect {collect_best:.0}, hmac {hmac_best:.0} ns"
        );
        // The same figures for `ratios.py`.
        println!(
            "json: {{\"size\": {size}, \"frames\": {count}, \"rounds\": {count_of_rounds}, \"block\": {block}, \"batch\": {batch_size}, \"ratio\": {ratio:.4}, \"ratio_min\": {low:.4}, \"ratio_max\": {high:.4}, \"ours\": {ours_ns:.1}, \"peer\": {peer_ns:.1}, \"own\": {own:.1}, \"peer_own\": {peer_own:.1}}}"
        );
        return;
    }
    for _ in 0..5 {
        eprintln!("{which}: {:.0} ns per request", measure(which, iterations));
    }
}
