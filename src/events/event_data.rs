use std::ops::{Deref, DerefMut};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use super::{
    CouponRedeemed, EventType, FraudReported, IngameMessage, Item, ItemChange,
    MarketingConsentUpdated, Order, PlayerUpdate, PlayerVerify, StoreGet,
};

/// An `event_data` type that names the event types it belongs to.
///
/// [`AghanimEvent<D>`] refuses an event whose `event_type` is not
/// one of `D`'s, so that a route for purchases can never take a refund, nor a route for
/// `player.verify` any event that merely has a `player_id`. [`serde_json::Value`]
/// belongs to every type: it is the untyped form.
///
/// | data | event types |
/// |---|---|
/// | [`PlayerVerify`] | `player.verify` |
/// | [`PlayerUpdate`] | `player.update` |
/// | [`MarketingConsentUpdated`] | `player.marketing_consent.updated` |
/// | [`ItemChange`] | `item.add` only: a credit |
/// | [`ItemRemove`] | `item.remove` |
/// | [`StoreGet`] | `store.get` |
/// | [`Order`] | `order.created`, `order.paid`, `order.canceled`, `order.refunded` |
/// | [`CouponRedeemed`] | `coupon.redeemed` |
/// | [`IngameMessage`] | `ingame.popup`, `ingame.push` |
/// | [`FraudReported`] | `fraud.reported` |
/// | [`serde_json::Value`] | any |
///
/// [`Dispatch`](crate::dispatch::Dispatch) uses the same table: `Dispatch::on` panics,
/// when the dispatcher is built, for a handler whose data is not for the event type it is
/// registered with, and a fallback must take data that is for every type. A credit and
/// a revoke are two handlers, one on `Event<ItemChange>`, one on `Event<ItemRemove>`.
///
/// Data of your own (say for `payment.succeeded`, which has no type here) implements it
/// in one line: its `is_for` names the types it is for. Name them exactly: data that
/// a credit reads must never be for `item.remove` (`starts_with("item.")` would let a
/// credit run on a refund).
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{EventData, EventType, ItemChange, ItemRemove};
///
/// assert!(ItemChange::is_for(&EventType::ItemAdd));
/// assert!(!ItemChange::is_for(&EventType::ItemRemove));
/// assert!(ItemRemove::is_for(&EventType::ItemRemove));
/// assert!(serde_json::Value::is_for(&EventType::Other("quest.done".into())));
///
/// // Data of your own, for the events it reads.
/// #[derive(serde::Deserialize)]
/// struct Payment {
///     id: String,
/// }
///
/// impl EventData for Payment {
///     fn is_for(event_type: &EventType) -> bool {
///         event_type.as_str().starts_with("payment.")
///     }
/// }
/// assert!(Payment::is_for(&EventType::PaymentSucceeded));
/// ```
///
#[cfg_attr(feature = "axum", doc = "[`AghanimEvent<D>`]: crate::AghanimEvent")]
#[cfg_attr(
    not(feature = "axum"),
    doc = "[`AghanimEvent<D>`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/struct.AghanimEvent.html"
)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not event data: it does not implement `EventData`",
    note = "a `Dispatch` handler's or `AghanimEvent`'s data says which event types it is for: \
            implement `aghanim_webhook::events::EventData` for it (one `is_for` method), \
            or take `serde_json::Value`"
)]
pub trait EventData: DeserializeOwned {
    /// Whether events of `event_type` carry this data.
    fn is_for(event_type: &EventType) -> bool;
}

macro_rules! event_data {
    ($($data:ty => $($event_type:ident)|+;)*) => {$(
        impl EventData for $data {
            fn is_for(event_type: &EventType) -> bool {
                matches!(event_type, $(EventType::$event_type)|+)
            }
        }
    )*};
}

event_data! {
    PlayerVerify => PlayerVerify;
    PlayerUpdate => PlayerUpdate;
    MarketingConsentUpdated => PlayerMarketingConsentUpdated;
    ItemChange => ItemAdd;
    ItemRemove => ItemRemove;
    StoreGet => StoreGet;
    Order => OrderCreated | OrderPaid | OrderCanceled | OrderRefunded;
    CouponRedeemed => CouponRedeemed;
    IngameMessage => IngamePopup | IngamePush;
    FraudReported => FraudReported;
}

impl EventData for Value {
    fn is_for(_event_type: &EventType) -> bool {
        true
    }
}

/// `event_data` of `item.remove`: the [`ItemChange`] to take back after a refund.
///
/// A type of its own so that [`AghanimEvent<ItemChange>`], a credit, and a
/// `Dispatch` handler of `Event<ItemChange>`, never accept a removal; it dereferences to
/// the [`ItemChange`].
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::ItemRemove;
/// let data: ItemRemove = serde_json::from_str(
///     r#"{"player_id":"p1","reason":"Order refunded ord_1","items":[{"sku":"gems_100"}]}"#,
/// ).unwrap();
/// assert_eq!(data.items[0].sku, "gems_100");
/// ```
///
#[cfg_attr(
    feature = "axum",
    doc = "[`AghanimEvent<ItemChange>`]: crate::AghanimEvent"
)]
#[cfg_attr(
    not(feature = "axum"),
    doc = "[`AghanimEvent<ItemChange>`]: https://docs.rs/aghanim-webhook/latest/aghanim_webhook/struct.AghanimEvent.html"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemRemove(pub ItemChange);

impl ItemRemove {
    /// `items` to take back from `player_id`.
    ///
    /// ```
    /// use aghanim_webhook::events::{Item, ItemRemove};
    ///
    /// let refund = ItemRemove::new("p1", vec![Item::new("sword")]);
    /// assert_eq!(refund.player_id, "p1");
    /// ```
    pub fn new(player_id: impl Into<String>, items: Vec<Item>) -> Self {
        Self(ItemChange::new(player_id, items))
    }
}

impl Deref for ItemRemove {
    type Target = ItemChange;

    fn deref(&self) -> &ItemChange {
        &self.0
    }
}

impl DerefMut for ItemRemove {
    fn deref_mut(&mut self) -> &mut ItemChange {
        &mut self.0
    }
}
