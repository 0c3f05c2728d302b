//! Typed `event_data` for the events a game acts on.
//!
//! Field names are Aghanim's. Only what a handler cannot do without is required
//! (`player_id`, `items`, ...); the rest is `Option`, because Aghanim's samples differ
//! between versions. Unknown fields are ignored. Money is kept as the integer minor units
//! Aghanim sends (`price: 199` is 1.99); `price_decimal` is left out on purpose.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `event_data` of `player.verify`: may this player log in to the web shop?
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::PlayerVerify;
/// let data: PlayerVerify = serde_json::from_str(r#"{"player_id":"testplayer"}"#).unwrap();
/// assert_eq!(data, PlayerVerify::new("testplayer"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlayerVerify {
    /// The player id the user typed or the shop passed.
    pub player_id: String,
}

impl PlayerVerify {
    /// The data for `player_id`.
    pub fn new(player_id: impl Into<String>) -> Self {
        Self {
            player_id: player_id.into(),
        }
    }
}

/// `event_data` of `player.update`.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::PlayerUpdate;
/// let data: PlayerUpdate = serde_json::from_str(r#"{"player_id":"p1","email":"a@b.c"}"#).unwrap();
/// assert_eq!(data.email.as_deref(), Some("a@b.c"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlayerUpdate {
    /// The player.
    pub player_id: String,
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New email address.
    #[serde(default)]
    pub email: Option<String>,
    /// New avatar.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// `event_data` of `player.marketing_consent.updated`.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::MarketingConsentUpdated;
/// let data: MarketingConsentUpdated = serde_json::from_str(
///     r#"{"player_id":"p1","email":{"address":"a@b.c","granted_at":1700000000,"revoked_at":null}}"#,
/// ).unwrap();
/// assert_eq!(data.email.unwrap().granted_at, Some(1_700_000_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MarketingConsentUpdated {
    /// The player.
    pub player_id: String,
    /// Consent to email marketing.
    #[serde(default)]
    pub email: Option<EmailConsent>,
}

/// Email marketing consent in [`MarketingConsentUpdated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmailConsent {
    /// The address the consent is for.
    #[serde(default)]
    pub address: Option<String>,
    /// When consent was given, Unix seconds.
    #[serde(default)]
    pub granted_at: Option<i64>,
    /// When consent was withdrawn, Unix seconds.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// `event_data` of `item.add` (credit the items) and `item.remove` (take them back).
///
/// Side effects must be idempotent on the envelope's
/// [`idempotency_key`](super::Event::idempotency_key).
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::ItemChange;
/// let data: ItemChange = serde_json::from_str(r#"{
///     "player_id": "p1", "reason": "Order paid ord_1",
///     "items": [{"id": "itm_1", "sku": "gems_100", "name": "100 gems", "quantity": 2,
///                "price": 199, "price_decimal": 1.99, "currency": "USD", "type": "item",
///                "nested_items": null}]
/// }"#).unwrap();
/// assert_eq!(data.items[0].sku, "gems_100");
/// assert_eq!(data.items[0].quantity, 2);
/// assert_eq!(data.items[0].price, Some(199));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ItemChange {
    /// The player to credit or debit.
    pub player_id: String,
    /// What to credit or take back.
    pub items: Vec<Item>,
    /// Human-readable cause, e.g. `Order paid ord_…`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Deprecated by Aghanim in favour of `items`.
    #[serde(default)]
    pub item_id: Option<String>,
    /// Deprecated by Aghanim in favour of `items`.
    #[serde(default)]
    pub sku: Option<String>,
}

/// An item in [`ItemChange`], [`Order`] or [`CouponRedeemed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Item {
    /// The game's SKU: the key to credit by.
    pub sku: String,
    /// How many; 1 when absent.
    #[serde(default = "one")]
    pub quantity: i64,
    /// Aghanim's item id.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Display description.
    #[serde(default)]
    pub description: Option<String>,
    /// Price in minor units of `currency`.
    #[serde(default)]
    pub price: Option<i64>,
    /// ISO 4217 currency code.
    #[serde(default)]
    pub currency: Option<String>,
    /// Aghanim's item type.
    #[serde(default, rename = "type")]
    pub item_type: Option<String>,
    /// Items inside a bundle.
    #[serde(default)]
    pub nested_items: Option<Vec<Item>>,
    /// Where the item came from.
    #[serde(default)]
    pub source: Option<String>,
    /// Picture of the item.
    #[serde(default)]
    pub image_url: Option<String>,
}

fn one() -> i64 {
    1
}

