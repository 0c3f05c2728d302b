use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use http::StatusCode;
use tower_layer::Layer;

use super::{
    config::{Backend, Config, Letters},
    Idempotency, IdempotencyStore, MemoryStore, Policy,
};
use crate::{dead_letter::DeadLetters, events::EventType};

/// How long a completed or released record is kept unless configured otherwise: 7 days,
/// twice the longest retry horizon known among webhook senders (Aghanim publishes none).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a claim holds without renewal unless configured otherwise: 15 s. It is
/// renewed every third of it from the claim until the answer is recorded, so it only
/// ever runs out when the process holding it is gone or stuck, and then blocks the
/// key's duplicates for at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The shortest lease [`IdempotencyLayer::lease`] accepts.
const SHORTEST_LEASE: Duration = Duration::from_secs(1);
/// How long a duplicate waits for the delivery in progress unless configured otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// How long one store call may take unless configured otherwise.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a claimed run may take unless configured otherwise: 20 s. Past it the
/// handler is cancelled and 503 answered; on the transactional store the database ends
/// a delivery's transaction that stays idle or in one statement this long plus the
/// store timeout, so that a frozen instance frees its keys within 22 s.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a duration setting may be: PostgreSQL's timeouts are 32-bit
/// milliseconds, and a deadline this far ahead never overflows a clock.
const LONGEST_SETTING: Duration = Duration::from_millis(1 << 30);
/// The largest answer body kept for replay unless configured otherwise: 64 KiB.
pub const DEFAULT_MAX_STORED_BODY: usize = 64 * 1024;

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
/// | longest run of the handler | 20 s | [`run_timeout`](Self::run_timeout) |
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

impl IdempotencyLayer {
    /// A layer keeping its records in `store`, every other setting at its default.
    pub fn new(store: impl IdempotencyStore) -> Self {
        Self {
            config: Arc::new(Config {
                backend: Backend::Leased(Arc::new(store)),
                policies: HashMap::new(),
                wait: DEFAULT_WAIT,
                lease: DEFAULT_LEASE,
                retention: DEFAULT_RETENTION,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                run_timeout: DEFAULT_RUN_TIMEOUT,
                max_stored_body: DEFAULT_MAX_STORED_BODY,
                fail_open: false,
                final_refusals: vec![(StatusCode::BAD_REQUEST, Some("declined".to_owned()))],
                in_flight: Arc::default(),
                letters: Letters::Store,
            }),
        }
    }

    /// A layer with a new [`MemoryStore`]: deduplicates **within this process only**.
    pub fn in_memory() -> Self {
        Self::new(MemoryStore::new())
    }

