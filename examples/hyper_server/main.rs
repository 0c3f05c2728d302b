//! The signature layer in front of a plain hyper 1 service, without axum.
//!
//! ```text
//! AGHANIM_WEBHOOK_SECRET=... PORT=8000 cargo run --example hyper_server
//! ```

mod app;

use std::{env, error::Error, net::SocketAddr};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let secret = env::var("AGHANIM_WEBHOOK_SECRET")
        .ok()
        .filter(|secret| !secret.is_empty())
        .ok_or("set AGHANIM_WEBHOOK_SECRET to your webhook's secret")?;
    let port: u16 = match env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 8000,
    };
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("Listening on http://{address}/ (every path takes webhooks)");
    app::serve(listener, &secret).await?;
    Ok(())
}
