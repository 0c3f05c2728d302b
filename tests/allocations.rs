//! Heap allocations the layer makes for one request, counted by a global allocator.
//!
//! One test function, so that no other test allocates on another thread meanwhile; the
//! counter is also limited to the thread that runs the request.

#[path = "common/executor.rs"]
mod executor;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::{Cell, RefCell},
    convert::Infallible,
    future::Future,
    task::{Context, Poll},
};

use aghanim_webhook::{
    body::BufferedBody, sign_headers, AghanimSignatureLayer, VerifiedBody, DEFAULT_BODY_LIMIT,
};
use bytes::Bytes;
use executor::run;

const SECRET: &str = "whsec_test_secret";
const NOW: u64 = 1_700_000_000;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static SIZES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn record(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        COUNTING.with(|counting| counting.set(false));
        SIZES.with(|sizes| sizes.borrow_mut().push(size));
        COUNTING.with(|counting| counting.set(true));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The sizes of the allocations made while `call` runs.
fn allocations<T>(call: impl FnOnce() -> T) -> (T, Vec<usize>) {
    SIZES.with(|sizes| sizes.borrow_mut().clear());
    COUNTING.with(|counting| counting.set(true));
    let output = call();
    COUNTING.with(|counting| counting.set(false));
    (output, SIZES.with(|sizes| sizes.take()))
}

/// An inner service that allocates nothing and checks the body it was given.
#[derive(Clone)]
struct Inner {
    expected_len: usize,
}

impl Service<Request<BufferedBody>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BufferedBody>) -> Self::Future {
        let verified = request
            .extensions()
            .get::<VerifiedBody>()
            .map(|body| body.len());
        assert_eq!(verified, Some(self.expected_len));
        std::future::ready(Ok(Response::new(Full::default())))
    }
}

#[test]
fn layer_allocations_per_request() {
    let body = Bytes::from(vec![b'x'; 1024]);
    let layer = AghanimSignatureLayer::new(SECRET).clock(|| NOW);

    // One 1 KiB frame: at most 3 allocations (the extension map, its table and the
    // boxed `VerifiedBody`), and none of them a copy of the body.
    let mut service = layer.layer(Inner { expected_len: 1024 });
    let mut request = Request::post("/").body(Full::new(body.clone())).unwrap();
    sign_headers(request.headers_mut(), SECRET, NOW, &body);
    let (response, sizes) = allocations(|| run(service.ready_and_call(request)));
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    println!("single frame: {} allocations {sizes:?}", sizes.len());
    assert!(sizes.len() <= 3, "{sizes:?}");
    assert!(
        sizes.iter().all(|&size| size < 1024),
        "the body was copied: {sizes:?}"
    );

    // 16 frames with an honest content-length: exactly one buffer of that size.
    let mut service = layer.clone().layer(Inner { expected_len: 1024 });
    let mut request = Request::post("/").body(Chunks::split(&body, 64)).unwrap();
    sign_headers(request.headers_mut(), SECRET, NOW, &body);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, 1024.into());
    let (response, sizes) = allocations(|| run(service.ready_and_call(request)));
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    println!("16 frames: {} allocations {sizes:?}", sizes.len());
    let buffers: Vec<_> = sizes.iter().filter(|&&size| size >= 1024).collect();
    assert_eq!(buffers, [&1024], "{sizes:?}");

    // The buffer is sized by min(content-length, limit): a lying 2 KiB is believed (one
    // 2 KiB buffer, not the 1 MiB limit), a lying 8 KiB over a 4 KiB limit is capped.
    for (declared, limit, expected) in [(2048, DEFAULT_BODY_LIMIT, 2048), (8192, 4096, 4096)] {
        let mut service = layer
            .clone()
            .body_limit(limit)
            .layer(Inner { expected_len: 1024 });
        let mut request = Request::post("/").body(Chunks::split(&body, 64)).unwrap();
        sign_headers(request.headers_mut(), SECRET, NOW, &body);
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, declared.into());
        let (response, sizes) = allocations(|| run(service.ready_and_call(request)));
        let status = response.unwrap().status();
        let buffers: Vec<_> = sizes.iter().filter(|&&size| size >= 1024).collect();
        if declared > limit {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(buffers.is_empty(), "{sizes:?}");
        } else {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(buffers, [&expected], "{sizes:?}");
        }
    }
}

/// A declared length is a claim, not bytes: a body that declares the whole limit and
/// sends two bytes costs one buffer of at most 64 KiB, whatever the limit.
#[test]
fn a_declared_length_alone_allocates_at_most_the_cap() {
    const CAP: usize = 64 * 1024;
    for limit in [DEFAULT_BODY_LIMIT, usize::MAX] {
        let layer = AghanimSignatureLayer::new(SECRET)
            .clock(|| NOW)
            .body_limit(limit)
            .disable_buffer_budget();
        let mut service = layer.layer(Inner { expected_len: 2 });
        let mut request = Request::post("/").body(Chunks::split(b"xy", 1)).unwrap();
        sign_headers(request.headers_mut(), SECRET, NOW, "xy");
        let declared = u64::try_from(limit).unwrap_or(u64::MAX);
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, declared.into());
        let (response, sizes) = allocations(|| run(service.ready_and_call(request)));
        assert_eq!(response.unwrap().status(), StatusCode::OK, "limit {limit}");
        println!("declared {declared}, limit {limit}: {sizes:?}");
        assert!(
            sizes.iter().all(|&size| size <= CAP),
            "an allocation past the cap: {sizes:?}"
        );
        assert!(sizes.contains(&CAP), "{sizes:?}");
    }
}

trait ReadyAndCall<R>: Service<R> + Sized {
    fn ready_and_call(
        &mut self,
        request: R,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> {
        async move { self.ready().await?.call(request).await }
    }
}

impl<S: Service<R>, R> ReadyAndCall<R> for S {}

/// A body of the given bytes in frames of `size`, made before anything is counted.
struct Chunks(std::collections::VecDeque<Bytes>);

impl Chunks {
    fn split(body: &[u8], size: usize) -> Self {
        Self(body.chunks(size).map(Bytes::copy_from_slice).collect())
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(http_body::Frame::data(chunk))),
        )
    }
}
