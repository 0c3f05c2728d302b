use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::EventType;

/// An Aghanim webhook: the envelope every event shares, with its `event_data` as `D`.
///
/// Fields follow Aghanim's documentation. Only `event_type` and `event_data` are
/// required: the signature already proves the sender, and the test request on
/// Aghanim's own "Handle webhooks" page carries neither `event_time` nor `game_id`, so
/// every other field may be absent or null and is never a reason to refuse an event.
/// Unknown fields are ignored, so fields Aghanim adds later never break parsing.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{Event, EventType, PlayerVerify};
///
/// let body = r#"{
///     "event_id": "whevt_1", "game_id": "gm_1", "event_type": "player.verify",
///     "event_time": 1725548450, "event_data": {"player_id": "testplayer"},
///     "idempotency_key": null, "request_id": null, "sandbox": false,
///     "trigger": "hub.login", "transaction_id": "whtx_1", "context": null,
///     "added_later": true
/// }"#;
/// let event: Event<PlayerVerify> = serde_json::from_str(body).unwrap();
/// assert_eq!(event.event_type, EventType::PlayerVerify);
/// assert_eq!(event.event_data.player_id, "testplayer");
/// assert_eq!(event.trigger.as_deref(), Some("hub.login"));
///
/// // The least an event can be.
/// let minimal: Event<PlayerVerify> = serde_json::from_str(
///     r#"{"event_type": "player.verify", "event_data": {"player_id": "testplayer"}}"#,
/// ).unwrap();
/// assert_eq!(minimal.event_id, None);
/// assert_eq!(minimal.event_time, None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event<D = Value> {
    /// Unique per event, `whevt_…`.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The game, `gm_…`; absent in older samples.
    #[serde(default)]
    pub game_id: Option<String>,
    /// What happened; decides the shape of `event_data`.
    pub event_type: EventType,
    /// When it happened, Unix seconds; equals the signature timestamp in every sample
    /// that has it.
    #[serde(default)]
    pub event_time: Option<u64>,
    /// The event's own data.
    pub event_data: D,
    /// Key for deduplicating side effects (`item.add`, `item.remove`); null for some types.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Set when an API call caused the event.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Whether the event comes from the sandbox environment; `false` when absent or null.
    #[serde(default, deserialize_with = "null_as_false")]
    pub sandbox: bool,
    /// What caused it, e.g. `hub.login`, `hub.store.open`, `hub.redeem`.
    #[serde(default)]
    pub trigger: Option<String>,
    /// `whtx_…`.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Player attributes and attribution, when enabled for the game: kept as the raw
    /// JSON it was sent as, so an event costs no parsing of it unless a handler reads
    /// it with [`RawJson::parse`].
    #[serde(default)]
    pub context: Option<RawJson>,
}

impl<D> Event<D> {
    /// An event with the two required fields set and every other one empty, for tests.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::events::{Event, EventType, PlayerVerify};
    ///
    /// let mut event = Event::new(EventType::PlayerVerify, PlayerVerify::new("p1"));
    /// assert_eq!(event.dedupe_key(), None);
    /// event.event_id = Some("whevt_1".into());
    /// assert_eq!(event.dedupe_key(), Some("whevt_1"));
    /// ```
    pub fn new(event_type: EventType, event_data: D) -> Self {
        Self {
            event_id: None,
            game_id: None,
            event_type,
            event_time: None,
            event_data,
            idempotency_key: None,
            request_id: None,
            sandbox: false,
            trigger: None,
            transaction_id: None,
            context: None,
        }
    }

    /// The same envelope with its data transformed, e.g. a removal's [`ItemRemove`](super::ItemRemove)
    /// to the [`ItemChange`](super::ItemChange) it holds, for code shared with credits.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::events::{Event, EventType, ItemChange, ItemRemove};
    ///
    /// let removal = Event::new(EventType::ItemRemove, ItemRemove(ItemChange::new("p1", vec![])));
    /// let change: Event<ItemChange> = removal.map_data(|removal| removal.0);
    /// assert_eq!(change.event_type, EventType::ItemRemove);
    /// ```
    pub fn map_data<T>(self, map: impl FnOnce(D) -> T) -> Event<T> {
        match self.try_map_data(|data| Ok::<T, std::convert::Infallible>(map(data))) {
            Ok(event) => event,
            Err(never) => match never {},
        }
    }

    /// The same envelope with its data transformed.
    ///
    /// # Errors
    ///
    /// Whatever `map` returns.
    pub fn try_map_data<T, E>(self, map: impl FnOnce(D) -> Result<T, E>) -> Result<Event<T>, E> {
        Ok(Event {
            event_data: map(self.event_data)?,
            event_id: self.event_id,
            game_id: self.game_id,
            event_type: self.event_type,
            event_time: self.event_time,
            idempotency_key: self.idempotency_key,
            request_id: self.request_id,
            sandbox: self.sandbox,
            trigger: self.trigger,
            transaction_id: self.transaction_id,
            context: self.context,
        })
    }

    /// The key to deduplicate this event's side effects by: `idempotency_key`, or the
    /// unique `event_id` when Aghanim sends no key, or `None` when the event carries
    /// neither (an empty string counts as absent).
    ///
    /// With `None` there is nothing to recognise a retry by: such an event cannot be
    /// deduplicated, and a handler with side effects should refuse or log it rather than
    /// apply it blindly. Every real delivery in Aghanim's documentation carries an
    /// `event_id`; the test request of its "Handle webhooks" page does too.
    ///
    /// # Example
    ///
    /// ```
    /// # use aghanim_webhook::events::Event;
    /// let event: Event = serde_json::from_str(
    ///     r#"{"event_id":"whevt_1","event_type":"item.add","event_data":{},"idempotency_key":null}"#,
    /// ).unwrap();
    /// assert_eq!(event.dedupe_key(), Some("whevt_1"));
    ///
    /// let anonymous: Event = serde_json::from_str(r#"{"event_type":"item.add","event_data":{}}"#).unwrap();
    /// assert_eq!(anonymous.dedupe_key(), None);
    /// ```
    pub fn dedupe_key(&self) -> Option<&str> {
        present(&self.idempotency_key).or_else(|| present(&self.event_id))
    }
}

fn null_as_false<'de, De: Deserializer<'de>>(deserializer: De) -> Result<bool, De::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or_default())
}

fn present(key: &Option<String>) -> Option<&str> {
    key.as_deref().filter(|key| !key.is_empty())
}

/// A JSON value kept as the text it was sent as, parsed only when asked.
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::Event;
///
/// let event: Event = serde_json::from_str(
///     r#"{"event_type":"item.add","event_data":{},"context":{"player":{"level":7}}}"#,
/// ).unwrap();
/// let context = event.context.unwrap();
/// assert_eq!(context.get(), r#"{"player":{"level":7}}"#);
/// let level: serde_json::Value = context.parse().unwrap();
/// assert_eq!(level["player"]["level"], 7);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text, exactly as sent.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses it as `T`.
    ///
    /// # Errors
    ///
    /// When the JSON does not fit `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

/// Equal when the texts are equal.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}
