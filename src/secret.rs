use std::{error::Error, fmt};

use hmac::{HmacReset, KeyInit};
use sha2::Sha256;

/// Resetting, so that a verification can finalize in place (see `Verification::check`).
pub(crate) type HmacSha256 = HmacReset<Sha256>;

/// A webhook secret, kept only as a keyed HMAC-SHA256 state.
///
/// The raw key is hashed into the HMAC state once, when the secret is built, so each
/// request only clones that state. Neither the key nor anything derived from it is ever
/// printed: `Debug` shows `Secret([redacted])`.
///
/// Aghanim shows the secret in the Dashboard (Game → Webhooks) and signs with its UTF-8
/// bytes, so pass the string exactly as shown.
///
/// # Example
///
/// ```
/// use aghanim_webhook::Secret;
///
/// let secret = Secret::new("whsec_from_the_dashboard").unwrap();
/// assert_eq!(format!("{secret:?}"), "Secret([redacted])");
/// assert!(Secret::new("").is_err());
/// ```
#[derive(Clone)]
pub struct Secret {
    keyed: HmacSha256,
}

impl Secret {
    /// Builds a secret from the key bytes.
    ///
    /// # Errors
    ///
    /// Returns [`EmptySecret`] when `key` is empty: an empty key is almost always a
    /// missing environment variable, and it would make every signature forgeable.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, EmptySecret> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(EmptySecret);
        }
        Ok(Self {
            keyed: keyed_hmac(key),
        })
    }

    /// A fresh HMAC state keyed with this secret, ready for the message.
    pub(crate) fn hmac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// HMAC takes keys of any length, so keying can only fail for fixed-size MACs.
pub(crate) fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The error for an empty webhook secret.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{EmptySecret, Secret};
///
/// assert_eq!(Secret::new(Vec::<u8>::new()).unwrap_err(), EmptySecret);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptySecret;

impl fmt::Display for EmptySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Aghanim webhook secret is empty")
    }
}

impl Error for EmptySecret {}
