//! The example game server's webhook endpoint, shared with the end-to-end tests.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aghanim_webhook::{
    dispatch::Dispatch,
    events::{
        Ack, ErrorCode, Event, EventType, ItemChange, PlayerVerify, PlayerVerifyResponse, StoreGet,
        StoreGetResponse, StoreItem, WebhookError,
    },
    AghanimSignatureLayer,
};
use axum::{http::StatusCode, routing::post_service, Router};
use tower_http::timeout::TimeoutLayer;

/// How long a whole request may take, body included: a client that stalls mid-body gets
/// 408 and its buffered bytes are freed. The signature layer itself waits as long as the
/// body takes, so this deadline belongs outside it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// `POST /webhook`: every event type at one URL, behind the signature layer and a deadline.
pub fn router(secret: &str) -> Router {
    let dispatch = Dispatch::with_state(Arc::new(Game::default()))
        .on(EventType::PlayerVerify, verify_player)
        .on(EventType::ItemAdd, |game: Arc<Game>, event| async move {
            game.apply(event, 1)
        })
        .on(EventType::ItemRemove, |game: Arc<Game>, event| async move {
            game.apply(event, -1)
        })
        .on(EventType::StoreGet, store)
        .fallback(acknowledge_documented);
    Router::new()
        .route("/webhook", post_service(dispatch))
        .layer(AghanimSignatureLayer::new(secret))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_DEADLINE,
        ))
}

async fn verify_player(event: Event<PlayerVerify>) -> Result<PlayerVerifyResponse, WebhookError> {
    let (name, level) = match event.event_data.player_id.as_str() {
        "testplayer" => ("Test Player", 42),
        "player_2" => ("Second Player", 7),
        _ => return Err(WebhookError::not_found("Player not found")),
    };
    let mut player = PlayerVerifyResponse::new(event.event_data.player_id, name);
    player.attributes.level = Some(level);
    player.attributes.platform = Some("pc".into());
    Ok(player)
}

async fn store(_event: Event<StoreGet>) -> StoreGetResponse {
    StoreGetResponse::new(vec![
        StoreItem::new("gems_100"),
        StoreItem::new("starter_pack"),
    ])
}

/// Notifications need nothing from this game but a 2xx; unknown types get a 400.
async fn acknowledge_documented(event: Event) -> Result<Ack, WebhookError> {
    if event.event_type.is_documented() {
        Ok(Ack)
    } else {
        Err(WebhookError::new(
            ErrorCode::UnknownEventType,
            "Unknown event_type",
        ))
    }
}

/// The game's in-memory inventory.
#[derive(Default)]
struct Game {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    /// `{event_type}:{idempotency key}` of every event already applied.
    processed: HashSet<String>,
    /// (player_id, sku) → quantity owned.
    inventory: HashMap<(String, String), i64>,
}

impl Game {
    /// Credits (`sign` 1) or revokes (`sign` -1) the items, once per idempotency key: a
    /// retried delivery is acknowledged again and changes nothing.
    fn apply(&self, event: Event<ItemChange>, sign: i64) -> Result<Ack, WebhookError> {
        let mut ledger = self.ledger.lock().map_err(|_| {
            WebhookError::new(ErrorCode::Custom("unavailable".into()), "Try again later")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        })?;
        // Without a key a retry cannot be told from a new purchase: refuse rather than
        // risk crediting twice. Every real delivery carries at least an event_id.
        let Some(key) = event.dedupe_key() else {
            return Err(WebhookError::validation(
                "item event without idempotency_key or event_id",
            ));
        };
        let key = format!("{}:{key}", event.event_type);
        if !ledger.processed.insert(key) {
            return Ok(Ack);
        }
        let player_id = event.event_data.player_id;
        for item in event.event_data.items {
            let owned = ledger
                .inventory
                .entry((player_id.clone(), item.sku))
                .or_default();
            *owned = owned.saturating_add(sign.saturating_mul(item.quantity));
        }
        Ok(Ack)
    }
}

#[cfg(test)]
mod tests {
    use aghanim_webhook::events::{Event, EventType, ItemChange};

    use super::Game;

    fn change(event_type: EventType, key: &str, quantity: i64) -> Event<ItemChange> {
        let data = serde_json::json!({
            "player_id": "testplayer",
            "items": [{ "sku": "gems", "quantity": quantity }],
        });
        let mut event = Event::new(event_type, serde_json::from_value(data).unwrap());
        event.idempotency_key = Some(key.into());
        event
    }

    fn gems(game: &Game) -> i64 {
        let ledger = game.ledger.lock().unwrap();
        ledger.inventory[&("testplayer".to_owned(), "gems".to_owned())]
    }

    #[test]
    fn a_repeated_idempotency_key_credits_once() {
        let game = Game::default();
        for _ in 0..3 {
            assert!(game
                .apply(change(EventType::ItemAdd, "ord_1", 5), 1)
                .is_ok());
        }
        assert_eq!(gems(&game), 5);
        assert!(game
            .apply(change(EventType::ItemAdd, "ord_2", 5), 1)
            .is_ok());
        assert_eq!(gems(&game), 10);
    }

    #[test]
    fn a_removal_with_the_purchase_key_still_takes_items_back() {
        let game = Game::default();
        assert!(game
            .apply(change(EventType::ItemAdd, "ord_1", 5), 1)
            .is_ok());
        assert!(game
            .apply(change(EventType::ItemRemove, "ord_1", 5), -1)
            .is_ok());
        assert!(game
            .apply(change(EventType::ItemRemove, "ord_1", 5), -1)
            .is_ok());
        assert_eq!(gems(&game), 0);
    }
}
