use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Deserialize;
use tower_layer::Layer;

use super::{Idempotency, IdempotencyStore, MemoryStore};
use crate::events::EventType;

/// How long a completed or released record is kept unless configured otherwise: 7 days,
/// twice the longest retry horizon known among webhook senders (Aghanim publishes none).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a claim holds without renewal unless configured otherwise: 15 s. It is
/// renewed every third of it from the claim until the answer is recorded, so it only
/// ever runs out when the process holding it is gone or stuck, and then blocks the
/// key's duplicates for at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// How long a duplicate waits for the delivery in progress unless configured otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// How long one store call may take unless configured otherwise.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer body kept for replay unless configured otherwise: 64 KiB.
pub const DEFAULT_MAX_STORED_BODY: usize = 64 * 1024;

/// What the layer does with one event type.
///
/// # Example
///
/// ```
/// use aghanim_webhook::{events::EventType, idempotency::Policy};
///
/// assert_eq!(Policy::default_for(&EventType::ItemAdd), Policy::Deduplicate);
/// assert_eq!(Policy::default_for(&EventType::PaymentSucceeded), Policy::DeduplicateAllowingChanges);
/// assert_eq!(Policy::default_for(&EventType::PlayerVerify), Policy::PassThrough);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Every delivery reaches the handler: synchronous reads, whose answer must be
    /// fresh.
    PassThrough,
    /// One run per key, its answer replayed; the same key with another payload is
    /// refused with 422 `idempotency_key_reused` and never reaches the handler.
    Deduplicate,
    /// One run per key and payload, its answer replayed: each distinct payload under a
    /// key is claimed on its own (the key plus the payload's fingerprint), so identical
    /// copies of one change run once and a different change runs. For notifications
    /// that Aghanim re-sends when something changed, such as `payment.*` when amounts
    /// change.
    DeduplicateAllowingChanges,
}

impl Policy {
    /// The default for `event_type`:
    ///
    /// | event types | policy |
    /// |---|---|
    /// | `item.add`, `item.remove`, `coupon.redeemed` | [`Deduplicate`](Self::Deduplicate) |
    /// | `order.*`, `payment.*`, `subscription.*`, `fraud.reported`, `player.marketing_consent.updated` | [`DeduplicateAllowingChanges`](Self::DeduplicateAllowingChanges) |
    /// | everything else: `player.verify`, `player.lookup`, `store.get`, `player.update`, ... | [`PassThrough`](Self::PassThrough) |
    pub fn default_for(event_type: &EventType) -> Self {
        use EventType::*;
        match event_type {
            ItemAdd | ItemRemove | CouponRedeemed => Self::Deduplicate,
            OrderCreated
            | OrderPaid
            | OrderCanceled
            | OrderRefunded
            | PaymentSucceeded
            | PaymentAbandoned
            | PaymentCanceled
            | PaymentChargeback
            | PaymentDeclined
            | PaymentDispute
            | PaymentExpired
            | PaymentPending
            | PaymentRefunded
            | PaymentRejected
            | PaymentVoided
            | SubscriptionActivated
            | SubscriptionUpdated
            | SubscriptionRenewed
            | SubscriptionDeactivated
            | FraudReported
            | PlayerMarketingConsentUpdated => Self::DeduplicateAllowingChanges,
            _ => Self::PassThrough,
        }
    }
}

/// Runs each side-effecting webhook once and replays its answer to every duplicate:
/// Aghanim's retries, the same retry landing on several instances, and captured
/// deliveries replayed within the signature window.
///
/// Put it **inside** [`AghanimSignatureLayer`](crate::AghanimSignatureLayer): it reads
/// the key from the [`VerifiedBody`](crate::VerifiedBody), so a request without the
/// secret can never create, block or poison a claim. See the [module
/// documentation](super) for the answer in each situation.
///
/// | setting | default | builder |
/// |---|---|---|
/// | store | [`MemoryStore`] with [`in_memory`](Self::in_memory) (one process only) | [`new`](Self::new) |
/// | policy per event type | [`Policy::default_for`] | [`policy`](Self::policy) |
/// | wait for a delivery in progress | 5 s | [`wait`](Self::wait) |
/// | lease of a claim | 15 s, renewed every 5 s | [`lease`](Self::lease) |
/// | retention of records | 7 days | [`retention`](Self::retention) |
/// | timeout of one store call | 2 s | [`store_timeout`](Self::store_timeout) |
/// | largest answer kept for replay | 64 KiB | [`max_stored_body`](Self::max_stored_body) |
/// | answers besides 2xx that are recorded | 400 `declined` | [`final_refusal`](Self::final_refusal), [`final_status`](Self::final_status) |
/// | store unreachable | 503 (fail closed) | [`fail_open`](Self::fail_open) |
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use aghanim_webhook::{events::EventType, idempotency::{IdempotencyLayer, Policy}};
///
/// let layer = IdempotencyLayer::in_memory()
///     .policy(EventType::OrderPaid, Policy::Deduplicate)
///     .wait(Duration::from_secs(3));
/// ```
#[derive(Clone)]
#[must_use]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    policies: HashMap<EventType, Policy>,
    pub(crate) wait: Duration,
    pub(crate) lease: Duration,
    pub(crate) retention: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) max_stored_body: usize,
    pub(crate) fail_open: bool,
    /// Refusals that are business decisions: a status, and the body's `code` if it
    /// must match too.
    final_refusals: Vec<(StatusCode, Option<String>)>,
}

