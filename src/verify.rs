use std::{fmt, time::Duration};

use hmac::Mac;
use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::{
    secret::{HmacSha256, Secret},
    Rejection, RejectionKind,
};

/// The header that carries the hex HMAC-SHA256 signature.
///
/// # Example
///
/// ```
/// assert_eq!(aghanim_webhook::SIGNATURE_HEADER.as_str(), "x-aghanim-signature");
/// ```
pub static SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-aghanim-signature");

/// The header that carries the Unix time, in seconds, that the signature covers.
///
/// # Example
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// aghanim_webhook::sign_headers(&mut headers, "secret", 1_700_000_000, "{}");
/// assert_eq!(headers[&aghanim_webhook::TIMESTAMP_HEADER], "1700000000");
/// ```
pub static TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("x-aghanim-signature-timestamp");

/// The tolerance used unless configured otherwise: five minutes either way.
///
/// Aghanim publishes no tolerance; 300 s is the common default of webhook senders that do.
///
/// # Example
///
/// ```
/// assert_eq!(aghanim_webhook::DEFAULT_TOLERANCE.as_secs(), 300);
/// ```
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// `u64::MAX` has 20 digits; anything longer cannot be a Unix time in seconds.
const MAX_TIMESTAMP_DIGITS: usize = 20;
const SIGNATURE_LEN: usize = 32;
const SIGNATURE_HEX_LEN: usize = 2 * SIGNATURE_LEN;

/// Checks Aghanim signatures without any web framework: the verification core.
///
/// A `Verifier` holds one or more secrets and the replay tolerance. It checks, in this
/// order, that both headers parse, that the signature matches `"{timestamp}.{body}"`
/// under one of the secrets (in constant time), and that the timestamp lies within the
/// tolerance of the clock reading you pass. Because the MAC is checked before the
/// window, a [`RejectionKind::TimestampOutsideTolerance`] always means a delivery that
/// really came from Aghanim.
///
/// [`AghanimSignatureLayer`](crate::AghanimSignatureLayer) uses the same checks; call a
/// `Verifier` directly from other frameworks.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{sign, RejectionKind, Secret, Verifier};
///
/// let verifier = Verifier::new(Secret::new("secret").unwrap());
/// let body = br#"{"event_type":"player.verify","event_data":{"player_id":"testplayer"}}"#;
/// let signature = sign("secret", 1_700_000_000, body);
///
/// let verified = verifier.verify(b"1700000000", signature.as_bytes(), body, 1_700_000_010);
/// assert_eq!(verified, Ok(1_700_000_000));
///
/// let forged = verifier.verify(b"1700000000", signature.as_bytes(), b"{}", 1_700_000_010);
/// assert_eq!(forged.unwrap_err().kind(), RejectionKind::SignatureMismatch);
/// ```
#[derive(Clone)]
pub struct Verifier {
    secret: Secret,
    /// More accepted secrets, during a rotation; usually empty.
    additional: Vec<Secret>,
    tolerance: Option<u64>,
}

