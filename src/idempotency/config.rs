//! What an [`IdempotencyLayer`](super::IdempotencyLayer) is configured with, shared by
//! the layer, its services and the deduplicated runs.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde::Deserialize;

#[cfg(feature = "postgres")]
use super::PostgresStore;
use super::{in_flight::InFlight, IdempotencyStore, Policy, StoredResponse};
use crate::{dead_letter::DeadLetters, dispatch::Unhandled, events::EventType};

/// Where the records are kept, and so how a delivery is claimed.
#[derive(Clone)]
pub(crate) enum Backend {
    /// Claims with leases, in a store apart from the handler's data.
    Leased(Arc<dyn IdempotencyStore>),
    /// One database transaction per delivery: claim, the handler's writes, the answer.
    #[cfg(feature = "postgres")]
    Transactional(PostgresStore),
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) backend: Backend,
    pub(crate) policies: HashMap<EventType, Policy>,
    pub(crate) wait: Duration,
    pub(crate) lease: Duration,
    pub(crate) retention: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) run_timeout: Duration,
    pub(crate) max_stored_body: usize,
    pub(crate) fail_open: bool,
    /// Refusals that are business decisions: a status, and the body's `code` if it
    /// must match too.
    pub(crate) final_refusals: Vec<(StatusCode, Option<String>)>,
    /// The runs in progress, shared by every clone of the layer.
    pub(crate) in_flight: Arc<InFlight>,
    /// Where authentic deliveries that were not applied are kept.
    pub(crate) letters: Letters,
}

/// Where the layer keeps its dead letters.
#[derive(Clone)]
pub(crate) enum Letters {
    /// In the store that keeps the records, if it offers a place.
    Store,
    /// In a store of their own.
    Own(Arc<dyn DeadLetters>),
    /// Nowhere.
    Off,
}

impl Config {
    pub(crate) fn policy(&self, event_type: &EventType) -> Policy {
        self.policies
            .get(event_type)
            .copied()
            .unwrap_or_else(|| Policy::default_for(event_type))
    }

    /// Where dead letters go, if anywhere.
    pub(crate) fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        match (&self.letters, &self.backend) {
            (Letters::Off, _) => None,
            (Letters::Own(letters), _) => Some(&**letters),
            (Letters::Store, Backend::Leased(store)) => store.dead_letters(),
            #[cfg(feature = "postgres")]
            (Letters::Store, Backend::Transactional(store)) => Some(store),
        }
    }

    /// Whether `response` is recorded and replayed: a 2xx, or a refusal marked final.
    /// Every other answer says something about the code deployed now, not about the
    /// purchase, and must not outlive a fix; nor does an answer to a delivery no
    /// handler took, whatever its status, so that it runs once a handler is deployed.
    pub(crate) fn is_final(&self, response: &Response<Bytes>) -> bool {
        if response.extensions().get::<Unhandled>().is_some() {
            return false;
        }
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

    /// `response` as the store keeps it for replay: a body longer than the layer keeps
    /// is replayed empty, with its status and content type.
    pub(crate) fn stored(&self, response: &Response<Bytes>) -> StoredResponse {
        StoredResponse {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            body: if response.body().len() <= self.max_stored_body {
                response.body().clone()
            } else {
                Bytes::new()
            },
        }
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("policies", &self.policies)
            .field("wait", &self.wait)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("store_timeout", &self.store_timeout)
            .field("run_timeout", &self.run_timeout)
            .field("max_stored_body", &self.max_stored_body)
            .field("fail_open", &self.fail_open)
            .field("final_refusals", &self.final_refusals)
            .field(
                "dead_letters",
                &match self.letters {
                    Letters::Store => "the store's",
                    Letters::Own(_) => "their own",
                    Letters::Off => "off",
                },
            )
            .finish_non_exhaustive()
    }
}
