//! Every documented event sample parses into its type; responses serialize to the
//! documented shapes.
#![cfg(feature = "events")]

use crate::common;

use aghanim_webhook::events::*;
use common::{envelope, GAME_ID};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

fn item(sku: &str) -> Value {
    json!({
        "id": "itm_1", "name": "100 gems", "description": "A pouch of gems", "sku": sku,
        "quantity": 1, "price": 199, "price_decimal": 1.99, "currency": "USD",
        "type": "item", "nested_items": null, "image_url": "https://cdn/gems.png"
    })
}

fn parse<D: DeserializeOwned>(value: Value) -> Event<D> {
    serde_json::from_value(value).unwrap_or_else(|error| panic!("{error}"))
}

/// Serializing and parsing again gives the same event.
fn round_trips<D: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(event: &Event<D>) {
    let text = serde_json::to_string(event).unwrap();
    let again: Event<D> = serde_json::from_str(&text).unwrap();
    assert_eq!(&again, event);
}

#[test]
fn player_verify_sample_parses() {
    let mut sample = envelope("player.verify", json!({"player_id": "testplayer"}));
    sample["trigger"] = json!("hub.login");
    let event: Event<PlayerVerify> = parse(sample);
    assert_eq!(event.event_type, EventType::PlayerVerify);
    assert_eq!(event.event_data.player_id, "testplayer");
    assert_eq!(event.event_id.as_deref(), Some("whevt_eSeXmERbUGh"));
    assert_eq!(event.game_id.as_deref(), Some(GAME_ID));
    assert_eq!(event.event_time, Some(1725548450));
    assert_eq!(event.trigger.as_deref(), Some("hub.login"));
    assert!(!event.sandbox);
    round_trips(&event);
}

#[test]
fn item_add_and_remove_samples_parse() {
    for event_type in ["item.add", "item.remove"] {
        let mut sample = envelope(
            event_type,
            json!({
                "player_id": "testplayer",
                "items": [item("gems_100"), {"sku": "bundle", "quantity": 3, "nested_items": [item("gems_10")]}],
                "reason": "Order paid ord_eSeXmERbUGh",
                "item_id": "itm_1",
                "sku": "gems_100",
            }),
        );
        sample["idempotency_key"] = json!("ord_eSeXmERbUGh");
        let event: Event<ItemChange> = parse(sample);
        let items = &event.event_data.items;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].price, Some(199));
        assert_eq!(items[0].item_type.as_deref(), Some("item"));
        assert_eq!(items[1].quantity, 3);
        assert_eq!(items[1].nested_items.as_ref().unwrap()[0].sku, "gems_10");
        assert_eq!(event.dedupe_key(), Some("ord_eSeXmERbUGh"));
        round_trips(&event);
    }
}

#[test]
fn store_get_samples_parse_old_and_new() {
    let old: Event<StoreGet> = parse(envelope("store.get", json!({"player_id": "p1"})));
    assert_eq!(old.event_data.player_id.as_deref(), Some("p1"));
    let new: Event<StoreGet> = parse(envelope(
        "store.get",
        json!({
            "player_id": null, "is_anonymous": true, "placement_keys": ["hero"],
            "category_slugs": ["gems"], "current_page_path": "/store", "locale": "en-US"
        }),
    ));
    assert_eq!(new.event_data.is_anonymous, Some(true));
    assert_eq!(new.event_data.placement_keys, Some(vec!["hero".to_owned()]));
    round_trips(&new);
}

#[test]
fn player_notification_samples_parse() {
    let update: Event<PlayerUpdate> = parse(envelope(
        "player.update",
        json!({
            "player_id": "p1", "name": "New Name", "email": "p1@example.com", "avatar_url": null
        }),
    ));
    assert_eq!(update.event_data.name.as_deref(), Some("New Name"));
    round_trips(&update);

    let consent: Event<MarketingConsentUpdated> = parse(envelope(
        "player.marketing_consent.updated",
        json!({"player_id": "p1", "email": {"address": "p1@example.com", "granted_at": 1725548450, "revoked_at": null}}),
    ));
    assert_eq!(consent.event_data.email.as_ref().unwrap().revoked_at, None);
    round_trips(&consent);
}

