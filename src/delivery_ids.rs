//! The ids an operator needs to find a delivery again, read from verified bytes for the
//! logs (feature `tracing`).

/// `event_type`, `event_id`, `idempotency_key`, `game_id` and `sandbox` of a verified
/// body; each `None` when absent or not of its type, all `None` without the feature
/// `events` or when the bytes are not a JSON object. Read leniently, field by field, so
/// that an envelope refused for one bad field still names the delivery.
#[derive(Default)]
pub(crate) struct DeliveryIds {
    pub(crate) event_type: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) game_id: Option<String>,
    // `Dispatch`'s refusals log it; the signature layer's need no more than the others.
    #[cfg_attr(not(feature = "events"), allow(dead_code))]
    pub(crate) sandbox: Option<bool>,
}

impl DeliveryIds {
    /// Parses `verified` whole: only for a refusal, never on the way of a good delivery.
    pub(crate) fn read(verified: &[u8]) -> Self {
        #[cfg(feature = "events")]
        {
            let Ok(serde_json::Value::Object(event)) = serde_json::from_slice(verified) else {
                return Self::default();
            };
            let text = |field: &str| event.get(field).and_then(|v| v.as_str()).map(str::to_owned);
            Self {
                event_type: text("event_type"),
                event_id: text("event_id"),
                idempotency_key: text("idempotency_key"),
                game_id: text("game_id"),
                sandbox: event.get("sandbox").and_then(serde_json::Value::as_bool),
            }
        }
        #[cfg(not(feature = "events"))]
        {
            let _ = verified;
            Self::default()
        }
    }
}
