//! What the peer benchmark and the profile binary share: the signed requests for both
//! layers, a body in frames, a runtime-free poll loop and the echo service.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use aghanim_webhook::sign_headers;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;

#[path = "../../tests/common/executor.rs"]
mod executor;
pub use executor::run;

pub const SECRET: &str = "whsec_benchmark_secret";
pub const TIMESTAMP: u64 = 1_700_000_000;

/// The body in equal frames, ending with `is_end_stream()` true: `tower-github-webhook`
/// asks `is_end_stream()` before every poll and spins forever on a body that never says
/// it has ended.
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

pub fn frames(body: &Bytes, count: usize) -> Frames {
    let size = body.len() / count;
    let chunks = (0..count)
        .map(|i| body.slice(i * size..(i + 1) * size))
        .collect();
    Frames(chunks, body.len() as u64)
}

pub fn ours(body: &Bytes, count: usize) -> Request<Frames> {
    let mut request = Request::post("/webhook").body(frames(body, count)).unwrap();
    sign_headers(request.headers_mut(), SECRET, TIMESTAMP, body);
    request
}

pub fn github(body: &Bytes, count: usize) -> Request<Frames> {
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

pub async fn echo<B: Body<Data = Bytes>>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, B::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}