impl Config {
    pub(crate) fn policy(&self, event_type: &EventType) -> Policy {
        self.policies
            .get(event_type)
            .copied()
            .unwrap_or_else(|| Policy::default_for(event_type))
    }

    /// Whether `response` is recorded and replayed: a 2xx, or a refusal marked final.
    /// Every other answer says something about the code deployed now, not about the
    /// purchase, and must not outlive a fix.
    pub(crate) fn is_final(&self, response: &Response<Bytes>) -> bool {
        let status = response.status();
        if status.is_success() {
            return true;
        }
        let mut code = None;
        self.final_refusals
            .iter()
            .any(|(final_status, final_code)| {
                *final_status == status
                    && final_code.as_ref().is_none_or(|final_code| {
                        let code = code.get_or_insert_with(|| error_code(response.body()));
                        code.as_deref() == Some(final_code.as_str())
                    })
            })
    }
}

/// The `code` of a `{"status":"error","code":…}` body.
fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        code: Option<String>,
    }
    serde_json::from_slice::<ErrorBody>(body).ok()?.code
}

impl IdempotencyLayer {
    /// A layer keeping its records in `store`, every other setting at its default.
    pub fn new(store: impl IdempotencyStore) -> Self {
        Self {
            config: Arc::new(Config {
                store: Arc::new(store),
                policies: HashMap::new(),
                wait: DEFAULT_WAIT,
                lease: DEFAULT_LEASE,
                retention: DEFAULT_RETENTION,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                max_stored_body: DEFAULT_MAX_STORED_BODY,
                fail_open: false,
                final_refusals: vec![(StatusCode::BAD_REQUEST, Some("declined".to_owned()))],
            }),
        }
    }

    /// A layer with a new [`MemoryStore`]: deduplicates **within this process only**.
    pub fn in_memory() -> Self {
        Self::new(MemoryStore::new())
    }

    /// Handles `event_type` by `policy` instead of [`Policy::default_for`].
    pub fn policy(mut self, event_type: impl Into<EventType>, policy: Policy) -> Self {
        self.config_mut().policies.insert(event_type.into(), policy);
        self
    }

    /// How long a duplicate waits for the delivery in progress before answering 503
    /// with `retry-after`. Keep it well under Aghanim's own request timeout.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config_mut().wait = wait;
        self
    }

    /// How long a claim holds without renewal; it is renewed every third of it from the
    /// claim until the answer is recorded. A process that dies holding a claim blocks
    /// the key's retries for at most this long. At least 1 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config_mut().lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How long records are kept: a duplicate arriving later runs the handler again.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config_mut().retention = retention;
        self
    }

    /// How long one store call may take before the store counts as unreachable.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().store_timeout = timeout;
        self
    }

    /// The largest response body kept for replay; a longer one is replayed with its
    /// status and content type but an empty body.
    pub fn max_stored_body(mut self, bytes: usize) -> Self {
        self.config_mut().max_stored_body = bytes;
        self
    }

    /// Records and replays answers with `status` whose JSON body has this `code`, as
    /// 400 `declined` is by default: a refusal that is a business decision about the
    /// purchase, which a retry must not turn into a credit.
    ///
    /// Every answer that is neither a 2xx nor marked final (400 `validation_error`,
    /// `unknown_event_type`, 404, 408, 429, 5xx, a handler error or panic) releases the
    /// claim, so the next delivery runs with whatever code is deployed then.
    ///
    /// ```
    /// use aghanim_webhook::idempotency::IdempotencyLayer;
    /// use http::StatusCode;
    ///
    /// let layer = IdempotencyLayer::in_memory()
    ///     .final_refusal(StatusCode::BAD_REQUEST, "banned");
    /// ```
    pub fn final_refusal(mut self, status: StatusCode, code: impl Into<String>) -> Self {
        let refusal = (status, Some(code.into()));
        self.config_mut().final_refusals.push(refusal);
        self
    }

    /// Records and replays every answer with `status`, whatever its body: for a handler
    /// that refuses with a status of its own, such as 409 or 410.
    pub fn final_status(mut self, status: StatusCode) -> Self {
        self.config_mut().final_refusals.push((status, None));
        self
    }

    /// When the store cannot be reached, runs the handler without a claim instead of
    /// answering 503. Only sane when every handler's own write is idempotent.
    pub fn fail_open(mut self) -> Self {
        self.config_mut().fail_open = true;
        self
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("policies", &self.policies)
            .field("wait", &self.wait)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("store_timeout", &self.store_timeout)
            .field("max_stored_body", &self.max_stored_body)
            .field("fail_open", &self.fail_open)
            .field("final_refusals", &self.final_refusals)
            .finish_non_exhaustive()
    }
}
