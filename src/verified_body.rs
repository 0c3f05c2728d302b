use std::{fmt, ops::Deref};

use bytes::Bytes;

/// The raw body of a request whose signature checked out, with its timestamp.
///
/// [`AghanimSignatureLayer`](crate::AghanimSignatureLayer) inserts it into the request
/// extensions. The bytes are shared with the request body, not copied: cloning a
/// `VerifiedBody` is cheap.
///
/// # Example
///
/// ```
/// use aghanim_webhook::VerifiedBody;
/// use http::Request;
///
/// fn event_bytes<B>(request: &Request<B>) -> Option<&[u8]> {
///     request.extensions().get::<VerifiedBody>().map(AsRef::as_ref)
/// }
/// # let request = Request::new(());
/// # assert!(event_bytes(&request).is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedBody {
    bytes: Bytes,
    timestamp: u64,
}

impl VerifiedBody {
    pub(crate) fn new(bytes: Bytes, timestamp: u64) -> Self {
        Self { bytes, timestamp }
    }

    /// The body exactly as signed.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The body, giving up the timestamp.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The verified `x-aghanim-signature-timestamp`, in Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
}

impl AsRef<[u8]> for VerifiedBody {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Deref for VerifiedBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for VerifiedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBody")
            .field("len", &self.bytes.len())
            .field("timestamp", &self.timestamp)
            .finish()
    }
}
