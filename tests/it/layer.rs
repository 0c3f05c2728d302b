//! The signature layer through `ServiceExt::oneshot`, by concept: what it accepts, what
//! it refuses, what it holds while it works.

use crate::common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use aghanim_webhook::testing::SignedRequest;
use aghanim_webhook::{
    body::BufferedBody, sign, AghanimSignatureLayer, Rejection, RejectionKind, Secret,
    VerifiedBody, DEFAULT_BODY_LIMIT, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use bytes::Bytes;
use common::{body_text, layer, signed, signed_with, stack, status_with, Frames, NOW, SECRET};
use hmac::{Hmac, KeyInit, Mac};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use sha2::Sha256;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const EVENT: &str = r#"{"event_type":"item.add","event_data":{"player_id":"p1"}}"#;
const FORBIDDEN: &str =
    r#"{"status":"error","code":"invalid_signature","message":"Invalid signature"}"#;

async fn rejection_of<B>(response: &Response<B>) -> RejectionKind {
    response
        .extensions()
        .get::<Rejection>()
        .expect("a rejection in the response extensions")
        .kind()
}

/// Sends `request` through the default stack and checks a 403 with the shared body that
/// never reached the inner service; returns the typed reason.
async fn forbidden(request: Request<Full<Bytes>>) -> RejectionKind {
    let (service, seen) = stack(layer());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let kind = rejection_of(&response).await;
    assert_eq!(body_text(response).await, FORBIDDEN);
    assert_eq!(
        seen.calls(),
        0,
        "a rejected request reached the inner service"
    );
    kind
}

fn large_body(len: usize) -> Bytes {
    Bytes::from(vec![b'x'; len])
}

/// An inner service that may only be called once it has said it is ready, as a
/// `ConcurrencyLimit` or a buffered service requires. Its clones start unready.
#[derive(Default)]
struct MustBeReady {
    ready: bool,
}

impl Clone for MustBeReady {
    fn clone(&self) -> Self {
        Self { ready: false }
    }
}

impl Service<Request<BufferedBody>> for MustBeReady {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<BufferedBody>) -> Self::Future {
        assert!(
            self.ready,
            "called an inner service that was not polled ready"
        );
        self.ready = false;
        std::future::ready(Ok(Response::new(Full::default())))
    }
}

mod accepts {
    //! What the layer lets through, and exactly what the inner service then sees.

    use super::*;

    #[tokio::test]
    async fn signed_request_reaches_inner_service_with_its_bytes() {
        let (service, seen) = stack(layer());
        let response = service.oneshot(signed(EVENT, NOW)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.extensions().get::<Rejection>().is_none());
        assert_eq!(body_text(response).await, EVENT);
        assert_eq!(seen.calls(), 1);
    }

