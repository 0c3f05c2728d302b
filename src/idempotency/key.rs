use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::fingerprint::fingerprint;
use crate::{events::EventType, sign::lower_hex};

/// The envelope fields the key is made of, borrowed from the verified bytes: what
/// `Event` would allocate for the other fields is skipped.
#[derive(Deserialize)]
struct KeyFields<'a> {
    event_type: EventType,
    #[serde(borrow)]
    event_data: &'a RawValue,
    #[serde(default, borrow)]
    game_id: Option<Cow<'a, str>>,
    #[serde(default)]
    sandbox: Option<bool>,
    #[serde(default, borrow)]
    idempotency_key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event_id: Option<Cow<'a, str>>,
}

/// What the layer knows about a verified delivery it deduplicates.
///
/// The store key and the fingerprint are the store format, persisted and read across
/// versions: `tests/vectors/idempotency.json` pins their bytes, and the rule for
/// changing them is written in `tests/vectors/idempotency.py`.
pub(crate) struct Delivery {
    /// The store key: a hash of the scope and the id, so its length and alphabet are
    /// fixed whatever Aghanim sends.
    pub(crate) store_key: HexDigest,
    /// The scoped key in clear, for the handler's own records.
    pub(crate) dedupe_key: String,
    pub(crate) fingerprint: HexDigest,
}

/// A SHA-256 digest in lowercase hex, which only this module makes: 64 characters of
/// `0-9a-f`, so that a store may write it into a statement's text (the PostgreSQL
/// store does) knowing by its type that it can carry no SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HexDigest(String);

impl HexDigest {
    fn of(digest: &[u8; 32]) -> Self {
        Self(lower_hex(digest))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Delivery {
    /// `None` for a body that is not an event, or one with neither `idempotency_key`
    /// nor `event_id`: nothing to recognise a retry by. With `per_payload`, the store
    /// key covers the payload's fingerprint too, so that each distinct payload under
    /// one id is claimed (and replayed) on its own.
    pub(crate) fn of(verified: &[u8], per_payload: bool) -> Option<Self> {
        let event: KeyFields<'_> = serde_json::from_slice(verified).ok()?;
        // As `Event::dedupe_key`: the idempotency key, else the event id; empty is absent.
        let id = present(&event.idempotency_key).or_else(|| present(&event.event_id))?;
        let sandbox = event.sandbox == Some(true);
        let game = event.game_id.as_deref().unwrap_or("");
        let dedupe_key = RecordKey::dedupe_key(game, sandbox, &event.event_type, id);
        let fingerprint = fingerprint(event.event_data.get());
        let mut scope = scope(game, environment(sandbox), &event.event_type, id);
        if per_payload {
            scope.update(fingerprint);
        }
        Some(Self {
            store_key: HexDigest::of(&scope.finalize().into()),
            dedupe_key,
            fingerprint: HexDigest::of(&fingerprint),
        })
    }
}

fn environment(sandbox: bool) -> &'static str {
    if sandbox {
        "sandbox"
    } else {
        "live"
    }
}

/// The hash of a delivery's scope, before the payload's fingerprint (for a per-payload
/// key): the one definition of the store key, which the layer and [`RecordKey`] share.
fn scope(game: &str, environment: &str, event_type: &EventType, id: &str) -> Sha256 {
    let mut scope = Sha256::new();
    for part in [game, environment, event_type.as_str(), id] {
        // Length-prefixed, so no choice of ids can make two scopes hash alike.
        scope.update((part.len() as u64).to_be_bytes());
        scope.update(part);
    }
    scope
}

/// The key a delivery's record is stored under, in every store: found from the ids an
/// operator has, exactly as the layer computes it.
///
/// The layer keys a delivery by its `game_id` (empty when absent), sandbox or live,
/// `event_type`, and its `idempotency_key`, or its `event_id` when it has no
/// idempotency key. [`RedisStore`] and [`PostgresStore`] look a record up by it; the
/// `aghanim-webhook records` command does it for you.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{events::EventType, idempotency::RecordKey};
///
/// let delivery = br#"{"event_type":"item.add","game_id":"gm_1","event_id":"whevt_1",
///     "idempotency_key":"ord_1001","event_data":{"player_id":"p7","items":[]}}"#;
/// let from_ids = RecordKey::new("gm_1", false, &EventType::ItemAdd, "ord_1001");
/// assert_eq!(RecordKey::of_delivery(delivery, false), Some(from_ids.clone()));
/// assert_eq!(from_ids.as_str().len(), 64);
/// ```
///
#[cfg_attr(
    feature = "redis",
    doc = "[`RedisStore`]: crate::idempotency::RedisStore"
)]
#[cfg_attr(
    not(feature = "redis"),
    doc = "[`RedisStore`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.RedisStore.html"
)]
#[cfg_attr(
    feature = "postgres",
    doc = "[`PostgresStore`]: crate::idempotency::PostgresStore"
)]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`PostgresStore`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.PostgresStore.html"
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordKey(HexDigest);

