//! The Redis store's dead letters: one hash per delivery key under the record's own
//! hash tag (so the record's completion resolves it in the same script), and one
//! sorted set of the keys by when they were last seen, for listing and the bound.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use redis::{aio::ConnectionLike, AsyncCommands};

use super::{redis_key, RedisStore};
use crate::dead_letter::{DeadLetter, DeadLetters, Filter, Kept, Reason};
use crate::idempotency::{StoreError, StoreFuture};

/// How many letters one keeping past the bound looks through for resolved ones to make
/// room: a flood of failures at the bound costs each at most this many round trips,
/// not a walk of the whole set.
const MAKE_ROOM_PAGE: isize = 50;

/// The Redis key of the dead letter of the layer's `key`: the record's hash tag, so
/// both are in one slot of a cluster.
pub(super) fn letter_key(prefix: &str, key: &str) -> String {
    format!("{prefix}failed:{{{key}}}")
}

/// KEYS: the letter, the record. ARGV: game id, sandbox, event type, delivery id, body,
/// reason, detail, status. Returns whether the letter is new, and the server's time
/// in milliseconds. A letter whose record is completed already is resolved at once.
pub(super) const KEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local created = redis.call('EXISTS', KEYS[1]) == 0
if created then
  redis.call('HSET', KEYS[1], 'game_id', ARGV[1], 'sandbox', ARGV[2], 'event_type', ARGV[3],
    'delivery_id', ARGV[4], 'attempts', 1, 'first_seen', now)
else
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
redis.call('HSET', KEYS[1], 'body', ARGV[5], 'reason', ARGV[6], 'detail', ARGV[7],
  'status', ARGV[8], 'last_seen', now)
if redis.call('HGET', KEYS[2], 'state') == 'completed' then
  redis.call('HSET', KEYS[1], 'resolved', now)
end
return {created and 1 or 0, now}
";

/// KEYS: the letter, the record. The letter's fields, marked resolved first when its
/// record is completed (a completion by an instance that did not resolve it, or one
/// that raced the keeping); with ARGV[1] = 'forget', deleted after it is read.
pub(super) const READ_LETTER: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
if redis.call('HEXISTS', KEYS[1], 'resolved') == 0
   and redis.call('HGET', KEYS[2], 'state') == 'completed' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'resolved', tonumber(t[1]) * 1000)
  table.insert(fields, 'resolved')
  table.insert(fields, '1')