/// `event_data` of `store.get`: which items should this player's store show?
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::StoreGet;
/// let data: StoreGet = serde_json::from_str(r#"{"player_id":"p1","locale":"en"}"#).unwrap();
/// assert_eq!(data.player_id.as_deref(), Some("p1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreGet {
    /// The player, when known.
    #[serde(default)]
    pub player_id: Option<String>,
    /// Whether the visitor is not logged in.
    #[serde(default)]
    pub is_anonymous: Option<bool>,
    /// Placements on the page.
    #[serde(default)]
    pub placement_keys: Option<Vec<String>>,
    /// Categories on the page.
    #[serde(default)]
    pub category_slugs: Option<Vec<String>>,
    /// The page being shown.
    #[serde(default)]
    pub current_page_path: Option<String>,
    /// The visitor's locale.
    #[serde(default)]
    pub locale: Option<String>,
}

/// `event_data` of `order.created`, `order.paid`, `order.canceled` and `order.refunded`.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::Order;
/// let order: Order = serde_json::from_str(
///     r#"{"id":"ord_1","amount":1999,"currency":"USD","player_id":"p1","status":"paid","fees":{"tax":100}}"#,
/// ).unwrap();
/// assert_eq!(order.amount, Some(1999));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Order {
    /// `ord_…`.
    pub id: String,
    /// Total in minor units of `currency`.
    #[serde(default)]
    pub amount: Option<i64>,
    /// ISO 4217 currency code.
    #[serde(default)]
    pub currency: Option<String>,
    /// The currency the player paid in, when it differs.
    #[serde(default)]
    pub payment_currency: Option<String>,
    /// ISO 3166-1 alpha-2 country.
    #[serde(default)]
    pub country: Option<String>,
    /// What was ordered.
    #[serde(default)]
    pub items: Option<Vec<Item>>,
    /// The buyer.
    #[serde(default)]
    pub player_id: Option<String>,
    /// Order status as Aghanim names it; an open set.
    #[serde(default)]
    pub status: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub modified_at: Option<i64>,
    /// Receipt number shown to the player.
    #[serde(default)]
    pub receipt_number: Option<String>,
    /// Revenue in US dollars, as Aghanim sends it (its unit is not documented).
    #[serde(default)]
    pub revenue_usd: Option<Value>,
    /// Fee breakdown, as Aghanim sends it.
    #[serde(default)]
    pub fees: Option<Value>,
}

/// `event_data` of `coupon.redeemed`.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::CouponRedeemed;
/// let data: CouponRedeemed = serde_json::from_str(
///     r#"{"player_id":"p1","coupon":{"code":"WELCOME","sku":"gems_100","redeemed_at":1700000000}}"#,
/// ).unwrap();
/// assert_eq!(data.coupon.code, "WELCOME");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CouponRedeemed {
    /// The player who redeemed it.
    pub player_id: String,
    /// The coupon.
    pub coupon: Coupon,
    /// The item granted.
    #[serde(default)]
    pub item: Option<Item>,
    /// The items granted.
    #[serde(default)]
    pub items: Option<Vec<Item>>,
}

/// The coupon in [`CouponRedeemed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Coupon {
    /// The code the player entered.
    pub code: String,
    /// The SKU it grants.
    #[serde(default)]
    pub sku: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub redeemed_at: Option<i64>,
}

/// `event_data` of `ingame.popup` and `ingame.push`: a message to show in the game.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::IngameMessage;
/// let data: IngameMessage = serde_json::from_str(r#"{"player_id":"p1","title":"Sale!"}"#).unwrap();
/// assert_eq!(data.title.as_deref(), Some("Sale!"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IngameMessage {
    /// The recipient.
    pub player_id: String,
    /// Headline.
    #[serde(default)]
    pub title: Option<String>,
    /// Text.
    #[serde(default)]
    pub body: Option<String>,
    /// Icon URL.
    #[serde(default)]
    pub icon: Option<String>,
    /// Link to open.
    #[serde(default)]
    pub url: Option<String>,
}

/// `event_data` of `fraud.reported`.
///
/// # Example
///
/// ```
/// # use aghanim_webhook::events::FraudReported;
/// let data: FraudReported = serde_json::from_str(
///     r#"{"id":"frd_1","player_id":"p1","order_id":"ord_1","amount":1999,"currency":"USD"}"#,
/// ).unwrap();
/// assert_eq!(data.order_id.as_deref(), Some("ord_1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FraudReported {
    /// `frd_…`.
    pub id: String,
    /// The player involved.
    #[serde(default)]
    pub player_id: Option<String>,
    /// The order involved.
    #[serde(default)]
    pub order_id: Option<String>,
    /// The payment involved.
    #[serde(default)]
    pub payment_id: Option<String>,
    /// Kind of fraud, as Aghanim names it.
    #[serde(default)]
    pub fraud_type: Option<String>,
    /// Amount in minor units of `currency`.
    #[serde(default)]
    pub amount: Option<i64>,
    /// ISO 4217 currency code.
    #[serde(default)]
    pub currency: Option<String>,
    /// How the player paid.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub reported_at: Option<i64>,
}
