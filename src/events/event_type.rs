use std::{convert::Infallible, fmt, str::FromStr};

use serde::{
    de::{self, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};

macro_rules! event_types {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// The `event_type` of an Aghanim webhook.
        ///
        /// Every type Aghanim documents has a variant; `analytics.hub.*` and
        /// `analytics.checkout.*` are families whose members keep their full name; anything
        /// else parses as [`EventType::Other`], so a type Aghanim adds later never breaks
        /// parsing. `Display`, `FromStr` and serde all use the exact wire strings.
        ///
        /// # Example
        ///
        /// ```
        /// use aghanim_webhook::events::EventType;
        ///
        /// let item_add: EventType = "item.add".parse().unwrap();
        /// assert_eq!(item_add, EventType::ItemAdd);
        /// assert_eq!(item_add.to_string(), "item.add");
        ///
        /// let new: EventType = "quest.completed".parse().unwrap();
        /// assert_eq!(new, EventType::Other("quest.completed".into()));
        /// assert!(!new.is_documented());
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventType {
            $($(#[$doc])* #[doc = concat!("`", $wire, "`")] $variant,)*
            /// An `analytics.hub.*` event; holds the full type, e.g. `analytics.hub.page_view`.
            AnalyticsHub(String),
            /// An `analytics.checkout.*` event; holds the full type.
            AnalyticsCheckout(String),
            /// A type this crate does not know; holds it verbatim.
            Other(String),
        }

        impl EventType {
            /// Every type Aghanim documents by name, in the order of its catalog; the
            /// `analytics.*` families are not listed, their members being open-ended.
            ///
            /// # Example
            ///
            /// ```
            /// # use aghanim_webhook::events::EventType;
            /// assert!(EventType::DOCUMENTED.contains(&EventType::ItemAdd));
            /// assert!(EventType::DOCUMENTED.iter().all(EventType::is_documented));
            /// ```
            pub const DOCUMENTED: &'static [EventType] = &[$(Self::$variant),*];

            /// The wire name, e.g. `"player.verify"`.
            ///
            /// # Example
            ///
            /// ```
            /// # use aghanim_webhook::events::EventType;
            /// assert_eq!(EventType::PlayerVerify.as_str(), "player.verify");
            /// ```
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::AnalyticsHub(name) | Self::AnalyticsCheckout(name) | Self::Other(name) => name,
                }
            }

            /// The wire name of a documented type, for labels that must stay a bounded
            /// set; `None` for `analytics.*` and unknown types.
            #[cfg(feature = "metrics")]
            pub(crate) fn documented_name(&self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some($wire),)*
                    _ => None,
                }
            }

            fn known(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    PlayerVerify => "player.verify",
    PlayerLookup => "player.lookup",
    PlayerUpdate => "player.update",
    PlayerIsIdle => "player.is_idle",
    PlayerMarketingConsentUpdated => "player.marketing_consent.updated",
    ItemAdd => "item.add",
    ItemRemove => "item.remove",
    StoreGet => "store.get",
    OrderCreated => "order.created",
    OrderPaid => "order.paid",
    OrderCanceled => "order.canceled",
    OrderRefunded => "order.refunded",
    PaymentSucceeded => "payment.succeeded",
    PaymentAbandoned => "payment.abandoned",
    PaymentCanceled => "payment.canceled",
    PaymentChargeback => "payment.chargeback",
    PaymentDeclined => "payment.declined",
    PaymentDispute => "payment.dispute",
    PaymentExpired => "payment.expired",
    PaymentPending => "payment.pending",
    PaymentRefunded => "payment.refunded",
    PaymentRejected => "payment.rejected",
    PaymentVoided => "payment.voided",
    FraudReported => "fraud.reported",
    SubscriptionActivated => "subscription.activated",
    SubscriptionUpdated => "subscription.updated",
    SubscriptionRenewed => "subscription.renewed",
    SubscriptionDeactivated => "subscription.deactivated",
    CouponRedeemed => "coupon.redeemed",
    IngamePush => "ingame.push",
    IngamePopup => "ingame.popup",
    CampaignCustom => "campaign.custom",
    BatchReady => "batch.ready",
}

impl EventType {
    /// Whether Aghanim documents this type (every variant but [`EventType::Other`]).
    pub fn is_documented(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl FromStr for EventType {
    type Err = Infallible;

    fn from_str(name: &str) -> Result<Self, Infallible> {
        Ok(Self::from(name))
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> Self {
        if let Some(known) = Self::known(name) {
            known
        } else if name.starts_with("analytics.hub.") {
            Self::AnalyticsHub(name.to_owned())
        } else if name.starts_with("analytics.checkout.") {
            Self::AnalyticsCheckout(name.to_owned())
        } else {
            Self::Other(name.to_owned())
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EventTypeVisitor)
    }
}

/// Reads the name without an owned copy when it is a known type.
struct EventTypeVisitor;

impl Visitor<'_> for EventTypeVisitor {
    type Value = EventType;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event type string")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<EventType, E> {
        Ok(EventType::from(name))
    }
}
