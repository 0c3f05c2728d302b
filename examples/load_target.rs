//! The server `scripts/load-compare.py` measures: one axum route that reads the body and
//! answers `{"status":"ok"}`, with or without the signature layer in front, or the layer
//! in front of `Dispatch` with a typed `item.add` handler.
//!
//! ```text
//! PORT=8100 AGHANIM_WEBHOOK_SECRET=... cargo run --release --example load_target -- verified
//! PORT=8101 cargo run --release --example load_target -- bare
//! PORT=8104 AGHANIM_WEBHOOK_SECRET=... cargo run --release --example load_target -- dispatch
//! ```
//!
//! Both run on a single-threaded runtime so that "CPU per request" means one core's work.

use std::{env, error::Error, net::SocketAddr};

use aghanim_webhook::{
    dispatch::Dispatch,
    events::{Ack, Event, EventType, ItemChange},
    AghanimSignatureLayer,
};
use axum::{
    body::Bytes,
    routing::{post, post_service},
    Router,
};

async fn acknowledge(body: Bytes) -> ([(&'static str, &'static str); 1], &'static str) {
    std::hint::black_box(body);
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn credit(event: Event<ItemChange>) -> Ack {
    std::hint::black_box(event);
    Ack
}

fn main() -> Result<(), Box<dyn Error>> {
    let mode = env::args().nth(1).unwrap_or_default();
    let route = Router::new().route("/webhook", post(acknowledge));
    let app = match mode.as_str() {
        "bare" => route,
        "verified" => {
            let secret = env::var("AGHANIM_WEBHOOK_SECRET")?;
            route.layer(AghanimSignatureLayer::new(secret))
        }
        "dispatch" => {
            let secret = env::var("AGHANIM_WEBHOOK_SECRET")?;
            let dispatch = Dispatch::new().on(EventType::ItemAdd, credit);
            Router::new()
                .route("/webhook", post_service(dispatch))
                .layer(AghanimSignatureLayer::new(secret))
        }
        _ => return Err("usage: load_target bare|verified|dispatch".into()),
    };
    let port: u16 = env::var("PORT").map_or(Ok(8100), |port| port.parse())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = tokio::net::TcpListener::bind(address).await?;
            println!("{mode} listening on http://{address}/webhook");
            axum::serve(listener, app).await
        })?;
    Ok(())
}
