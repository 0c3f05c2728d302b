use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use super::{DeadLetter, DeadLetters};
use crate::{idempotency::REPLAYED_HEADER, ready_call::ReadyCall, sign_headers, unix_now};

/// What [`replay`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replayed {
    /// The answer's status.
    pub status: u16,
    /// The answer's body.
    pub body: Bytes,
    /// The idempotency layer replayed a recorded answer: the delivery had been applied
    /// already (by Aghanim's own retry, or an earlier replay), and was not run again.
    pub was_applied_before: bool,
    /// The letter is resolved now: a delivery of its key succeeded.
    pub resolved: bool,
}

/// Delivers `letter` again through `service` in process, signed with `secret` and a
/// fresh timestamp, as Aghanim's retries and `aghanim-webhook records replay` are: it
/// passes the same signature check, idempotency layer and handler, so a delivery
/// applied meanwhile is replayed from its record and never applied twice. A 2xx of the
/// idempotency layer resolves the letter; any other answer updates it (one more
/// attempt, the new reason), and nothing is deleted.
///
/// A letter `letters` holds as resolved is not sent ([`ReplayError::Applied`]): it was
/// applied, and should its record be gone (the retention, `forget_older_than`), a
/// replay would apply it again; nor is one `letters` no longer holds
/// ([`ReplayError::Gone`]: forgotten, or expired after it was resolved). A [`Reason::Stale`](super::Reason::Stale) letter is
/// sent: check first that its purchase was not applied, since a copy whose record was
/// lost (evicted from a full memory store, a Redis failover) is not recognised
/// (`aghanim-webhook records replay` asks for `--stale`).
///
/// # Errors
///
/// When the letter is resolved, `service` fails, or reading the letter from `letters`
/// does.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{
///     dead_letter::{replay, DeadLetters, Filter},
///     dispatch::Dispatch,
///     events::{Ack, Event, EventType, ItemChange, WebhookError, ErrorCode},
///     idempotency::{IdempotencyLayer, MemoryStore},
///     sign_headers, AghanimSignatureLayer,
/// };
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::Full;
/// use std::sync::{atomic::{AtomicBool, Ordering}, Arc};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let fixed = Arc::new(AtomicBool::new(false));
/// let dispatch = Dispatch::with_state(fixed.clone()).on(
///     EventType::ItemAdd,
///     |fixed: Arc<AtomicBool>, _: Event<ItemChange>| async move {
///         if fixed.load(Ordering::SeqCst) {
///             Ok(Ack)
///         } else {
///             Err(WebhookError::new(ErrorCode::Custom("internal".into()), "bug").with_status(http::StatusCode::INTERNAL_SERVER_ERROR))
///         }
///     },
/// );
/// let webhook = ServiceBuilder::new()
///     .layer(AghanimSignatureLayer::new("secret"))
///     .layer(IdempotencyLayer::new(store.clone()))
///     .service(dispatch);
///
/// let body = r#"{"event_id":"whevt_1","event_type":"item.add","idempotency_key":"ord_1",
///                "event_data":{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}}"#;
/// let mut request = Request::post("/webhook").body(Full::<Bytes>::from(body)).unwrap();
/// sign_headers(request.headers_mut(), "secret", aghanim_webhook::unix_now(), body);
/// assert_eq!(webhook.clone().oneshot(request).await.unwrap().status(), 500);
///
/// fixed.store(true, Ordering::SeqCst); // the fix is deployed
/// for letter in store.list(&Filter::unresolved()).await.unwrap() {
///     let replayed = replay(&store, &letter, "secret", webhook.clone()).await.unwrap();
///     assert_eq!(replayed.status, 200);
///     assert!(replayed.resolved);
/// }
/// assert!(store.list(&Filter::unresolved()).await.unwrap().is_empty());
/// # }
/// ```
pub async fn replay<S, ResBody>(
    letters: &dyn DeadLetters,
    letter: &DeadLetter,
    secret: impl AsRef<[u8]>,
    service: S,
) -> Result<Replayed, ReplayError<S::Error>>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    match letters.get(&letter.key).await.map_err(ReplayError::Store)? {
        Some(current) if current.resolved => return Err(ReplayError::Applied),
        Some(_) => {}
        None => return Err(ReplayError::Gone),
    }
    let mut request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(letter.body.clone()))
        .map_err(|_| ReplayError::Store(crate::idempotency::StoreError::new("request")))?;
    sign_headers(request.headers_mut(), secret, unix_now(), &letter.body);
    let response = ReadyCall::new(service, request)
        .await
        .map_err(ReplayError::Service)?;
    let status = response.status().as_u16();
    let was_applied_before = response.headers().contains_key(REPLAYED_HEADER);
    let body = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let resolved = letters
        .get(&letter.key)
        .await
        .map_err(ReplayError::Store)?
        .is_some_and(|letter| letter.resolved);
    Ok(Replayed {
        status,
        body,
        was_applied_before,
        resolved,
    })
}

/// Why [`replay`] could not tell how the replay went.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError<E> {
    /// The letter is resolved: its delivery was applied, and is not sent again.
    Applied,
    /// The letter is no longer kept (forgotten, or expired after it was resolved): it
    /// is not sent from a copy.
    Gone,
    /// The service failed.
    Service(E),
    /// The letters could not be read.
    Store(crate::idempotency::StoreError),
}

impl<E: std::fmt::Display> std::fmt::Display for ReplayError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Applied => f.write_str("the delivery was applied since: not replayed"),
            Self::Gone => f.write_str("the letter is no longer kept: not replayed"),
            Self::Service(error) => write!(f, "the service failed: {error}"),
            Self::Store(error) => write!(f, "{error}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ReplayError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Applied | Self::Gone => None,
            Self::Service(error) => Some(error),
            Self::Store(error) => Some(error),
        }
    }
}