    /// A layer that runs each deduplicated delivery in one transaction of `store`'s
    /// database: the claim, the handler's own statements through the
    /// [`DeliveryTransaction`](super::DeliveryTransaction) in the request's extensions,
    /// and the recorded answer commit together, or not at all (feature `postgres`).
    /// See [`PostgresStore`](super::PostgresStore) for the answer in each situation.
    /// The lease settings do not apply (a transaction needs none), nor does
    /// [`fail_open`](Self::fail_open): without the database there is no transaction for
    /// the handler to write in, so an unreachable database is always a 503.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn transactional(store: super::PostgresStore) -> Self {
        let mut layer = Self::in_memory();
        layer.config_mut().backend = Backend::Transactional(store);
        layer
    }

    /// Handles `event_type` by `policy` instead of [`Policy::default_for`].
    pub fn policy(mut self, event_type: impl Into<EventType>, policy: Policy) -> Self {
        self.config_mut().policies.insert(event_type.into(), policy);
        self
    }

    /// How long a duplicate waits for the delivery in progress before answering 503
    /// with `retry-after`. Keep it well under Aghanim's own request timeout.
    ///
    /// # Panics
    ///
    /// When `wait` is 2³⁰ ms (about 12 days) or more.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config_mut().wait = expressible("wait", wait);
        self
    }

    /// How long a claim holds without renewal; it is renewed every third of it from the
    /// claim until the answer is recorded. A process that dies holding a claim blocks
    /// the key's retries for at most this long. At least 1 s.
    ///
    /// # Panics
    ///
    /// When `lease` is 2³⁰ ms (about 12 days) or more.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config_mut().lease = expressible("lease", lease).max(SHORTEST_LEASE);
        self
    }

    /// How long the memory and Redis stores keep records: a duplicate arriving later
    /// runs the handler again. The transactional store keeps every key it completed
    /// whatever this says; see [`PostgresStore`]'s retention.
    ///
    #[cfg_attr(feature = "postgres", doc = "[`PostgresStore`]: super::PostgresStore")]
    #[cfg_attr(
        not(feature = "postgres"),
        doc = "[`PostgresStore`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/idempotency/struct.PostgresStore.html"
    )]
    ///
    /// # Panics
    ///
    /// When `retention` is more than 100 years, past what a clock can add.
    pub fn retention(mut self, retention: Duration) -> Self {
        assert!(
            retention <= LONGEST_RETENTION,
            "IdempotencyLayer::retention of {retention:?} is more than 100 years"
        );
        self.config_mut().retention = retention;
        self
    }

    /// How long one store call may take before the store counts as unreachable.
    ///
    /// # Panics
    ///
    /// When `timeout` is 2³⁰ ms (about 12 days) or more.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().store_timeout = expressible("store_timeout", timeout);
        self
    }

    /// How long a claimed run (waiting for the handler's readiness, the handler, and
    /// collecting its answer) may take: past it the handler's future is dropped, its
    /// claim released (on the transactional store its writes rolled back), and 503
    /// answered, so that a hung handler never keeps its key busy.
    ///
    /// On the transactional store, each delivery's transaction also carries this bound
    /// to the server, plus the [`store_timeout`](Self::store_timeout): its statements'
    /// `statement_timeout` and its `idle_in_transaction_session_timeout`. So an
    /// instance that is frozen or cut off while it holds a claim (a paused VM, a
    /// SIGSTOP, a partition) has its transaction ended by the server within that time,
    /// and the next delivery of its key runs elsewhere; when it resumes, its commit
    /// fails and it answers 503, never a 2xx.
    ///
    /// ```
    /// use std::time::Duration;
    /// use aghanim_webhook::idempotency::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::in_memory().run_timeout(Duration::from_secs(10));
    /// ```
    ///
    /// # Panics
    ///
    /// When `timeout` is 2³⁰ ms (about 12 days) or more.
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().run_timeout = expressible("run_timeout", timeout);
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

    /// Keeps the authentic deliveries that are not applied in `letters` instead of the
    /// store's own place ([`IdempotencyStore::dead_letters`]): for a custom store, or to
    /// keep them apart. See [`dead_letter`](crate::dead_letter).
    ///
    /// ```
    /// use aghanim_webhook::{dead_letter::MemoryDeadLetters, idempotency::IdempotencyLayer};
    ///
    /// let layer = IdempotencyLayer::in_memory().dead_letters(MemoryDeadLetters::with_limits(100, 1 << 20));
    /// ```
    pub fn dead_letters(mut self, letters: impl DeadLetters) -> Self {
        self.config_mut().letters = Letters::Own(Arc::new(letters));
        self
    }

    /// Where the layer keeps its dead letters, if anywhere: for a studio's own admin
    /// page, or a schedule that runs [`dead_letter::unresolved`](crate::dead_letter::unresolved).
    ///
    /// ```
    /// use aghanim_webhook::idempotency::IdempotencyLayer;
    ///
    /// assert!(IdempotencyLayer::in_memory().letters().is_some());
    /// assert!(IdempotencyLayer::in_memory().without_dead_letters().letters().is_none());
    /// ```
    pub fn letters(&self) -> Option<&dyn DeadLetters> {
        self.config.dead_letters()
    }

    /// Keeps no dead letters: a delivery that is not applied lives only in Aghanim's
    /// retries and the logs.
    pub fn without_dead_letters(mut self) -> Self {
        self.config_mut().letters = Letters::Off;
        self
    }

    /// How many claimed runs are going on, in every service of this layer: those whose
    /// request future was dropped (the client hung up) included.
    pub fn runs_in_flight(&self) -> usize {
        self.config.in_flight.running()
    }

    /// Waits until no claimed run is going on: for a server draining at shutdown,
    /// which must wait for these as well as for its connections, since a run whose
    /// client hung up goes on without one.
    pub async fn runs_finished(&self) {
        self.config.in_flight.finished().await;
    }

    /// Cancels every run still going on, and every one that starts from now on, and
    /// waits until each has ended: its handler's future dropped, then its claim
    /// released (on the transactional store, its transaction rolled back), and 503
    /// answered. Returns how many handlers were cancelled. For a server whose drain
    /// deadline has passed: the next delivery of those keys runs at once elsewhere,
    /// and never while a cancelled handler could still write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = aghanim_webhook::idempotency::IdempotencyLayer::in_memory();
    /// layer.runs_finished().await;
    /// assert_eq!(layer.cancel_in_flight().await, 0);
    /// # }
    /// ```
    pub async fn cancel_in_flight(&self) -> usize {
        self.config.in_flight.cancel_all().await
    }

    /// The layer's settings, for the signature layer's keeping of stale deliveries.
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }
}

/// The longest [`IdempotencyLayer::retention`].
const LONGEST_RETENTION: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// `duration`, if the layer can use it in deadlines and in PostgreSQL's timeouts, even
/// added to another setting.
fn expressible(setting: &str, duration: Duration) -> Duration {
    assert!(
        duration < LONGEST_SETTING,
        "IdempotencyLayer::{setting} of {duration:?} is too long: settings must be under {LONGEST_SETTING:?}"
    );
    duration
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
