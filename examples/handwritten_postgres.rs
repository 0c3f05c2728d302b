//! What a game developer would write instead of the transactional store, for
//! `scripts/load-postgres.py` to measure against the example server: the same signature
//! layer in front of an axum handler that, in one sqlx transaction, inserts a marker row
//! keyed like the layer's dedupe key (`ON CONFLICT DO NOTHING`), credits the same
//! inventory table as the example server, and commits. Same pool (sqlx's default, 10
//! connections), same runtime (Tokio's multi-threaded default).
//!
//! ```text
//! PORT=8140 AGHANIM_WEBHOOK_SECRET=... DATABASE_URL=postgres://... cargo run --release --example handwritten_postgres
//! ```
//!
//! It records no answer, so it cannot replay one, and it has no wait, no bound on a
//! frozen instance and no refusal of a reused key: it is the floor to beat, not a
//! recommendation.

use std::{env, error::Error, net::SocketAddr};

use aghanim_webhook::{
    events::{ErrorCode, ItemChange, WebhookError},
    AghanimEvent, AghanimSignatureLayer,
};
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Router};
use sqlx::PgPool;

const TABLES: &str = "BEGIN;
SELECT pg_advisory_xact_lock(hashtext('example inventory'));
CREATE TABLE IF NOT EXISTS inventory (
    player_id text NOT NULL,
    sku text NOT NULL,
    quantity bigint NOT NULL,
    PRIMARY KEY (player_id, sku)
);
CREATE TABLE IF NOT EXISTS handwritten_applied (key text PRIMARY KEY);
COMMIT;";

fn unavailable<E>(_: E) -> WebhookError {
    WebhookError::new(ErrorCode::Custom("unavailable".into()), "Try again later")
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

async fn credit(
    State(pool): State<PgPool>,
    AghanimEvent(event): AghanimEvent<ItemChange>,
) -> Result<impl IntoResponse, WebhookError> {
    let id = event
        .dedupe_key()
        .ok_or_else(|| WebhookError::validation("no idempotency_key or event_id"))?;
    let key = format!(
        "{}:{}:{}:{id}",
        event.game_id.as_deref().unwrap_or(""),
        if event.sandbox { "sandbox" } else { "live" },
        event.event_type,
    );
    let mut transaction = pool.begin().await.map_err(unavailable)?;
    let marked =
        sqlx::query("INSERT INTO handwritten_applied (key) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&key)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?
            .rows_affected();
    if marked == 1 {
        for item in &event.event_data.items {
            sqlx::query(
                "INSERT INTO inventory (player_id, sku, quantity) VALUES ($1, $2, $3) \
                 ON CONFLICT (player_id, sku) DO UPDATE \
                 SET quantity = inventory.quantity + EXCLUDED.quantity",
            )
            .bind(&event.event_data.player_id)
            .bind(&item.sku)
            .bind(item.quantity)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        }
    }
    transaction.commit().await.map_err(unavailable)?;
    Ok(([("content-type", "application/json")], r#"{"status":"ok"}"#))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let secret = env::var("AGHANIM_WEBHOOK_SECRET")?;
    let pool = PgPool::connect(&env::var("DATABASE_URL")?).await?;
    sqlx::raw_sql(TABLES).execute(&pool).await?;
    let port: u16 = env::var("PORT").map_or(Ok(8140), |port| port.parse())?;
    let app = Router::new()
        .route("/webhook", post(credit))
        .with_state(pool)
        .layer(AghanimSignatureLayer::new(secret));
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("handwritten receiver listening on http://{address}/webhook");
    axum::serve(listener, app).await?;
    Ok(())
}
