//! The answers this crate writes itself, in Aghanim's shapes, for every middleware: the
//! signature layer's rejections, `Dispatch`'s errors and the idempotency layer's 422 and
//! 503.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// `{"status":"error","code":…,"message":…}` for a code and a message known when
/// compiling, as a `&'static str`, so that a rejection costs no allocation. Neither may
/// hold a character JSON escapes; [`error`] writes the same shape at run time.
macro_rules! error_body {
    ($code:literal, $message:literal) => {
        concat!(
            r#"{"status":"error","code":""#,
            $code,
            r#"","message":""#,
            $message,
            r#""}"#
        )
    };
}
pub(crate) use error_body;

/// `status` with `body`, already JSON, and `content-type: application/json`.
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `status` with a body from [`error_body!`].
pub(crate) fn static_error(status: StatusCode, body: &'static str) -> Response<Bytes> {
    json(status, Bytes::from_static(body.as_bytes()))
}

/// `status` with the error body for `code` and `message`, escaped as serde_json
/// escapes strings.
#[cfg(feature = "events")]
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    let mut body = Vec::with_capacity(40 + code.len() + message.len());
    body.extend_from_slice(br#"{"status":"error","code":"#);
    json_string(&mut body, code);
    body.extend_from_slice(br#","message":"#);
    json_string(&mut body, message);
    body.push(b'}');
    json(status, Bytes::from(body))
}

#[cfg(feature = "events")]
fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(br#"\""#),
            b'\\' => out.extend_from_slice(br"\\"),
            b'\n' => out.extend_from_slice(br"\n"),
            b'\r' => out.extend_from_slice(br"\r"),
            b'\t' => out.extend_from_slice(br"\t"),
            0x08 => out.extend_from_slice(br"\b"),
            0x0c => out.extend_from_slice(br"\f"),
            0x00..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// `response` with `retry-after: seconds`: a 503 that Aghanim may retry after.
pub(crate) fn retry_after(mut response: Response<Bytes>, seconds: u64) -> Response<Bytes> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(all(test, feature = "events"))]
mod tests {
    use http::StatusCode;

    #[test]
    fn the_static_and_the_run_time_error_bodies_are_one_shape() {
        let written = super::error(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "Invalid signature",
        );
        assert_eq!(
            written.body().as_ref(),
            error_body!("invalid_signature", "Invalid signature").as_bytes()
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let message = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 é \u{7f}";
        let written = super::error(StatusCode::BAD_REQUEST, "c\"ode", message);
        let expected = format!(
            r#"{{"status":"error","code":{},"message":{}}}"#,
            serde_json::to_string("c\"ode").unwrap(),
            serde_json::to_string(message).unwrap()
        );
        assert_eq!(written.body().as_ref(), expected.as_bytes());
    }
}
