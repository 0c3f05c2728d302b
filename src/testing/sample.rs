use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use crate::events::{
    CouponRedeemed, Event, EventData, EventType, FraudReported, IngameMessage, ItemChange,
    MarketingConsentUpdated, Order, PlayerUpdate, PlayerVerify, StoreGet,
};
use crate::unix_now;

/// A realistic delivery of any documented event type, as Aghanim would send it: the
/// whole envelope (`event_id`, `game_id`, `event_time`, `sandbox`, `transaction_id`,
/// and an `idempotency_key` for the types that change a player's state), around
/// `event_data` built through the crate's typed events, so a sample always parses.
///
/// The ids come from one id you choose ([`with_ids`](Self::with_ids)) or one made
/// unique per sample ([`new`](Self::new)): `event_id` `whevt_{id}`, `transaction_id`
/// `whtx_{id}`, `idempotency_key` and order id `ord_{id}`. Change anything with
/// [`edit`](Self::edit) (the envelope) or [`edit_data`](Self::edit_data) (the typed
/// `event_data`); [`to_bytes`](Self::to_bytes) is the body exactly as sent.
///
/// The values are sample values, shaped as Aghanim's documentation shows them: an item
/// event, an order or a coupon carries one [`SAMPLE_SKU`] item priced 199 USD cents; an
/// event type the crate does not know gets `{"player_id": ...}` as its data. A purchase
/// of other items takes its data whole with [`data`](Self::data):
///
/// ```
/// use aghanim_webhook::events::{EventType, Item, ItemChange};
/// use aghanim_webhook::testing::Sample;
///
/// let purchase = Sample::new(EventType::ItemAdd).data(
///     ItemChange::new("player-7", vec![Item::new("sword").quantity(2).price(499, "USD")])
///         .reason("Order paid ord_1"),
/// );
/// let typed = purchase.typed::<ItemChange>().unwrap();
/// assert_eq!(typed.event_data.items[0].sku, "sword");
/// ```
///
/// # Example
///
/// ```
/// use aghanim_webhook::events::{EventType, ItemChange};
/// use aghanim_webhook::testing::Sample;
///
/// let sample = Sample::with_ids(EventType::ItemAdd, "player-7", "1001")
///     .edit_data(|data: &mut ItemChange| data.items[0].quantity = 3);
/// assert_eq!(sample.event().idempotency_key.as_deref(), Some("ord_1001"));
///
/// let sent: serde_json::Value = serde_json::from_slice(&sample.to_bytes()).unwrap();
/// assert_eq!(sent["event_data"]["player_id"], "player-7");
/// assert_eq!(sent["event_data"]["items"][0]["quantity"], 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    event: Event<Value>,
}

/// The game id of every sample unless [`Sample::game`] sets another.
pub const SAMPLE_GAME_ID: &str = "gm_sample";

/// The SKU of the one item in the samples of item events, orders and coupons.
pub const SAMPLE_SKU: &str = "gems_100";

