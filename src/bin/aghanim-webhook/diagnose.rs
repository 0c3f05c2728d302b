//! Which check a captured request fails, and why, using the crate's own `Verifier`.

use aghanim_webhook::{
    RejectionKind, Secret, Verifier, DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use http::HeaderMap;

/// A captured request: its headers and its body as received.
pub(crate) struct Captured {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Reads raw HTTP/1.1 (`POST ... HTTP/1.1`, headers, a blank line, the body), or only
/// header lines and a blank line when the body comes separately.
pub(crate) fn parse(raw: &[u8], separate_body: Option<Vec<u8>>) -> Result<Captured, String> {
    let (head, rest) = match find(raw, b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| find(raw, b"\n\n").map(|at| (at, 2)))
    {
        Some((at, gap)) => (&raw[..at], &raw[at + gap..]),
        None => (raw, &raw[raw.len()..]),
    };
    let head =
        std::str::from_utf8(head).map_err(|_| "the request head is not UTF-8 text".to_owned())?;
    let mut headers = HeaderMap::new();
    for line in head.lines().map(|line| line.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with("POST ") || line.contains(" HTTP/") {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("not a header name: {name:?}"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("not a header value: {value:?}"))?;
        headers.append(name, value);
    }
    let body = separate_body.unwrap_or_else(|| rest.to_vec());
    Ok(Captured { headers, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The verdict, in sentences, and whether the layer would accept the request.
pub(crate) fn diagnose(
    captured: &Captured,
    secret: &str,
    now: u64,
) -> Result<(bool, Vec<String>), String> {
    let secret = Secret::new(secret).map_err(|error| error.to_string())?;
    let verifier = Verifier::new(secret).disable_tolerance();
    let mut findings = vec![format!("body: {} bytes", captured.body.len())];
    let check = |body: &[u8]| verifier.verify_headers(&captured.headers, body, now);
    match check(&captured.body) {
        Ok(timestamp) => {
            let skew = i128::from(now) - i128::from(timestamp);
            findings.push(format!(
                "signature: matches this body under this secret (timestamp {timestamp})"
            ));
            let tolerance = DEFAULT_TOLERANCE.as_secs();
            if skew.unsigned_abs() > u128::from(tolerance) {
                findings.push(format!(
                    "timestamp: the clock is {skew} s from it, outside the default {tolerance} s window: \
                     a replay, a late retry, or a clock that is off (answer: 403, TimestampOutsideTolerance)"
                ));
                return Ok((false, findings));
            }
            findings.push(format!(
                "timestamp: {skew} s from the clock, inside the {tolerance} s window"
            ));
            findings.push("verdict: accepted".into());
            Ok((true, findings))
        }
        Err(rejection) => {
            let reason =
                match rejection.kind() {
                    RejectionKind::MissingTimestamp => format!("no {TIMESTAMP_HEADER} header"),
                    RejectionKind::MalformedTimestamp => format!(
                        "{TIMESTAMP_HEADER} is not one decimal Unix time in seconds: {:?}",
                        captured
                            .headers
                            .get_all(&TIMESTAMP_HEADER)
                            .iter()
                            .collect::<Vec<_>>()
                    ),
                    RejectionKind::MissingSignature => format!("no {SIGNATURE_HEADER} header"),
                    RejectionKind::MalformedSignature => format!(
                    "{SIGNATURE_HEADER} is not exactly 64 hex digits (no prefix, sent once): {:?}",
                    captured.headers.get_all(&SIGNATURE_HEADER).iter().collect::<Vec<_>>()
                ),
                    RejectionKind::SignatureMismatch => mismatch(&check, &captured.body),
                    _ => rejection.to_string(),
                };
            findings.push(format!(
                "rejected: {reason} (answer: 403, {:?})",
                rejection.kind()
            ));
            Ok((false, findings))
        }
    }
}

/// A mismatch is a wrong secret or a changed body; the usual changes are tried so that
/// the second can be named.
fn mismatch(
    check: &dyn Fn(&[u8]) -> Result<u64, aghanim_webhook::Rejection>,
    body: &[u8],
) -> String {
    let text = String::from_utf8_lossy(body);
    let mut candidates: Vec<(String, Vec<u8>)> = vec![
        (
            "a trailing newline was added to the body".into(),
            body.strip_suffix(b"\n").unwrap_or(body).to_vec(),
        ),
        (
            "the body lost its trailing newline".into(),
            [body, b"\n"].concat(),
        ),
        (
            "line endings were changed to CRLF".into(),
            text.replace("\r\n", "\n").into_bytes(),
        ),
    ];
    candidates.extend(reserializations(body));
    for (change, candidate) in candidates {
        if candidate != body && check(&candidate).is_ok() {
            return format!("the signature does not match this body, but matches it if {change}: the body was changed in transit");
        }
    }
    "the signature does not match this body under this secret: the secret is not the one \
     Aghanim signs with (Dashboard: Game > Webhooks), or the body was changed in transit"
        .into()
}

/// The forms a JSON body may have had before something parsed and wrote it again
/// (pretty-printed it, or sorted its keys): compact, with a space after `,` and `:`, or
/// laid out as Aghanim's own sample request is (a line break inside each object's
/// braces and after each member); nested keys in the body's own order or sorted; the
/// envelope's keys in the body's own order, sorted, or in one of the two orders
/// Aghanim's documentation shows (its field table's, and its sample request's; which
/// one real deliveries use is not documented). Strings and numbers are kept as they
/// are.
fn reserializations(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    // Without serde_json's `preserve_order`, a `Value`'s keys are sorted.
    let sorted = serde_json::to_vec(&value).unwrap_or_default();
    let mut forms: Vec<(String, Vec<u8>)> = Vec::new();
    for (nested, base) in [("kept", body), ("sorted", &sorted[..])] {
        let mut orders = vec![(nested, base.to_vec())];
        if let Some(members) = members(base) {
            for (name, order) in [
                ("in the order of Aghanim's field table", FIELD_TABLE_ORDER),
                ("in the order of Aghanim's sample request", SAMPLE_ORDER),
            ] {
                orders.push((name, reordered(&members, order)));
            }
        }
        for (envelope, from) in orders {
            for (layout, item, key, open, close) in LAYOUTS {
                let change = format!(
                    "the JSON was re-serialized ({layout}; envelope keys {envelope}, nested keys {nested})"
                );
                let form = respaced(&from, item, key, open, close);
                if !forms.iter().any(|(_, known)| *known == form) {
                    forms.push((change, form));
                }
            }
        }
    }
    forms
}

/// The envelope's keys in the order of the field table of Aghanim's webhook
/// documentation, and in that of its sample request (`examples/events`).
const FIELD_TABLE_ORDER: &[&str] = &[
    "event_id",
    "game_id",
    "event_type",
    "event_time",
    "event_data",
    "idempotency_key",
    "request_id",
    "sandbox",
    "trigger",
    "transaction_id",
    "context",
];
const SAMPLE_ORDER: &[&str] = &[
    "event_id",
    "event_type",
    "idempotency_key",
    "event_data",
    "context",
];

/// Each layout: its name, the separators after an item and a key, and what opens and
/// closes an object.
type Layout = (
    &'static str,
    &'static [u8],
    &'static [u8],
    &'static [u8],
    &'static [u8],
);
const LAYOUTS: [Layout; 3] = [
    ("compact", b",", b":", b"{", b"}"),
    ("a space after , and :", b", ", b": ", b"{", b"}"),
    (
        "one member a line, as Aghanim's sample",
        b",\n",
        b": ",
        b"{\n",
        b"\n}",
    ),
];

/// The members of a JSON object, in their own order, their values as written.
fn members(json: &[u8]) -> Option<Vec<(String, Box<serde_json::value::RawValue>)>> {
    struct Members;
    impl<'de> serde::de::Visitor<'de> for Members {
        type Value = Vec<(String, Box<serde_json::value::RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some(member) = map.next_entry()? {
                members.push(member);
            }
            Ok(members)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    serde::Deserializer::deserialize_map(&mut deserializer, Members).ok()
}

/// An object of `members`, those named in `order` first in that order, the others
/// after them in their own order.
fn reordered(members: &[(String, Box<serde_json::value::RawValue>)], order: &[&str]) -> Vec<u8> {
    let rank = |key: &str| {
        order
            .iter()
            .position(|known| *known == key)
            .unwrap_or(order.len())
    };
    let mut members: Vec<_> = members.iter().collect();
    members.sort_by_key(|(key, _)| rank(key));
    let mut out = b"{".to_vec();
    for (index, (key, value)) in members.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// `json` with the whitespace between tokens removed, and `item`, `key`, `open` and
/// `close` written for every `,`, `:`, `{` and `}` outside strings (an empty object
/// stays `{}`): the bytes' own order, strings untouched.
fn respaced(json: &[u8], item: &[u8], key: &[u8], open: &[u8], close: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b',' => out.extend_from_slice(item),
            b':' => out.extend_from_slice(key),
            b'{' => out.extend_from_slice(open),
            b'}' if out.ends_with(open) => {
                out.truncate(out.len() - open.len());
                out.extend_from_slice(b"{}");
            }
            b'}' => out.extend_from_slice(close),
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{reserializations, respaced};

    #[test]
    fn respacing_keeps_the_key_order_and_the_strings() {
        let pretty = b"{\n  \"b\": [1, 2],\n  \"a\": \"x, y: \\\" z\"\n}\n";
        assert_eq!(
            respaced(pretty, b",", b":", b"{", b"}"),
            br#"{"b":[1,2],"a":"x, y: \" z"}"#.to_vec()
        );
        assert_eq!(
            respaced(pretty, b", ", b": ", b"{", b"}"),
            br#"{"b": [1, 2], "a": "x, y: \" z"}"#.to_vec()
        );
        assert_eq!(
            respaced(br#"{"a":{},"b":{"c":1}}"#, b",\n", b": ", b"{\n", b"\n}"),
            b"{\n\"a\": {},\n\"b\": {\n\"c\": 1\n}\n}".to_vec()
        );
    }

    #[test]
    fn a_body_whose_keys_something_sorted_is_found_in_aghanims_own_orders() {
        // Signed in the field table's order, and in the sample's layout; what arrived
        // had every key sorted.
        let sent = b"{\n\"event_id\": \"whevt_1\",\n\"game_id\": \"gm_1\",\n\"event_type\": \"item.add\",\n\"event_data\": {\n\"player_id\": \"p\"\n},\n\"idempotency_key\": \"ord_1\"\n}";
        let arrived = br#"{"event_data": {"player_id": "p"}, "event_id": "whevt_1", "event_type": "item.add", "game_id": "gm_1", "idempotency_key": "ord_1"}"#;
        let found = reserializations(arrived);
        let (change, _) = found
            .iter()
            .find(|(_, form)| form == sent)
            .expect("the sent form is among the candidates");
        assert!(change.contains("field table"), "{change}");
    }
}
