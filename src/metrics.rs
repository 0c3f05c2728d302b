//! The metrics this crate records through the `metrics` facade (feature `metrics`), and
//! what to do when the alerts over them fire.
//!
#![doc = include_str!("../docs/metrics.md")]

/// Describes every metric this crate records to the installed recorder: its unit and
/// what it counts. Call it once, after installing the recorder (for example
/// `metrics-exporter-prometheus`'s); recording works without it.
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `aghanim_webhook_deliveries_total` | counter | `outcome`: `verified` or a [`RejectionKind`](crate::RejectionKind) in snake case |
/// | `aghanim_webhook_delivery_age_seconds` | histogram | |
/// | `aghanim_webhook_bodies_reading` | gauge | |
/// | `aghanim_webhook_buffer_budget_bytes_in_use` | gauge | |
/// | `aghanim_webhook_events_total` | counter | `event_type` (documented types, else `other`), `class` (`2xx`, `4xx`, `5xx`) |
/// | `aghanim_webhook_dispatch_refusals_total` | counter | `reason` (`validation_error`, `unknown_event_type`, `misconfigured`), `event_type` |
/// | `aghanim_webhook_idempotency_decisions_total` | counter | `decision` |
/// | `aghanim_webhook_idempotency_store_duration_seconds` | histogram | `store`, `operation` |
///
/// # Memory: run the recorder's upkeep
///
/// Every verified delivery records its age in a histogram, and every store call its
/// duration. Recorders that keep raw samples until they are read grow with each
/// delivery when nothing reads them: `metrics-exporter-prometheus`'s
/// `PrometheusBuilder::install_recorder` (and `build_recorder`) keep every histogram
/// sample until `PrometheusHandle::run_upkeep` or a render folds it away, so with no
/// scraper (none set up yet, one that is down, an ops port nobody reads) memory grows
/// without limit. Call `run_upkeep` on a schedule of your own, as the example server
/// does every 5 s, or use `PrometheusBuilder::install`, which runs it for you; give the
/// two histograms buckets (`set_buckets_for_metric`) so that what is kept between
/// upkeeps is counts, not quantile summaries.
///
/// # Example
///
/// ```
/// aghanim_webhook::describe_metrics();
/// ```
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

    describe_counter!(
        "aghanim_webhook_deliveries_total",
        Unit::Count,
        "Deliveries the signature layer verified, and refused by reason"
    );
    describe_histogram!(
        "aghanim_webhook_delivery_age_seconds",
        Unit::Seconds,
        "How old a verified delivery's signature timestamp was (negative: the sender's clock is ahead)"
    );
    describe_gauge!(
        "aghanim_webhook_bodies_reading",
        Unit::Count,
        "Request bodies being read and not yet verified"
    );
    describe_gauge!(
        "aghanim_webhook_buffer_budget_bytes_in_use",
        Unit::Bytes,
        "Bytes of the buffer budget held by bodies being read"
    );
    describe_counter!(
        "aghanim_webhook_events_total",
        Unit::Count,
        "Events Dispatch answered, by type and answer class"
    );
    describe_counter!(
        "aghanim_webhook_dispatch_refusals_total",
        Unit::Count,
        "Events Dispatch refused itself (not a handler's answer), by reason and type"
    );
    describe_counter!(
        "aghanim_webhook_dead_letters_kept_total",
        Unit::Count,
        "Authentic deliveries not applied and kept for replay, by reason and type"
    );
    describe_counter!(
        "aghanim_webhook_dead_letters_not_kept_total",
        Unit::Count,
        "Authentic deliveries not applied that could not be kept, by reason and type"
    );
    describe_gauge!(
        "aghanim_webhook_dead_letters_unresolved",
        Unit::Count,
        "Kept deliveries not applied yet, by type, in the whole store (read with max)"
    );
    describe_counter!(
        "aghanim_webhook_idempotency_decisions_total",
        Unit::Count,
        "What the idempotency layer did with deduplicated deliveries"
    );
    describe_counter!(
        "aghanim_webhook_idempotency_store_failures_total",
        Unit::Count,
        "Store failures the idempotency layer answered 503, by store, operation and reason"
    );
    describe_histogram!(
        "aghanim_webhook_idempotency_store_duration_seconds",
        Unit::Seconds,
        "How long idempotency store calls took, by store and operation"
    );
}