impl Sample {
    /// A sample of `event_type` for the player `testplayer`, with ids no other sample
    /// of this process has.
    pub fn new(event_type: EventType) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = format!("{}{:06}", unix_now(), NEXT.fetch_add(1, Ordering::Relaxed));
        Self::with_ids(event_type, "testplayer", &id)
    }

    /// A sample of `event_type` for `player`, its ids made from `id`.
    pub fn with_ids(event_type: EventType, player: &str, id: &str) -> Self {
        let now = unix_now();
        let data = sample_data(&event_type, player, id, now);
        let changes_state = matches!(
            event_type,
            EventType::ItemAdd | EventType::ItemRemove | EventType::CouponRedeemed
        ) || event_type.as_str().starts_with("order.")
            || event_type.as_str().starts_with("payment.");
        let mut event = Event::new(event_type, data);
        event.event_id = Some(format!("whevt_{id}"));
        event.game_id = Some(SAMPLE_GAME_ID.to_owned());
        event.event_time = Some(now);
        event.transaction_id = Some(format!("whtx_{id}"));
        event.idempotency_key = changes_state.then(|| format!("ord_{id}"));
        Self { event }
    }

    /// The game the delivery is for.
    #[must_use]
    pub fn game(mut self, game_id: impl Into<String>) -> Self {
        self.event.game_id = Some(game_id.into());
        self
    }

    /// Whether it comes from the sandbox (`false` unless set).
    #[must_use]
    pub fn sandbox(mut self, sandbox: bool) -> Self {
        self.event.sandbox = sandbox;
        self
    }

    /// Replaces `event_data` with `data`, built with the typed events' constructors
    /// ([`ItemChange::new`](crate::events::ItemChange::new),
    /// [`Item::new`](crate::events::Item::new), ...). The envelope and its ids stay.
    ///
    /// # Panics
    ///
    /// When `data` is not the data of the sample's event type (an `ItemChange` for an
    /// `item.remove`: that takes an [`ItemRemove`](crate::events::ItemRemove)), by the
    /// same table [`Dispatch`](crate::dispatch::Dispatch) uses: a mistake in the test.
    #[must_use]
    #[track_caller]
    pub fn data<D: EventData + Serialize>(mut self, data: D) -> Self {
        assert!(
            D::is_for(&self.event.event_type),
            "Sample::data: {} is not the event_data of {}",
            std::any::type_name::<D>(),
            self.event.event_type
        );
        self.event.event_data = serde_json::to_value(data).unwrap_or_else(|error| {
            panic!("{} does not serialize: {error}", std::any::type_name::<D>())
        });
        self
    }

    /// Changes the envelope, or `event_data` as JSON.
    ///
    /// ```
    /// # use aghanim_webhook::{events::EventType, testing::Sample};
    /// let sample = Sample::new(EventType::ItemAdd).edit(|event| event.idempotency_key = None);
    /// assert_eq!(sample.event().idempotency_key, None);
    /// ```
    #[must_use]
    pub fn edit(mut self, edit: impl FnOnce(&mut Event<Value>)) -> Self {
        edit(&mut self.event);
        self
    }

    /// Changes `event_data` as the typed data `D`.
    ///
    /// # Panics
    ///
    /// When the sample's data is not a `D` (a sample of another event type): a mistake
    /// in the test, not something a delivery can cause.
    #[must_use]
    pub fn edit_data<D: DeserializeOwned + Serialize>(mut self, edit: impl FnOnce(&mut D)) -> Self {
        let mut data: D =
            serde_json::from_value(self.event.event_data.clone()).unwrap_or_else(|error| {
                panic!(
                    "the {} sample's data is not a {}: {error}",
                    self.event.event_type,
                    std::any::type_name::<D>()
                )
            });
        edit(&mut data);
        self.event.event_data = serde_json::to_value(data).unwrap_or_else(|error| {
            panic!("{} does not serialize: {error}", std::any::type_name::<D>())
        });
        self
    }

    /// The event as it will be sent.
    pub fn event(&self) -> &Event<Value> {
        &self.event
    }

    /// The event with its data typed as `D`, as a handler would read it.
    ///
    /// # Errors
    ///
    /// When the data is not a `D`.
    pub fn typed<D: DeserializeOwned>(&self) -> Result<Event<D>, serde_json::Error> {
        self.event
            .clone()
            .try_map_data(|data| serde_json::from_value(data))
    }

    /// The body as Aghanim sends it: compact JSON, the envelope's fields in their
    /// documented order.
    pub fn to_json(&self) -> String {
        // An `Event<Value>` is strings, numbers, booleans and JSON values: nothing in
        // it can fail to serialize.
        serde_json::to_string(&self.event).unwrap_or_default()
    }

    /// [`to_json`](Self::to_json) as bytes.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_json())
    }
}

impl From<Sample> for Bytes {
    fn from(sample: Sample) -> Self {
        sample.to_bytes()
    }
}

impl From<&Sample> for Bytes {
    fn from(sample: &Sample) -> Self {
        sample.to_bytes()
    }
}

