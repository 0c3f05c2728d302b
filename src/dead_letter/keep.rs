//! What the layers do to keep a letter: why an answer was not applied, and the keeping
//! itself, bounded in time, counted and logged.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Response;
use serde::Deserialize;

use super::{DeadLetter, DeadLetters, Reason};
use crate::{
    dispatch::Unhandled,
    idempotency::{config::Config, key::Delivery, Policy},
};

/// Why `response`, an answer that is not final, did not apply its delivery, and what
/// it said.
pub(crate) fn reason_of(response: &Response<Bytes>) -> (Reason, String) {
    #[derive(Deserialize)]
    struct ErrorBody<'a> {
        #[serde(borrow)]
        code: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
    }
    let status = response.status();
    let said = serde_json::from_slice::<ErrorBody<'_>>(response.body()).ok();
    let code = said.as_ref().and_then(|said| said.code.as_deref());
    let reason = if response.extensions().get::<Unhandled>().is_some()
        || code == Some("unknown_event_type")
    {
        Reason::NoHandler
    } else if status.is_server_error() {
        Reason::HandlerFailed
    } else if code == Some("validation_error") {
        Reason::Invalid
    } else {
        Reason::NotFinal
    };
    let detail = match said {
        Some(ErrorBody { code, message }) => format!(
            "{} {}: {}",
            status.as_u16(),
            code.as_deref().unwrap_or("-"),
            message.as_deref().unwrap_or("")
        ),
        None => format!(
            "{} {}",
            status.as_u16(),
            String::from_utf8_lossy(&response.body()[..response.body().len().min(200)])
        ),
    };
    (reason, detail)
}

/// Keeps `letter` where `config` keeps dead letters, within the store timeout, in a
/// task of its own, and waits for it: a request dropped meanwhile (the client hung up)
/// does not drop the keeping. A failure to keep changes no answer; it is reported.
pub(crate) async fn keep(config: Arc<Config>, letter: DeadLetter) {
    if config.dead_letters().is_none() {
        return;
    }
    let keeping = tokio::spawn(async move {
        if let Some(letters) = config.dead_letters() {
            keep_within(letters, &letter, config.store_timeout).await;
        }
    });
    let _ = keeping.await;
}

/// Keeps `letter` in `letters` within `timeout`, and reports how it went.
async fn keep_within(letters: &dyn DeadLetters, letter: &DeadLetter, timeout: Duration) {
    match tokio::time::timeout(timeout, letters.keep(letter)).await {
        Ok(Ok(kept)) => super::metrics::kept(letter, Ok(kept), None),
        Ok(Err(error)) => {
            super::metrics::kept(letter, Err("store_error"), Some(&error.to_string()))
        }
        Err(_) => super::metrics::kept(letter, Err("timed_out"), None),
    }
}

/// What the signature layer holds to keep the authentic deliveries it refuses as
/// stale: the idempotency layer's settings (its store, its policies), and the keys it
/// kept lately.
#[derive(Clone)]
pub(crate) struct Keeper {
    config: Arc<Config>,
    recent: Arc<Mutex<HashMap<String, Instant>>>,
}

/// How long a stale delivery kept is not written again: a captured delivery replayed
/// in a flood (authentic, stale) costs one write per key in this time, not one per
/// request.
const STALE_REWRITE_AFTER: Duration = Duration::from_secs(10);
/// The most keys remembered; past it the memory is cleared.
const STALE_REMEMBERED: usize = 4096;

type Keeping = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Keeper {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            recent: Arc::default(),
        }
    }

    /// Whether `key` was kept less than [`STALE_REWRITE_AFTER`] ago; remembers it now
    /// if not.
    fn kept_lately(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent
            .get(key)
            .is_some_and(|kept| now.duration_since(*kept) < STALE_REWRITE_AFTER)
        {
            return true;
        }
        if recent.len() >= STALE_REMEMBERED {
            recent.clear();
        }
        recent.insert(key.to_owned(), now);
        false
    }

    /// Keeps the stale delivery `body`, answered `status`, `age` seconds away from the
    /// clock; `None` when there is nothing to keep: no dead letters, no Tokio runtime
    /// for the keeping's timeout, a type the layer passes through, no id.
    pub(crate) fn stale(&self, body: Bytes, age: u64, status: u16) -> Option<Keeping> {
        tokio::runtime::Handle::try_current().ok()?;
        self.config.dead_letters()?;
        let event_type = crate::events::peek_event_type(&body).ok()?;
        let per_payload = match self.config.policy(&event_type) {
            Policy::PassThrough => return None,
            Policy::Deduplicate => false,
            Policy::DeduplicateAllowingChanges => true,
        };
        let key = Delivery::of(&body, per_payload)?.store_key;
        if self.kept_lately(key.as_str()) {
            return None;
        }
        let detail = format!("{age} s away from this server's clock");
        let letter = DeadLetter::keyed(key.as_str(), body, Reason::Stale, status, &detail);
        // Signed more than half the retention ago, it may be a copy of a purchase applied
        // so long ago that its record is gone: kept, its replay would apply it again.
        if u128::from(age) * 2 >= self.config.retention.as_millis() / 1000 {
            super::metrics::kept(&letter, Err("too_old"), None);
            return None;
        }
        Some(Box::pin(keep(Arc::clone(&self.config), letter)))
    }
}
