//! Shared helpers: signed requests, bodies that stream as told, an inner service that
//! records what reaches it.
#![allow(dead_code)]

mod executor;
#[cfg(feature = "postgres")]
pub mod postgres_server;
#[cfg(feature = "idempotency")]
pub mod redis_server;
#[cfg(feature = "idempotency")]
pub mod sent;
#[cfg(feature = "idempotency")]
pub mod stores;

#[allow(unused_imports)] // Not every test target runs futures by hand.
pub use executor::run;

use std::{
    collections::VecDeque,
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use aghanim_webhook::{body::BufferedBody, sign_headers, AghanimSignatureLayer, VerifiedBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
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

/// A request carrying `body`, signed with [`SECRET`] at [`NOW`].
pub fn signed_text(body: String) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhook")
        .body(Full::from(body.clone()))
        .expect("static request");
    sign_headers(request.headers_mut(), SECRET, NOW, &body);
    request
}

/// The layer under test with the clock fixed at [`NOW`].
pub fn layer() -> AghanimSignatureLayer {
    AghanimSignatureLayer::new(SECRET).clock(|| NOW)
}

/// A request carrying `body` in one frame, signed with [`SECRET`] at `timestamp`.
pub fn signed(body: &'static str, timestamp: u64) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhook")
        .body(Full::from(body))
        .expect("static request");
    sign_headers(request.headers_mut(), SECRET, timestamp, body);
    request
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

/// A body that yields the given frames one by one, then ends.
pub struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
    exact_size: Option<u64>,
    polled: Arc<AtomicBool>,
}

impl Frames {
    pub fn data<I, T>(chunks: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Bytes>,
    {
        Self {
            frames: chunks
                .into_iter()
                .map(|chunk| Ok(Frame::data(chunk.into())))
                .collect(),
            exact_size: None,
            polled: Arc::default(),
        }
    }

    /// The body in frames of `size` bytes each.
    pub fn split(body: &[u8], size: usize) -> Self {
        Self::data(
            body.chunks(size)
                .map(Bytes::copy_from_slice)
                .collect::<Vec<_>>(),
        )
    }

    pub fn then_error(self) -> Self {
        self.then_error_of(io::ErrorKind::ConnectionReset)
    }

    pub fn then_error_of(mut self, kind: io::ErrorKind) -> Self {
        self.frames
            .push_back(Err(io::Error::new(kind, "the body stream failed")));
        self
    }

    pub fn then_trailers(mut self) -> Self {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-trailer", http::HeaderValue::from_static("unsigned"));
        self.frames.push_back(Ok(Frame::trailers(trailers)));
        self
    }

    pub fn exact_size(mut self, size: u64) -> Self {
        self.exact_size = Some(size);
        self
    }

    /// Becomes true once anything polls the body.
    pub fn polled(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.polled)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        Poll::Ready(self.frames.pop_front())
    }

    fn size_hint(&self) -> SizeHint {
        self.exact_size
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
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

/// Says once per test binary, past the test harness's capture (which hides what a
/// passing test prints), that a part of the suite did not run.
pub fn skipped(part: &str, why: &str) {
    use std::{
        collections::HashSet,
        io::Write,
        sync::{Mutex, OnceLock},
    };
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let said = SAID.get_or_init(Mutex::default);
    if said.lock().unwrap_or_else(|e| e.into_inner()).insert(part.to_owned()) {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED: the {part} tests did not run: {why}. CI sets AGHANIM_REQUIRE_REDIS=1 and AGHANIM_REQUIRE_POSTGRES=1, which make this a failure.\n"
        );
    }
}
