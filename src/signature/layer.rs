use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Response;
use tower_layer::Layer;

use super::{budget::BufferBudget, config::Config, AghanimSignature};
use crate::{EmptySecret, Rejection, Secret, Verifier};

/// The body limit used unless configured otherwise: 1 MiB.
///
/// # Example
///
/// ```
/// assert_eq!(aghanim_webhook::DEFAULT_BODY_LIMIT, 1_048_576);
/// ```
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The buffer budget used unless configured otherwise: 64 MiB, room for 64 bodies at
/// the default limit or tens of thousands of typical 1 to 2 KiB webhooks being read at
/// once. See [`AghanimSignatureLayer::buffer_budget`].
///
/// # Example
///
/// ```
/// assert_eq!(aghanim_webhook::DEFAULT_BUFFER_BUDGET, 64 * 1024 * 1024);
/// ```
pub const DEFAULT_BUFFER_BUDGET: usize = 64 * 1024 * 1024;

/// Verifies Aghanim webhook signatures in front of an inner service.
///
/// See the [crate documentation](crate) for what the layer checks.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use aghanim_webhook::{AghanimSignatureLayer, Secret};
///
/// let layer = AghanimSignatureLayer::new("new-secret")
///     .additional_secret(Secret::new("old-secret").unwrap())
///     .tolerance(Duration::from_secs(600))
///     .body_limit(256 * 1024);
/// ```
#[doc = include_str!("../../docs/signature.md")]
#[derive(Clone)]
#[must_use]
pub struct AghanimSignatureLayer {
    config: Arc<Config>,
}

