use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EventType;

/// An Aghanim webhook: the envelope every event shares, with its `event_data` as `D`.
///
/// Fields follow Aghanim's documentation. `Option` marks what the docs show as null or
/// absent in some samples. Unknown fields are ignored, so fields Aghanim adds later never
/// break parsing.
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
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event<D = Value> {
    /// Unique per event, `whevt_…`.
    pub event_id: String,
    /// The game, `gm_…`; absent in older samples.
    #[serde(default)]
    pub game_id: Option<String>,
    /// What happened; decides the shape of `event_data`.
    pub event_type: EventType,
    /// When it happened, Unix seconds; equals the signature timestamp in every sample.
    pub event_time: u64,
    /// The event's own data.
    pub event_data: D,
    /// Key for deduplicating side effects (`item.add`, `item.remove`); null for some types.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Set when an API call caused the event.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Whether the event comes from the sandbox environment.
    #[serde(default)]
    pub sandbox: bool,
    /// What caused it, e.g. `hub.login`, `hub.store.open`, `hub.redeem`.
    #[serde(default)]
    pub trigger: Option<String>,
    /// `whtx_…`.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Player attributes and attribution, when enabled for the game.
    #[serde(default)]
    pub context: Option<Value>,
}

impl<D> Event<D> {
    /// An event with the required fields set and every optional one empty, for tests.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::events::{Event, EventType, PlayerVerify};
    ///
    /// let event = Event::new("whevt_1", EventType::PlayerVerify, 1_700_000_000, PlayerVerify::new("p1"));
    /// assert_eq!(event.dedupe_key(), "whevt_1");
    /// ```
    pub fn new(
        event_id: impl Into<String>,
        event_type: EventType,
        event_time: u64,
        event_data: D,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            game_id: None,
            event_type,
            event_time,
            event_data,
            idempotency_key: None,
            request_id: None,
            sandbox: false,
            trigger: None,
            transaction_id: None,
            context: None,
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
    /// unique `event_id` when Aghanim sends no key.
    ///
    /// # Example
    ///
    /// ```
    /// # use aghanim_webhook::events::Event;
    /// let event: Event = serde_json::from_str(
    ///     r#"{"event_id":"whevt_1","event_type":"item.add","event_time":1,"event_data":{},"idempotency_key":null}"#,
    /// ).unwrap();
    /// assert_eq!(event.dedupe_key(), "whevt_1");
    /// ```
    pub fn dedupe_key(&self) -> &str {
        self.idempotency_key.as_deref().unwrap_or(&self.event_id)
    }
}
