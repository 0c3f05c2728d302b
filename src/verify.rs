use std::{fmt, time::Duration};

use hmac::Mac;
use http::{HeaderMap, HeaderName, HeaderValue};

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
        let signature = decode_signature(signature)
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
        let (timestamp, signature) = signature_headers(headers)?;
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
    signature: [u8; SIGNATURE_LEN],
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
        // `verify_slice` compares in constant time. Which secret matched may show in the
        // timing; that reveals nothing about any secret.
        let verify = |mac: &mut HmacSha256| mac.verify_slice_reset(signature).is_ok();
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

fn signature_headers(headers: &HeaderMap) -> Result<(&[u8], &[u8]), Rejection> {
    let (mut timestamp, mut signature) = (Seen::Nothing, Seen::Nothing);
    for (name, value) in headers {
        if *name == TIMESTAMP_HEADER {
            timestamp.see(value);
        } else if *name == SIGNATURE_HEADER {
            signature.see(value);
        }
    }
    let timestamp = timestamp.single(
        RejectionKind::MissingTimestamp,
        RejectionKind::MalformedTimestamp,
    )?;
    let signature = signature.single(
        RejectionKind::MissingSignature,
        RejectionKind::MalformedSignature,
    )?;
    Ok((timestamp, signature))
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

/// Exactly 64 hex digits, either case, no prefix. Table-driven, with one validity check
/// at the end instead of a branch per digit.
fn decode_signature(raw: &[u8]) -> Option<[u8; SIGNATURE_LEN]> {
    let (pairs, []) = raw.as_chunks::<2>() else {
        return None;
    };
    if pairs.len() != SIGNATURE_LEN {
        return None;
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    let mut invalid = 0u8;
    for (byte, &[high, low]) in signature.iter_mut().zip(pairs) {
        let (high, low) = (hex_value(high), hex_value(low));
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid & NOT_HEX == 0).then_some(signature)
}

/// Marks a byte that is not a hex digit; every digit's value fits in the low nibble.
const NOT_HEX: u8 = 0xf0;

const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            digit @ b'0'..=b'9' => digit - b'0',
            letter @ b'a'..=b'f' => letter - b'a' + 10,
            letter @ b'A'..=b'F' => letter - b'A' + 10,
            _ => NOT_HEX,
        };
        byte += 1;
    }
    table
};

fn hex_value(byte: u8) -> u8 {
    // Any `u8` indexes a 256-entry table.
    HEX_VALUES[usize::from(byte)]
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
    fn signatures_decode_strictly() {
        let lower = "00ff".repeat(16);
        let upper = "00FF".repeat(16);
        assert_eq!(
            decode_signature(lower.as_bytes()),
            Some([0, 255].repeat(16).try_into().unwrap())
        );
        assert_eq!(
            decode_signature(lower.as_bytes()),
            decode_signature(upper.as_bytes())
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
            assert_eq!(decode_signature(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
