//! The layer fed arbitrary frames, headers and declared lengths. Never panics, answers
//! only 200, 400, 403 or 413, and passes on exactly the bytes that were signed.
#![no_main]

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use aghanim_webhook::{body::BufferedBody, sign, AghanimSignatureLayer, VerifiedBody};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, Layer, ServiceExt};

#[path = "../../tests/common/executor.rs"]
mod executor;
use executor::run;

const SECRET: &str = "fuzz-secret";
const NOW: u64 = 1_700_000_000;

struct Frames(VecDeque<Result<Bytes, ()>>);

#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream failed")
    }
}

impl std::error::Error for Failed {}

impl Body for Frames {
    type Data = Bytes;
    type Error = Failed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failed>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|frame| frame.map(Frame::data).map_err(|()| Failed)),
        )
    }
}

fuzz_target!(|input: &[u8]| {
    let [mode, timestamp_len, signature_len, limit, rest @ ..] = input else {
        return;
    };
    let (timestamp, rest) = rest.split_at(rest.len().min(usize::from(*timestamp_len) % 32));
    let (signature, rest) = rest.split_at(rest.len().min(usize::from(*signature_len)));

    // The rest is the body, cut into frames at the bytes marked as cuts by `mode`.
    let mut frames = VecDeque::new();
    let mut body = Vec::new();
    for chunk in rest.split(|&byte| byte == *mode) {
        body.extend_from_slice(chunk);
        frames.push_back(Ok(Bytes::copy_from_slice(chunk)));
    }
    if mode & 0x80 != 0 {
        frames.push_back(Err(()));
    }

    let limit = usize::from(*limit) * 4;
    // A budget below the limit half the time, so that its refusals are reached too.
    let budget = if mode & 0x40 != 0 { limit / 2 } else { limit };
    let layer = AghanimSignatureLayer::new(SECRET)
        .clock(|| NOW)
        .body_limit(limit)
        .buffer_budget(budget);
    let expected = body.clone();
    let service = layer.layer(service_fn(move |request: Request<BufferedBody>| {
        let verified = request.extensions().get::<VerifiedBody>().cloned();
        assert_eq!(verified.as_deref(), Some(&expected[..]));
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    }));

    let mut request = Request::post("/").body(Frames(frames)).unwrap();
    let headers = request.headers_mut();
    let correct = sign(SECRET, NOW, &body);
    let (timestamp, signature) = if mode & 1 == 1 {
        (NOW.to_string().into_bytes(), correct.clone().into_bytes())
    } else {
        (timestamp.to_vec(), signature.to_vec())
    };
    if let Ok(value) = HeaderValue::from_bytes(&timestamp) {
        headers.insert("x-aghanim-signature-timestamp", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(&signature) {
        headers.insert("x-aghanim-signature", value);
    }
    if mode & 2 == 2 {
        // A declared length, honest or not.
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(u64::from(mode >> 2) * 16),
        );
    }

    let response = run(service.oneshot(request)).unwrap();
    let status = response.status().as_u16();
    assert!(matches!(status, 200 | 400 | 403 | 413 | 503), "{status}");
    if status == 200 {
        assert!(body.len() <= limit);
        assert!(signature.eq_ignore_ascii_case(correct.as_bytes()));
    }
});
