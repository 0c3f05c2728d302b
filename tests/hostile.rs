//! Faults around the layer: inner services that are not always ready, bodies that stall,
//! and secrets that must never show in any output.

mod common;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use aghanim_webhook::{
    body::BufferedBody, sign, AghanimSignatureLayer, Rejection, Secret, Verifier,
};
use bytes::Bytes;
use common::{layer, signed, signed_with, NOW};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{limit::ConcurrencyLimitLayer, service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::timeout::TimeoutLayer;

const EVENT: &str = r#"{"event_type":"item.add"}"#;

#[tokio::test]
async fn contended_inner_service_is_only_called_when_ready() {
    // `ConcurrencyLimit` panics when called without a permit from `poll_ready`, so a layer
    // that called a clone instead of the instance that was polled ready would panic here.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&in_flight);
    let service = ServiceBuilder::new()
        .layer(layer())
        .layer(ConcurrencyLimitLayer::new(2))
        .service_fn(move |request: Request<BufferedBody>| {
            let counter = Arc::clone(&counter);
            async move {
                assert!(counter.fetch_add(1, Ordering::SeqCst) < 2, "limit exceeded");
                tokio::task::yield_now().await;
                let body = request.into_body().collect().await?.to_bytes();
                counter.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Response::new(Full::new(body)))
            }
        });
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let mut service = service.clone();
            tokio::spawn(async move {
                let request = if i % 3 == 0 {
                    let mut forged = signed(EVENT, NOW);
                    *forged.body_mut() = Full::from("{}");
                    forged
                } else {
                    signed(EVENT, NOW)
                };
                let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
                    .await
                    .expect("infallible");
                (i, ready.call(request).await.expect("infallible").status())
            })
        })
        .collect();
    for task in tasks {
        let (i, status) = task.await.expect("no panic under contention");
        let expected = if i % 3 == 0 {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected);
    }
    assert_eq!(in_flight.load(Ordering::SeqCst), 0);
}

/// Half a body, then silence; records when its buffered bytes are freed.
struct Stalled {
    first: Option<Bytes>,
}

struct Tracked(Vec<u8>, Arc<AtomicBool>);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.store(true, Ordering::SeqCst);
    }
}

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn stalled_body_times_out_and_its_bytes_are_freed() {
    let freed = Arc::new(AtomicBool::new(false));
    let half = Bytes::from_owner(Tracked(vec![b'x'; 512 * 1024], Arc::clone(&freed)));
    let whole = vec![b'x'; 1024 * 1024];
    let reached_inner = Arc::new(AtomicBool::new(false));
    let reached = Arc::clone(&reached_inner);

    // The recommended stack: a whole-request deadline outside the signature layer.
    let service = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(layer())
        .service_fn(move |_: Request<BufferedBody>| {
            reached.store(true, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        });
    let request = signed_with(Stalled { first: Some(half) }, &whole);
    let response = service.oneshot(request).await.expect("infallible");

    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(!reached_inner.load(Ordering::SeqCst));
    assert!(freed.load(Ordering::SeqCst), "the half body is still held");
}

#[test]
fn no_public_type_prints_a_secret_or_an_expected_mac() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let mac = sign(secret, NOW, EVENT);
    let layer = AghanimSignatureLayer::new(secret)
        .additional_secret(Secret::new(secret).unwrap())
        .clock(|| NOW);
    let service = layer
        .clone()
        .layer(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let verifier = Verifier::new(Secret::new(secret).unwrap());
    let verification = verifier
        .begin(NOW.to_string().as_bytes(), mac.as_bytes())
        .unwrap();
    let rejections: Vec<Rejection> = vec![
        verifier
            .verify(b"1", mac.as_bytes(), b"tampered", NOW)
            .unwrap_err(),
        verifier.verify(b"x", mac.as_bytes(), b"", NOW).unwrap_err(),
        verifier
            .verify(NOW.to_string().as_bytes(), b"00", b"", NOW)
            .unwrap_err(),
    ];

    let mut printed = vec![
        format!("{:?}", Secret::new(secret).unwrap()),
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{verifier:?}"),
        format!("{verification:?}"),
    ];
    for rejection in &rejections {
        printed.push(format!("{rejection:?}"));
        printed.push(format!("{rejection}"));
        printed.push(format!("{:?}", rejection.default_response()));
    }
    for text in &printed {
        assert!(!text.contains(secret), "secret in {text}");
        assert!(!text.contains(&mac), "MAC in {text}");
        assert!(
            !text.to_lowercase().contains(&mac[..16]),
            "part of the MAC in {text}"
        );
    }
}
