//! The example game server's webhook endpoint, shared with the end-to-end tests.
//!
//! In memory or on Redis, two tiers keep every purchase credited exactly once: the
//! idempotency layer runs each delivery once and replays its answer to duplicates, and
//! the inventory itself applies each item event once, keyed in the same atomic step as
//! the credit, so even a record the layer lost (a Redis restart, an expired lease)
//! cannot credit twice. On PostgreSQL one transaction holds the claim, the credit and
//! the recorded answer: no marker is needed.

use std::{
    collections::{HashMap, HashSet},
    error::Error,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aghanim_webhook::{
    dispatch::Dispatch,
    events::{
        Ack, ErrorCode, Event, EventType, ItemChange, ItemRemove, PlayerVerify,
        PlayerVerifyResponse, StoreGet, StoreGetResponse, StoreItem, WebhookError,
    },
    idempotency::{
        DeliveryTransaction, IdempotencyLayer, PostgresStore, RedisStore, DEFAULT_RETENTION,
    },
    AghanimSignatureLayer,
};
use axum::{
    http::StatusCode,
    routing::{get, post_service},
    Router,
};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::{
    aio::{ConnectionLike, ConnectionManager},
    AsyncCommands, RedisResult, Script,
};
use serde_json::json;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};
use tower_http::timeout::TimeoutLayer;

/// How long a whole request may take, body included: a client that stalls mid-body gets
/// 408 and its buffered bytes are freed. The signature layer itself waits as long as the
/// body takes, so this deadline belongs outside it. It is at least the idempotency
/// layer's own longest answer (see [`request_deadline`]), so that a delivery waiting on
/// the store gets the layer's 503, not a 408 that cuts it short.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The idempotency layer's bounds besides the run timeout, at their defaults (a wait of
/// 5 s, a store timeout of 2 s): the claim within the wait and a store timeout, then
/// the end of the run and the commit within a store timeout each, and a second more.
const IDEMPOTENCY_BOUNDS: Duration = Duration::from_secs(5 + 2 + 2 + 2 + 1);

/// The whole request's deadline for a layer whose runs last at most `run_timeout`.
fn request_deadline(run_timeout: Duration) -> Duration {
    REQUEST_DEADLINE.max(run_timeout + IDEMPOTENCY_BOUNDS)
}

/// The webhook route with what runs it: the idempotency layer (to give up its claims
/// at shutdown) and what the records live in (for the readiness check).
pub struct App {
    pub router: Router,
    pub idempotency: IdempotencyLayer,
    pub backing: Backing,
}

/// What the idempotency records and the inventory live in.
#[derive(Clone)]
pub enum Backing {
    Memory,
    Redis(ConnectionManager),
    Postgres(PgPool),
}

impl Backing {
    /// Whether the store answers: Redis `PING`, PostgreSQL `SELECT 1`.
    pub async fn ready(&self) -> Result<(), String> {
        match self {
            Self::Memory => Ok(()),
            Self::Redis(connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection.clone())
                .await
                .map(drop)
                .map_err(|error| format!("redis: {error}")),
            Self::Postgres(pool) => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(drop)
                .map_err(|error| format!("postgres: {error}")),
        }
    }
}

/// `POST /webhook` with everything in this process: the memory store (one instance
/// only) and an in-memory inventory.
pub fn in_memory(secret: &str, run_timeout: Duration) -> App {
    let idempotency = IdempotencyLayer::in_memory().run_timeout(run_timeout);
    App {
        router: router_with(secret, Game::in_memory(), idempotency.clone(), run_timeout),
        idempotency,
        backing: Backing::Memory,
    }
}

/// `POST /webhook` with the idempotency records and the inventory in the Redis at
/// `url`, shared by every instance that uses it.
pub async fn on_redis(
    secret: &str,
    url: &str,
    run_timeout: Duration,
) -> Result<App, Box<dyn Error>> {
    let store = RedisStore::connect(url).await?;
    let connection = ConnectionManager::new(redis::Client::open(url)?).await?;
    warn_of_lost_credits(&mut connection.clone()).await;
    let game = Game {
        inventory: Inventory::Redis(connection.clone()),
    };
    let idempotency = IdempotencyLayer::new(store).run_timeout(run_timeout);
    Ok(App {
        router: router_with(secret, game, idempotency.clone(), run_timeout),
        idempotency,
        backing: Backing::Redis(connection),
    })
}