impl Verifier {
    /// A verifier for one secret with the default tolerance of 300 seconds.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            additional: Vec::new(),
            tolerance: Some(DEFAULT_TOLERANCE.as_secs()),
        }
    }

    /// Also accepts signatures made with `secret`.
    ///
    /// Aghanim replaces a secret at once when it is expired and documents no grace
    /// period, so during a rotation configure both the old and the new secret.
    #[must_use]
    pub fn additional_secret(mut self, secret: Secret) -> Self {
        self.additional.push(secret);
        self
    }

    /// Accepts timestamps at most `tolerance` before or after the clock (whole seconds;
    /// a fraction is dropped). Both edges are inclusive.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance.as_secs());
        self
    }

    /// Accepts any timestamp that the signature covers, however old.
    ///
    /// Aghanim's own template checks no timestamp age, and its documentation does not
    /// say whether a retry is signed again with a fresh timestamp. Without a window an
    /// intercepted delivery can be replayed forever, so only do this when your handlers
    /// are idempotent.
    #[must_use]
    pub fn disable_tolerance(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// Verifies a whole request: the two header values, the raw body and the clock
    /// reading `now` (Unix seconds). Returns the verified timestamp.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] saying which check failed first.
    pub fn verify(
        &self,
        timestamp: &[u8],
        signature: &[u8],
        body: &[u8],
        now: u64,
    ) -> Result<u64, Rejection> {
        let mut verification = self.begin(timestamp, signature)?;
        verification.update(body);
        verification.finish(now)
    }

    /// Like [`verify`](Self::verify), taking the header values from `headers`.
    ///
    /// # Errors
    ///
    /// A [`Rejection`]; a header sent more than once counts as malformed.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::{sign_headers, Secret, Verifier};
    ///
    /// let verifier = Verifier::new(Secret::new("secret").unwrap());
    /// let mut headers = http::HeaderMap::new();
    /// sign_headers(&mut headers, "secret", 1_700_000_000, "{}");
    /// assert_eq!(verifier.verify_headers(&headers, b"{}", 1_700_000_000), Ok(1_700_000_000));
    /// ```
    pub fn verify_headers(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<u64, Rejection> {
        let mut verification = self.begin_headers(headers)?;
        verification.update(body);
        verification.finish(now)
    }

    /// Starts a verification that is fed the body in pieces: parses the header values
    /// and absorbs the timestamp into the MAC. Nothing is buffered.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] when a header value is malformed.
    #[inline]
    pub fn begin(&self, timestamp: &[u8], signature: &[u8]) -> Result<Verification, Rejection> {
        let parsed_timestamp = parse_timestamp(timestamp)
            .ok_or_else(|| Rejection::new(RejectionKind::MalformedTimestamp))?;
        let signature = signature_digits(signature)
            .ok_or_else(|| Rejection::new(RejectionKind::MalformedSignature))?;
        // Built where it stays and fed in place: copying a MAC state just written
        // stalls on store forwarding, and this one is copied on into the future anyway.
        let mut verification = Verification {
            timestamp: parsed_timestamp,
            signature,
            mac: self.secret.hmac(),
            additional: if self.additional.is_empty() {
                Vec::new()
            } else {
                self.additional.iter().map(Secret::hmac).collect()
            },
            tolerance: self.tolerance,
        };
        // Signed verbatim, as received: the digits are what Aghanim hashed.
        verification.update(timestamp);
        verification.update(b".");
        Ok(verification)
    }

    /// Like [`begin`](Self::begin), taking the header values from `headers`.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] when a header is missing, repeated or malformed.
    #[inline]
    pub fn begin_headers(&self, headers: &HeaderMap) -> Result<Verification, Rejection> {
        let (timestamp, signature) = SignedHeaders::find(headers).values()?;
        self.begin(timestamp, signature)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &(1 + self.additional.len()))
            .field("tolerance_secs", &self.tolerance)
            .finish()
    }
}

/// A verification in progress, fed the body piece by piece.
///
/// Made by [`Verifier::begin`]; call [`update`](Self::update) with every piece of the
/// body in order, then [`finish`](Self::finish).
///
/// # Example
///
/// ```
/// use aghanim_webhook::{sign, Secret, Verifier};
///
/// let verifier = Verifier::new(Secret::new("secret").unwrap()).disable_tolerance();
/// let signature = sign("secret", 42, "hello world");
///
/// let mut verification = verifier.begin(b"42", signature.as_bytes()).unwrap();
/// verification.update(b"hello ");
/// verification.update(b"world");
/// assert_eq!(verification.finish(0), Ok(42));
/// ```
pub struct Verification {
    timestamp: u64,
    /// The claimed signature as received, in lowercase hex.
    signature: [u8; SIGNATURE_HEX_LEN],
    mac: HmacSha256,
    /// One MAC per additional secret; empty, so never allocated, without a rotation.
    additional: Vec<HmacSha256>,
    tolerance: Option<u64>,
}

impl Verification {
    /// Absorbs the next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.mac.update(piece);
        for mac in &mut self.additional {
            mac.update(piece);
        }
    }

    /// The timestamp from the header; not yet verified.
    pub fn claimed_timestamp(&self) -> u64 {
        self.timestamp
    }

    /// Checks the signature, then the window, against the clock reading `now` (Unix
    /// seconds). Returns the verified timestamp.
    ///
    /// # Errors
    ///
    /// [`RejectionKind::SignatureMismatch`] or
    /// [`RejectionKind::TimestampOutsideTolerance`].
    pub fn finish(mut self, now: u64) -> Result<u64, Rejection> {
        self.check(now)
    }

    /// [`finish`](Self::finish) in place: the layer's future verifies without moving
    /// or copying the MAC states (a copy of a state just updated stalls on store
    /// forwarding), which the resetting HMAC allows; the states are left reset.
    pub(crate) fn check(&mut self, now: u64) -> Result<u64, Rejection> {
        let signature = &self.signature;
        // Which secret matched may show in the timing; that reveals nothing about any
        // secret.
        let verify = |mac: &mut HmacSha256| {
            constant_time_eq(
                &lower_hex_constant_time(&mac.finalize_reset().into_bytes().into()),
                signature,
            )
        };
        let authentic = verify(&mut self.mac) || self.additional.iter_mut().any(verify);
        if !authentic {
            return Err(Rejection::new(RejectionKind::SignatureMismatch));
        }
        match self.tolerance {
            Some(tolerance) if self.timestamp.abs_diff(now) > tolerance => {
                Err(Rejection::outside_tolerance(self.timestamp, now))
            }
            _ => Ok(self.timestamp),
        }
    }
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verification")
            .field("claimed_timestamp", &self.timestamp)
            .field("secrets", &(1 + self.additional.len()))
            .finish_non_exhaustive()
    }
}

