//! The payload fingerprint: a SHA-256 of the JSON *value* of `event_data`, so that a
//! duplicate written by another serializer is still a duplicate.
//!
//! Two payloads have the same fingerprint when they are the same JSON value under these
//! rules:
//!
//! - whitespace between tokens does not count;
//! - object members are compared as a set: their order does not count, and a repeated
//!   name keeps its last value (as `serde_json::Value` does);
//! - strings are compared after their escapes are decoded (`"\u0041"` is `"A"`);
//! - numbers are compared as exact decimals (`1`, `1.0`, `10e-1` and `0.1e1` are one
//!   number; `100` and `1e2` are one number; `-0` is `0`), by their digits, never through
//!   a float, so two numbers that round to the same `f64` stay apart.
//!
//! A number whose exponent does not fit in 64 bits (far beyond any float) makes the
//! whole payload compared byte for byte instead.

use std::{borrow::Cow, ops::Range};

use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of `json`, a JSON text serde_json accepted.
pub(crate) fn fingerprint(json: &str) -> [u8; 32] {
    let mut canonical = Vec::with_capacity(json.len());
    let mut reader = Reader {
        bytes: json.as_bytes(),
        at: 0,
    };
    let mut digest = Sha256::new();
    if reader.value(&mut canonical).is_some() && reader.rest_is_blank() {
        digest.update(b"value:");
        digest.update(&canonical);
    } else {
        // Unreachable for text serde_json accepted; still an answer, never a panic.
        digest.update(b"bytes:");
        digest.update(json.as_bytes());
    }
    digest.finalize().into()
}

/// Reads one JSON value and writes it in a canonical form that is only ever hashed: every
/// part is tagged and strings are length-prefixed, so no two values write alike. Strings
/// without escapes are borrowed, and an object's members are sorted in place in the
/// output, so a payload costs a handful of allocations.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.at) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    fn rest_is_blank(&mut self) -> bool {
        self.peek().is_none()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(out),
            b'[' => self.array(out),
            b'"' => {
                let text = self.string()?;
                write_string(out, &text);
                Some(())
            }
            b't' => self.literal(b"true").map(|()| out.push(b't')),
            b'f' => self.literal(b"false").map(|()| out.push(b'f')),
            b'n' => self.literal(b"null").map(|()| out.push(b'n')),
            _ => self.number(out),
        }
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.at += 1;
        out.push(b'[');
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                self.value(out)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        out.push(b']');
        Some(())
    }

    /// Members are written as read, then copied after them in order of name, and the
    /// first copy is dropped: one allocation per object (the member list).
    fn object(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.at += 1;
        let start = out.len();
        let mut members: Vec<(Cow<'a, [u8]>, Range<usize>)> = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let name = self.string()?;
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                let value_start = out.len();
                self.value(out)?;
                members.push((name, value_start..out.len()));
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        // Stable, so among repeated names the last one read stays last: it is kept.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let sorted_start = out.len();
        out.push(b'{');
        for (index, (name, value)) in members.iter().enumerate() {
            let repeated = members.get(index + 1).is_some_and(|(next, _)| next == name);
            if !repeated {
                write_string(out, name);
                out.extend_from_within(value.clone());
            }
        }
        out.push(b'}');
        out.copy_within(sorted_start.., start);
        out.truncate(out.len() - (sorted_start - start));
        Some(())
    }

    /// A string's decoded bytes, borrowed when it has no escape: UTF-8, or for a lone
    /// surrogate escape the three bytes UTF-8 would give it (WTF-8), which no decoded
    /// character shares.
    fn string(&mut self) -> Option<Cow<'a, [u8]>> {
        self.at += 1;
        let start = self.at;
        let plain = self.bytes.get(start..)?;
        let end = plain
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\')?;
        self.at = start + end;
        if plain[end] == b'"' {
            self.at += 1;
            return Some(Cow::Borrowed(&plain[..end]));
        }
        let mut text = plain[..end].to_vec();
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return Some(Cow::Owned(text)),
                b'\\' => {
                    let escape = *self.bytes.get(self.at)?;
                    self.at += 1;
                    let decoded = match escape {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let unit = self.hex4()?;
                            self.unicode_escape(unit, &mut text)?;
                            continue;
                        }
                        _ => return None,
                    };
                    text.push(decoded);
                }
                _ => text.push(byte),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let digits = std::str::from_utf8(self.bytes.get(self.at..end)?).ok()?;
        let unit = u32::from_str_radix(digits, 16).ok()?;
        self.at = end;
        Some(unit)
    }

    fn unicode_escape(&mut self, unit: u32, text: &mut Vec<u8>) -> Option<()> {
        let mut code = unit;
        if (0xD800..0xDC00).contains(&unit) && self.bytes.get(self.at..self.at + 2) == Some(b"\\u")
        {
            let before = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            } else {
                // Not a pair: the second escape is read on its own.
                self.at = before;
            }
        }
        match char::from_u32(code) {
            Some(character) => {
                let mut buffer = [0; 4];
                text.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
            }
            None => text.extend_from_slice(&[
                0xE0 | (code >> 12) as u8,
                0x80 | ((code >> 6) & 0x3F) as u8,
                0x80 | (code & 0x3F) as u8,
            ]),
        }
        Some(())
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?` as `#[-]<significant digits>e<exponent as
    /// 8 bytes>;`, with the significant digits free of leading and trailing zeros, or
    /// `#0;` for zero.
    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let integer = self.digits();
        if integer.is_empty() {
            return None;
        }
        let fraction = if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.digits()
        } else {
            &[]
        };
        let mut exponent: i64 = 0;
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            let sign = match self.bytes.get(self.at) {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            for &digit in self.digits() {
                exponent = exponent
                    .checked_mul(10)?
                    .checked_add(sign * i64::from(digit - b'0'))?;
            }
        }
        // The significant digits run through the integer and fraction parts, with
        // leading and trailing zeros dropped; `trailing` counts the latter.
        let digits = || integer.iter().chain(fraction).copied();
        let leading = digits().take_while(|&digit| digit == b'0').count();
        let total = integer.len() + fraction.len();
        let trailing = if leading == total {
            0
        } else {
            digits().rev().take_while(|&digit| digit == b'0').count()
        };
        out.push(b'#');
        if leading == total {
            out.push(b'0');
        } else {
            let shift = i64::try_from(trailing).ok()? - i64::try_from(fraction.len()).ok()?;
            exponent = exponent.checked_add(shift)?;
            if negative {
                out.push(b'-');
            }
            out.extend(digits().skip(leading).take(total - leading - trailing));
            out.push(b'e');
            out.extend_from_slice(&exponent.to_le_bytes());
        }
        out.push(b';');
        Some(())
    }

    fn digits(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }
}