/// `POST /webhook` with the idempotency records and the inventory in the PostgreSQL at
/// `url` (tables created at start), shared by every instance that uses it: each item
/// event's credit commits in the same transaction as its claim and recorded answer.
/// Records older than the retention are purged hourly.
pub async fn on_postgres(
    secret: &str,
    url: &str,
    run_timeout: Duration,
) -> Result<App, Box<dyn Error>> {
    // The server probes each connection after 10 s of silence, so a host that is gone
    // (not merely frozen: the transactions' own timeouts cover that) is noticed in
    // about 25 s instead of the 2 h default. Set once a connection is made, not as
    // startup options, which a transaction pooler (PgBouncer) refuses.
    let options = PgConnectOptions::from_str(url)?;
    let pool = PgPoolOptions::new()
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::raw_sql(
                    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; \
                     SET tcp_keepalives_count = 3",
                )
                .execute(connection)
                .await
                .map(drop)
            })
        })
        .connect_with(options)
        .await?;
    let store = PostgresStore::new(pool.clone());
    store.migrate().await?;
    sqlx::raw_sql(INVENTORY_TABLE).execute(&pool).await?;
    tokio::spawn(purge_hourly(store.clone()));
    let game = Game {
        inventory: Inventory::Postgres(pool.clone()),
    };
    let idempotency = IdempotencyLayer::transactional(store).run_timeout(run_timeout);
    Ok(App {
        router: router_with(secret, game, idempotency.clone(), run_timeout),
        idempotency,
        backing: Backing::Postgres(pool),
    })
}

/// What an operator's probes and scraper read, apart from the webhook route:
/// `/health/live` (the process answers), `/health/ready` (503 when the store does not
/// answer within two seconds) and, given a recorder's handle, `/metrics` in
/// Prometheus' text format.
pub fn ops_router(backing: Backing, metrics: Option<PrometheusHandle>) -> Router {
    let ready = move || {
        let backing = backing.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(2), backing.ready()).await {
                Ok(Ok(())) => (StatusCode::OK, "ready".to_owned()),
                Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, error),
                Err(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store timed out".to_owned(),
                ),
            }
        }
    };
    let router = Router::new()
        .route("/health/live", get(|| async { "live" }))
        .route("/health/ready", get(ready));
    match metrics {
        Some(handle) => router.route("/metrics", get(move || async move { handle.render() })),
        None => router,
    }
}

/// The inventory, created by whichever instance starts first (the advisory lock keeps
/// instances starting together from racing in `CREATE TABLE IF NOT EXISTS`).
const INVENTORY_TABLE: &str = "BEGIN;
SELECT pg_advisory_xact_lock(hashtext('example inventory'));
CREATE TABLE IF NOT EXISTS inventory (
    player_id text NOT NULL,
    sku text NOT NULL,
    quantity bigint NOT NULL,
    PRIMARY KEY (player_id, sku)
);
COMMIT;";

/// Frees the answers of records past the retention every hour (and at start); the keys
/// stay, so a purchase delivered again at any age is not credited twice.
async fn purge_hourly(store: PostgresStore) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match store.purge_expired(DEFAULT_RETENTION).await {
            Ok(purged) => {
                tracing::info!(purged, "purged the answers of expired idempotency records")
            }
            Err(error) => tracing::warn!(%error, "could not purge idempotency records"),
        }
    }
}

/// The credits live in Redis: says so, loudly, when that Redis would lose them at a
/// restart (no append-only file) or evict them under memory pressure.
async fn warn_of_lost_credits(connection: &mut ConnectionManager) {
    let setting = |name: &'static str| {
        let mut connection = connection.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async::<HashMap<String, String>>(&mut connection)
                .await
                .ok()
                .and_then(|mut values| values.remove(name))
        }
    };
    match (setting("appendonly").await, setting("maxmemory-policy").await) {
        (Some(appendonly), Some(policy)) => {
            if appendonly != "yes" {
                eprintln!(
                    "WARNING: this Redis has no append-only file (appendonly {appendonly}): a restart \
                     loses the inventory and the idempotency records, and purchases since the last \
                     snapshot are lost or credited again. Set `appendonly yes` (appendfsync everysec)."
                );
            }
            if policy != "noeviction" {
                eprintln!(
                    "WARNING: this Redis evicts keys under memory pressure (maxmemory-policy {policy}): \
                     inventory and idempotency records can vanish. Set `maxmemory-policy noeviction`."
                );
            }
        }
        _ => eprintln!(
            "WARNING: could not read this Redis' persistence settings (CONFIG GET refused): make \
             sure it has `appendonly yes` and `maxmemory-policy noeviction`, since credits live there."
        ),
    }
}

