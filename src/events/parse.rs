use std::fmt::Display;

use serde::{de::IgnoredAny, Deserialize};

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
/// parse the whole event once, straight into the handler's types. Only a body whose keys
/// or type hold escapes, or that is not a JSON object, is parsed whole here.
///
/// # Errors
///
/// For a body that is not an object with a string `event_type`: the error the whole
/// event's parse reports, naming the field at fault.
pub(crate) fn peek_event_type(bytes: &[u8]) -> Result<EventType, WebhookError> {
    match scan_event_type(bytes) {
        Some(name) => Ok(EventType::from(name)),
        // Escapes, or a body the scan does not expect: the envelope is parsed whole,
        // which also names what is wrong with it.
        None => from_json::<Event<IgnoredAny>>(bytes).map(|event| event.event_type),
    }
}

/// What [`peek_event_type`] reads first: the top-level object's keys are scanned for
/// `event_type`, and the values before it skipped by their brackets and quotes without
/// being checked (the handler's full parse checks them). `None` for anything else,
/// escapes in a key or in the type included: the whole parse then decides.
fn scan_event_type(bytes: &[u8]) -> Option<&str> {
    let mut scanner = Scanner { bytes, at: 0 };
    scanner.take(b'{')?;
    loop {
        scanner.take(b'"')?;
        let key = scanner.plain_string()?;
        scanner.take(b':')?;
        if key == b"event_type" {
            scanner.take(b'"')?;
            return std::str::from_utf8(scanner.plain_string()?).ok();
        }
        scanner.skip_value()?;
        scanner.take(b',')?;
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    /// Takes `byte` after any whitespace.
    fn take(&mut self, byte: u8) -> Option<()> {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
        (*self.bytes.get(self.at)? == byte).then(|| self.at += 1)
    }

    /// The rest of a string whose opening quote was taken, if it holds no escape.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if rest[end] != b'"' {
            return None;
        }
        self.at += end + 1;
        Some(&rest[..end])
    }

    /// Moves past one value, up to the `,` or `}` that follows it.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            let byte = *self.bytes.get(self.at)?;
            if depth == 0 && matches!(byte, b',' | b'}' | b']') {
                return Some(());
            }
            self.at += 1;
            match byte {
                b'"' => self.skip_string()?,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// The event type as serde_json reads it, escapes decoded.
    fn serde_peek(bytes: &[u8]) -> Option<EventType> {
        let event: Value = serde_json::from_slice(bytes).ok()?;
        event.get("event_type")?.as_str().map(EventType::from)
    }

    #[test]
    fn the_scan_finds_the_type_wherever_the_key_stands() {
        let bodies = [
            &br#"{"event_type":"item.add","event_data":{}}"#[..],
            br#" { "event_id" : "whevt_1" , "event_type" : "item.add" }"#,
            br#"{"event_data":{"reason":"a \"quote } ] { [ \\","items":[{"sku":"x"},[1,2]]},
                "sandbox":false,"n":-1.5e3,"z":null,"event_type":"item.add"}"#,
            include_bytes!("../../examples/events/docs-test-request.json"),
        ];
        for body in bodies {
            let expected = serde_peek(body).expect("serde_json finds a type");
            assert_eq!(scan_event_type(body).map(EventType::from), Some(expected));
            assert_eq!(peek_event_type(body).ok(), serde_peek(body));
        }
    }

    #[test]
    fn the_scan_leaves_escapes_and_anything_unexpected_to_serde() {
        let bodies = [
            &br#"{"event\u005ftype":"item.add","event_data":{}}"#[..],
            br#"{"event_type":"item\u002eadd","event_data":{}}"#,
            br#"["event_type","item.add"]"#,
            br#"{"event_type":42}"#,
            br#"{"event_data":{"a":1}"#,
            br#"{"event_data":"unterminated"#,
            b"",
        ];
        for body in bodies {
            assert_eq!(
                scan_event_type(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The whole parse still reads the escaped forms.
        assert_eq!(
            peek_event_type(bodies[0]).ok(),
            Some(EventType::from("item.add"))
        );
        assert_eq!(
            peek_event_type(bodies[1]).ok(),
            Some(EventType::from("item.add"))
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever precedes `event_type`, compact or pretty, the scan agrees with
        /// serde_json or leaves the body to the whole parse.
        #[test]
        fn the_scan_agrees_with_serde(
            before in prop::collection::vec((any::<String>(), any_json()), 0..4),
            event_type in any::<String>(),
            pretty in any::<bool>(),
        ) {
            let mut object = serde_json::Map::new();
            for (key, value) in before {
                if key != "event_type" {
                    object.insert(key, value);
                }
            }
            object.insert("event_data".into(), json!({}));
            object.insert("event_type".into(), json!(event_type));
            let body = if pretty {
                serde_json::to_vec_pretty(&object)
            } else {
                serde_json::to_vec(&object)
            }
            .unwrap();
            let escaped = |text: &str| text.chars().any(|c| matches!(c, '"' | '\\' | '\0'..='\x1f'));
            match scan_event_type(&body) {
                Some(name) => prop_assert_eq!(name, event_type.as_str()),
                // Only an escape in a key or in the type sends a well-formed event to the
                // whole parse; escapes in the values skipped are the scan's to handle.
                None => prop_assert!(escaped(&event_type) || object.keys().any(|key| escaped(key))),
            }
            prop_assert_eq!(peek_event_type(&body).ok(), Some(EventType::from(event_type.as_str())));
        }
    }
}