#[test]
fn order_samples_parse() {
    for event_type in [
        "order.created",
        "order.paid",
        "order.canceled",
        "order.refunded",
    ] {
        let event: Event<Order> = parse(envelope(
            event_type,
            json!({
                "id": "ord_eSeXmERbUGh", "amount": 1999, "currency": "USD", "payment_currency": "EUR",
                "country": "DE", "items": [item("gems_100")], "player_id": "p1", "status": "paid",
                "created_at": 1725548450, "modified_at": 1725548460, "receipt_number": "1234-5678",
                "revenue_usd": 17.5, "fees": {"platform": 100, "tax": 300}
            }),
        ));
        assert_eq!(event.event_data.amount, Some(1999));
        assert_eq!(event.event_data.payment_currency.as_deref(), Some("EUR"));
        assert_eq!(
            event.event_data.fees,
            Some(json!({"platform": 100, "tax": 300}))
        );
        round_trips(&event);
    }
}

#[test]
fn coupon_ingame_and_fraud_samples_parse() {
    let coupon: Event<CouponRedeemed> = parse(envelope(
        "coupon.redeemed",
        json!({
            "player_id": "p1", "coupon": {"code": "WELCOME", "sku": "gems_100", "redeemed_at": 1725548450},
            "item": item("gems_100"), "items": [item("gems_100")]
        }),
    ));
    assert_eq!(coupon.event_data.coupon.code, "WELCOME");
    round_trips(&coupon);

    for event_type in ["ingame.popup", "ingame.push"] {
        let message: Event<IngameMessage> = parse(envelope(
            event_type,
            json!({
                "player_id": "p1", "title": "Sale", "body": "50% off", "icon": "https://cdn/i.png", "url": "https://shop"
            }),
        ));
        assert_eq!(message.event_data.body.as_deref(), Some("50% off"));
        round_trips(&message);
    }

    let fraud: Event<FraudReported> = parse(envelope(
        "fraud.reported",
        json!({
            "id": "frd_1", "player_id": "p1", "order_id": "ord_1", "payment_id": "pay_1",
            "fraud_type": "chargeback", "amount": 1999, "currency": "USD",
            "payment_method": "card", "reported_at": 1725548450
        }),
    ));
    assert_eq!(fraud.event_data.fraud_type.as_deref(), Some("chargeback"));
    round_trips(&fraud);
}

#[test]
fn untyped_events_parse_as_values() {
    for event_type in [
        "payment.succeeded",
        "subscription.renewed",
        "batch.ready",
        "player.is_idle",
        "campaign.custom",
        "analytics.hub.page_view",
        "analytics.checkout.opened",
        "brand.new.event",
    ] {
        let event: Event = parse(envelope(event_type, json!({"anything": [1, "two"]})));
        assert_eq!(event.event_type.as_str(), event_type);
        assert_eq!(event.event_data["anything"][1], "two");
        round_trips(&event);
    }
}

#[test]
fn older_samples_without_optional_fields_parse() {
    let event: Event<PlayerVerify> = parse(json!({
        "event_id": "whevt_1", "event_type": "player.verify", "event_time": 1,
        "event_data": {"player_id": "p1"}
    }));
    assert_eq!(event.game_id, None);
    assert_eq!(event.transaction_id, None);
    assert!(!event.sandbox);
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    let mut sample = envelope(
        "item.add",
        json!({
            "player_id": "p1", "items": [{"sku": "gems", "quantity": 1, "new_item_field": {"x": 1}}],
            "new_data_field": true
        }),
    );
    sample["new_envelope_field"] = json!([1, 2, 3]);
    let event: Event<ItemChange> = parse(sample);
    assert_eq!(event.event_data.items[0].sku, "gems");
}

