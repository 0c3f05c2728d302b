//! What the layer benchmarks share (`benches/layer.rs` and `peer-bench/` include this
//! file): a signed request whose body arrives in equal frames, and the echo service
//! behind the layer.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use aghanim_webhook::sign_headers;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};

pub const SECRET: &str = "whsec_benchmark_secret";
pub const TIMESTAMP: u64 = 1_700_000_000;

/// The body in equal frames, with its exact size, ending with `is_end_stream()` true:
/// `tower-github-webhook` asks `is_end_stream()` before every poll and spins forever on
/// a body that never says it has ended.
pub struct Frames(VecDeque<Bytes>, u64);

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

/// `body` in `count` equal frames.
pub fn frames(body: &Bytes, count: usize) -> Frames {
    let size = body.len() / count;
    let chunks = (0..count)
        .map(|i| body.slice(i * size..(i + 1) * size))
        .collect();
    Frames(chunks, body.len() as u64)
}

/// A POST of `body` in `count` frames, signed for this crate's layer.
pub fn signed(body: &Bytes, count: usize) -> Request<Frames> {
    let mut request = Request::post("/webhook").body(frames(body, count)).unwrap();
    sign_headers(request.headers_mut(), SECRET, TIMESTAMP, body);
    request
}

/// Collects the body and answers it back.
pub async fn echo<B: Body<Data = Bytes>>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, B::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}
