use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    Script, Value,
};

mod letters;

use super::super::{Record, RecordKey, RecordState, StuckClaim};
use super::{
    ClaimOutcome, ClaimRequest, IdempotencyStore, OwnerToken, StoreError, StoreFuture,
    StoredResponse,
};
use crate::dead_letter::DeadLetters;

/// The key prefix unless configured otherwise; the layer's key follows in braces, a
/// Redis Cluster hash tag.
pub const DEFAULT_REDIS_PREFIX: &str = "aghanim:idem:v1:";

/// How long [`RedisStore::connect`]'s connection waits to connect, and then for each
/// reply: as long as the layer's default store timeout, which bounds every call anyway.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often it tries to reconnect after losing the server, and the longest pause
/// between tries: short, so that a restarted Redis is found again within a second.
const DEFAULT_RECONNECT_RETRIES: usize = 2;
const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// Keeps idempotency records in Redis, shared by every instance that uses the same
/// server and prefix (feature `redis`).
///
/// Each record is one hash; `claim`, `renew`, `complete` and `release` are each one Lua
/// script on that one key, reading the time from the server (`TIME`), so they are
/// atomic, need no clock agreement between instances, and are safe on Redis Cluster
/// (feature `redis-cluster`: pass a cluster connection to
/// [`with_connection`](Self::with_connection)). `renew`, `complete` and `release` only
/// act while the caller's owner token holds the claim. Works with Redis 6 and later
/// and with Valkey.
///
/// Configure the server so that records are not silently dropped:
/// `maxmemory-policy noeviction` (or a database of its own) and persistence (AOF with
/// `appendfsync everysec`). A record lost anyway (failover, restart without
/// persistence) lets one duplicate run the handler again: make the handler's own write
/// idempotent (see the [module documentation](crate::idempotency)).
///
/// # Example
///
/// ```no_run
/// use aghanim_webhook::idempotency::{IdempotencyLayer, RedisStore};
///
/// # async fn run() -> Result<(), aghanim_webhook::idempotency::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let layer = IdempotencyLayer::new(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    connection: C,
    prefix: String,
    scripts: Arc<Scripts>,
    max_letters: usize,
}

struct Scripts {
    claim: Script,
    renew: Script,
    complete: Script,
    release: Script,
    read: Script,
    keep: Script,
    read_letter: Script,
}

impl RedisStore {
    /// Connects to `url` (`redis://`, `rediss://`, `redis+unix://`) through a
    /// [`ConnectionManager`], which reconnects by itself after the server comes back.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or the first connection fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::new)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_CONNECTION_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT))
            .set_number_of_retries(DEFAULT_RECONNECT_RETRIES)
            .set_max_delay(DEFAULT_RECONNECT_MAX_DELAY);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(StoreError::new)?;
        Ok(Self::with_connection(connection))
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over a connection you made: a [`ConnectionManager`], a multiplexed
    /// connection, or a cluster connection.
    pub fn with_connection(connection: C) -> Self {
        Self {
            connection,
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            scripts: Arc::new(Scripts {
                claim: Script::new(CLAIM),
                renew: Script::new(RENEW),
                complete: Script::new(COMPLETE),
                release: Script::new(RELEASE),
                read: Script::new(READ),
                keep: Script::new(letters::KEEP),
                read_letter: Script::new(letters::READ_LETTER),
            }),
            max_letters: crate::dead_letter::DEFAULT_MAX_DEAD_LETTERS,
        }
    }

    /// Keeps at most `max` [dead letters](crate::dead_letter) instead of
    /// [`DEFAULT_MAX_DEAD_LETTERS`](crate::dead_letter::DEFAULT_MAX_DEAD_LETTERS).
    #[must_use]
    pub fn max_dead_letters(mut self, max: usize) -> Self {
        self.max_letters = max;
        self
    }

    /// Puts every key under `prefix` instead of [`DEFAULT_REDIS_PREFIX`], e.g. one per
    /// game or environment sharing a server.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The Redis key of the layer's `key`.
    fn redis_key(&self, key: &str) -> String {
        redis_key(&self.prefix, key)
    }

    /// The record of `key`, if there is one: for an operator's question "was this
    /// purchase applied?" (`aghanim-webhook records show`).
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or the record is not one this crate wrote.
    pub async fn record(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        Ok(self
            .read(key.as_str(), "read")
            .await?
            .map(|(record, _)| record))
    }

    /// Deletes the record of `key` and returns what it held, so that the next delivery
    /// of that key runs the handler again: for a purchase an operator decided to run
    /// again. It changes nothing else, least of all the player's inventory.
    ///
    /// # Errors
    ///
    /// When a run holds the key (its lease is live; nothing is deleted), or Redis
    /// cannot be reached.
    pub async fn forget(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let record = self
            .read(key.as_str(), "forget")
            .await?
            .map(|(record, _)| record);
        if let Some(Record {
            state: RecordState::Running { lease_remaining },
            ..
        }) = &record
        {
            let left = lease_remaining.unwrap_or_default().as_millis();
            return Err(StoreError::new(format!(
                "a run holds {key} (its lease has {left} ms left): not forgotten"
            )));
        }
        Ok(record)
    }