/// The headers a verification reads, found in one pass over the map: `HeaderMap` hashes
/// a name byte by byte on every lookup, which for the two signature names (19 and 29
/// bytes) costs more than walking the dozen headers a webhook arrives with, and the walk
/// touches only the entries, not the hash index as well.
pub(crate) struct SignedHeaders<'a> {
    timestamp: Seen<'a>,
    signature: Seen<'a>,
    /// The first `content-length`, for the layer's declared length.
    pub(crate) content_length: Option<&'a HeaderValue>,
}

impl<'a> SignedHeaders<'a> {
    pub(crate) fn find(headers: &'a HeaderMap) -> Self {
        let mut found = Self {
            timestamp: Seen::Nothing,
            signature: Seen::Nothing,
            content_length: None,
        };
        for (name, value) in headers {
            if *name == TIMESTAMP_HEADER {
                found.timestamp.see(value);
            } else if *name == SIGNATURE_HEADER {
                found.signature.see(value);
            } else if *name == header::CONTENT_LENGTH && found.content_length.is_none() {
                found.content_length = Some(value);
            }
        }
        found
    }

    /// The timestamp and the signature, each present exactly once.
    pub(crate) fn values(self) -> Result<(&'a [u8], &'a [u8]), Rejection> {
        let timestamp = self.timestamp.single(
            RejectionKind::MissingTimestamp,
            RejectionKind::MalformedTimestamp,
        )?;
        let signature = self.signature.single(
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?;
        Ok((timestamp, signature))
    }
}

enum Seen<'a> {
    Nothing,
    Once(&'a [u8]),
    Repeated,
}

impl<'a> Seen<'a> {
    fn see(&mut self, value: &'a HeaderValue) {
        *self = match self {
            Seen::Nothing => Seen::Once(value.as_bytes()),
            _ => Seen::Repeated,
        };
    }

    fn single(
        self,
        missing: RejectionKind,
        repeated: RejectionKind,
    ) -> Result<&'a [u8], Rejection> {
        match self {
            Seen::Once(value) => Ok(value),
            Seen::Nothing => Err(Rejection::new(missing)),
            Seen::Repeated => Err(Rejection::new(repeated)),
        }
    }
}

/// Strict decimal: digits only, no sign, no spaces, at most 20 of them, no overflow.
fn parse_timestamp(raw: &[u8]) -> Option<u64> {
    match raw.len() {
        // 19 digits cannot overflow a `u64`: validate once at the end, no branch per digit.
        1..MAX_TIMESTAMP_DIGITS => {
            let mut not_digit = false;
            let value = raw.iter().fold(0u64, |value, &byte| {
                let digit = byte.wrapping_sub(b'0');
                not_digit |= digit > 9;
                value.wrapping_mul(10).wrapping_add(u64::from(digit))
            });
            (!not_digit).then_some(value)
        }
        MAX_TIMESTAMP_DIGITS => raw.iter().try_fold(0u64, |value, &byte| {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value.checked_mul(10)?.checked_add(u64::from(digit))
        }),
        _ => None,
    }
}

/// Exactly 64 hex digits, either case, no prefix, lowercased. The tag is compared in
/// hex rather than decoded: a branch-free pass over the digits here and one encoding of
/// the tag at the end cost less than a decode, and leave no byte-by-byte writes to copy.
fn signature_digits(raw: &[u8]) -> Option<[u8; SIGNATURE_HEX_LEN]> {
    let raw: &[u8; SIGNATURE_HEX_LEN] = raw.try_into().ok()?;
    let mut digits = [0u8; SIGNATURE_HEX_LEN];
    let mut not_hex = false;
    for (digit, &byte) in digits.iter_mut().zip(raw) {
        // Setting bit 5 keeps the digits and lowers `A`-`F`; nothing else lands in
        // `a`-`f`.
        let lower = byte | 0x20;
        not_hex |= !(byte.is_ascii_digit() || (b'a'..=b'f').contains(&lower));
        *digit = lower;
    }
    (!not_hex).then_some(digits)
}