/// The sample `event_data` of `event_type`, through its typed data where the crate has
/// one, so that it can only hold what that type reads.
fn sample_data(event_type: &EventType, player: &str, id: &str, now: u64) -> Value {
    let item = json!({
        "id": "itm_gems_100", "sku": SAMPLE_SKU, "name": "100 gems",
        "description": "A pouch of 100 gems", "quantity": 1, "price": 199,
        "price_decimal": 1.99, "currency": "USD", "type": "item", "nested_items": null,
    });
    use EventType::*;
    match event_type {
        PlayerVerify => typed::<self::PlayerVerify>(json!({ "player_id": player })),
        PlayerUpdate => typed::<self::PlayerUpdate>(
            json!({ "player_id": player, "name": "Renamed Player", "email": "player@example.com" }),
        ),
        PlayerMarketingConsentUpdated => typed::<MarketingConsentUpdated>(json!({
            "player_id": player,
            "email": { "address": "player@example.com", "granted_at": now, "revoked_at": null },
        })),
        ItemAdd | ItemRemove => typed::<ItemChange>(json!({
            "player_id": player, "items": [item],
            "reason": format!("Order {} ord_{id}", if *event_type == ItemAdd { "paid" } else { "refunded" }),
        })),
        StoreGet => typed::<self::StoreGet>(json!({
            "player_id": player, "is_anonymous": false, "placement_keys": ["main"],
            "category_slugs": ["gems"], "current_page_path": "/", "locale": "en",
        })),
        OrderCreated | OrderPaid | OrderCanceled | OrderRefunded => typed::<Order>(json!({
            "id": format!("ord_{id}"), "amount": 199, "currency": "USD", "country": "US",
            "items": [item], "player_id": player, "status": "paid",
            "created_at": now, "modified_at": now, "receipt_number": "0001-0001",
            "revenue_usd": 1.65,
        })),
        CouponRedeemed => typed::<self::CouponRedeemed>(json!({
            "player_id": player,
            "coupon": { "code": "WELCOME", "sku": "gems_100", "redeemed_at": now },
            "items": [item],
        })),
        IngamePush | IngamePopup => typed::<IngameMessage>(json!({
            "player_id": player, "title": "Sale!", "body": "Gems are 20% off today",
            "icon": "https://cdn.example/sale.png", "url": "https://shop.example/gems",
        })),
        FraudReported => typed::<self::FraudReported>(json!({
            "id": format!("frd_{id}"), "player_id": player, "order_id": format!("ord_{id}"),
            "payment_id": format!("pay_{id}"), "fraud_type": "chargeback", "amount": 199,
            "currency": "USD", "payment_method": "card", "reported_at": now,
        })),
        event_type if event_type.as_str().starts_with("payment.") => json!({
            "id": format!("pay_{id}"), "order_id": format!("ord_{id}"), "player_id": player,
            "amount": 199, "currency": "USD", "status": event_type.as_str().trim_start_matches("payment."),
        }),
        event_type if event_type.as_str().starts_with("subscription.") => json!({
            "id": format!("sub_{id}"), "player_id": player, "sku": "vip_monthly",
            "status": event_type.as_str().trim_start_matches("subscription."),
            "effective_until": now + 30 * 24 * 3600,
        }),
        CampaignCustom => json!({ "player_id": player, "campaign": "winter", "payload": {} }),
        BatchReady => {
            json!({ "url": "https://files.example/batch.jsonl", "expires_at": now + 86_400 })
        }
        _ => json!({ "player_id": player }),
    }
}

/// `value` through the typed data `T`; `value` itself if it is not a `T` (a unit test
/// checks that every sample is).
fn typed<T: DeserializeOwned + Serialize>(value: Value) -> Value {
    serde_json::from_value::<T>(value.clone())
        .ok()
        .and_then(|data| serde_json::to_value(data).ok())
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::Sample;
    use crate::events::*;

    #[test]
    fn every_documented_sample_is_its_typed_event() {
        fn is<D: serde::de::DeserializeOwned>(sample: &Sample) -> bool {
            sample.typed::<D>().is_ok()
        }
        for event_type in EventType::DOCUMENTED {
            let sample = Sample::with_ids(event_type.clone(), "p1", "42");
            use EventType::*;
            let typed = match event_type {
                PlayerVerify => is::<self::PlayerVerify>(&sample),
                PlayerUpdate => is::<self::PlayerUpdate>(&sample),
                PlayerMarketingConsentUpdated => is::<MarketingConsentUpdated>(&sample),
                ItemAdd | ItemRemove => is::<ItemChange>(&sample),
                StoreGet => is::<self::StoreGet>(&sample),
                OrderCreated | OrderPaid | OrderCanceled | OrderRefunded => is::<Order>(&sample),
                CouponRedeemed => is::<self::CouponRedeemed>(&sample),
                IngamePush | IngamePopup => is::<IngameMessage>(&sample),
                FraudReported => is::<self::FraudReported>(&sample),
                _ => true,
            };
            assert!(typed, "{event_type}: {}", sample.to_json());
            let sent: serde_json::Value = serde_json::from_slice(&sample.to_bytes()).unwrap();
            assert_eq!(sent["event_id"], "whevt_42", "{event_type}");
            assert_eq!(sent["event_type"], event_type.as_str());
        }
    }

    #[test]
    fn new_samples_never_share_ids() {
        let first = Sample::new(EventType::ItemAdd);
        let second = Sample::new(EventType::ItemAdd);
        assert_ne!(first.event().event_id, second.event().event_id);
        assert_ne!(
            first.event().idempotency_key,
            second.event().idempotency_key
        );
    }
}
