use std::fmt::Display;

use serde::Deserialize;

use super::WebhookError;

/// Parses JSON, naming the path of the field at fault in the error, e.g.
/// `event_data.items[0].quantity: invalid type: ...`. `prefix` names where `bytes` sits
/// in the whole event.
pub(crate) fn from_json<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    prefix: Option<&str>,
) -> Result<T, WebhookError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| invalid(prefix, &error.path().to_string(), error.inner()))?;
    deserializer
        .end()
        .map_err(|error| invalid(prefix, ".", &error))?;
    Ok(value)
}

fn invalid(prefix: Option<&str>, path: &str, error: &impl Display) -> WebhookError {
    let location = match (prefix, path) {
        (Some(prefix), ".") => prefix.to_owned(),
        (Some(prefix), path) => format!("{prefix}.{path}"),
        (None, ".") => "event".to_owned(),
        (None, path) if path.starts_with('[') => format!("event{path}"),
        (None, path) => path.to_owned(),
    };
    WebhookError::validation(format!("{location}: {error}"))
}