/// Every event type at one URL: a deadline, then the signature layer, then the
/// idempotency layer, then `Dispatch`.
fn router_with(
    secret: &str,
    game: Game,
    idempotency: IdempotencyLayer,
    run_timeout: Duration,
) -> Router {
    let dispatch = Dispatch::with_state(Arc::new(game))
        .on(EventType::PlayerVerify, verify_player)
        .on(
            EventType::ItemAdd,
            |game: Arc<Game>, transaction: Option<DeliveryTransaction>, event| async move {
                game.apply(event, 1, transaction).await
            },
        )
        .on(
            EventType::ItemRemove,
            |game: Arc<Game>,
             transaction: Option<DeliveryTransaction>,
             event: Event<ItemRemove>| async move {
                game.apply(event.map_data(|removal| removal.0), -1, transaction)
                    .await
            },
        )
        .on(EventType::StoreGet, store)
        .fallback(acknowledge_documented);
    Router::new()
        .route("/webhook", post_service(dispatch))
        .layer(idempotency.clone())
        // A stale delivery is still authentic: kept, so that an operator can replay it.
        .layer(AghanimSignatureLayer::new(secret).keep_stale(&idempotency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_deadline(run_timeout),
        ))
}

/// Known players, with what they own in `balances`, so credits can be seen from outside.
async fn verify_player(
    game: Arc<Game>,
    event: Event<PlayerVerify>,
) -> Result<PlayerVerifyResponse, WebhookError> {
    let (name, level) = match event.event_data.player_id.as_str() {
        "testplayer" => ("Test Player", 42),
        "player_2" => ("Second Player", 7),
        _ => return Err(WebhookError::not_found("Player not found")),
    };
    let owned = game.inventory.owned(&event.event_data.player_id).await?;
    let mut player = PlayerVerifyResponse::new(event.event_data.player_id, name);
    player.attributes.level = Some(level);
    player.attributes.platform = Some("pc".into());
    player.balances = Some(
        owned
            .into_iter()
            .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
            .collect(),
    );
    Ok(player)
}

async fn store(_game: Arc<Game>, _event: Event<StoreGet>) -> StoreGetResponse {
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

/// The game's state.
struct Game {
    inventory: Inventory,
}

enum Inventory {
    Memory(Mutex<Ledger>),
    Redis(ConnectionManager),
    /// Credits go through the delivery's transaction; the table is read for balances.
    Postgres(PgPool),
}

#[derive(Default)]
struct Ledger {
    /// The keys of every item event already applied.
    applied: HashSet<String>,
    /// (player_id, sku) → quantity owned.
    owned: HashMap<(String, String), i64>,
}

/// Applies an item event once per key, in one script that cannot leave the "applied"
/// marker without the credit: it checks everything that could make a write fail before
/// writing anything, changes the inventory, and only then sets the marker. Both keys
/// carry the player's hash tag (`game:{player}:...`), so the script runs on Redis
/// Cluster too. KEYS: the marker, the inventory; ARGV: sku, change, sku, change, ...
const APPLY_ONCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('inventory is not a hash') end
-- Integers below 2^53 in magnitude: their sum fits HINCRBY's 64 bits, so it cannot fail.
local function small(text)
  return text ~= nil and string.match(text, '^-?%d+$') ~= nil and math.abs(tonumber(text)) < 2^53
end
for i = 1, #ARGV, 2 do
  local owned = redis.call('HGET', KEYS[2], ARGV[i])
  if not small(ARGV[i + 1]) or (owned and not small(owned)) then
    return redis.error_reply('quantity out of range')
  end
end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], '1')
return 1
";

impl Game {
    fn in_memory() -> Self {
        Self {
            inventory: Inventory::Memory(Mutex::default()),
        }
    }

    /// Credits (`sign` 1) or revokes (`sign` -1) the items, once per event: a retried
    /// delivery is acknowledged again and changes nothing.
    async fn apply(
        &self,
        event: Event<ItemChange>,
        sign: i64,
        transaction: Option<DeliveryTransaction>,
    ) -> Result<Ack, WebhookError> {
        // Without a key a retry cannot be told from a new purchase: refuse rather than
        // risk crediting twice. Every real delivery carries at least an event_id.
        let Some(id) = event.dedupe_key() else {
            return Err(WebhookError::validation(
                "item event without idempotency_key or event_id",
            ));
        };
        // Scoped like the idempotency layer's key: a removal with the purchase's key
        // still applies.
        let key = format!(
            "{}:{}:{}:{id}",
            event.game_id.as_deref().unwrap_or(""),
            if event.sandbox { "sandbox" } else { "live" },
            event.event_type,
        );
        let player = &event.event_data.player_id;
        let changes = event
            .event_data
            .items
            .iter()
            .map(|item| (item.sku.as_str(), sign.saturating_mul(item.quantity)));
        self.inventory
            .apply_once(&key, player, changes, transaction)
            .await?;
        Ok(Ack)
    }
}

