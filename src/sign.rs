use std::time::{SystemTime, UNIX_EPOCH};

use hmac::Mac;
use http::{HeaderMap, HeaderValue};

use crate::{secret::keyed_hmac, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Signs `body` the way Aghanim does: lowercase hex HMAC-SHA256 keyed with `secret`
/// over `"{timestamp}.{body}"`.
///
/// Byte for byte the recipe of Aghanim's Python template,
/// `hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()`.
///
/// # Example
///
/// ```
/// let signature = aghanim_webhook::sign("secret", 1_700_000_000, r#"{"event_type":"player.verify","event_data":{"player_id":"testplayer"}}"#);
/// assert_eq!(signature.len(), 64);
/// assert!(signature.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
/// ```
pub fn sign(secret: impl AsRef<[u8]>, timestamp: u64, body: impl AsRef<[u8]>) -> String {
    let mut mac = keyed_hmac(secret.as_ref());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_ref());
    lower_hex(&mac.finalize().into_bytes())
}

/// Adds both signature headers for `body` to `headers`, replacing any already there.
///
/// This is how to build requests that your own stack accepts in tests.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{sign_headers, unix_now, AghanimSignatureLayer, VerifiedBody};
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("test-secret"))
///     .service_fn(|req: Request<_>| async move {
///         let body = req.extensions().get::<VerifiedBody>().unwrap().bytes().clone();
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
///     });
///
/// let body = r#"{"event_type":"player.verify","event_data":{"player_id":"testplayer"}}"#;
/// let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
/// sign_headers(request.headers_mut(), "test-secret", unix_now(), body);
///
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
/// # }
/// ```
pub fn sign_headers(
    headers: &mut HeaderMap,
    secret: impl AsRef<[u8]>,
    timestamp: u64,
    body: impl AsRef<[u8]>,
) {
    let signature = sign(secret, timestamp, body);
    headers.insert(TIMESTAMP_HEADER.clone(), HeaderValue::from(timestamp));
    // Hex digits are always a valid header value.
    if let Ok(value) = HeaderValue::try_from(signature) {
        headers.insert(SIGNATURE_HEADER.clone(), value);
    }
}

/// The system clock as Unix seconds: the clock the layer uses unless told otherwise.
///
/// A clock set before 1970 reads 0.
///
/// # Example
///
/// ```
/// assert!(aghanim_webhook::unix_now() > 1_700_000_000);
/// ```
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `bytes` as lowercase hex digits, table-driven (`hex::encode` goes through a `char`
/// iterator, several times slower).
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        // A nibble indexes 16 digits.
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}
