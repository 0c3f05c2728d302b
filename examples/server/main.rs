//! An axum game server that receives Aghanim webhooks at `POST /webhook`.
//!
//! ```text
//! AGHANIM_WEBHOOK_SECRET=... PORT=8000 [DATABASE_URL=postgres://...] [REDIS_URL=redis://127.0.0.1:6379] cargo run --example server
//! ```
//!
//! Logs go to standard output at `LOG_LEVEL` (default `info`). With `DATABASE_URL` set,
//! idempotency records and the inventory live in that PostgreSQL, each delivery in one
//! transaction; else with `REDIS_URL` set, in that Redis; else in this process.
//! `DATABASE_URL` wins when both are set. At start it prints which, and a `curl`
//! command that sends a signed `player.verify`.

mod app;

use std::{env, error::Error, net::SocketAddr};

use aghanim_webhook::{sign, unix_now};
use serde_json::json;

/// Used when `AGHANIM_WEBHOOK_SECRET` is unset; never in production.
const DEVELOPMENT_SECRET: &str = "aghanim-webhook-development-secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The crate reports rejections and idempotency decisions through `tracing`: forged
    // and stale deliveries at `warn`, junk at `debug` (LOG_LEVEL=debug shows it).
    let level = match env::var("LOG_LEVEL") {
        Ok(level) => level.parse().map_err(|_| {
            format!("LOG_LEVEL={level:?} is not one of error, warn, info, debug, trace")
        })?,
        Err(_) => tracing::Level::INFO,
    };
    tracing_subscriber::fmt().with_max_level(level).init();

    let secret = match env::var("AGHANIM_WEBHOOK_SECRET") {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            eprintln!(
                "AGHANIM_WEBHOOK_SECRET is not set: using the development secret from \
                 examples/server/main.rs. Set it to your webhook's secret from the Aghanim Dashboard."
            );
            DEVELOPMENT_SECRET.to_owned()
        }
    };
    let port: u16 = match env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 8000,
    };
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address).await?;

    let database_url = env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
    let redis_url = env::var("REDIS_URL").ok().filter(|url| !url.is_empty());
    let router = match (database_url, redis_url) {
        (Some(url), _) => {
            let router = app::postgres_router(&secret, &url)
                .await
                .map_err(|error| format!("DATABASE_URL: {error}"))?;
            println!(
                "Deduplicating in PostgreSQL (DATABASE_URL), shared by every instance: each delivery's claim, credit and answer commit in one transaction"
            );
            router
        }
        (None, Some(url)) => {
            let router = app::redis_router(&secret, &url)
                .await
                .map_err(|error| format!("REDIS_URL={url:?}: {error}"))?;
            println!(
                "Deduplicating with Redis at {url}, shared by every instance; the inventory is kept there too"
            );
            router
        }
        (None, None) => {
            println!(
                "Deduplicating in memory: this process only, forgotten at restart. Set DATABASE_URL (PostgreSQL) or REDIS_URL to share the records between instances"
            );
            app::router(&secret)
        }
    };
    println!("Listening on http://{address}/webhook\nTry a signed player.verify:\n");
    println!("{}", sample_curl(&secret, address));

    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The docs' sample `player.verify` for `testplayer`, signed now.
fn sample_curl(secret: &str, address: SocketAddr) -> String {
    let now = unix_now();
    let body = json!({
        "event_id": "whevt_sample_player_verify",
        "game_id": "gm_sample",
        "event_type": "player.verify",
        "event_time": now,
        "event_data": { "player_id": "testplayer" },
        "idempotency_key": null,
        "request_id": null,
        "sandbox": true,
        "trigger": "hub.login",
        "transaction_id": "whtx_sample",
        "context": null,
    })
    .to_string();
    format!(
        "curl -i http://{address}/webhook \\\n  \
         -H 'content-type: application/json' \\\n  \
         -H 'x-aghanim-signature-timestamp: {now}' \\\n  \
         -H 'x-aghanim-signature: {signature}' \\\n  \
         --data-binary '{body}'\n",
        signature = sign(secret, now, &body),
    )
}
