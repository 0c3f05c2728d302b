//! `Dispatch`'s metrics through the `metrics` facade (feature `metrics`); without the
//! feature these are empty functions the compiler removes.

use http::StatusCode;

use crate::events::EventType;

#[cfg(feature = "metrics")]
pub(crate) const EVENTS: &str = "aghanim_webhook_events_total";
#[cfg(feature = "metrics")]
pub(crate) const REFUSALS: &str = "aghanim_webhook_dispatch_refusals_total";

/// The label of an event type: its name if documented, else `other`, so that no label
/// value comes from the request.
#[cfg(feature = "metrics")]
pub(crate) type EventLabel = &'static str;
#[cfg(not(feature = "metrics"))]
pub(crate) type EventLabel = ();

#[inline]
pub(crate) fn event_label(event_type: &EventType) -> EventLabel {
    #[cfg(feature = "metrics")]
    return event_type.documented_name().unwrap_or("other");
    #[cfg(not(feature = "metrics"))]
    let _ = event_type;
}

/// An event answered, by type and answer class.
#[inline]
pub(crate) fn answered(event: EventLabel, status: StatusCode) {
    #[cfg(feature = "metrics")]
    {
        let class = match status.as_u16() {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        metrics::counter!(EVENTS, "event_type" => event, "class" => class).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (event, status);
}

/// A refusal `Dispatch` made itself, by reason and event type.
#[inline]
pub(crate) fn refused(event: EventLabel, refusal: super::refusal::Refusal) {
    #[cfg(feature = "metrics")]
    metrics::counter!(REFUSALS, "reason" => refusal.as_str(), "event_type" => event).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (event, refusal);
}