    /// Every claim under this store's prefix that has not been answered for `age` or
    /// longer, with its lease: still renewed (a run going on that long) or run out (its
    /// holder gone). On Redis Cluster, connect to each primary in turn: `SCAN` walks
    /// one server.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub async fn stuck(&self, age: Duration) -> Result<Vec<StuckClaim>, StoreError> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}{{*}}", glob_escape(&self.prefix));
        let mut cursor = 0_u64;
        let mut stuck = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(StoreError::new)?;
            for redis_key in keys {
                let Some(key) = redis_key
                    .strip_prefix(&self.prefix)
                    .and_then(|rest| rest.strip_prefix('{'))
                    .and_then(|rest| rest.strip_suffix('}'))
                else {
                    continue;
                };
                let Some((record, now)) = self.read(key, "read").await? else {
                    continue;
                };
                // Ages by the server's clock, as the leases are.
                let claimed_for = record
                    .claimed_at
                    .and_then(|claimed| now.duration_since(claimed).ok());
                let holder = match record.state {
                    RecordState::Running { lease_remaining } => format!(
                        "lease renewed, {} ms left: a run still going",
                        lease_remaining.unwrap_or_default().as_millis()
                    ),
                    RecordState::Expired => {
                        "lease run out: its holder is gone, the next delivery runs".to_owned()
                    }
                    _ => continue,
                };
                if claimed_for.is_none_or(|claimed_for| claimed_for >= age) {
                    stuck.push(StuckClaim {
                        key: Some(key.to_owned()),
                        age: claimed_for,
                        holder,
                    });
                }
            }
            if next == 0 {
                return Ok(stuck);
            }
            cursor = next;
        }
    }

    /// The record of `key` and the server's time; with `mode` "forget", deleted too
    /// unless a live lease holds it.
    async fn read(
        &self,
        key: &str,
        mode: &str,
    ) -> Result<Option<(Record, SystemTime)>, StoreError> {
        let mut connection = self.connection.clone();
        let reply: Vec<Value> = self
            .scripts
            .read
            .key(self.redis_key(key))
            .key(letters::letter_key(&self.prefix, key))
            .arg(mode)
            .invoke_async(&mut connection)
            .await
            .map_err(StoreError::new)?;
        parse_record(reply)
    }
}

/// `text` with Redis's glob characters escaped, for a `MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The reply of the `READ` script: the record and the server's time, or nothing.
fn parse_record(reply: Vec<Value>) -> Result<Option<(Record, SystemTime)>, StoreError> {
    if reply.is_empty() {
        return Ok(None);
    }
    let fields: Vec<Vec<u8>> = reply.into_iter().map(field_bytes).collect();
    let text = |index: usize| {
        fields
            .get(index)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    };
    let number = |index: usize| text(index).parse::<u64>().ok();
    let at = |index: usize| number(index).map(|millis| UNIX_EPOCH + Duration::from_millis(millis));
    let now = number(8).ok_or_else(|| StoreError::new("unexpected reply from the read script"))?;
    let state = match text(0) {
        "completed" => RecordState::Completed {
            status: number(1)
                .and_then(|status| u16::try_from(status).ok())
                .ok_or_else(|| StoreError::new("a completed record without a status"))?,
            content_type: Some(text(2))
                .filter(|text| !text.is_empty())
                .map(str::to_owned),
            body: Bytes::from(fields.get(3).cloned().unwrap_or_default()),
        },
        "in_progress" => match number(4).filter(|&lease_until| lease_until > now) {
            Some(lease_until) => RecordState::Running {
                lease_remaining: Some(Duration::from_millis(lease_until - now)),
            },
            None => RecordState::Expired,
        },
        "released" => RecordState::Released,
        other => {
            return Err(StoreError::new(format!(
                "a record in the unknown state {other:?}"
            )))
        }
    };
    let record = Record {
        state,
        claimed_at: at(5),
        completed_at: at(6),
        attempts: number(7),
    };
    Ok(Some((record, UNIX_EPOCH + Duration::from_millis(now))))
}

