use std::{borrow::Cow, fmt};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::response::{self, error_body};

/// Turns a handler's answer into the HTTP response Aghanim receives.
///
/// Implemented by every response type here, by `Result`s of them, and by
/// `http::Response<Bytes>` as an escape hatch.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{Ack, IntoWebhookResponse};
///
/// let response = Ack.into_webhook_response();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.body().as_ref(), br#"{"status":"ok"}"#);
/// ```
pub trait IntoWebhookResponse {
    /// The response.
    fn into_webhook_response(self) -> Response<Bytes>;
}

/// `status` with `body` serialized as JSON.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Bytes> {
    match serde_json::to_vec(body) {
        Ok(json) => response::json(status, Bytes::from(json)),
        // Serializing fails only for maps with non-string keys, which none of these types
        // can hold; answer like a server error rather than panic if that ever changes.
        Err(_) => response::static_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_body!("internal_error", "Response could not be serialized"),
        ),
    }
}

impl IntoWebhookResponse for Response<Bytes> {
    fn into_webhook_response(self) -> Response<Bytes> {
        self
    }
}

impl<T, E> IntoWebhookResponse for Result<T, E>
where
    T: IntoWebhookResponse,
    E: IntoWebhookResponse,
{
    fn into_webhook_response(self) -> Response<Bytes> {
        match self {
            Ok(answer) => answer.into_webhook_response(),
            Err(error) => error.into_webhook_response(),
        }
    }
}

/// `{"status":"ok"}` with 200: the acknowledgement for `item.add`, `item.remove` and
/// notification events.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{Ack, IntoWebhookResponse};
/// assert_eq!(Ack.into_webhook_response().body().as_ref(), br#"{"status":"ok"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack;

impl IntoWebhookResponse for Ack {
    fn into_webhook_response(self) -> Response<Bytes> {
        response::json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
    }
}

/// The answer to `player.verify` for a player who may log in: 200 with the player.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{IntoWebhookResponse, PlayerVerifyResponse};
///
/// let mut player = PlayerVerifyResponse::new("testplayer", "Test Player");
/// player.attributes.level = Some(42);
/// player.country = Some("DE".into());
///
/// let response = player.into_webhook_response();
/// let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
/// assert_eq!(json, serde_json::json!({
///     "player_id": "testplayer",
///     "name": "Test Player",
///     "attributes": {"level": 42},
///     "country": "DE",
/// }));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlayerVerifyResponse {
    /// The player's id, as asked.
    pub player_id: String,
    /// Display name in the web shop.
    pub name: String,
    /// Attributes for segmentation and pricing; always sent, `{}` when empty.
    pub attributes: PlayerAttributes,
    /// Avatar picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the player is banned from the shop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned: Option<bool>,
    /// Segments the player belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<String>>,
    /// ISO 3166-1 alpha-2 country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Game-defined attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_attributes: Option<Map<String, Value>>,
    /// Virtual currency balances, each at least `{"sku": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balances: Option<Vec<Value>>,
}

impl PlayerVerifyResponse {
    /// A player with no attributes and no optional fields.
    pub fn new(player_id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            player_id: player_id.into(),
            name: name.into(),
            attributes: PlayerAttributes::default(),
            avatar_url: None,
            email: None,
            banned: None,
            segments: None,
            country: None,
            custom_attributes: None,
            balances: None,
        }
    }
}

impl IntoWebhookResponse for PlayerVerifyResponse {
    fn into_webhook_response(self) -> Response<Bytes> {
        json_response(StatusCode::OK, &self)
    }
}

/// `attributes` of a [`PlayerVerifyResponse`]. Which of these Aghanim requires is not
/// documented; the OpenAPI description suggests all are optional (our inference).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlayerAttributes {
    /// Player level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    /// Platform, e.g. `ios`, `android`, `pc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Marketplace, e.g. `app_store`, `google_play`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketplace: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Any other attribute, sent as is.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The answer to `store.get`: 200 with the items to show.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{IntoWebhookResponse, StoreGetResponse, StoreItem};
///
/// let store = StoreGetResponse::new(vec![StoreItem::new("gems_100").ends_at(1_800_000_000)]);
/// let json: serde_json::Value = serde_json::from_slice(store.into_webhook_response().body()).unwrap();
/// assert_eq!(json, serde_json::json!({
///     "items": [{"sku": "gems_100", "start_at": null, "end_at": 1_800_000_000}]
/// }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreGetResponse {
    /// The items, in display order.
    pub items: Vec<StoreItem>,
}

impl StoreGetResponse {
    /// A store showing `items`.
    pub fn new(items: Vec<StoreItem>) -> Self {
        Self { items }
    }
}

