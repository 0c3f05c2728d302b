//! The body types the middlewares share: the verified request body the inner service
//! receives, and the response body that is either the inner service's or one this crate
//! wrote (a rejection, an error, a replayed answer).

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The request body the inner service receives: exactly the verified bytes, in one
/// frame. The same bytes are in the [`VerifiedBody`](crate::VerifiedBody) extension.
///
/// Trailers of the original body are not passed on; the signature does not cover them.
///
/// # Example
///
/// ```
/// use aghanim_webhook::body::BufferedBody;
/// use http_body_util::BodyExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = BufferedBody::from(bytes::Bytes::from_static(b"{}"));
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
/// # }
/// ```
#[derive(Default)]
pub struct BufferedBody {
    bytes: Option<Bytes>,
}

/// The length only: a body can be a megabyte, and `Debug` output ends up in logs.
impl std::fmt::Debug for BufferedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedBody")
            .field("len", &self.bytes.as_ref().map_or(0, Bytes::len))
            .finish()
    }
}

impl BufferedBody {
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self {
            bytes: Some(bytes).filter(|bytes| !bytes.is_empty()),
        }
    }
}

impl From<Bytes> for BufferedBody {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.bytes.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
    }
}

pin_project! {
    /// The response body of this crate's middlewares: the inner service's body, or a
    /// body the middleware wrote itself (a rejection, an error, a replayed answer).
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{body::ResponseBody, AghanimSignatureLayer};
    /// use http_body_util::{BodyExt, Full};
    /// use bytes::Bytes;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let service = ServiceBuilder::new()
    ///     .layer(AghanimSignatureLayer::new("secret"))
    ///     .service_fn(|_| async { Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default())) });
    /// let response: http::Response<ResponseBody<Full<Bytes>>> =
    ///     service.oneshot(http::Request::new(Full::<Bytes>::default())).await.unwrap();
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert!(body.starts_with(br#"{"status":"error""#));
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Buffered {
            #[pin]
            body: BufferedBody,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body the middleware wrote itself, already in memory.
    pub(crate) fn buffered(body: Bytes) -> Self {
        Self {
            kind: Kind::Buffered {
                body: BufferedBody::new(body),
            },
        }
    }
}

/// An empty inner body, so that layers such as tower-http's `TimeoutLayer`, which build
/// their own responses with `Default`, can sit outside this one.
impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Buffered { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Buffered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Buffered { body } => body.size_hint(),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("ResponseBody::Inner").field(body).finish(),
            Kind::Buffered { body } => f.debug_tuple("ResponseBody::Buffered").field(body).finish(),
        }
    }
}
