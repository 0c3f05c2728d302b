//! A body that yields frames as told: the tests and the allocation count include it.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

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