#[test]
fn event_type_wire_names_agree_everywhere() {
    let documented = [
        "player.verify",
        "player.lookup",
        "player.update",
        "player.is_idle",
        "player.marketing_consent.updated",
        "item.add",
        "item.remove",
        "store.get",
        "order.created",
        "order.paid",
        "order.canceled",
        "order.refunded",
        "payment.succeeded",
        "payment.abandoned",
        "payment.canceled",
        "payment.chargeback",
        "payment.declined",
        "payment.dispute",
        "payment.expired",
        "payment.pending",
        "payment.refunded",
        "payment.rejected",
        "payment.voided",
        "fraud.reported",
        "subscription.activated",
        "subscription.updated",
        "subscription.renewed",
        "subscription.deactivated",
        "coupon.redeemed",
        "ingame.push",
        "ingame.popup",
        "campaign.custom",
        "batch.ready",
        "analytics.hub.login",
        "analytics.checkout.paid",
    ];
    for name in documented {
        let parsed: EventType = name.parse().unwrap();
        assert!(parsed.is_documented(), "{name} parsed as {parsed:?}");
        assert_eq!(parsed.to_string(), name);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<EventType>(json!(name)).unwrap(),
            parsed
        );
    }
    let unknown: EventType = "player.teleported".parse().unwrap();
    assert_eq!(unknown, EventType::Other("player.teleported".into()));
    assert_eq!(
        serde_json::to_value(&unknown).unwrap(),
        json!("player.teleported")
    );
}

fn answer(response: impl IntoWebhookResponse) -> (u16, Value) {
    let response = response.into_webhook_response();
    assert_eq!(response.headers()["content-type"], "application/json");
    (
        response.status().as_u16(),
        serde_json::from_slice(response.body()).unwrap(),
    )
}

#[test]
fn player_verify_response_has_the_documented_shape() {
    let mut player = PlayerVerifyResponse::new("testplayer", "Test Player");
    assert_eq!(
        answer(player.clone()),
        (
            200,
            json!({
                "player_id": "testplayer", "name": "Test Player", "attributes": {}
            })
        )
    );

    player.attributes.level = Some(10);
    player.attributes.platform = Some("ios".into());
    player.attributes.marketplace = Some("app_store".into());
    player.attributes.tags = Some(vec!["whale".into()]);
    player.attributes.other.insert("guild".into(), json!("red"));
    player.avatar_url = Some("https://cdn/a.png".into());
    player.email = Some("p@example.com".into());
    player.banned = Some(false);
    player.segments = Some(vec!["vip".into()]);
    player.country = Some("DE".into());
    player.custom_attributes = Some(serde_json::from_value(json!({"clan": "x"})).unwrap());
    player.balances = Some(vec![json!({"sku": "gold", "amount": 5})]);
    assert_eq!(
        answer(player),
        (
            200,
            json!({
                "player_id": "testplayer", "name": "Test Player",
                "attributes": {"level": 10, "platform": "ios", "marketplace": "app_store", "tags": ["whale"], "guild": "red"},
                "avatar_url": "https://cdn/a.png", "email": "p@example.com", "banned": false,
                "segments": ["vip"], "country": "DE", "custom_attributes": {"clan": "x"},
                "balances": [{"sku": "gold", "amount": 5}],
            })
        )
    );
}

#[test]
fn store_and_ack_responses_have_the_documented_shape() {
    let store = StoreGetResponse::new(vec![
        StoreItem::new("a"),
        StoreItem::new("b").starts_at(100).ends_at(200),
    ]);
    assert_eq!(
        answer(store),
        (
            200,
            json!({"items": [
                {"sku": "a", "start_at": null, "end_at": null},
                {"sku": "b", "start_at": 100, "end_at": 200},
            ]})
        )
    );
    assert_eq!(answer(Ack), (200, json!({"status": "ok"})));
}

