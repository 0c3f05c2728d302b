use crate::events::EventType;

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
    /// | a type this crate does not know ([`EventType::Other`]): one Aghanim added since, maybe a purchase | [`Deduplicate`](Self::Deduplicate) |
    /// | `order.*`, `payment.*`, `subscription.*`, `fraud.reported`, `player.marketing_consent.updated` | [`DeduplicateAllowingChanges`](Self::DeduplicateAllowingChanges) |
    /// | every other documented type: `player.verify`, `player.lookup`, `store.get`, `player.update`, `analytics.*`, ... | [`PassThrough`](Self::PassThrough) |
    ///
    /// A type nobody documents is deduplicated by its key alone, as a purchase is, so
    /// that its delivery, refused while no handler takes it, is kept as one
    /// [dead letter](crate::dead_letter) (the latest payload) and applied once when it is
    /// replayed after a handler is deployed, whatever payloads its retries carried; a
    /// read among such types would be answered from its record only for a copy of the
    /// same event.
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
            Other(_) => Self::Deduplicate,
            _ => Self::PassThrough,
        }
    }
}
