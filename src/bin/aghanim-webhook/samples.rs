//! Realistic sample events for every documented type, built through the crate's own
//! types so that they always parse.

use aghanim_webhook::events::{
    CouponRedeemed, Event, EventType, FraudReported, IngameMessage, ItemChange,
    MarketingConsentUpdated, Order, PlayerUpdate, PlayerVerify, StoreGet,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

/// The sample body of `event_type` for `player`, with ids derived from `id`.
pub(crate) fn sample(
    event_type: &EventType,
    player: &str,
    id: &str,
    now: u64,
) -> Result<String, String> {
    let item = json!({
        "id": "itm_gems_100", "sku": "gems_100", "name": "100 gems",
        "description": "A pouch of 100 gems", "quantity": 1, "price": 199,
        "price_decimal": 1.99, "currency": "USD", "type": "item", "nested_items": null,
    });
    let order = json!({
        "id": format!("ord_{id}"), "amount": 199, "currency": "USD", "country": "US",
        "items": [item.clone()], "player_id": player, "status": "paid",
        "created_at": now, "modified_at": now, "receipt_number": "0001-0001",
        "revenue_usd": 1.65,
    });
    use EventType::*;
    let data = match event_type {
        PlayerVerify => typed::<self::PlayerVerify>(json!({ "player_id": player }))?,
        PlayerUpdate => typed::<self::PlayerUpdate>(
            json!({ "player_id": player, "name": "Renamed Player", "email": "player@example.com" }),
        )?,
        PlayerMarketingConsentUpdated => typed::<MarketingConsentUpdated>(json!({
            "player_id": player,
            "email": { "address": "player@example.com", "granted_at": now, "revoked_at": null },
        }))?,
        ItemAdd | ItemRemove => typed::<ItemChange>(json!({
            "player_id": player, "items": [item],
            "reason": format!("Order {} ord_{id}", if *event_type == ItemAdd { "paid" } else { "refunded" }),
        }))?,
        StoreGet => typed::<self::StoreGet>(json!({
            "player_id": player, "is_anonymous": false, "placement_keys": ["main"],
            "category_slugs": ["gems"], "current_page_path": "/", "locale": "en",
        }))?,
        OrderCreated | OrderPaid | OrderCanceled | OrderRefunded => typed::<Order>(order)?,
        CouponRedeemed => typed::<self::CouponRedeemed>(json!({
            "player_id": player,
            "coupon": { "code": "WELCOME", "sku": "gems_100", "redeemed_at": now },
            "items": [item],
        }))?,
        IngamePush | IngamePopup => typed::<IngameMessage>(json!({
            "player_id": player, "title": "Sale!", "body": "Gems are 20% off today",
            "icon": "https://cdn.example/sale.png", "url": "https://shop.example/gems",
        }))?,
        FraudReported => typed::<self::FraudReported>(json!({
            "id": format!("frd_{id}"), "player_id": player, "order_id": format!("ord_{id}"),
            "payment_id": format!("pay_{id}"), "fraud_type": "chargeback", "amount": 199,
            "currency": "USD", "payment_method": "card", "reported_at": now,
        }))?,
        event_type if event_type.as_str().starts_with("payment.") => json!({
            "id": format!("pay_{id}"), "order_id": format!("ord_{id}"), "player_id": player,
            "amount": 199, "currency": "USD", "status": event_type.as_str().trim_start_matches("payment."),
        }),
        event_type if event_type.as_str().starts_with("subscription.") => json!({
            "id": format!("sub_{id}"), "player_id": player, "sku": "vip_monthly",
            "status": event_type.as_str().trim_start_matches("subscription."),
            "effective_until": now + 30 * 24 * 3600,
        }),
        PlayerLookup | PlayerIsIdle => json!({ "player_id": player }),
        CampaignCustom => json!({ "player_id": player, "campaign": "winter", "payload": {} }),
        BatchReady => {
            json!({ "url": "https://files.example/batch.jsonl", "expires_at": now + 86_400 })
        }
        other => return Err(format!("{other} is not a documented event type")),
    };
    let side_effect = matches!(event_type, ItemAdd | ItemRemove | CouponRedeemed)
        || event_type.as_str().starts_with("order.")
        || event_type.as_str().starts_with("payment.");
    let mut event = Event::new(event_type.clone(), data);
    event.event_id = Some(format!("whevt_{id}"));
    event.game_id = Some("gm_cli".into());
    event.event_time = Some(now);
    event.sandbox = true;
    event.transaction_id = Some(format!("whtx_{id}"));
    event.idempotency_key = side_effect.then(|| format!("ord_{id}"));
    serde_json::to_string(&event).map_err(|error| error.to_string())
}

/// `value` through the typed data, so that a sample can only hold what the type reads.
fn typed<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
    let data: T = serde_json::from_value(value).map_err(|error| error.to_string())?;
    serde_json::to_value(data).map_err(|error| error.to_string())
}