impl RecordKey {
    /// The key of the delivery of `event_type` with this `id` (its `idempotency_key`,
    /// or its `event_id` when it was sent without one) for `game_id`, in the sandbox or
    /// live. A layer that deduplicates each payload on its own
    /// ([`Policy::DeduplicateAllowingChanges`](crate::idempotency::Policy)) keys by the
    /// payload too: use [`of_delivery`](Self::of_delivery) for those.
    pub fn new(game_id: &str, sandbox: bool, event_type: &EventType, id: &str) -> Self {
        let scope = scope(game_id, environment(sandbox), event_type, id);
        Self(HexDigest::of(&scope.finalize().into()))
    }

    /// The same delivery's scope in clear, as the layer logs it and
    /// [`Claim::dedupe_key`] gives it: `{game_id}:{sandbox|live}:{event_type}:{id}`.
    ///
    /// ```
    /// # use aghanim_webhook::{events::EventType, idempotency::RecordKey};
    /// assert_eq!(
    ///     RecordKey::dedupe_key("gm_1", true, &EventType::ItemAdd, "ord_1"),
    ///     "gm_1:sandbox:item.add:ord_1"
    /// );
    /// ```
    pub fn dedupe_key(game_id: &str, sandbox: bool, event_type: &EventType, id: &str) -> String {
        format!("{game_id}:{}:{event_type}:{id}", environment(sandbox))
    }

    /// The key of a delivery's body, as the layer computes it; `per_payload` for a type
    /// deduplicated per payload. `None` when the body is not an event or carries no id.
    pub fn of_delivery(body: &[u8], per_payload: bool) -> Option<Self> {
        Delivery::of(body, per_payload).map(|delivery| Self(delivery.store_key))
    }

    /// A key as stored (64 hex digits, either case), e.g. as a store lists it.
    pub fn from_hex(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(HexDigest(text.to_ascii_lowercase())))
    }

    /// The key as stored: 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn present<'a>(id: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    id.as_deref().filter(|id| !id.is_empty())
}

/// The claim a deduplicated request runs under, in its extensions: the handler can key
/// its own write by [`dedupe_key`](Self::dedupe_key), in the same transaction as its
/// effect, to make the effect exactly once whatever happens to the store. A `Dispatch`
/// handler takes it as an argument ([`FromDelivery`](crate::dispatch::FromDelivery)),
/// an axum handler extracts it.
///
/// # Example
///
/// ```
/// use aghanim_webhook::idempotency::Claim;
/// use http::Request;
///
/// fn attempt<B>(request: &Request<B>) -> Option<u64> {
///     request.extensions().get::<Claim>().map(Claim::attempt)
/// }
/// # assert_eq!(attempt(&Request::new(())), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub(crate) dedupe_key: String,
    pub(crate) attempt: u64,
}

impl Claim {
    /// `{game_id}:{sandbox|live}:{event_type}:{idempotency_key or event_id}`: the
    /// delivery's identity, scoped as the layer scopes it.
    pub fn dedupe_key(&self) -> &str {
        &self.dedupe_key
    }

    /// Which claim of this key this run is, from 1: a fencing number that only grows,
    /// for logs or a `WHERE last_attempt < $attempt` guard in your own store. On the
    /// transactional store it is always 1: a run that did not commit left nothing
    /// behind, not even its count.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::Delivery;

    #[test]
    fn the_key_is_scoped_by_game_environment_and_type() {
        let key =
            |body: &str| Delivery::of(body.as_bytes(), false).map(|delivery| delivery.store_key);
        let base =
            key(r#"{"event_type":"item.add","event_data":{},"game_id":"g","idempotency_key":"k"}"#);
        assert!(base.as_ref().is_some_and(|key| key.as_str().len() == 64));
        for other in [
            r#"{"event_type":"item.remove","event_data":{},"game_id":"g","idempotency_key":"k"}"#,
            r#"{"event_type":"item.add","event_data":{},"game_id":"h","idempotency_key":"k"}"#,
            r#"{"event_type":"item.add","event_data":{},"game_id":"g","idempotency_key":"k","sandbox":true}"#,
            r#"{"event_type":"item.add","event_data":{},"game_id":"g:live:item.add","idempotency_key":""}"#,
        ] {
            assert_ne!(key(other), base, "{other}");
        }
        let same = r#"{"event_type":"item.add","event_data":{"x":1},"game_id":"g","event_id":"e","idempotency_key":"k"}"#;
        assert_eq!(key(same), base);
        assert_eq!(key(r#"{"event_type":"item.add","event_data":{}}"#), None);
    }
}
