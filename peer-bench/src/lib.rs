//! What the peer benchmark and the profile binary share: the signed requests for both
//! layers, a body in frames, a runtime-free poll loop and the echo service.

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Request};
use sha2::Sha256;

#[path = "../../tests/common/executor.rs"]
mod executor;
pub use executor::run;

#[path = "../../tests/common/bench_stack.rs"]
mod stack;
pub use stack::{echo, frames, signed as ours, Frames, SECRET, TIMESTAMP};

/// The same request signed as `tower-github-webhook` expects: `x-hub-signature-256`,
/// an HMAC-SHA256 of the body alone.
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
