use std::fmt;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::{sign_headers, unix_now, DEFAULT_TOLERANCE};

/// A signed `POST` of a delivery's bytes, as Aghanim sends it, for a test of your own
/// stack; [`stale`](Self::stale), [`forged`](Self::forged) and
/// [`reserialized`](Self::reserialized) make the requests a negative test needs.
///
/// The body is a [`Full<Bytes>`], which an axum `Router` and a plain tower service
/// both take. The request carries the headers Aghanim sends (`content-type`,
/// `user-agent`, both signature headers), signed at the current time unless
/// [`timestamp`](Self::timestamp) says otherwise. The secret never shows in `Debug`.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{events::EventType, testing::{Sample, SignedRequest}, AghanimSignatureLayer};
/// use http::{Response, StatusCode};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let webhook = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("whsec_test"))
///     .service(service_fn(|_| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }));
/// let sample = Sample::new(EventType::ItemAdd);
///
/// let signed = SignedRequest::new("whsec_test", &sample).build();
/// assert_eq!(webhook.clone().oneshot(signed).await.unwrap().status(), StatusCode::OK);
///
/// for refused in [
///     SignedRequest::new("whsec_test", &sample).stale(),
///     SignedRequest::new("whsec_test", &sample).forged(),
/// ] {
///     let response = webhook.clone().oneshot(refused.build()).await.unwrap();
///     assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct SignedRequest {
    secret: Vec<u8>,
    body: Bytes,
    timestamp: Option<u64>,
    uri: String,
    forged: bool,
}

/// A request of `body` signed with `secret` now: [`SignedRequest::new`]`(..).build()`.
///
/// ```
/// use aghanim_webhook::testing::signed_request;
///
/// let request = signed_request("whsec_test", r#"{"event_type":"player.verify","event_data":{"player_id":"p1"}}"#);
/// assert!(request.headers().contains_key("x-aghanim-signature"));
/// ```
pub fn signed_request(secret: impl AsRef<[u8]>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    SignedRequest::new(secret, body).build()
}

impl SignedRequest {
    /// `body` to be signed with `secret`, posted to `/webhook`.
    pub fn new(secret: impl AsRef<[u8]>, body: impl Into<Bytes>) -> Self {
        Self {
            secret: secret.as_ref().to_vec(),
            body: body.into(),
            timestamp: None,
            uri: "/webhook".to_owned(),
            forged: false,
        }
    }

    /// Signs at `timestamp` (Unix seconds) instead of now.
    #[must_use]
    pub fn timestamp(mut self, timestamp: u64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Signs a minute beyond the layer's default tolerance ago: authentic, and refused
    /// as outside the window.
    #[must_use]
    pub fn stale(self) -> Self {
        let age = DEFAULT_TOLERANCE.as_secs() + 60;
        self.timestamp(unix_now().saturating_sub(age))
    }

    /// Signs with another secret: a forgery, refused with 403.
    #[must_use]
    pub fn forged(mut self) -> Self {
        self.forged = true;
        self
    }

    /// Writes the body again as the same JSON value with its members in another order
    /// and other whitespace, and signs those bytes, as a sender that re-encodes a
    /// retry would. A body that is not JSON is kept as it is.
    #[must_use]
    pub fn reserialized(mut self) -> Self {
        if let Some(body) = reserialize(&self.body) {
            self.body = body;
        }
        self
    }

    /// Posts to `uri` instead of `/webhook`.
    #[must_use]
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// The bytes that will be sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request.
    ///
    /// # Panics
    ///
    /// When the URI set with [`uri`](Self::uri) is not a valid URI.
    pub fn build(self) -> Request<Full<Bytes>> {
        let mut request = Request::post(self.uri.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "Aghanim/0.1.0")
            .body(Full::new(self.body.clone()))
            .unwrap_or_else(|error| panic!("{:?} is not a URI: {error}", self.uri));
        let timestamp = self.timestamp.unwrap_or_else(unix_now);
        if self.forged {
            let mut other = self.secret.clone();
            other.extend_from_slice(b"-forged");
            sign_headers(request.headers_mut(), other, timestamp, &self.body);
        } else {
            sign_headers(request.headers_mut(), &self.secret, timestamp, &self.body);
        }
        request
    }
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("uri", &self.uri)
            .field("timestamp", &self.timestamp)
            .field("forged", &self.forged)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// `json` written again as the same JSON value: every object's members in reverse
/// order, with a space after each `,` and `:`; `None` when it is not JSON. When that
/// happens to be the original text, the members are written compactly in order instead,
/// so the bytes always differ.
///
/// ```
/// use aghanim_webhook::testing::reserialize;
///
/// let original = br#"{"a":1,"b":{"c":[true,null]}}"#;
/// let again = reserialize(original).unwrap();
/// assert_ne!(&again[..], &original[..]);
/// let value = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap();
/// assert_eq!(value(&again), value(original));
/// ```
pub fn reserialize(json: &[u8]) -> Option<Bytes> {
    let value: Value = serde_json::from_slice(json).ok()?;
    let mut spaced = String::new();
    write(&value, true, &mut spaced);
    if spaced.as_bytes() != json {
        return Some(Bytes::from(spaced));
    }
    let mut compact = String::new();
    write(&value, false, &mut compact);
    Some(Bytes::from(compact))
}

fn write(value: &Value, spaced: bool, out: &mut String) {
    let (comma, colon) = if spaced { (", ", ": ") } else { (",", ":") };
    match value {
        Value::Object(members) => {
            out.push('{');
            let mut members: Vec<_> = members.iter().collect();
            if spaced {
                members.reverse();
            }
            for (index, (name, member)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(comma);
                }
                write(&Value::String(name.clone()), spaced, out);
                out.push_str(colon);
                write(member, spaced, out);
            }
            out.push('}');
        }
        Value::Array(elements) => {
            out.push('[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push_str(comma);
                }
                write(element, spaced, out);
            }
            out.push(']');
        }
        // A scalar is written by serde_json, which cannot fail on one.
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap_or_default()),
    }
}
