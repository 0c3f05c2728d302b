//! Shared helpers: signed requests, bodies that stream as told, an inner service that
//! records what reaches it.

mod executor;
mod frames;
#[cfg(feature = "idempotency")]
mod servers;
#[cfg(feature = "idempotency")]
pub use servers::redis_server;
#[cfg(feature = "postgres")]
pub use servers::{pgbouncer, postgres_server};
#[cfg(feature = "idempotency")]
pub mod sent;
#[cfg(feature = "idempotency")]
pub mod stores;

pub use executor::run;
pub use frames::Frames;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

#[cfg(feature = "testing")]
use aghanim_webhook::testing::SignedRequest;
use aghanim_webhook::{body::BufferedBody, sign_headers, AghanimSignatureLayer, VerifiedBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{util::BoxCloneService, ServiceBuilder};

pub const SECRET: &str = "whsec_test_secret";
pub const NOW: u64 = 1_700_000_000;
/// The `game_id` of every [`envelope`].
pub const GAME_ID: &str = "gm_exoqPsmvqRu";

/// A whole envelope as in Aghanim's samples, around `event_data`, live, with no
/// `idempotency_key`; [`keyed`] gives it one.
#[cfg(feature = "events")]
pub fn envelope(event_type: &str, event_data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "event_id": "whevt_eSeXmERbUGh",
        "game_id": GAME_ID,
        "event_type": event_type,
        "event_time": 1725548450,
        "event_data": event_data,
        "idempotency_key": null,
        "request_id": null,
        "sandbox": false,
        "trigger": null,
        "transaction_id": "whtx_eSeXmERbUGh",
        "context": null,
    })
}

/// [`envelope`] as text, with `key` as its `idempotency_key` and `whevt_{key}` as its
/// `event_id`: one delivery, as the idempotency layer tells deliveries apart.
#[cfg(feature = "events")]
pub fn keyed(event_type: &str, event_data: &str, key: &str) -> String {
    let data = serde_json::from_str(event_data).expect("event_data is JSON");
    let mut event = envelope(event_type, data);
    event["idempotency_key"] = key.into();
    event["event_id"] = format!("whevt_{key}").into();
    event.to_string()
}

/// A request carrying `body`, signed with [`SECRET`] at [`NOW`], made by the test kit
/// as users make theirs.
#[cfg(feature = "testing")]
pub fn signed_text(body: String) -> Request<Full<Bytes>> {
    SignedRequest::new(SECRET, body).timestamp(NOW).build()
}

/// A forgery of `body`: signed at [`NOW`] with another secret.
#[cfg(feature = "testing")]
pub fn forged(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    SignedRequest::new(SECRET, body)
        .timestamp(NOW)
        .forged()
        .build()
}

/// The layer under test with the clock fixed at [`NOW`].
pub fn layer() -> AghanimSignatureLayer {
    AghanimSignatureLayer::new(SECRET).clock(|| NOW)
}

/// A request carrying `body` in one frame, signed with [`SECRET`] at `timestamp`.
#[cfg(feature = "testing")]
pub fn signed(body: &'static str, timestamp: u64) -> Request<Full<Bytes>> {
    SignedRequest::new(SECRET, body)
        .timestamp(timestamp)
        .build()
}

/// What the inner service saw.
#[derive(Clone, Default)]
pub struct Seen {
    calls: Arc<AtomicUsize>,
}

impl Seen {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub type Stack<B> = BoxCloneService<
    Request<B>,
    Response<aghanim_webhook::body::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// `layer` around an inner service that counts its calls and answers 200 with the body
/// it received, after checking that it equals the `VerifiedBody` extension.
pub fn stack<B>(layer: AghanimSignatureLayer) -> (Stack<B>, Seen)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<aghanim_webhook::BoxError>,
{
    let seen = Seen::default();
    let calls = Arc::clone(&seen.calls);
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |request: Request<BufferedBody>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let verified = request.extensions().get::<VerifiedBody>().cloned();
                    let body = request.into_body().collect().await?.to_bytes();
                    assert_eq!(verified.as_deref(), Some(&body[..]));
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
    (BoxCloneService::new(service), seen)
}

/// The status `layer` (around the recording service) answers `request` with.
pub async fn status_with<B>(layer: AghanimSignatureLayer, request: Request<B>) -> http::StatusCode
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<aghanim_webhook::BoxError>,
{
    use tower::ServiceExt;
    let (service, _) = stack(layer);
    service.oneshot(request).await.expect("infallible").status()
}

pub async fn body_text<B>(response: Response<B>) -> String
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// A request with `body`, signed with [`SECRET`] at [`NOW`] over `signed_bytes`.
pub fn signed_with<B>(body: B, signed_bytes: &[u8]) -> Request<B> {
    let mut request = Request::post("/webhook")
        .body(body)
        .expect("static request");
    sign_headers(request.headers_mut(), SECRET, NOW, signed_bytes);
    request
}

/// Calls `attempt` up to 50 times, 100 ms apart, until it gives something: for a store
/// coming back after a restart.
pub async fn eventually<T, F, Fut>(mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..50 {
        if let Some(found) = attempt().await {
            return Some(found);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}
