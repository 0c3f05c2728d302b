//! `Dispatch`'s events through `tracing` (feature `tracing`); without the feature these
//! are empty functions the compiler removes.

use super::refusal::Refusal;
use crate::events::WebhookError;

/// One `warn` event per refusal `Dispatch` makes itself (not the handlers' own
/// answers): its reason, the error it answered with (for a validation error, the path
/// of the field at fault), and the delivery's ids read from the verified bytes, so that
/// a purchase refused on every retry can be found and mended. `verified` is `None` when
/// `Dispatch` is not behind the signature layer: nothing is read from such a body.
#[inline]
pub(crate) fn refused(refusal: Refusal, error: &WebhookError, verified: Option<&[u8]>) {
    #[cfg(feature = "tracing")]
    {
        let ids = verified
            .map(crate::delivery_ids::DeliveryIds::read)
            .unwrap_or_default();
        tracing::warn!(
            target: "aghanim_webhook::dispatch",
            reason = refusal.as_str(),
            status = error.status().as_u16(),
            error = error.message(),
            event_type = ids.event_type.as_deref(),
            event_id = ids.event_id.as_deref(),
            idempotency_key = ids.idempotency_key.as_deref(),
            game_id = ids.game_id.as_deref(),
            sandbox = ids.sandbox,
            "event refused by Dispatch: {}",
            refusal.describe(),
        );
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (refusal, error, verified);
}
