use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Deserialize;

/// One authentic delivery that was not applied, as a [`DeadLetters`](super::DeadLetters)
/// store keeps it: what is needed to apply it later, and why it was not.
///
/// # Example
///
/// ```
/// use aghanim_webhook::dead_letter::{DeadLetter, Reason};
///
/// let body = br#"{"event_type":"item.add","game_id":"gm_1","idempotency_key":"ord_1","event_data":{}}"#;
/// let letter = DeadLetter::of_delivery(body, false, Reason::NoHandler, 400, "no handler").unwrap();
/// assert_eq!((letter.game_id.as_str(), letter.event_type.as_str()), ("gm_1", "item.add"));
/// assert_eq!(letter.key.len(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The delivery's store key, as its idempotency record's
    /// ([`RecordKey`](crate::idempotency::RecordKey)): 64 hex digits.
    pub key: String,
    /// Its `game_id` (empty when absent).
    pub game_id: String,
    /// Whether it came from the sandbox.
    pub sandbox: bool,
    /// Its `event_type`.
    pub event_type: String,
    /// Its `idempotency_key`, else its `event_id`: what Aghanim's dashboard and the
    /// player's order show.
    pub delivery_id: String,
    /// The verified bytes, exactly as signed.
    pub body: Bytes,
    /// Why the last attempt was not applied.
    pub reason: Reason,
    /// What the last attempt's answer said (its error code and message, the field a
    /// `validation_error` names), or a stale delivery's age; at most 500 bytes.
    pub detail: String,
    /// The status the last attempt was answered.
    pub status: u16,
    /// How many attempts failed.
    pub attempts: u64,
    /// When the first failed attempt arrived.
    pub first_seen: SystemTime,
    /// When the last one did.
    pub last_seen: SystemTime,
    /// A delivery of its key has since succeeded: it was applied.
    pub resolved: bool,
}

/// Why an authentic delivery was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The handler answered 5xx, its service failed, or it panicked.
    HandlerFailed,
    /// 400 `validation_error`: the event does not fit the handler's data type (a
    /// renamed or retyped field); the detail names the field.
    Invalid,
    /// No handler for its event type.
    NoHandler,
    /// Any other answer that is not final: 404, 409, 429, a 400 that is not `declined`.
    NotFinal,
    /// The handler ran past the layer's run timeout.
    TimedOut,
    /// Cancelled at a drain, past its deadline.
    Cancelled,
    /// The request was dropped while the handler ran (the client hung up, a timeout
    /// outside the layer fired): on the transactional store, its transaction rolled
    /// back. (The memory and Redis stores run the handler to its end in a task of its
    /// own, whatever happens to the request.)
    Dropped,
    /// Recording its answer failed (on PostgreSQL, the commit): answered 503, rolled
    /// back. Should the commit have gone through after all, the letter counts as
    /// resolved, since the key's record is committed.
    StoreFailed,
    /// Refused 403 by the signature layer: authentic, but its timestamp outside the
    /// window (a late retry, a clock that is off).
    Stale,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::HandlerFailed,
        Self::Invalid,
        Self::NoHandler,
        Self::NotFinal,
        Self::TimedOut,
        Self::Cancelled,
        Self::Dropped,
        Self::StoreFailed,
        Self::Stale,
    ];

    /// The reason in snake case, as stores, logs and metrics write it.
    ///
    /// ```
    /// use aghanim_webhook::dead_letter::Reason;
    ///
    /// assert_eq!(Reason::NoHandler.as_str(), "no_handler");
    /// assert_eq!(Reason::parse("no_handler"), Some(Reason::NoHandler));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandlerFailed => "handler_failed",
            Self::Invalid => "invalid",
            Self::NoHandler => "no_handler",
            Self::NotFinal => "not_final",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Dropped => "dropped",
            Self::StoreFailed => "store_failed",
            Self::Stale => "stale",
        }
    }

    /// The reason [`as_str`](Self::as_str) wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// What [`DeadLetters::keep`](super::DeadLetters::keep) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kept {
    /// A new letter.
    Created,
    /// The key's letter, updated.
    Updated,
    /// Not kept: the store holds its maximum of unresolved letters.
    Full,
}