/// `tag` as lowercase hex, by arithmetic: no table lookup indexed by the secret tag.
fn lower_hex_constant_time(tag: &[u8; SIGNATURE_LEN]) -> [u8; SIGNATURE_HEX_LEN] {
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    for (pair, &byte) in hex.as_chunks_mut::<2>().0.iter_mut().zip(tag) {
        *pair = [hex_digit(byte >> 4), hex_digit(byte & 0x0f)];
    }
    hex
}

/// `nibble` (below 16) as a lowercase hex digit, without a branch: 39 more past 9.
fn hex_digit(nibble: u8) -> u8 {
    let past_nine = (9u8.wrapping_sub(nibble) >> 7) & 1;
    nibble + b'0' + past_nine * (b'a' - b'0' - 10)
}

/// Compares in time independent of where the inputs differ, with `ctutils`, the
/// constant-time crate that `digest`'s own `verify_slice` uses (so no crate is added):
/// its comparison is built on `cmov`'s conditional moves (assembly on x86-64 and
/// AArch64), which the optimizer cannot turn into an early exit, and its `Choice`
/// leaves the result opaque until the one branch below.
fn constant_time_eq(a: &[u8; SIGNATURE_HEX_LEN], b: &[u8; SIGNATURE_HEX_LEN]) -> bool {
    use ctutils::CtEq;
    a.ct_eq(b).to_bool()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_strictly() {
        assert_eq!(parse_timestamp(b"0"), Some(0));
        assert_eq!(parse_timestamp(b"1700000000"), Some(1_700_000_000));
        assert_eq!(parse_timestamp(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999",
            b"1844674407370955161a",
            b"184467440737095516/",
            b"000000000000000000001",
            b"123456789012345678901234567890",
            b"-5",
            b"+5",
            b"1e9",
            b" 5",
            b"5 ",
            b"0x10",
            b"1.5",
            "١٢".as_bytes(),
        ] {
            assert_eq!(
                parse_timestamp(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn signatures_are_read_strictly() {
        let lower = "00ff".repeat(16);
        let upper = "00FF".repeat(16);
        assert_eq!(
            signature_digits(lower.as_bytes()).as_ref().map(|d| &d[..]),
            Some(lower.as_bytes())
        );
        assert_eq!(
            signature_digits(lower.as_bytes()),
            signature_digits(upper.as_bytes())
        );
        for bad in [
            String::new(),
            "0".repeat(63),
            "0".repeat(65),
            "0".repeat(128),
            format!("sha256={}", "0".repeat(64)),
            format!("v1={}", "0".repeat(61)),
            format!("{}g", "0".repeat(63)),
            format!("{} ", "0".repeat(63)),
            "é".repeat(32),
        ] {
            assert_eq!(signature_digits(bad.as_bytes()), None, "{bad:?}");
        }
    }

    /// Every byte value in every position: accepted exactly when `u8::is_ascii_hexdigit`
    /// says so, and then lowercased.
    #[test]
    fn each_byte_is_judged_as_is_ascii_hexdigit_does() {
        for byte in 0..=u8::MAX {
            for position in 0..SIGNATURE_HEX_LEN {
                let mut raw = [b'0'; SIGNATURE_HEX_LEN];
                raw[position] = byte;
                let expected = byte.is_ascii_hexdigit().then(|| {
                    raw[position] = byte.to_ascii_lowercase();
                    raw
                });
                assert_eq!(
                    signature_digits(&raw),
                    expected,
                    "{byte:#04x} at {position}"
                );
            }
        }
    }

    #[test]
    fn tags_encode_as_hex_does() {
        for fill in 0..=u8::MAX {
            let mut tag = [fill; SIGNATURE_LEN];
            tag[0] = fill.wrapping_mul(7);
            assert_eq!(
                lower_hex_constant_time(&tag)[..],
                *hex::encode(tag).as_bytes()
            );
        }
    }

    #[test]
    fn constant_time_eq_finds_any_difference() {
        let digits = [b'a'; SIGNATURE_HEX_LEN];
        assert!(constant_time_eq(&digits, &digits));
        for position in 0..SIGNATURE_HEX_LEN {
            let mut other = digits;
            other[position] = b'b';
            assert!(!constant_time_eq(&digits, &other), "{position}");
        }
    }
}