fn write_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn spelling_does_not_count() {
        let same = [
            (
                r#"{"a":1,"b":[true,null]}"#,
                "{ \"b\" : [ true , null ] ,\n \"a\" : 1.0 }",
            ),
            (r#"{"sku":"A\u00e9"}"#, r#"{"\u0073ku":"\u0041é"}"#),
            (r#"[100, 0.5, -0]"#, r#"[1e2, 5E-1, 0.0e5]"#),
            (r#"[12.340]"#, r#"[1234e-2]"#),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (r#""😀""#, r#""\ud83d\ude00""#),
        ];
        for (a, b) in same {
            assert_eq!(fingerprint(a), fingerprint(b), "{a} vs {b}");
        }
    }

    #[test]
    fn values_that_differ_do_not_collide() {
        let different = [
            (r#"{"a":1}"#, r#"{"a":2}"#),
            (r#"{"a":1,"b":2}"#, r#"{"a":2,"b":1}"#),
            (r#"[1,2]"#, r#"[2,1]"#),
            (r#"["ab","c"]"#, r#"["a","bc"]"#),
            (r#"{"a":2,"a":1}"#, r#"{"a":2}"#),
            // Equal as f64, not as decimals.
            (r#"[9007199254740993]"#, r#"[9007199254740992]"#),
            (r#"[0.1]"#, r#"[0.10000000000000000555]"#),
            (r#"[1]"#, r#"[-1]"#),
            (r#"[1]"#, r#"["1"]"#),
            (r#""\ud800""#, r#""\ufffd""#),
            (r#"[]"#, r#"{}"#),
            (r#"[null]"#, r#"[false]"#),
        ];
        for (a, b) in different {
            assert_ne!(fingerprint(a), fingerprint(b), "{a} vs {b}");
        }
    }

    #[test]
    fn an_exponent_beyond_64_bits_compares_bytes_without_panicking() {
        let huge = "[1e99999999999999999999]";
        assert_eq!(fingerprint(huge), fingerprint(huge));
        assert_ne!(fingerprint(huge), fingerprint("[1e99999999999999999998]"));
        assert_ne!(fingerprint("[1"), fingerprint("[1]"));
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Number, Value};

        use super::fingerprint;

        fn json() -> impl Strategy<Value = Value> {
            let number = prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1000i64..1000).prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(Value::from),
                (-1000i32..1000, 0u32..6)
                    .prop_map(|(n, scale)| Value::from(f64::from(n) / 10f64.powi(scale as i32))),
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                number,
                any::<String>().prop_map(Value::String),
                "[a-c\\\"]{0,3}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec(("[a-d]{0,2}", inner), 0..6).prop_map(|members| {
                        Value::Object(members.into_iter().collect::<Map<_, _>>())
                    }),
                ]
            })
        }

        /// Writes `value` as another serializer might: members in another order,
        /// whitespace, characters escaped, numbers spelled otherwise. `seed` decides.
        struct Writer {
            seed: u64,
            out: String,
        }

        impl Writer {
            fn coin(&mut self) -> bool {
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                self.seed >> 63 == 1
            }

            fn space(&mut self) {
                if self.coin() {
                    let space = if self.coin() { " " } else { "\n\t " };
                    self.out.push_str(space);
                }
            }

            fn value(&mut self, value: &Value) {
                self.space();
                match value {
                    Value::Array(items) => {
                        self.out.push('[');
                        for (index, item) in items.iter().enumerate() {
                            if index > 0 {
                                self.out.push(',');
                            }
                            self.value(item);
                        }
                        self.space();
                        self.out.push(']');
                    }
                    Value::Object(members) => {
                        let mut members: Vec<_> = members.iter().collect();
                        if self.coin() {
                            members.reverse();
                        }
                        self.out.push('{');
                        for (index, (name, item)) in members.into_iter().enumerate() {
                            if index > 0 {
                                self.out.push(',');
                            }
                            self.space();
                            self.string(name);
                            self.space();
                            self.out.push(':');
                            self.value(item);
                        }
                        self.space();
                        self.out.push('}');
                    }
                    Value::String(text) => self.string(text),
                    Value::Number(number) => self.number(number),
                    other => self.out.push_str(&other.to_string()),
                }
                self.space();
            }

            fn string(&mut self, text: &str) {
                self.out.push('"');
                for character in text.chars() {
                    let must = matches!(character, '"' | '\\') || character < ' ';
                    if must || self.coin() {
                        let mut units = [0; 2];
                        for unit in character.encode_utf16(&mut units) {
                            self.out.push_str(&format!("\\u{unit:04x}"));
                        }
                    } else {
                        self.out.push(character);
                    }
                }
                self.out.push('"');
            }

            /// `±digits[.digits][e±n]` as `±0.<all digits>e<n + integer digits>`.
            fn number(&mut self, number: &Number) {
                let text = number.to_string();
                if !self.coin() {
                    self.out.push_str(&text);
                    return;
                }
                let (sign, unsigned) = text
                    .strip_prefix('-')
                    .map_or(("", text.as_str()), |rest| ("-", rest));
                let (mantissa, exponent) =
                    unsigned.split_once(['e', 'E']).unwrap_or((unsigned, "0"));
                let exponent: i64 = exponent.parse().unwrap();
                let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
                let shifted = exponent + integer.len() as i64;
                self.out
                    .push_str(&format!("{sign}0.{integer}{fraction}0e{shifted}"));
            }
        }

        fn written(value: &Value, seed: u64) -> String {
            let mut writer = Writer {
                seed,
                out: String::new(),
            };
            writer.value(value);
            writer.out
        }

        /// `serde_json::Value` equality, except that numbers are equal when their values
        /// are (`1` and `1.0`), as the fingerprint's rule says.
        fn same(a: &Value, b: &Value) -> bool {
            match (a, b) {
                (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
                    (Some(x), Some(y)) => x == y,
                    _ => x.as_f64() == y.as_f64(),
                },
                (Value::Array(x), Value::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
                }
                (Value::Object(x), Value::Object(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .all(|(name, x)| y.get(name).is_some_and(|y| same(x, y)))
                }
                _ => a == b,
            }
        }

        /// `value` with every integer written as a float (`3` as `3.0`).
        fn floated(value: &Value) -> Value {
            match value {
                Value::Number(number) => match number.as_i64() {
                    Some(integer) if integer.unsigned_abs() < 1 << 53 => {
                        Value::from(integer as f64)
                    }
                    _ => value.clone(),
                },
                Value::Array(items) => Value::Array(items.iter().map(floated).collect()),
                Value::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(name, item)| (name.clone(), floated(item)))
                        .collect(),
                ),
                _ => value.clone(),
            }
        }

        proptest! {
            #[test]
            fn integers_written_as_floats_keep_the_fingerprint(value in json()) {
                let floated = floated(&value);
                prop_assert_eq!(fingerprint(&value.to_string()), fingerprint(&floated.to_string()), "{}", floated);
            }

            #[test]
            fn any_spelling_of_a_value_has_its_fingerprint(value in json(), seed in any::<u64>()) {
                let rewritten = written(&value, seed);
                // Valid JSON (serde_json's own float parsing may round the respelled
                // numbers by one unit in the last place, so values are not compared).
                prop_assert!(serde_json::from_str::<Value>(&rewritten).is_ok(), "{rewritten}");
                prop_assert_eq!(fingerprint(&value.to_string()), fingerprint(&rewritten), "{}", rewritten);
            }

            #[test]
            fn fingerprints_are_equal_exactly_when_values_are(a in json(), b in json()) {
                prop_assert_eq!(
                    fingerprint(&a.to_string()) == fingerprint(&b.to_string()),
                    same(&a, &b),
                    "{} vs {}", a, b
                );
            }
        }
    }
}
