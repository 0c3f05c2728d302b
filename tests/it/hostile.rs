//! Faults around the layer: inner services that are not always ready, bodies that stall,
//! and secrets that must never show in any output.

use crate::common;

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use aghanim_webhook::{
    body::BufferedBody, sign, AghanimSignatureLayer, Rejection, RejectionKind, Secret, Verifier,
};
use bytes::Bytes;
use common::{layer, signed, signed_with, stack, status_with, Frames, NOW};
use http::{header, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{limit::ConcurrencyLimitLayer, service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::{
    limit::RequestBodyLimitLayer,
    timeout::{RequestBodyTimeoutLayer, TimeoutLayer},
};

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

/// Half a body, then silence.
struct Stalled {
    first: Option<Bytes>,
    polled: Arc<AtomicBool>,
}

impl Stalled {
    /// Yields `first`, then stays pending; `polled` becomes true when `first` is taken.
    fn new(first: Bytes, polled: &Arc<AtomicBool>) -> Self {
        Self {
            first: Some(first),
            polled: Arc::clone(polled),
        }
    }
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
            Some(first) => {
                self.polled.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Ok(Frame::data(first))))
            }
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
    let request = signed_with(Stalled::new(half, &Arc::default()), &whole);
    let response = service.oneshot(request).await.expect("infallible");

    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(!reached_inner.load(Ordering::SeqCst));
    assert!(freed.load(Ordering::SeqCst), "the half body is still held");
}

/// A forged request whose body trickles must not keep a verified one from the inner
/// service: the layer only asks the inner service for readiness after verifying.
#[tokio::test]
async fn a_stalled_forged_request_holds_no_permit_of_the_inner_service() {
    let service = ServiceBuilder::new()
        .layer(layer())
        .layer(ConcurrencyLimitLayer::new(1))
        .service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });

    let polled = Arc::new(AtomicBool::new(false));
    let forged_body = Stalled::new(Bytes::from_static(b"{\"event_type\""), &polled);
    let forged = signed_with(forged_body, b"something else entirely");
    let stalled = tokio::spawn(service.clone().oneshot(forged));
    while !polled.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }

    let valid = tokio::time::timeout(Duration::from_secs(5), service.oneshot(signed(EVENT, NOW)))
        .await
        .expect("the valid request waited behind a forged one")
        .expect("infallible");
    assert_eq!(valid.status(), StatusCode::OK);
    assert!(!stalled.is_finished());
    stalled.abort();
}

/// An inner service whose readiness fails: the error comes out of the response future,
/// and only for verified requests.
#[tokio::test]
async fn inner_readiness_errors_surface_only_after_verification() {
    #[derive(Clone)]
    struct Broken;
    impl Service<Request<BufferedBody>> for Broken {
        type Response = Response<Full<Bytes>>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err("inner service failed"))
        }
        fn call(&mut self, _: Request<BufferedBody>) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let service = layer().layer(Broken);
    let forged = signed_with(Full::<Bytes>::from("{}"), b"other");
    let response = service.clone().oneshot(forged).await.expect("a rejection");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error = service.oneshot(signed(EVENT, NOW)).await.unwrap_err();
    assert_eq!(error, "inner service failed");
}

#[tokio::test]
async fn requests_past_the_buffer_budget_wait_with_503_and_unread_bodies() {
    // Every service a layer makes shares its budget.
    let budgeted = layer().buffer_budget(1024);
    let (stalling, _) = stack(budgeted.clone());
    let (service, seen) = stack(budgeted);

    // One request holds 600 of the 1,024 budgeted bytes and stalls.
    let polled = Arc::new(AtomicBool::new(false));
    let mut holding = signed_with(
        Stalled::new(Bytes::from(vec![b'x'; 600]), &polled),
        &[b'x'; 1000],
    );
    holding
        .headers_mut()
        .insert(header::CONTENT_LENGTH, 1000.into());
    let holding = tokio::spawn(stalling.oneshot(holding));
    while !polled.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }

    // A body declaring 500 more does not fit: refused before a byte is read.
    let body = "y".repeat(500);
    let unread = Frames::data([body.clone()]).exact_size(500);
    let read = unread.polled();
    let response = service
        .clone()
        .oneshot(signed_with(unread, body.as_bytes()))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::Overloaded)
    );
    assert!(!read.load(Ordering::SeqCst), "the body was read");

    // Nor does one without a declared length, as soon as it grows past what is left.
    let streamed = Frames::data([vec![b'z'; 300], vec![b'z'; 300]]);
    let response = service
        .clone()
        .oneshot(signed_with(streamed, &[b'z'; 600]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // What fits still passes; once the stalled request is gone, its share is back.
    let small = Frames::data(["y".repeat(400)]).exact_size(400);
    let response = service
        .clone()
        .oneshot(signed_with(small, "y".repeat(400).as_bytes()))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    holding.abort();
    let _ = holding.await;
    let response = service
        .oneshot(signed_with(
            Frames::data([body.clone()]).exact_size(500),
            body.as_bytes(),
        ))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.calls(), 2);
}