end
if ARGV[1] == 'forget' then redis.call('DEL', KEYS[1]) end
return fields
";

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The sorted set of the letters' keys, by when each was last seen.
    fn letters_index(&self) -> String {
        format!("{}failed", self.prefix)
    }

    async fn keep_letter(&self, letter: &DeadLetter) -> Result<Kept, StoreError> {
        let mut connection = self.connection.clone();
        let (created, now): (bool, u64) = self
            .scripts
            .keep
            .key(letter_key(&self.prefix, &letter.key))
            .key(redis_key(&self.prefix, &letter.key))
            .arg(&letter.game_id)
            .arg(if letter.sandbox { "1" } else { "0" })
            .arg(&letter.event_type)
            .arg(&letter.delivery_id)
            .arg(letter.body.as_ref())
            .arg(letter.reason.as_str())
            .arg(&letter.detail)
            .arg(letter.status)
            .invoke_async(&mut connection)
            .await
            .map_err(StoreError::new)?;
        let index = self.letters_index();
        let () = connection
            .zadd(&index, &letter.key, now)
            .await
            .map_err(StoreError::new)?;
        if !created {
            return Ok(Kept::Updated);
        }
        // Within the bound when fewer than the bound were seen before it: concurrent
        // keepings each count those ahead of them, not each other's letters twice.
        let ahead = self.ahead_of(&mut connection, &index, &letter.key).await?;
        if ahead < self.max_letters {
            return Ok(Kept::Created);
        }
        let need = ahead - self.max_letters + 1;
        self.make_room(&mut connection, &index, &letter.key, need)
            .await?;
        if self.ahead_of(&mut connection, &index, &letter.key).await? < self.max_letters {
            return Ok(Kept::Created);
        }
        let () = connection
            .del(letter_key(&self.prefix, &letter.key))
            .await
            .map_err(StoreError::new)?;
        let () = connection
            .zrem(&index, &letter.key)
            .await
            .map_err(StoreError::new)?;
        Ok(Kept::Full)
    }

    /// How many letters the index holds ahead of `key`'s (seen before it).
    async fn ahead_of(
        &self,
        connection: &mut C,
        index: &str,
        key: &str,
    ) -> Result<usize, StoreError> {
        let rank: Option<usize> = connection
            .zrank(index, key)
            .await
            .map_err(StoreError::new)?;
        Ok(rank.unwrap_or(usize::MAX))
    }

    /// Removes up to `need` letters, from one page of a sweep of the index: those resolved,
    /// those no handler took (a type a studio acknowledges without a handler would
    /// otherwise fill the bound for good), and the index entries whose letter has
    /// expired; each sweep goes on from where the last one stopped, from the letters
    /// seen longest ago.
    async fn make_room(
        &self,
        connection: &mut C,
        index: &str,
        keeping: &str,
        mut need: usize,
    ) -> Result<(), StoreError> {
        let cursor_key = format!("{index}-sweep");
        let at: Option<isize> = connection.get(&cursor_key).await.map_err(StoreError::new)?;
        let mut start = at.unwrap_or(0).max(0);
        let mut page: Vec<String> = connection
            .zrange(index, start, start + MAKE_ROOM_PAGE - 1)
            .await
            .map_err(StoreError::new)?;
        if page.is_empty() && start > 0 {
            start = 0;
            page = connection
                .zrange(index, 0, MAKE_ROOM_PAGE - 1)
                .await
                .map_err(StoreError::new)?;
        }
        let mut kept_in_page = 0;
        for key in &page {
            if need == 0 {
                break;
            }
            let letter_key = letter_key(&self.prefix, key);
            // All nil: the letter expired after it was resolved.
            let (resolved, reason, seen): (Option<String>, Option<String>, Option<String>) =
                redis::cmd("HMGET")
                    .arg(&letter_key)
                    .arg("resolved")
                    .arg("reason")
                    .arg("last_seen")
                    .query_async(connection)
                    .await
                    .map_err(StoreError::new)?;
            let unhandled = reason.as_deref() == Some(Reason::NoHandler.as_str());
            if key != keeping && (resolved.is_some() || unhandled || seen.is_none()) {
                let () = connection.del(&letter_key).await.map_err(StoreError::new)?;
                let () = connection.zrem(index, key).await.map_err(StoreError::new)?;
                need -= 1;
            } else {
                kept_in_page += 1;
            }
        }
        let () = connection
            .set(&cursor_key, start + kept_in_page)
            .await
            .map_err(StoreError::new)?;
        Ok(())
    }

    async fn list_letters(&self, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
        let mut connection = self.connection.clone();
        let index = self.letters_index();
        let keys: Vec<String> = connection
            .zrevrange(&index, 0, -1)
            .await
            .map_err(StoreError::new)?;
        let now = SystemTime::now();
        let mut listed = Vec::new();
        for key in keys {
            if filter.limit.is_some_and(|limit| listed.len() >= limit) {
                break;
            }
            match self.letter(&key, false).await? {
                Some(letter) if filter.matches(&letter, now) => listed.push(letter),
                Some(_) => {}
                // Expired after it was resolved.
                None => {
                    let () = connection
                        .zrem(&index, &key)
                        .await
                        .map_err(StoreError::new)?;
                }
            }
        }
        Ok(listed)
    }

    async fn letter(&self, key: &str, forget: bool) -> Result<Option<DeadLetter>, StoreError> {
        let mut connection = self.connection.clone();
        let fields: HashMap<String, Vec<u8>> = self
            .scripts
            .read_letter
            .key(letter_key(&self.prefix, key))
            .key(redis_key(&self.prefix, key))
            .arg(if forget { "forget" } else { "read" })
            .invoke_async(&mut connection)
            .await
            .map_err(StoreError::new)?;
        if forget {
            let () = connection
                .zrem(self.letters_index(), key)
                .await
                .map_err(StoreError::new)?;
        }
        if fields.is_empty() {
            return Ok(None);
        }
        letter_of(key, &fields).map(Some)
    }
}

/// Its dead letters are kept under the prefix, each under its record's hash tag; the
/// record's completion resolves its letter in the same script.
impl<C> DeadLetters for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept> {
        Box::pin(self.keep_letter(letter))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(self.list_letters(filter))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        Box::pin(self.letter(key, false))
    }

    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        Box::pin(self.letter(key, true))
    }
}

fn letter_of(key: &str, fields: &HashMap<String, Vec<u8>>) -> Result<DeadLetter, StoreError> {
    let text = |name: &str| {
        fields
            .get(name)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    };
    let number = |name: &str| text(name).parse::<u64>().unwrap_or_default();
    let at = |name: &str| UNIX_EPOCH + Duration::from_millis(number(name));
    let reason = text("reason");
    Ok(DeadLetter {
        key: key.to_owned(),
        game_id: text("game_id"),
        sandbox: text("sandbox") == "1",
        event_type: text("event_type"),
        delivery_id: text("delivery_id"),
        body: Bytes::from(fields.get("body").cloned().unwrap_or_default()),
        reason: Reason::parse(&reason).ok_or_else(|| {
            StoreError::new(format!("a letter with the unknown reason {reason:?}"))
        })?,
        detail: text("detail"),
        status: u16::try_from(number("status")).unwrap_or_default(),
        attempts: number("attempts"),
        first_seen: at("first_seen"),
        last_seen: at("last_seen"),
        resolved: fields.contains_key("resolved"),
    })
}