impl<C> IdempotencyStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn claim<'a>(
        &'a self,
        key: &'a str,
        request: &'a ClaimRequest,
    ) -> StoreFuture<'a, ClaimOutcome> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = self
                .scripts
                .claim
                .key(self.redis_key(key))
                .arg(request.owner.as_str())
                .arg(&request.fingerprint)
                .arg(millis(request.lease))
                .arg(millis(request.retention.max(request.lease)))
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)?;
            parse_claim(reply)
        })
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.scripts
                .renew
                .key(self.redis_key(key))
                .arg(owner.as_str())
                .arg(millis(lease))
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.scripts
                .complete
                .key(self.redis_key(key))
                .key(letters::letter_key(&self.prefix, key))
                .arg(owner.as_str())
                .arg(response.status)
                .arg(response.content_type.as_deref().unwrap_or(""))
                .arg(response.body.as_ref())
                .arg(millis(retention))
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        Some(self)
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.scripts
                .release
                .key(self.redis_key(key))
                .arg(owner.as_str())
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)
        })
    }
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A script's reply field as bytes; nil (a missing hash field) is empty.
fn field_bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        Value::Int(number) => number.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn parse_claim(reply: Vec<Value>) -> Result<ClaimOutcome, StoreError> {
    let mut fields = reply.into_iter().map(field_bytes);
    let unexpected = || StoreError::new("unexpected reply from the claim script");
    let number = |field: Option<Vec<u8>>| -> Result<u64, StoreError> {
        field
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse().ok())
            .ok_or_else(unexpected)
    };
    match fields.next().as_deref() {
        Some(b"claimed") => Ok(ClaimOutcome::Claimed {
            attempt: number(fields.next())?,
        }),
        Some(b"in_progress") => Ok(ClaimOutcome::InProgress {
            lease_remaining: Duration::from_millis(number(fields.next())?),
        }),
        Some(b"completed") => {
            let status = u16::try_from(number(fields.next())?).map_err(|_| unexpected())?;
            let content_type = fields
                .next()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|text| !text.is_empty());
            let body = Bytes::from(fields.next().unwrap_or_default());
            Ok(ClaimOutcome::Completed(StoredResponse {
                status,
                content_type,
                body,
            }))
        }
        Some(b"mismatch") => Ok(ClaimOutcome::Mismatch),
        _ => Err(unexpected()),
    }
}

/// The server's time in milliseconds, for the scripts that compare or set a lease: no
/// instance clock is trusted.
macro_rules! lua_now {
    () => {
        "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// ARGV: owner, fingerprint, lease ms, retention ms.
const CLAIM: &str = concat!(
    lua_now!(),
    r"
local r = redis.call('HMGET', KEYS[1], 'state', 'owner', 'lease_until', 'fp', 'status', 'ctype', 'body', 'attempt')
local state = r[1]
-- Only a completed record or a live claim can refuse another payload.
local other_payload = r[4] ~= ARGV[2]
if state == 'completed' then
  if other_payload then return {'mismatch'} end
  return {'completed', r[5], r[6] or '', r[7] or ''}
end
if state == 'in_progress' then
  if r[2] == ARGV[1] then return {'claimed', r[8]} end
  local lease_until = tonumber(r[3])
  -- A claim without a deadline is never taken for an orphan.
  if not lease_until then lease_until = now + tonumber(ARGV[3]) end
  if lease_until > now then
    if other_payload then return {'mismatch'} end
    return {'in_progress', tostring(lease_until - now)}
  end
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'owner', ARGV[1], 'fp', ARGV[2],
  'lease_until', now + tonumber(ARGV[3]), 'claimed_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'claimed', tostring(attempt)}
"
);

/// ARGV: owner, lease ms.
const RENEW: &str = concat!(
    lua_now!(),
    r"
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] ~= 'in_progress' or r[2] ~= ARGV[1] then return 0 end
local lease_until = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lease_until', lease_until)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"
);

/// KEYS: the record, its dead letter (same hash tag). ARGV: owner, status, content
/// type, body, retention ms. The key's dead letter, if it has one, is resolved in the
/// same script.
const COMPLETE: &str = concat!(
    lua_now!(),
    r"
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] ~= 'in_progress' or r[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'ctype', ARGV[3],
  'body', ARGV[4], 'completed_at', now)
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'resolved', now)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
"
);

/// ARGV: owner.
const RELEASE: &str = r"
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] ~= 'in_progress' or r[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
return 1
";

/// KEYS: the record, its dead letter. The record and the server's time; with ARGV[1] =
/// 'forget', deleted unless a live lease holds it, and its letter, if the record was
/// completed, marked resolved for good: a replay would apply it again.
const READ: &str = concat!(
    lua_now!(),
    r"
local r = redis.call('HMGET', KEYS[1], 'state', 'status', 'ctype', 'body', 'lease_until',
  'claimed_at', 'completed_at', 'attempt')
if not r[1] then return {} end
local running = r[1] == 'in_progress' and tonumber(r[5] or '0') > now
if ARGV[1] == 'forget' and not running then
  if r[1] == 'completed' and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'resolved', now)
  end
  redis.call('DEL', KEYS[1])
end
for i = 1, 8 do r[i] = r[i] or '' end
r[9] = tostring(now)
return r
"
);

/// The Redis key of the layer's `key` under `prefix`: the key in braces, a cluster hash
/// tag. Part of the store format (`tests/vectors/idempotency.json`).
pub(crate) fn redis_key(prefix: &str, key: &str) -> String {
    format!("{prefix}{{{key}}}")
}
