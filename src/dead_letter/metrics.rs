//! The dead letters' metrics and log lines (features `metrics` and `tracing`); without
//! them these are empty functions the compiler removes.

use super::{DeadLetter, Kept};

#[cfg(feature = "metrics")]
pub(crate) const KEPT: &str = "aghanim_webhook_dead_letters_kept_total";
#[cfg(feature = "metrics")]
pub(crate) const NOT_KEPT: &str = "aghanim_webhook_dead_letters_not_kept_total";
#[cfg(feature = "metrics")]
pub(crate) const UNRESOLVED: &str = "aghanim_webhook_dead_letters_unresolved";

/// A letter kept, or why it could not be: `full`, `store_error`, `timed_out` or
/// `too_old`.
pub(crate) fn kept(letter: &DeadLetter, kept: Result<Kept, &'static str>, error: Option<&str>) {
    #[cfg(feature = "metrics")]
    {
        let event_type = crate::events::EventType::from(letter.event_type.as_str())
            .documented_name()
            .unwrap_or("other");
        match kept {
            Ok(Kept::Created | Kept::Updated) => metrics::counter!(
                KEPT, "reason" => letter.reason.as_str(), "event_type" => event_type
            )
            .increment(1),
            Ok(Kept::Full) => {
                metrics::counter!(NOT_KEPT, "reason" => "full", "event_type" => event_type)
                    .increment(1)
            }
            Err(why) => metrics::counter!(NOT_KEPT, "reason" => why, "event_type" => event_type)
                .increment(1),
        }
    }
    #[cfg(feature = "tracing")]
    {
        const TARGET: &str = "aghanim_webhook::dead_letter";
        let (event_type, delivery_id, game_id) = (
            letter.event_type.as_str(),
            letter.delivery_id.as_str(),
            letter.game_id.as_str(),
        );
        let (reason, status, detail) = (
            letter.reason.as_str(),
            letter.status,
            letter.detail.as_str(),
        );
        match kept {
            Ok(Kept::Created | Kept::Updated) => tracing::warn!(
                target: TARGET, event_type, delivery_id, game_id, reason, status, detail,
                "authentic delivery not applied: kept for replay (aghanim-webhook records failed)"
            ),
            Ok(Kept::Full) => tracing::error!(
                target: TARGET, event_type, delivery_id, game_id, reason, status, detail,
                "authentic delivery not applied, and NOT kept: the dead letters are full of unresolved ones"
            ),
            Err("too_old") => tracing::warn!(
                target: TARGET, event_type, delivery_id, game_id, reason, status, detail,
                "stale delivery signed more than half the retention ago: not kept for replay, which could apply a purchase whose record is gone"
            ),
            Err(why) => tracing::error!(
                target: TARGET, event_type, delivery_id, game_id, reason, status, detail, why,
                error = error.unwrap_or(""),
                "authentic delivery not applied, and NOT kept: the store failed"
            ),
        }
    }
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    let _ = (letter, kept, error);
}

/// How many letters are unresolved, by event type: set from a listing.
#[cfg(feature = "metrics")]
pub(crate) fn unresolved(letters: &[DeadLetter]) {
    let mut counts = std::collections::HashMap::<&'static str, f64>::new();
    for event_type in crate::events::EventType::DOCUMENTED {
        if let Some(name) = event_type.documented_name() {
            counts.insert(name, 0.0);
        }
    }
    counts.insert("other", 0.0);
    for letter in letters {
        let name = crate::events::EventType::from(letter.event_type.as_str())
            .documented_name()
            .unwrap_or("other");
        *counts.entry(name).or_default() += 1.0;
    }
    for (event_type, count) in counts {
        metrics::gauge!(UNRESOLVED, "event_type" => event_type).set(count);
    }
}