impl AghanimSignatureLayer {
    /// A layer that accepts requests signed with `secret`, with every other setting at
    /// its default.
    ///
    /// # Panics
    ///
    /// When `secret` is empty, so that a missing secret stops the server at start rather
    /// than at its first webhook. Use [`try_new`](Self::try_new) to handle it yourself.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        match Self::try_new(secret) {
            Ok(layer) => layer,
            Err(error) => panic!("{error}"),
        }
    }

    /// Like [`new`](Self::new), returning an error for an empty secret.
    ///
    /// # Errors
    ///
    /// [`EmptySecret`] when `secret` is empty.
    pub fn try_new(secret: impl AsRef<[u8]>) -> Result<Self, EmptySecret> {
        Ok(Self::from_verifier(Verifier::new(Secret::new(secret)?)))
    }

    /// A layer around a configured [`Verifier`].
    pub fn from_verifier(verifier: Verifier) -> Self {
        Self {
            config: Arc::new(Config {
                verifier,
                body_limit: DEFAULT_BODY_LIMIT,
                buffer_budget: Some(BufferBudget::new(DEFAULT_BUFFER_BUDGET)),
                clock: None,
                on_rejection: None,
                #[cfg(feature = "idempotency")]
                keeper: None,
            }),
        }
    }

    /// Also accepts signatures made with `secret`, for rotating secrets without
    /// downtime. See [`Verifier::additional_secret`].
    pub fn additional_secret(self, secret: Secret) -> Self {
        self.map_verifier(|verifier| verifier.additional_secret(secret))
    }

    /// Accepts timestamps at most `tolerance` away from the clock, either way (whole
    /// seconds, edges inclusive). The default is 300 seconds.
    pub fn tolerance(self, tolerance: Duration) -> Self {
        self.map_verifier(|verifier| verifier.tolerance(tolerance))
    }

    /// Accepts authentic signatures with any timestamp. See
    /// [`Verifier::disable_tolerance`] for what that costs.
    pub fn disable_tolerance(self) -> Self {
        self.map_verifier(Verifier::disable_tolerance)
    }

    /// The largest body accepted, in bytes; larger ones get 413. The default is 1 MiB.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.config_mut().body_limit = limit;
        self
    }

    /// Bounds the bytes held at once by bodies still being read, across every service
    /// this layer and its clones make; the default is [`DEFAULT_BUFFER_BUDGET`].
    ///
    /// No body is verified before its last byte arrives, so these are the bytes that
    /// clients without the secret can make the server hold. A request whose declared
    /// length does not fit in what is left gets 503 with `retry-after` before any of
    /// its body is read ([`RejectionKind::Overloaded`](crate::RejectionKind::Overloaded));
    /// one without a declared length gets it as soon as its next frame does not fit.
    /// Bytes count from when they are buffered until the request is verified (or
    /// refused), so a verified request's body is no longer charged while its handler runs.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::AghanimSignatureLayer;
    ///
    /// // Webhooks are small: 16 MiB in flight is plenty, and bounds memory under a flood.
    /// let layer = AghanimSignatureLayer::new("secret")
    ///     .body_limit(256 * 1024)
    ///     .buffer_budget(16 * 1024 * 1024);
    /// ```
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.config_mut().buffer_budget = Some(BufferBudget::new(bytes));
        self
    }

    /// Lets bodies being read hold any amount of memory: `connections × body limit`
    /// under a flood. Only for a server that bounds connections some other way.
    pub fn disable_buffer_budget(mut self) -> Self {
        self.config_mut().buffer_budget = None;
        self
    }

    /// Reads the time from `clock` (Unix seconds) instead of the system clock.
    ///
    /// # Example
    ///
    /// ```
    /// # use aghanim_webhook::AghanimSignatureLayer;
    /// let layer = AghanimSignatureLayer::new("secret").clock(|| 1_700_000_000);
    /// ```
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.config_mut().clock = Some(Arc::new(clock));
        self
    }

    /// Answers rejections with the response `on_rejection` builds instead of
    /// [`Rejection::default_response`]. The [`Rejection`] is still inserted into the
    /// response's extensions.
    ///
    /// # Example
    ///
    /// ```
    /// use aghanim_webhook::AghanimSignatureLayer;
    /// use http::{Response, StatusCode};
    ///
    /// // Aghanim's older template answered 401 to a bad signature.
    /// let layer = AghanimSignatureLayer::new("secret").on_rejection(|rejection| {
    ///     let mut response = rejection.default_response();
    ///     if response.status() == StatusCode::FORBIDDEN {
    ///         *response.status_mut() = StatusCode::UNAUTHORIZED;
    ///     }
    ///     response
    /// });
    /// ```
    pub fn on_rejection(
        mut self,
        on_rejection: impl Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.config_mut().on_rejection = Some(Arc::new(on_rejection));
        self
    }

    /// Keeps every authentic delivery it refuses as stale (403: its signature verified,
    /// its timestamp outside the window) as a [dead letter](crate::dead_letter), where
    /// `idempotency` keeps its own, keyed as `idempotency` keys it, so that an operator
    /// can replay it (`aghanim-webhook records replay`) and the replay is credited once
    /// (feature `idempotency`). The answer is still 403; types the layer passes through
    /// are not kept. A stale delivery is kept before it is answered, within the
    /// layer's store timeout; nothing before the MAC check is ever stored. A captured
    /// delivery replayed in a flood is written once per key every 10 s, not once per
    /// request.
    ///
    /// Only deliveries signed less than half the idempotency layer's
    /// [`retention`](crate::idempotency::IdempotencyLayer::retention) ago (3.5 days by
    /// default) are kept, and older ones counted as not kept (`reason="too_old"`): a
    /// copy of a purchase applied long before could find its record gone (expired on
    /// Redis, evicted from a full memory store, deleted by
    /// `PostgresStore::forget_older_than`), and its replay would then apply it again.
    /// Within that age a record of the purchase, if it was applied, is still there,
    /// unless a memory store full to capacity evicted it or `forget_older_than` was
    /// given a horizon shorter than the retention.
    ///
    /// ```
    /// use aghanim_webhook::{idempotency::IdempotencyLayer, AghanimSignatureLayer};
    ///
    /// let idempotency = IdempotencyLayer::in_memory();
    /// let signature = AghanimSignatureLayer::new("secret").keep_stale(&idempotency);
    /// ```
    #[cfg(feature = "idempotency")]
    #[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
    pub fn keep_stale(mut self, idempotency: &crate::idempotency::IdempotencyLayer) -> Self {
        let keeper = crate::dead_letter::Keeper::new(Arc::clone(idempotency.config()));
        self.config_mut().keeper = Some(keeper);
        self
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn map_verifier(mut self, map: impl FnOnce(Verifier) -> Verifier) -> Self {
        let config = self.config_mut();
        config.verifier = map(config.verifier.clone());
        self
    }
}

impl<S> Layer<S> for AghanimSignatureLayer {
    type Service = AghanimSignature<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AghanimSignature::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for AghanimSignatureLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AghanimSignatureLayer")
            .field("config", &self.config)
            .finish()
    }
}
