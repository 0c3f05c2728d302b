//! The example game server's webhook endpoint, shared with the end-to-end tests.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use aghanim_webhook::AghanimSignatureLayer;
use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};

/// Event types Aghanim documents that need nothing from this game but a 2xx.
const NOTIFICATIONS: &[&str] = &[
    "player.update",
    "player.is_idle",
    "player.marketing_consent.updated",
    "order.created",
    "order.paid",
    "order.canceled",
    "order.refunded",
    "fraud.reported",
    "coupon.redeemed",
    "ingame.push",
    "ingame.popup",
    "campaign.custom",
    "batch.ready",
];
const NOTIFICATION_FAMILIES: &[&str] = &[
    "payment.",
    "subscription.",
    "analytics.hub.",
    "analytics.checkout.",
];

/// The webhook endpoint at `POST /webhook`, behind the signature layer.
pub fn router(secret: &str) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .with_state(Arc::new(Game::default()))
        .layer(AghanimSignatureLayer::new(secret))
}

/// The game's state: a fixed player list and an in-memory inventory.
#[derive(Default)]
struct Game {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    processed_keys: HashSet<String>,
    /// (player_id, sku) → quantity owned.
    inventory: HashMap<(String, String), i64>,
}

fn player(player_id: &str) -> Option<Value> {
    let (name, level) = match player_id {
        "testplayer" => ("Test Player", 42),
        "player_2" => ("Second Player", 7),
        _ => return None,
    };
    Some(json!({
        "player_id": player_id,
        "name": name,
        "attributes": { "level": level, "platform": "pc" },
    }))
}

async fn webhook(State(game): State<Arc<Game>>, body: Bytes) -> Response {
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "Body is not a JSON object",
        );
    };
    let Some(event_type) = event.get("event_type").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "Missing event_type",
        );
    };
    let data = event.get("event_data").unwrap_or(&Value::Null);
    match event_type {
        "player.verify" => verify_player(data),
        "item.add" => game.apply_items(&event, 1),
        "item.remove" => game.apply_items(&event, -1),
        "store.get" => Json(json!({ "items": [] })).into_response(),
        "player.lookup" => Json(json!({ "status": "ok", "data": [] })).into_response(),
        known
            if NOTIFICATIONS.contains(&known)
                || NOTIFICATION_FAMILIES
                    .iter()
                    .any(|family| known.starts_with(family)) =>
        {
            ok()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "unknown_event_type",
            "Unknown event_type",
        ),
    }
}

fn verify_player(data: &Value) -> Response {
    let Some(player_id) = data.get("player_id").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "Missing event_data.player_id",
        );
    };
    match player(player_id) {
        Some(player) => Json(player).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "Player not found"),
    }
}

impl Game {
    /// Credits (`sign` 1) or revokes (`sign` -1) the items, once per idempotency key.
    fn apply_items(&self, event: &serde_json::Map<String, Value>, sign: i64) -> Response {
        let data = event.get("event_data").unwrap_or(&Value::Null);
        let (Some(player_id), Some(items)) = (
            data.get("player_id").and_then(Value::as_str),
            data.get("items").and_then(Value::as_array),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "event_data needs player_id and items",
            );
        };
        let key = ["idempotency_key", "event_id"]
            .iter()
            .find_map(|field| event.get(*field).and_then(Value::as_str));
        let Ok(mut ledger) = self.ledger.lock() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again later",
            );
        };
        if let Some(key) = key {
            if !ledger.processed_keys.insert(key.to_owned()) {
                return ok();
            }
        }
        for item in items {
            let sku = item.get("sku").and_then(Value::as_str).unwrap_or_default();
            let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
            let owned = ledger
                .inventory
                .entry((player_id.to_owned(), sku.to_owned()))
                .or_default();
            *owned = owned.saturating_add(sign.saturating_mul(quantity));
        }
        ok()
    }
}

fn ok() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "status": "error", "code": code, "message": message });
    (status, Json(body)).into_response()
}
