//! One case of the layer benchmark, many times, for `valgrind --tool=callgrind`:
//!
//! ```text
//! cargo build --release --bin profile
//! valgrind --tool=callgrind target/release/profile aghanim 1024 16 10000
//! target/release/profile peer 1024 16 100000     # ns per request, five rounds
//! target/release/profile sizes 1024 1 1          # the two futures' sizes
//! target/release/profile ratio 1024 16 41         # ours / peer, alternating blocks
//! ```

use std::hint::black_box;

use aghanim_webhook::AghanimSignatureLayer;
use aghanim_webhook_peer_bench::{echo, frames, github, ours, run, SECRET, TIMESTAMP};
use bytes::Bytes;
use http::Request;
use tower::{service_fn, Layer, ServiceExt};
use tower_github_webhook::ValidateGitHubWebhookLayer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, size, count, iterations) = (
        args[1].as_str(),
        args[2].parse::<usize>().unwrap(),
        args[3].parse::<usize>().unwrap(),
        args[4].parse::<usize>().unwrap(),
    );
    let body = Bytes::from(vec![b'x'; size]);
    let aghanim = AghanimSignatureLayer::new(SECRET)
        .clock(|| TIMESTAMP)
        .layer(service_fn(echo));
    let peer = ValidateGitHubWebhookLayer::new(SECRET).layer(service_fn(echo));
    if which == "sizes" {
        let ours_future = aghanim.clone().oneshot(ours(&body, count));
        let peer_future = peer.clone().oneshot(github(&body, count));
        println!(
            "oneshot future: ours {} bytes, peer {} bytes",
            std::mem::size_of_val(&ours_future),
            std::mem::size_of_val(&peer_future)
        );
        return;
    }
    // One block of `iterations` requests through one layer: ns per request.
    let measure = |which: &str, iterations: usize| {
        let template = match which {
            "aghanim" => ours(&body, count),
            _ => github(&body, count),
        };
        let headers = template.headers().clone();
        let started = std::time::Instant::now();
        for _ in 0..iterations {
            let mut request = Request::post("/webhook")
                .body(frames(&body, count))
                .unwrap();
            *request.headers_mut() = headers.clone();
            let response = match which {
                "aghanim" => run(aghanim.clone().oneshot(black_box(request))).map(|r| r.status()),
                _ => run(peer.clone().oneshot(black_box(request))).map(|r| r.status()),
            };
            assert_eq!(response.unwrap(), 200);
        }
        started.elapsed().as_nanos() as f64 / iterations as f64
    };
    if which == "ratio" {
        // Blocks of the two layers alternate, so that the machine's drift reaches both
        // alike; each round gives one ratio, and the median of the rounds is reported.
        let block = 20_000;
        let mut rounds: Vec<(f64, f64)> = (0..iterations)
            .map(|round| {
                if round % 2 == 0 {
                    let ours = measure("aghanim", block);
                    (ours, measure("peer", block))
                } else {
                    let peer = measure("peer", block);
                    (measure("aghanim", block), peer)
                }
            })
            .collect();
        rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let ratios: Vec<f64> = rounds.iter().map(|(ours, peer)| ours / peer).collect();
        let (ours, peer) = rounds[rounds.len() / 2];
        println!(
            "{size} B in {count} frame(s): ours / peer median {:.3} (min {:.3}, max {:.3}) over {} rounds of {block}; median round {ours:.0} / {peer:.0} ns",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            ratios.len(),
        );
        return;
    }
    for _ in 0..5 {
        eprintln!("{which}: {:.0} ns per request", measure(which, iterations));
    }
}