impl IntoWebhookResponse for StoreGetResponse {
    fn into_webhook_response(self) -> Response<Bytes> {
        json_response(StatusCode::OK, &self)
    }
}

/// An item in a [`StoreGetResponse`]; `start_at` / `end_at` are Unix seconds or null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreItem {
    /// The item's SKU.
    pub sku: String,
    /// Shown from; null for now.
    pub start_at: Option<i64>,
    /// Shown until; null for always.
    pub end_at: Option<i64>,
}

impl StoreItem {
    /// An item shown now and always.
    pub fn new(sku: impl Into<String>) -> Self {
        Self {
            sku: sku.into(),
            start_at: None,
            end_at: None,
        }
    }

    /// Shown from `unix_seconds`.
    #[must_use]
    pub fn starts_at(mut self, unix_seconds: i64) -> Self {
        self.start_at = Some(unix_seconds);
        self
    }

    /// Shown until `unix_seconds`.
    #[must_use]
    pub fn ends_at(mut self, unix_seconds: i64) -> Self {
        self.end_at = Some(unix_seconds);
        self
    }
}

/// An error answer in Aghanim's flat shape, `{"status":"error","code":…,"message":…}`.
///
/// The status code defaults by [`ErrorCode`]: 404 `not_found`, 403 `invalid_signature`
/// and `banned`, 400 for the rest. Some events want errors reported with 200
/// (`player.update`, `player.lookup`): use [`with_status`](Self::with_status).
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{ErrorCode, IntoWebhookResponse, WebhookError};
///
/// let response = WebhookError::new(ErrorCode::NotFound, "Player not found").into_webhook_response();
/// assert_eq!(response.status(), 404);
/// assert_eq!(
///     response.body().as_ref(),
///     br#"{"status":"error","code":"not_found","message":"Player not found"}"#
/// );
///
/// let declined = WebhookError::new(ErrorCode::Declined, "Out of stock");
/// assert_eq!(declined.status(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookError {
    code: ErrorCode,
    message: Cow<'static, str>,
    status: StatusCode,
}

impl WebhookError {
    /// An error with the default status for `code`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        let status = code.default_status();
        Self {
            code,
            message: message.into(),
            status,
        }
    }

    /// `not_found`, 404.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `validation_error`, 400.
    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    /// `declined`, 400: `item.add` refuses the purchase, which can make Aghanim refund it.
    pub fn declined(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Declined, message)
    }

    /// 400 `unknown_event_type` for an event whose type the handler or extractor at hand
    /// does not take.
    pub(crate) fn not_handled_here(event_type: &super::EventType) -> Self {
        Self::new(
            ErrorCode::UnknownEventType,
            format!("event_type {event_type} is not handled here"),
        )
    }

    /// 500 for a request that reached `what` without passing the signature layer: a
    /// stack built wrong, shown at once rather than handling unverified events.
    pub(crate) fn missing_layer(what: &str) -> Self {
        Self::misconfigured(format!(
            "{what} must sit behind AghanimSignatureLayer: no verified body"
        ))
    }

    /// 500 `internal_error`: the stack is put together wrongly, whatever the request.
    pub(crate) fn misconfigured(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Custom("internal_error".into()), message)
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The same error answered with `status`.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status code it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoWebhookResponse for WebhookError {
    fn into_webhook_response(self) -> Response<Bytes> {
        response::error(self.status, self.code.as_str(), &self.message)
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for WebhookError {}

/// The `code` of a [`WebhookError`]: the ones Aghanim documents, or your own.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::ErrorCode;
/// assert_eq!(ErrorCode::ValidationError.as_str(), "validation_error");
/// assert_eq!(ErrorCode::Custom("maintenance".into()).as_str(), "maintenance");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `not_found`: no such player (or other entity).
    NotFound,
    /// `invalid_signature`.
    InvalidSignature,
    /// `validation_error`: the request does not have the expected shape.
    ValidationError,
    /// `banned`: the player may not use the shop.
    Banned,
    /// `declined`: `item.add` refuses the purchase.
    Declined,
    /// `unknown_event_type`: no handler for the event's type.
    UnknownEventType,
    /// Any other code, sent verbatim.
    Custom(Cow<'static, str>),
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidSignature => "invalid_signature",
            Self::ValidationError => "validation_error",
            Self::Banned => "banned",
            Self::Declined => "declined",
            Self::UnknownEventType => "unknown_event_type",
            Self::Custom(code) => code,
        }
    }

    /// 404 for `not_found`, 403 for `invalid_signature` and `banned`, else 400.
    pub fn default_status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidSignature | Self::Banned => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