/// Which letters [`DeadLetters::list`](super::DeadLetters::list) returns.
///
/// ```
/// use std::time::Duration;
/// use aghanim_webhook::dead_letter::Filter;
///
/// let purchases_failing_for_an_hour = Filter::unresolved()
///     .event_type("item.add")
///     .older_than(Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this game.
    pub game_id: Option<String>,
    /// Only letters first seen at least this long ago.
    pub older_than: Option<Duration>,
    /// Only letters last seen at most this long ago.
    pub newer_than: Option<Duration>,
    /// Resolved letters too.
    pub resolved: bool,
    /// At most this many (all when `None`).
    pub limit: Option<usize>,
}

impl Filter {
    /// The letters not yet resolved, every type and game.
    pub fn unresolved() -> Self {
        Self::default()
    }

    /// Resolved letters as well.
    #[must_use]
    pub fn with_resolved(mut self) -> Self {
        self.resolved = true;
        self
    }

    /// Only `event_type`.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Only `game_id`.
    #[must_use]
    pub fn game(mut self, game_id: impl Into<String>) -> Self {
        self.game_id = Some(game_id.into());
        self
    }

    /// Only letters first seen at least `age` ago.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Only letters last seen at most `age` ago.
    #[must_use]
    pub fn newer_than(mut self, age: Duration) -> Self {
        self.newer_than = Some(age);
        self
    }

    /// At most `limit` letters.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `letter` passes, seen at `now`.
    pub fn matches(&self, letter: &DeadLetter, now: SystemTime) -> bool {
        let age = |at: SystemTime| now.duration_since(at).unwrap_or_default();
        (self.resolved || !letter.resolved)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == letter.event_type)
            && self.game_id.as_ref().is_none_or(|g| *g == letter.game_id)
            && self.older_than.is_none_or(|a| age(letter.first_seen) >= a)
            && self.newer_than.is_none_or(|a| age(letter.last_seen) <= a)
    }
}

/// The longest detail kept.
pub(crate) const MAX_DETAIL: usize = 500;

impl DeadLetter {
    /// The letter of the verified delivery `body`, keyed as the idempotency layer keys
    /// it (with `per_payload`, per payload as [`Policy::DeduplicateAllowingChanges`]
    /// does); `None` for a body that is not an event, or one without an
    /// `idempotency_key` or `event_id`: nothing to key it by.
    ///
    /// [`Policy::DeduplicateAllowingChanges`]: crate::idempotency::Policy::DeduplicateAllowingChanges
    pub fn of_delivery(
        body: &[u8],
        per_payload: bool,
        reason: Reason,
        status: u16,
        detail: &str,
    ) -> Option<Self> {
        let delivery = crate::idempotency::key::Delivery::of(body, per_payload)?;
        let body = Bytes::copy_from_slice(body);
        Some(Self::keyed(
            delivery.store_key.as_str(),
            body,
            reason,
            status,
            detail,
        ))
    }

    /// The letter of `body` under the store key the layer already computed.
    pub(crate) fn keyed(key: &str, body: Bytes, reason: Reason, status: u16, detail: &str) -> Self {
        #[derive(Deserialize, Default)]
        struct Ids {
            #[serde(default)]
            game_id: Option<String>,
            #[serde(default)]
            sandbox: Option<bool>,
            #[serde(default)]
            event_type: Option<String>,
            #[serde(default)]
            idempotency_key: Option<String>,
            #[serde(default)]
            event_id: Option<String>,
        }
        let ids: Ids = serde_json::from_slice(&body).unwrap_or_default();
        let present = |id: Option<String>| id.filter(|id| !id.is_empty()).map(|id| text(&id));
        let now = SystemTime::now();
        Self {
            key: key.to_owned(),
            game_id: ids.game_id.as_deref().map(text).unwrap_or_default(),
            sandbox: ids.sandbox == Some(true),
            event_type: ids.event_type.as_deref().map(text).unwrap_or_default(),
            delivery_id: present(ids.idempotency_key)
                .or_else(|| present(ids.event_id))
                .unwrap_or_default(),
            body,
            reason,
            detail: text(&truncated(detail)),
            status,
            attempts: 1,
            first_seen: now,
            last_seen: now,
            resolved: false,
        }
    }
}

/// `text` without NUL characters, which no store's text column takes (PostgreSQL's
/// refuses them): an id Aghanim signed with `\u0000` in it is still kept.
fn text(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// `text` cut to [`MAX_DETAIL`] bytes, on a character boundary.
fn truncated(text: &str) -> String {
    let mut end = text.len().min(MAX_DETAIL);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
