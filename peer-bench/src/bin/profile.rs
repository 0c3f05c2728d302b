//! One case of the layer benchmark, many times, for `valgrind --tool=callgrind`:
//!
//! ```text
//! cargo build --release --bin profile
//! valgrind --tool=callgrind target/release/profile aghanim 1024 16 10000
//! ```

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::{pin, Pin},
    task::{Context, Poll, Waker},
};

use aghanim_webhook::{sign_headers, AghanimSignatureLayer};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Request, Response};
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
    for _ in 0..5 {
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
        eprintln!(
            "{which}: {:.0} ns per request",
            started.elapsed().as_nanos() as f64 / iterations as f64
        );
    }
}