#[tokio::test]
async fn a_verified_body_no_longer_counts_against_the_budget() {
    // The inner service holds each verified body while two more requests arrive.
    let (release, held) = tokio::sync::watch::channel(false);
    let service = ServiceBuilder::new()
        .layer(layer().buffer_budget(1500))
        .service_fn(move |request: Request<BufferedBody>| {
            let mut held = held.clone();
            async move {
                let _body = request.into_body();
                let _ = held.wait_for(|released| *released).await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        });
    let body = "b".repeat(1000);
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let request = signed_with(Full::<Bytes>::from(body.clone()), body.as_bytes());
            tokio::spawn(service.clone().oneshot(request))
        })
        .collect();
    tokio::task::yield_now().await;
    release.send(true).expect("receivers alive");
    for request in requests {
        let response = request.await.expect("no panic").expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn an_outer_length_limit_is_413_and_an_outer_body_timeout_is_408() {
    let (service, _) = stack(layer());
    let limited = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(16))
        .service(service);
    let body = "l".repeat(64);
    let request = signed_with(Frames::split(body.as_bytes(), 8), body.as_bytes());
    let response = limited.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (service, _) = stack(layer());
    let timed = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(Duration::from_millis(50)))
        .service(service);
    let polled = Arc::new(AtomicBool::new(false));
    let request = signed_with(Stalled::new(Bytes::from_static(b"{"), &polled), b"{}");
    let response = timed.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::BodyTimeout)
    );
}

#[tokio::test]
async fn a_body_that_fails_with_timed_out_is_408() {
    let timed_out = Frames::data(["{"]).then_error_of(io::ErrorKind::TimedOut);
    let status = status_with(layer(), signed_with(timed_out, b"{}")).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn no_public_type_prints_a_secret_or_an_expected_mac() {
    let secret = "s3cr3t-value-that-must-not-leak";
    // The tag the verifier expects for EVENT at NOW: every forgery below is checked
    // against it, so a rejection that printed what it expected would print this.
    let expected = sign(secret, NOW, EVENT);
    let forged = "0".repeat(64);
    let layer = AghanimSignatureLayer::new(secret)
        .additional_secret(Secret::new(secret).unwrap())
        .clock(|| NOW);
    let service = layer
        .clone()
        .layer(service_fn(|_: Request<BufferedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let verifier = Verifier::new(Secret::new(secret).unwrap());
    let timestamp = NOW.to_string();
    let verification = verifier
        .begin(timestamp.as_bytes(), forged.as_bytes())
        .unwrap();

    let mut request = Request::post("/webhook")
        .body(Full::<Bytes>::from(EVENT))
        .unwrap();
    request
        .headers_mut()
        .insert("x-aghanim-signature-timestamp", timestamp.parse().unwrap());
    request
        .headers_mut()
        .insert("x-aghanim-signature", forged.parse().unwrap());
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let from_layer = response.extensions().get::<Rejection>().unwrap().clone();
    assert_eq!(from_layer.kind(), RejectionKind::SignatureMismatch);

    let rejections: Vec<Rejection> = vec![
        from_layer,
        verifier
            .verify(
                timestamp.as_bytes(),
                forged.as_bytes(),
                EVENT.as_bytes(),
                NOW,
            )
            .unwrap_err(),
        verifier
            .verify(timestamp.as_bytes(), b"00", EVENT.as_bytes(), NOW)
            .unwrap_err(),
    ];

    let mut printed = vec![
        format!("{:?}", Secret::new(secret).unwrap()),
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{verifier:?}"),
        format!("{verification:?}"),
        format!("{response:?}"),
    ];
    for rejection in &rejections {
        printed.push(format!("{rejection:?}"));
        printed.push(format!("{rejection}"));
        printed.push(format!("{rejection:#?}"));
        printed.push(format!("{:?}", rejection.default_response()));
    }
    for text in &printed {
        let text = text.to_lowercase();
        assert!(!text.contains(secret), "secret in {text}");
        assert!(
            !text.contains(&expected[..16]),
            "the expected MAC in {text}"
        );
        let secret_bytes = format!("{:?}", secret.as_bytes());
        assert!(
            !text.contains(&secret_bytes[1..40]),
            "secret bytes in {text}"
        );
    }
}
