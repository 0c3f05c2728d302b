use std::{fmt, fmt::Display};

use serde::{
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor},
    Deserialize, Deserializer,
};

use super::{Event, EventType, WebhookError};

/// Parses an event, naming the path of the field at fault in the error, e.g.
/// `event_data.items[0].quantity: invalid type: ...`.
///
/// Tracking the path slows every parse down, so it is only done again for input that
/// failed: valid events, the common case, are parsed once at full speed.
pub(crate) fn from_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(bytes).or_else(|_| from_json_tracking_path(bytes))
}

fn from_json_tracking_path<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, WebhookError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| invalid(&error.path().to_string(), error.inner()))?;
    deserializer.end().map_err(|error| invalid(".", &error))?;
    Ok(value)
}

fn invalid(path: &str, error: &impl Display) -> WebhookError {
    let location = match path {
        "." => "event".to_owned(),
        path if path.starts_with('[') => format!("event{path}"),
        path => path.to_owned(),
    };
    WebhookError::validation(format!("{location}: {error}"))
}

/// The `event_type` of an event, read without parsing the rest: the keys before it are
/// skipped and nothing after it is read, so `Dispatch` can pick the handler and then
/// parse the whole event once, straight into the handler's types.
///
/// # Errors
///
/// For a body that is not an object with a string `event_type`: the error the whole
/// event's parse reports, naming the field at fault.
pub(crate) fn peek_event_type(bytes: &[u8]) -> Result<EventType, WebhookError> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // The visitor stops reading at `event_type`; serde_json then reports the rest of
    // the object as unread, which is ignored: what was found is in `found`, and any
    // other outcome is reported by a full parse below.
    let _ = deserializer.deserialize_map(EventTypeVisitor { found: &mut found });
    match found {
        Some(event_type) => Ok(event_type),
        None => Err(from_json::<Event<IgnoredAny>>(bytes)
            .err()
            .unwrap_or_else(|| WebhookError::validation("event: missing field `event_type`"))),
    }
}

struct EventTypeVisitor<'a> {
    found: &'a mut Option<EventType>,
}

impl<'de> Visitor<'de> for EventTypeVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(is_event_type) = map.next_key_seed(IsEventType)? {
            if is_event_type {
                // Returning here, not failing, spares formatting an error message.
                *self.found = Some(map.next_value()?);
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Reads a key and tells whether it is `event_type`, without an owned copy (serde's
/// `Cow<str>` would allocate every key).
struct IsEventType;

impl<'de> DeserializeSeed<'de> for IsEventType {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsEventType {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == "event_type")
    }
}