    #[tokio::test]
    async fn verified_body_extension_carries_bytes_and_timestamp() {
        let service = ServiceBuilder::new().layer(layer()).service_fn(
            |request: Request<BufferedBody>| async move {
                let verified = request.extensions().get::<VerifiedBody>().unwrap().clone();
                assert_eq!(verified.timestamp(), NOW - 5);
                assert_eq!(verified.as_ref(), EVENT.as_bytes());
                Ok::<_, Infallible>(Response::new(Full::new(verified.into_bytes())))
            },
        );
        let response = service.oneshot(signed(EVENT, NOW - 5)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn empty_body_can_be_signed() {
        let (service, _) = stack(layer());
        let response = service.oneshot(signed("", NOW)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "");
    }

    #[tokio::test]
    async fn uppercase_signature_is_accepted() {
        let mut request = signed(EVENT, NOW);
        let upper = sign(SECRET, NOW, EVENT).to_ascii_uppercase();
        request
            .headers_mut()
            .insert(&SIGNATURE_HEADER, HeaderValue::from_str(&upper).unwrap());
        assert_eq!(status_with(layer(), request).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn timestamp_is_signed_verbatim_as_received() {
        // Aghanim's recipe hashes the header's text, so zero padding signed as such passes.
        let padded = format!("0{NOW}");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{padded}.{EVENT}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());

        let mut request = Request::post("/webhook")
            .body(Full::<Bytes>::from(EVENT))
            .unwrap();
        let headers = request.headers_mut();
        headers.insert(&TIMESTAMP_HEADER, HeaderValue::from_str(&padded).unwrap());
        headers.insert(
            &SIGNATURE_HEADER,
            HeaderValue::from_str(&signature).unwrap(),
        );
        assert_eq!(status_with(layer(), request).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn disabled_tolerance_accepts_any_authentic_timestamp() {
        for timestamp in [0, NOW - 86_400 * 365, u64::MAX] {
            let status = status_with(layer().disable_tolerance(), signed(EVENT, timestamp)).await;
            assert_eq!(status, StatusCode::OK, "{timestamp}");
        }
    }

    #[tokio::test]
    async fn every_configured_secret_is_accepted_during_rotation() {
        let rotating = || {
            AghanimSignatureLayer::new("new-secret")
                .additional_secret(Secret::new("old-secret").unwrap())
                .clock(|| NOW)
        };
        for (secret, status) in [
            ("new-secret", StatusCode::OK),
            ("old-secret", StatusCode::OK),
            ("other-secret", StatusCode::FORBIDDEN),
        ] {
            let request = SignedRequest::new(secret, EVENT).timestamp(NOW).build();
            assert_eq!(status_with(rotating(), request).await, status, "{secret}");
        }
    }

    #[tokio::test]
    async fn rotation_verifies_a_body_in_many_frames_under_either_secret() {
        let rotating = AghanimSignatureLayer::new("new-secret")
            .additional_secret(Secret::new("old-secret").unwrap())
            .clock(|| NOW);
        for (secret, status) in [
            ("old-secret", StatusCode::OK),
            ("new-secret", StatusCode::OK),
            ("other-secret", StatusCode::FORBIDDEN),
        ] {
            let mut request = Request::post("/")
                .body(Frames::split(EVENT.as_bytes(), 3))
                .unwrap();
            aghanim_webhook::sign_headers(request.headers_mut(), secret, NOW, EVENT);
            let (service, _) = stack(rotating.clone());
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status(), status, "{secret}");
            if status == StatusCode::OK {
                assert_eq!(body_text(response).await, EVENT);
            }
        }
    }

    #[tokio::test]
    async fn body_in_one_byte_frames_is_verified() {
        let body = Frames::split(EVENT.as_bytes(), 1);
        let (service, seen) = stack(layer());
        let response = service
            .oneshot(signed_with(body, EVENT.as_bytes()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, EVENT);
        assert_eq!(seen.calls(), 1);
    }

    #[tokio::test]
    async fn empty_frames_and_trailers_change_nothing() {
        let body = Frames::data(["", &EVENT[..10], "", &EVENT[10..]]).then_trailers();
        let (service, _) = stack(layer());
        let response = service
            .oneshot(signed_with(body, EVENT.as_bytes()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, EVENT);
    }

    #[tokio::test]
    async fn body_exactly_at_the_limit_is_accepted() {
        for frame_size in [DEFAULT_BODY_LIMIT, 1000] {
            let body = large_body(DEFAULT_BODY_LIMIT);
            let (service, _) = stack(layer());
            let response = service
                .oneshot(signed_with(Frames::split(&body, frame_size), &body))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "frames of {frame_size}");
            assert_eq!(body_text(response).await.len(), DEFAULT_BODY_LIMIT);
        }
    }

    #[tokio::test]
    async fn request_parts_and_extensions_reach_the_inner_service_untouched() {
        #[derive(Clone, Debug, PartialEq)]
        struct Marker(u32);

        let checked = Arc::new(AtomicBool::new(false));
        let inner_checked = Arc::clone(&checked);
        let service = ServiceBuilder::new().layer(layer()).service_fn(
            move |request: Request<BufferedBody>| {
                assert_eq!(request.method(), Method::PUT);
                assert_eq!(request.uri(), "/hooks/aghanim?game=gm_1");
                assert_eq!(request.version(), Version::HTTP_2);
                assert_eq!(request.headers()["x-request-id"], "abc");
                assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
                assert!(request.headers().contains_key(&SIGNATURE_HEADER));
                assert_eq!(request.extensions().get::<Marker>(), Some(&Marker(7)));
                inner_checked.store(true, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
            },
        );

        let mut request = Request::put("/hooks/aghanim?game=gm_1")
            .version(Version::HTTP_2)
            .header("x-request-id", "abc")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(Marker(7))
            .body(Full::<Bytes>::from(EVENT))
            .unwrap();
        aghanim_webhook::sign_headers(request.headers_mut(), SECRET, NOW, EVENT);
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(checked.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn inner_response_passes_through_unchanged() {
        let service =
            ServiceBuilder::new()
                .layer(layer())
                .service_fn(|_: Request<BufferedBody>| async {
                    let response = Response::builder()
                        .status(StatusCode::ACCEPTED)
                        .header("x-handled", "yes")
                        .body(Full::from("handled"))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                });
        let response = service.oneshot(signed(EVENT, NOW)).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["x-handled"], "yes");
        assert_eq!(body_text(response).await, "handled");
    }
}

mod refuses {
    //! What the layer refuses, and how: the status, the shared body, the typed reason.

    use super::*;

    #[tokio::test]
    async fn missing_timestamp_is_rejected() {
        let mut request = signed(EVENT, NOW);
        request.headers_mut().remove(&TIMESTAMP_HEADER);
        assert_eq!(forbidden(request).await, RejectionKind::MissingTimestamp);
    }

    #[tokio::test]
    async fn missing_signature_is_rejected() {
        let mut request = signed(EVENT, NOW);
        request.headers_mut().remove(&SIGNATURE_HEADER);
        assert_eq!(forbidden(request).await, RejectionKind::MissingSignature);
    }

    #[tokio::test]
    async fn missing_both_headers_is_rejected() {
        let request = Request::post("/webhook")
            .body(Full::<Bytes>::from(EVENT))
            .unwrap();
        assert_eq!(forbidden(request).await, RejectionKind::MissingTimestamp);
    }

    #[tokio::test]
    async fn tampered_body_is_rejected() {
        let mut request = signed(EVENT, NOW);
        *request.body_mut() = Full::from(EVENT.replace("p1", "p2"));
        assert_eq!(forbidden(request).await, RejectionKind::SignatureMismatch);
    }

    #[tokio::test]
    async fn tampered_timestamp_is_rejected() {
        let mut request = signed(EVENT, NOW);
        request
            .headers_mut()
            .insert(&TIMESTAMP_HEADER, HeaderValue::from(NOW + 1));
        assert_eq!(forbidden(request).await, RejectionKind::SignatureMismatch);
    }

    #[tokio::test]
    async fn signature_from_another_secret_is_rejected() {
        let mut request = signed(EVENT, NOW);
        let forged = sign("not-the-secret", NOW, EVENT);
        request
            .headers_mut()
            .insert(&SIGNATURE_HEADER, HeaderValue::from_str(&forged).unwrap());
        assert_eq!(forbidden(request).await, RejectionKind::SignatureMismatch);
    }

    #[tokio::test]
    async fn hostile_timestamps_are_rejected_cleanly() {
        let cases: &[(&[u8], RejectionKind)] = &[
            (b"", RejectionKind::MalformedTimestamp),
            (b"-5", RejectionKind::MalformedTimestamp),
            (b"+5", RejectionKind::MalformedTimestamp),
            (b"1e9", RejectionKind::MalformedTimestamp),
            (b" 1700000000", RejectionKind::MalformedTimestamp),
            (b"1700000000.5", RejectionKind::MalformedTimestamp),
            (
                b"123456789012345678901234567890",
                RejectionKind::MalformedTimestamp,
            ),
            (b"18446744073709551616", RejectionKind::MalformedTimestamp),
            (b"\xff\xfe", RejectionKind::MalformedTimestamp),
            // Well-formed, but signed by nobody.
            (b"0", RejectionKind::SignatureMismatch),
            (b"18446744073709551615", RejectionKind::SignatureMismatch),
        ];
        for &(timestamp, expected) in cases {
            let mut request = signed(EVENT, NOW);
            request.headers_mut().insert(
                &TIMESTAMP_HEADER,
                HeaderValue::from_bytes(timestamp).unwrap(),
            );
            assert_eq!(forbidden(request).await, expected, "{timestamp:?}");
        }
    }

    #[tokio::test]
    async fn hostile_signatures_are_rejected_cleanly() {
        let valid = sign(SECRET, NOW, EVENT);
        let malformed: Vec<Vec<u8>> = vec![
            Vec::new(),
            valid[..63].into(),
            format!("{valid}0").into(),
            format!("sha256={valid}").into(),
            format!("v1={valid}").into(),
            format!("{}g", &valid[..63]).into(),
            format!("{valid},{valid}").into(),
            "0".repeat(10_000).into(),
            b"\x80".repeat(64),
        ];
        let cases = malformed
            .into_iter()
            .map(|signature| (signature, RejectionKind::MalformedSignature))
            .chain([("0".repeat(64).into(), RejectionKind::SignatureMismatch)]);
        for (signature, expected) in cases {
            let mut request = signed(EVENT, NOW);
            request.headers_mut().insert(
                &SIGNATURE_HEADER,
                HeaderValue::from_bytes(&signature).unwrap(),
            );
            assert_eq!(forbidden(request).await, expected, "{signature:?}");
        }
    }

    #[tokio::test]
    async fn repeated_headers_are_malformed() {
        let mut request = signed(EVENT, NOW);
        let signature = request.headers()[&SIGNATURE_HEADER].clone();
        request.headers_mut().append(&SIGNATURE_HEADER, signature);
        assert_eq!(forbidden(request).await, RejectionKind::MalformedSignature);

        let mut request = signed(EVENT, NOW);
        request
            .headers_mut()
            .append(&TIMESTAMP_HEADER, HeaderValue::from(NOW));
        assert_eq!(forbidden(request).await, RejectionKind::MalformedTimestamp);
    }

    #[tokio::test]
    async fn the_tolerance_is_inclusive_at_its_edges_and_never_overflows() {
        for timestamp in [NOW - 300, NOW + 300] {
            let status = status_with(layer(), signed(EVENT, timestamp)).await;
            assert_eq!(status, StatusCode::OK, "{timestamp}");
        }
        // Extreme but authentic timestamps are plain stale or future ones, never an overflow.
        for timestamp in [NOW - 301, NOW + 301, 0, u64::MAX] {
            let kind = forbidden(signed(EVENT, timestamp)).await;
            assert_eq!(
                kind,
                RejectionKind::TimestampOutsideTolerance,
                "{timestamp}"
            );
        }
    }

    #[tokio::test]
    async fn stale_rejection_names_the_authentic_timestamp() {
        let (service, _) = stack(layer());
        let response = service.oneshot(signed(EVENT, NOW - 3600)).await.unwrap();
        let rejection = response.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.timestamp(), Some(NOW - 3600));
        assert!(rejection.to_string().contains(&(NOW - 3600).to_string()));
    }

    #[tokio::test]
    async fn configured_tolerance_moves_the_edges() {
        let layer = || layer().tolerance(Duration::from_secs(10));
        for (timestamp, status) in [
            (NOW - 10, StatusCode::OK),
            (NOW + 10, StatusCode::OK),
            (NOW - 11, StatusCode::FORBIDDEN),
            (NOW + 11, StatusCode::FORBIDDEN),
        ] {
            let actual = status_with(layer(), signed(EVENT, timestamp)).await;
            assert_eq!(actual, status, "{timestamp}");
        }
    }

    #[tokio::test]
    async fn disabled_tolerance_still_checks_the_signature() {
        let (service, seen) = stack(layer().disable_tolerance());
        let mut request = signed(EVENT, NOW);
        *request.body_mut() = Full::from("{}");
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(seen.calls(), 0);
    }

    #[tokio::test]
    async fn body_error_mid_stream_is_a_bad_request() {
        let body = Frames::data([&EVENT[..10]]).then_error();
        let (service, seen) = stack(layer());
        let response = service
            .oneshot(signed_with(body, EVENT.as_bytes()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let rejection = response.extensions().get::<Rejection>().unwrap().clone();
        assert_eq!(rejection.kind(), RejectionKind::BodyError);
        assert!(std::error::Error::source(&rejection).is_some());
        assert_eq!(
            body_text(response).await,
            r#"{"status":"error","code":"bad_request","message":"Request body could not be read"}"#
        );
        assert_eq!(seen.calls(), 0);
    }

    #[tokio::test]
    async fn custom_rejection_replaces_the_response_and_keeps_the_reason() {
        let layer = layer().on_rejection(|rejection| {
            let mut response =
                Response::new(Bytes::from(format!("denied: {:?}", rejection.kind())));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        });
        let (service, _) = stack(layer);
        let mut request = signed(EVENT, NOW);
        request.headers_mut().remove(&SIGNATURE_HEADER);
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            rejection_of(&response).await,
            RejectionKind::MissingSignature
        );
        assert_eq!(body_text(response).await, "denied: MissingSignature");
    }

    #[test]
    fn empty_secret_is_refused_when_the_layer_is_built() {
        assert!(AghanimSignatureLayer::try_new("").is_err());
        assert!(AghanimSignatureLayer::try_new(Vec::<u8>::new()).is_err());
        assert!(AghanimSignatureLayer::try_new("x").is_ok());
    }

    #[test]
    #[should_panic(expected = "secret is empty")]
    fn new_panics_on_an_empty_secret() {
        let _ = AghanimSignatureLayer::new("");
    }
}

mod resources {
    //! What the layer holds while it works: body bytes against the limit, copies, the inner
    //! service's readiness.

    use super::*;

    /// The `content-length` header counts even when the body's own size hint is smaller: the
    /// larger claim wins.
    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        for body in [
            Frames::data([large_body(8)]),
            Frames::data([large_body(8)]).exact_size(8),
        ] {
            let polled = body.polled();
            let mut request = signed_with(body, b"xxxxxxxx");
            request.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(DEFAULT_BODY_LIMIT + 1),
            );
            let (service, seen) = stack(layer());
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(rejection_of(&response).await, RejectionKind::BodyTooLarge);
            assert_eq!(
                body_text(response).await,
                r#"{"status":"error","code":"payload_too_large","message":"Payload too large"}"#
            );
            assert!(!polled.load(Ordering::SeqCst), "the body was read");
            assert_eq!(seen.calls(), 0);
        }
    }

    #[tokio::test]
    async fn exact_size_hint_over_the_limit_is_refused_before_reading() {
        let body = Frames::data([large_body(8)]).exact_size(u64::MAX);
        let polled = body.polled();
        let (service, _) = stack(layer());
        let response = service
            .oneshot(signed_with(body, b"xxxxxxxx"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!polled.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn streamed_body_over_the_limit_is_refused() {
        let body = large_body(DEFAULT_BODY_LIMIT + 1);
        let (service, seen) = stack(layer());
        let response = service
            .oneshot(signed_with(Frames::split(&body, 64 * 1024), &body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(seen.calls(), 0);
    }

    #[tokio::test]
    async fn unsigned_body_over_the_limit_without_length_is_refused() {
        // Headers are checked first: an unsigned stream is never buffered at all.
        let body = Frames::split(&large_body(4 * DEFAULT_BODY_LIMIT), 4096);
        let polled = body.polled();
        let request = Request::post("/").body(body).unwrap();
        let (service, _) = stack(layer());
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!polled.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn configured_limit_is_enforced_to_the_byte() {
        for (len, status) in [(100, StatusCode::OK), (101, StatusCode::PAYLOAD_TOO_LARGE)] {
            let body = large_body(len);
            let request = signed_with(Frames::split(&body, 7), &body);
            let actual = status_with(layer().body_limit(100), request).await;
            assert_eq!(actual, status, "{len} bytes");
        }
    }

    #[tokio::test]
    async fn lying_small_content_length_does_not_lift_the_limit() {
        let body = large_body(200);
        let mut request = signed_with(Frames::split(&body, 50), &body);
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(10));
        let status = status_with(layer().body_limit(100), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn only_the_instance_that_was_polled_ready_is_called() {
        let mut service = layer().layer(MustBeReady::default());
        for _ in 0..3 {
            let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
                .await
                .unwrap();
            let response = ready.call(signed(EVENT, NOW)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn single_frame_body_is_shared_not_copied() {
        let original = Bytes::from(EVENT.repeat(20));
        let original_address = original.as_ptr() as usize;
        let service = ServiceBuilder::new().layer(layer()).service_fn(
            move |request: Request<BufferedBody>| async move {
                let verified = request.extensions().get::<VerifiedBody>().unwrap();
                assert_eq!(verified.as_ptr() as usize, original_address);
                let body = http_body_util::BodyExt::collect(request.into_body())
                    .await?
                    .to_bytes();
                assert_eq!(body.as_ptr() as usize, original_address);
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            },
        );
        let request = signed_with(Full::new(original.clone()), &original);
        assert_eq!(
            service.oneshot(request).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
