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
//!
//! `/health/live`, `/health/ready` (503 when the store does not answer) and `/metrics`
//! (Prometheus text) are served on the same port, or on `OPS_PORT` when set. SIGTERM
//! or Ctrl-C stops accepting connections and gives the deliveries in flight
//! `DRAIN_SECONDS` (default 20) to finish; past that, their handlers are cancelled and
//! their claims released, and the process exits 0. `RUN_TIMEOUT_SECONDS` (default 20)
//! bounds each delivery's handler.

mod app;

use std::{env, error::Error, net::SocketAddr, time::Duration};

use aghanim_webhook::{sign, unix_now};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::json;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

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

    let run_timeout = match env::var("RUN_TIMEOUT_SECONDS") {
        Ok(seconds) => Duration::from_secs(
            seconds
                .parse::<u64>()
                .ok()
                .filter(|seconds| (1..=3600).contains(seconds))
                .ok_or_else(|| {
                    format!(
                        "RUN_TIMEOUT_SECONDS={seconds:?} is not a number of seconds from 1 to 3600"
                    )
                })?,
        ),
        Err(_) => aghanim_webhook::idempotency::DEFAULT_RUN_TIMEOUT,
    };
    let database_url = env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
    let redis_url = env::var("REDIS_URL").ok().filter(|url| !url.is_empty());
    let app = match (database_url, redis_url) {
        (Some(url), _) => {
            let app = app::on_postgres(&secret, &url, run_timeout)
                .await
                .map_err(|error| format!("DATABASE_URL: {error}"))?;
            println!(
                "Deduplicating in PostgreSQL (DATABASE_URL), shared by every instance: each delivery's claim, credit and answer commit in one transaction"
            );
            if !url.contains("statement-cache-capacity=0") {
                println!(
                    "Behind a transaction pooler (PgBouncer in transaction mode, Supavisor, Neon's pooler), add ?statement-cache-capacity=0 to DATABASE_URL"
                );
            }
            app
        }
        (None, Some(url)) => {
            let app = app::on_redis(&secret, &url, run_timeout)
                .await
                .map_err(|error| format!("REDIS_URL={url:?}: {error}"))?;
            println!(
                "Deduplicating with Redis at {url}, shared by every instance; the inventory is kept there too"
            );
            app
        }
        (None, None) => {
            println!(
                "Deduplicating in memory: this process only, forgotten at restart. Set DATABASE_URL (PostgreSQL) or REDIS_URL to share the records between instances"
            );
            app::in_memory(&secret, run_timeout)
        }
    };

    // The crate's metrics, served in Prometheus' text format beside the health checks.
    // Histograms with buckets, so that instances aggregate and the alert rules in ops/
    // can take quantiles across them.
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("aghanim_webhook_delivery_age_seconds".into()),
            &[
                -60.0, -5.0, 0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 300.0, 600.0,
            ],
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full("aghanim_webhook_idempotency_store_duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
                ],
            )
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| format!("metrics recorder: {error}"))?;
    // The recorder keeps each histogram's samples until upkeep folds them into its
    // buckets; rendering `/metrics` does it too, but nothing may scrape (no scraper set
    // up yet, one that is down, an ops port nobody reads), and then memory grows with
    // every delivery. So upkeep runs on its own schedule.
    tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    aghanim_webhook::describe_metrics();
    // The gauge of failed deliveries not yet applied, which the alert rules read.
    tokio::spawn({
        let idempotency = app.idempotency.clone();
        async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                if let Some(letters) = idempotency.letters() {
                    if let Err(error) = aghanim_webhook::dead_letter::unresolved(letters).await {
                        tracing::warn!(%error, "could not count the failed deliveries kept");
                    }
                }
            }
        }
    });
    let ops = app::ops_router(app.backing.clone(), Some(metrics));
    let drain = match env::var("DRAIN_SECONDS") {
        Ok(seconds) => Duration::from_secs(
            seconds
                .parse()
                .map_err(|_| format!("DRAIN_SECONDS={seconds:?} is not a number of seconds"))?,
        ),
        Err(_) => DEFAULT_DRAIN,
    };

    // Both listeners stop accepting at the first SIGTERM or Ctrl-C; what is in flight
    // gets `drain` to finish.
    let (stop, stopped) = watch::channel(false);
    let mut servers = Vec::new();
    let webhook = match env::var("OPS_PORT") {
        Ok(ops_port) => {
            let ops_port: u16 = ops_port
                .parse()
                .map_err(|_| format!("OPS_PORT={ops_port:?} is not a port number"))?;
            let ops_address = SocketAddr::from(([127, 0, 0, 1], ops_port));
            let ops_listener = tokio::net::TcpListener::bind(ops_address).await?;
            println!("Health checks and metrics on http://{ops_address}/health/ready, /health/live, /metrics");
            servers.push(tokio::spawn(serve(ops_listener, ops, stopped.clone())));
            app.router
        }
        Err(_) => {
            println!("Health checks and metrics on http://{address}/health/ready, /health/live, /metrics (OPS_PORT moves them)");
            app.router.merge(ops)
        }
    };
    servers.push(tokio::spawn(serve(listener, webhook, stopped)));
    println!("Listening on http://{address}/webhook\nTry a signed player.verify:\n");
    println!("{}", sample_curl(&secret, address));
    println!(
        "It is signed now, and stays valid for {} s (the layer's timestamp tolerance): later it \
         gets 403 as stale. For a fresh one: cargo run --features cli -- send player.verify\n",
        aghanim_webhook::DEFAULT_TOLERANCE.as_secs()
    );

    shutdown_signal().await?;
    println!(
        "Shutting down: no new connections; {} s for deliveries in flight",
        drain.as_secs()
    );
    let _ = stop.send(true);
    // The connections, and the runs whose client hung up, which go on without one.
    let drained = tokio::time::timeout(drain, async {
        for server in servers {
            let _ = server.await;
        }
        app.idempotency.runs_finished().await;
    })
    .await;
    if drained.is_err() {
        // Each handler still going is stopped and its claim given up (its transaction
        // rolled back) before this process exits: the next delivery of those keys runs
        // at once on another instance, and never beside a handler still writing.
        let cancelled = app.idempotency.cancel_in_flight().await;
        println!("Drain deadline passed: cancelled {cancelled} run(s) still in flight");
    }
    Ok(())
}

/// How often the metrics recorder folds histogram samples into buckets: the exporter's
/// own default when it runs the upkeep itself.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// How long deliveries in flight may take to finish at shutdown unless `DRAIN_SECONDS`
/// says otherwise: under the 30 s most orchestrators wait before SIGKILL.
const DEFAULT_DRAIN: Duration = Duration::from_secs(20);

/// Serves `router` until `stopped` turns true, then waits for its connections.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {error}");
    }
}

/// The first SIGTERM (what orchestrators send) or Ctrl-C.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        interrupted = tokio::signal::ctrl_c() => interrupted?,
    }
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
