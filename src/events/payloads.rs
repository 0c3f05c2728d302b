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

impl PlayerUpdate {
    /// An update of `player_id` that changes nothing yet: set the fields that change.
    ///
    /// ```
    /// # use aghanim_webhook::events::PlayerUpdate;
    /// let mut update = PlayerUpdate::new("p1");
    /// update.email = Some("a@b.c".into());
    /// ```
    pub fn new(player_id: impl Into<String>) -> Self {
        Self {
            player_id: player_id.into(),
            name: None,
            email: None,
            avatar_url: None,
        }
    }
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

impl MarketingConsentUpdated {
    /// `player_id`'s consent to email marketing.
    ///
    /// ```
    /// # use aghanim_webhook::events::{EmailConsent, MarketingConsentUpdated};
    /// let consent = MarketingConsentUpdated::new("p1", EmailConsent::new("a@b.c").granted_at(1_700_000_000));
    /// assert_eq!(consent.email.unwrap().granted_at, Some(1_700_000_000));
    /// ```
    pub fn new(player_id: impl Into<String>, email: EmailConsent) -> Self {
        Self {
            player_id: player_id.into(),
            email: Some(email),
        }
    }
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

impl EmailConsent {
    /// Consent for `address`, neither granted nor revoked yet.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            granted_at: None,
            revoked_at: None,
        }
    }

    /// Granted at `unix_seconds`.
    #[must_use]
    pub fn granted_at(mut self, unix_seconds: i64) -> Self {
        self.granted_at = Some(unix_seconds);
        self
    }

    /// Revoked at `unix_seconds`.
    #[must_use]
    pub fn revoked_at(mut self, unix_seconds: i64) -> Self {
        self.revoked_at = Some(unix_seconds);
        self
    }
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

impl ItemChange {
    /// `items` credited to (or, inside an [`ItemRemove`](super::ItemRemove), taken back
    /// from) `player_id`.
    ///
    /// ```
    /// use aghanim_webhook::events::{Item, ItemChange};
    ///
    /// let purchase = ItemChange::new("p1", vec![Item::new("sword").quantity(2).price(499, "USD")])
    ///     .reason("Order paid ord_1");
    /// assert_eq!(purchase.items[0].quantity, 2);
    /// assert_eq!(purchase.reason.as_deref(), Some("Order paid ord_1"));
    /// ```
    pub fn new(player_id: impl Into<String>, items: Vec<Item>) -> Self {
        Self {
            player_id: player_id.into(),
            items,
            reason: None,
            item_id: None,
            sku: None,
        }
    }

    /// With the human-readable cause, e.g. `Order paid ord_1`.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
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

impl Item {
    /// One of `sku`, with no other field set.
    ///
    /// ```
    /// use aghanim_webhook::events::Item;
    ///
    /// let item = Item::new("gems_500").quantity(3).price(999, "EUR").id("itm_1").name("500 gems");
    /// assert_eq!((item.sku.as_str(), item.quantity, item.price), ("gems_500", 3, Some(999)));
    /// assert_eq!(item.currency.as_deref(), Some("EUR"));
    /// ```
    pub fn new(sku: impl Into<String>) -> Self {
        Self {
            sku: sku.into(),
            quantity: 1,
            id: None,
            name: None,
            description: None,
            price: None,
            currency: None,
            item_type: None,
            nested_items: None,
            source: None,
            image_url: None,
        }
    }

    /// How many.
    #[must_use]
    pub fn quantity(mut self, quantity: i64) -> Self {
        self.quantity = quantity;
        self
    }

    /// The price, in minor units of the ISO 4217 `currency` (`199`, `"USD"` is 1.99).
    #[must_use]
    pub fn price(mut self, minor_units: i64, currency: impl Into<String>) -> Self {
        self.price = Some(minor_units);
        self.currency = Some(currency.into());
        self
    }

    /// Aghanim's item id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The display name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The items inside this bundle.
    #[must_use]
    pub fn nested_items(mut self, items: Vec<Item>) -> Self {
        self.nested_items = Some(items);
        self
    }
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

impl StoreGet {
    /// A store asked for by `player_id`; the other fields unset.
    pub fn new(player_id: impl Into<String>) -> Self {
        Self {
            player_id: Some(player_id.into()),
            is_anonymous: None,
            placement_keys: None,
            category_slugs: None,
            current_page_path: None,
            locale: None,
        }
    }
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

impl Order {
    /// The order `id` (`ord_…`) with no other field set: set the ones a test needs.
    ///
    /// ```
    /// use aghanim_webhook::events::{Item, Order};
    ///
    /// let mut order = Order::new("ord_1");
    /// order.amount = Some(499);
    /// order.items = Some(vec![Item::new("sword")]);
    /// ```
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            amount: None,
            currency: None,
            payment_currency: None,
            country: None,
            items: None,
            player_id: None,
            status: None,
            created_at: None,
            modified_at: None,
            receipt_number: None,
            revenue_usd: None,
            fees: None,
        }
    }
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

impl CouponRedeemed {
    /// `player_id` redeemed `coupon`, granting `items`.
    pub fn new(player_id: impl Into<String>, coupon: Coupon, items: Vec<Item>) -> Self {
        Self {
            player_id: player_id.into(),
            coupon,
            item: None,
            items: Some(items),
        }
    }
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

impl Coupon {
    /// The coupon `code`.
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            sku: None,
            redeemed_at: None,
        }
    }
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

impl IngameMessage {
    /// A message to `player_id` with `title`.
    pub fn new(player_id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            player_id: player_id.into(),
            title: Some(title.into()),
            body: None,
            icon: None,
            url: None,
        }
    }
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

impl FraudReported {
    /// The report `id` (`frd_…`) with no other field set.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            player_id: None,
            order_id: None,
            payment_id: None,
            fraud_type: None,
            amount: None,
            currency: None,
            payment_method: None,
            reported_at: None,
        }
    }
}