impl Inventory {
    async fn apply_once<'a>(
        &self,
        key: &str,
        player: &str,
        changes: impl Iterator<Item = (&'a str, i64)>,
        transaction: Option<DeliveryTransaction>,
    ) -> Result<(), WebhookError> {
        match self {
            // The claim, this credit and the recorded answer commit together: once.
            Self::Postgres(_) => {
                let transaction = transaction.ok_or_else(|| {
                    WebhookError::validation("item event outside a delivery transaction")
                })?;
                let mut connection = transaction.connection().await.map_err(|_| unavailable())?;
                for (sku, change) in changes {
                    sqlx::query(
                        "INSERT INTO inventory (player_id, sku, quantity) VALUES ($1, $2, $3) \
                         ON CONFLICT (player_id, sku) DO UPDATE \
                         SET quantity = inventory.quantity + EXCLUDED.quantity",
                    )
                    .bind(player)
                    .bind(sku)
                    .bind(change)
                    .execute(&mut *connection)
                    .await
                    .map_err(|_| unavailable())?;
                }
                Ok(())
            }
            Self::Memory(ledger) => {
                let mut ledger = ledger.lock().map_err(|_| unavailable())?;
                if ledger.applied.insert(key.to_owned()) {
                    for (sku, change) in changes {
                        let owned = ledger
                            .owned
                            .entry((player.to_owned(), sku.to_owned()))
                            .or_default();
                        *owned = owned.saturating_add(change);
                    }
                }
                Ok(())
            }
            Self::Redis(connection) => {
                apply_once_in_redis(&mut connection.clone(), key, player, changes)
                    .await
                    .map(drop)
                    .map_err(|_| unavailable())
            }
        }
    }

    async fn owned(&self, player: &str) -> Result<Vec<(String, i64)>, WebhookError> {
        let mut owned: Vec<(String, i64)> = match self {
            Self::Memory(ledger) => {
                let ledger = ledger.lock().map_err(|_| unavailable())?;
                ledger
                    .owned
                    .iter()
                    .filter(|((owner, _), _)| owner == player)
                    .map(|((_, sku), quantity)| (sku.clone(), *quantity))
                    .collect()
            }
            Self::Redis(connection) => connection
                .clone()
                .hgetall::<_, HashMap<String, i64>>(inventory_key(player))
                .await
                .map_err(|_| unavailable())?
                .into_iter()
                .collect(),
            Self::Postgres(pool) => {
                sqlx::query_as("SELECT sku, quantity FROM inventory WHERE player_id = $1")
                    .bind(player)
                    .fetch_all(pool)
                    .await
                    .map_err(|_| unavailable())?
            }
        };
        owned.sort();
        Ok(owned)
    }
}

/// Applies `changes` to `player`'s inventory once per `key` with [`APPLY_ONCE`], on one
/// Redis or a Redis Cluster; `false` when `key` was applied before.
pub async fn apply_once_in_redis<'a>(
    connection: &mut impl ConnectionLike,
    key: &str,
    player: &str,
    changes: impl Iterator<Item = (&'a str, i64)>,
) -> RedisResult<bool> {
    static SCRIPT: std::sync::LazyLock<Script> =
        std::sync::LazyLock::new(|| Script::new(APPLY_ONCE));
    let mut invocation = SCRIPT.prepare_invoke();
    invocation
        .key(format!("game:{{{player}}}:applied:{key}"))
        .key(inventory_key(player));
    for (sku, change) in changes {
        invocation.arg(sku).arg(change);
    }
    invocation.invoke_async(connection).await
}

/// The player's inventory hash in Redis, under the player's hash tag.
fn inventory_key(player: &str) -> String {
    format!("game:{{{player}}}:inventory")
}

/// 503: Aghanim retries, and the idempotency layer releases the claim for that retry.
fn unavailable() -> WebhookError {
    WebhookError::new(ErrorCode::Custom("unavailable".into()), "Try again later")
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
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

    async fn gems(game: &Game) -> i64 {
        let owned = game.inventory.owned("testplayer").await.unwrap();
        owned
            .iter()
            .find(|(sku, _)| sku == "gems")
            .map_or(0, |(_, n)| *n)
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_credits_once() {
        let game = Game::in_memory();
        for _ in 0..3 {
            assert!(game
                .apply(change(EventType::ItemAdd, "ord_1", 5), 1, None)
                .await
                .is_ok());
        }
        assert_eq!(gems(&game).await, 5);
        assert!(game
            .apply(change(EventType::ItemAdd, "ord_2", 5), 1, None)
            .await
            .is_ok());
        assert_eq!(gems(&game).await, 10);
    }

    #[tokio::test]
    async fn a_removal_with_the_purchase_key_still_takes_items_back() {
        let game = Game::in_memory();
        assert!(game
            .apply(change(EventType::ItemAdd, "ord_1", 5), 1, None)
            .await
            .is_ok());
        for _ in 0..2 {
            assert!(game
                .apply(change(EventType::ItemRemove, "ord_1", 5), -1, None)
                .await
                .is_ok());
        }
        assert_eq!(gems(&game).await, 0);
    }
}
