//! Why `Dispatch` refused an event itself, for its logs and metrics.

use crate::events::{ErrorCode, WebhookError};

/// The reason of a refusal `Dispatch` makes before or instead of a handler's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The body is not an event envelope, or its `event_data` does not fit the
    /// handler's data type: 400 `validation_error`, naming the field.
    Validation,
    /// No handler and no fallback for the event type (or the fallback's data is not for
    /// it): 400 `unknown_event_type`.
    UnknownEventType,
    /// The stack is put together wrongly (no signature layer, a handler's `Claim` with
    /// no idempotency layer): 500.
    Misconfigured,
}

impl Refusal {
    /// The refusal an error of `Dispatch`'s own stands for.
    pub(crate) fn of(error: &WebhookError) -> Self {
        match error.code() {
            ErrorCode::ValidationError => Self::Validation,
            ErrorCode::UnknownEventType => Self::UnknownEventType,
            _ => Self::Misconfigured,
        }
    }

    /// The label value: `validation_error`, `unknown_event_type` or `misconfigured`.
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation_error",
            Self::UnknownEventType => "unknown_event_type",
            Self::Misconfigured => "misconfigured",
        }
    }

    /// What the operator reads in the log line.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Validation => {
                "the event does not fit the handler's data type (Aghanim retries it, and it fails the same way each time)"
            }
            Self::UnknownEventType => {
                "no handler for its event type (register one, or a fallback)"
            }
            Self::Misconfigured => "the service stack is put together wrongly",
        }
    }
}