#[test]
fn error_responses_have_the_documented_shape_and_status() {
    let cases = [
        (ErrorCode::NotFound, 404, "not_found"),
        (ErrorCode::InvalidSignature, 403, "invalid_signature"),
        (ErrorCode::ValidationError, 400, "validation_error"),
        (ErrorCode::Banned, 403, "banned"),
        (ErrorCode::Declined, 400, "declined"),
        (ErrorCode::UnknownEventType, 400, "unknown_event_type"),
        (ErrorCode::Custom("maintenance".into()), 400, "maintenance"),
    ];
    for (code, status, wire) in cases {
        let expected = json!({"status": "error", "code": wire, "message": "Because"});
        assert_eq!(
            answer(WebhookError::new(code, "Because")),
            (status, expected)
        );
    }
    let reported_as_ok =
        WebhookError::not_found("No such player").with_status(http::StatusCode::OK);
    assert_eq!(answer(reported_as_ok).0, 200);
    let result: Result<Ack, WebhookError> = Err(WebhookError::declined("Sold out"));
    assert_eq!(answer(result).0, 400);
}

/// Only `event_type` and `event_data` are required; each typed event parses from them
/// alone, and `null` stands for absent in every optional envelope field.
#[test]
fn minimal_envelopes_parse_for_every_typed_event() {
    fn minimal<D: EventData + std::fmt::Debug>(event_type: &str, data: Value) -> Event<D> {
        let bare: Event<D> =
            serde_json::from_value(json!({ "event_type": event_type, "event_data": data }))
                .unwrap_or_else(|error| panic!("{event_type}: {error}"));
        assert_eq!(bare.event_type.as_str(), event_type);
        assert!(D::is_for(&bare.event_type), "{event_type}");
        assert_eq!((bare.event_id.as_deref(), bare.event_time), (None, None));
        assert_eq!(bare.dedupe_key(), None);
        let nulls = json!({
            "event_type": event_type, "event_data": data, "event_id": null, "game_id": null,
            "event_time": null, "idempotency_key": null, "request_id": null,
            "sandbox": null, "trigger": null, "transaction_id": null, "context": null,
        });
        let with_nulls: Event<D> = serde_json::from_value(nulls)
            .unwrap_or_else(|error| panic!("{event_type} with nulls: {error}"));
        assert!(!with_nulls.sandbox);
        bare
    }
    let player = json!({ "player_id": "p1" });
    let items = json!({ "player_id": "p1", "items": [{ "sku": "gems_100" }] });
    minimal::<PlayerVerify>("player.verify", player.clone());
    minimal::<PlayerUpdate>("player.update", player.clone());
    minimal::<MarketingConsentUpdated>("player.marketing_consent.updated", player.clone());
    let add = minimal::<ItemChange>("item.add", items.clone());
    assert_eq!(add.event_data.items[0].quantity, 1);
    minimal::<ItemRemove>("item.remove", items);
    minimal::<StoreGet>("store.get", player.clone());
    for event_type in [
        "order.created",
        "order.paid",
        "order.canceled",
        "order.refunded",
    ] {
        minimal::<Order>(event_type, json!({ "id": "ord_1" }));
    }
    minimal::<CouponRedeemed>(
        "coupon.redeemed",
        json!({ "player_id": "p1", "coupon": { "code": "WELCOME" } }),
    );
    minimal::<IngameMessage>("ingame.popup", player.clone());
    minimal::<IngameMessage>("ingame.push", player.clone());
    minimal::<FraudReported>("fraud.reported", json!({ "id": "frd_1" }));
    minimal::<Value>("quest.completed", json!({}));
}

#[test]
fn an_empty_idempotency_key_falls_back_to_the_event_id() {
    let event: Event = parse(json!({
        "event_id": "whevt_1", "event_type": "item.add", "event_data": {},
        "idempotency_key": "",
    }));
    assert_eq!(event.dedupe_key(), Some("whevt_1"));
}
