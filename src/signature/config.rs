//! What an [`AghanimSignatureLayer`](super::AghanimSignatureLayer) is configured with,
//! shared by the layer, its services and their futures.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::Response;

use super::budget::BufferBudget;
use crate::{unix_now, Rejection, Verifier};

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
type OnRejection = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    pub(crate) body_limit: usize,
    pub(crate) buffer_budget: Option<Arc<BufferBudget>>,
    pub(crate) clock: Option<Clock>,
    pub(crate) on_rejection: Option<OnRejection>,
    /// Keeps the authentic deliveries refused as stale.
    #[cfg(feature = "idempotency")]
    pub(crate) keeper: Option<crate::dead_letter::Keeper>,
}

impl Config {
    pub(crate) fn now(&self) -> u64 {
        self.clock.as_ref().map_or_else(unix_now, |clock| clock())
    }

    /// Keeps `verified`, refused with `rejection`, if it is an authentic delivery
    /// refused as stale and stale ones are kept.
    #[cfg_attr(not(feature = "idempotency"), allow(unused_variables))]
    pub(crate) fn keep_stale(
        &self,
        rejection: &Rejection,
        verified: Bytes,
        now: u64,
    ) -> Option<super::future::Keeping> {
        #[cfg(feature = "idempotency")]
        if rejection.kind() == crate::RejectionKind::TimestampOutsideTolerance {
            let age = rejection
                .timestamp()
                .map_or(0, |signed| signed.abs_diff(now));
            let status = self.response_for(rejection).status().as_u16();
            return self.keeper.as_ref()?.stale(verified, age, status);
        }
        None
    }

    pub(crate) fn response_for(&self, rejection: &Rejection) -> Response<Bytes> {
        match &self.on_rejection {
            Some(on_rejection) => on_rejection(rejection),
            None => rejection.default_response(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("verifier", &self.verifier)
            .field("body_limit", &self.body_limit)
            .field(
                "buffer_budget",
                &self.buffer_budget.as_ref().map(|budget| budget.total()),
            )
            .field(
                "clock",
                &if self.clock.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .field(
                "on_rejection",
                &if self.on_rejection.is_some() {
                    "custom"
                } else {
                    "default"
                },
            )
            .finish_non_exhaustive()
    }
}
