//! `records`: what the idempotency store holds about a delivery, computed from the ids an
//! operator has, through the same key function as the layer.

use std::{
    fs,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aghanim_webhook::{
    dead_letter::{DeadLetter, DeadLetters, Filter, Reason},
    events::EventType,
    idempotency::{
        PostgresStore, Record, RecordKey, RecordState, RedisStore, StuckClaim,
        DEFAULT_POSTGRES_TABLE, DEFAULT_REDIS_PREFIX,
    },
};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum Records {
    /// Whether a delivery was applied: its record (completed, running, released or
    /// unknown), when, and the recorded answer
    Show {
        #[command(flatten)]
        delivery: Delivery,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Claims not answered for longer than --older-than
    Stuck {
        /// The age in seconds
        #[arg(long, default_value_t = 60)]
        older_than: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Authentic deliveries that were not applied (dead letters), newest first: age,
    /// event type, delivery id, reason, last status, attempts
    Failed {
        #[command(flatten)]
        filter: LetterFilter,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deliver kept failed deliveries again to your endpoint, signed with a fresh
    /// timestamp, through its signature check, idempotency layer and handler: one
    /// (--store-key, or its ids) or every one --all and the filters select. Credited
    /// once however often it is replayed; a 2xx resolves it. Resolved ones (applied
    /// since) are never replayed. Exits non-zero unless each is resolved
    Replay {
        /// The endpoint, e.g. http://127.0.0.1:8000/webhook
        #[arg(long)]
        url: String,
        #[command(flatten)]
        secrets: crate::Secrets,
        #[command(flatten)]
        delivery: OptionalDelivery,
        /// Every unresolved delivery the filters select
        #[arg(long, conflicts_with_all = ["store_key", "key", "event_id"])]
        all: bool,
        /// Stale deliveries too (kept by keep_stale). Check first that the purchase was
        /// not applied: a copy whose record was lost (a full memory store, a Redis
        /// failover) is not recognised, and would be applied again
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        filter: LetterFilter,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a delivery's record and its kept failed delivery, so that its next
    /// delivery runs the handler again (the player's inventory is not touched)
    Forget {
        #[command(flatten)]
        delivery: Delivery,
        #[command(flatten)]
        store: StoreArgs,
        /// Really remove it
        #[arg(long)]
        yes: bool,
    },
}

/// Which delivery: its ids, as the layer keys it, or a captured body.
#[derive(Args)]
pub(crate) struct Delivery {
    /// The game id, gm_...
    #[arg(long, required_unless_present_any = ["body", "store_key"])]
    game: Option<String>,
    /// The delivery came from the sandbox (default: live)
    #[arg(long)]
    sandbox: bool,
    /// The event type, e.g. item.add
    #[arg(long, required_unless_present_any = ["body", "store_key"])]
    event_type: Option<String>,
    /// The delivery's idempotency_key (for item.add: ord_...)
    #[arg(long, conflicts_with_all = ["event_id", "body", "store_key"], required_unless_present_any = ["event_id", "body", "store_key"])]
    key: Option<String>,
    /// The delivery's event_id, for an event sent without an idempotency_key
    #[arg(long, conflicts_with_all = ["body", "store_key"])]
    event_id: Option<String>,
    /// A captured delivery body: its key is computed from it
    #[arg(long, conflicts_with = "store_key")]
    body: Option<PathBuf>,
    /// With --body: the type is deduplicated per payload (notifications such as
    /// payment.*, order.*)
    #[arg(long, requires = "body")]
    per_payload: bool,
    /// The store key itself, 64 hex digits (as `records stuck` prints it)
    #[arg(long)]
    store_key: Option<String>,
}

/// Which kept deliveries.
#[derive(Args)]
pub(crate) struct LetterFilter {
    /// Only this event type, e.g. item.add
    #[arg(long)]
    event_type: Option<String>,
    /// Only this game id, gm_...
    #[arg(long)]
    game: Option<String>,
    /// Only those failing for at least this many seconds
    #[arg(long)]
    older_than: Option<u64>,
    /// Resolved ones too (applied since)
    #[arg(long)]
    resolved: bool,
    /// At most this many
    #[arg(long)]
    limit: Option<usize>,
}

impl LetterFilter {
    fn filter(&self) -> Filter {
        let mut filter = Filter::unresolved();
        if let Some(event_type) = &self.event_type {
            filter = filter.event_type(event_type);
        }
        if let Some(game) = &self.game {
            filter = filter.game(game);
        }
        if let Some(age) = self.older_than {
            filter = filter.older_than(Duration::from_secs(age));
        }
        if self.resolved {
            filter = filter.with_resolved();
        }
        if let Some(limit) = self.limit {
            filter = filter.limit(limit);
        }
        filter
    }
}

/// One delivery by its store key or its ids, for `replay`.
#[derive(Args)]
pub(crate) struct OptionalDelivery {
    /// The store key, 64 hex digits (as `records failed` prints it)
    #[arg(long)]
    store_key: Option<String>,
    /// The delivery came from the sandbox (default: live)
    #[arg(long)]
    sandbox: bool,
    /// The delivery's idempotency_key (for item.add: ord_...), with --game and
    /// --event-type
    #[arg(long, conflicts_with = "event_id")]
    key: Option<String>,
    /// The delivery's event_id, with --game and --event-type
    #[arg(long)]
    event_id: Option<String>,
}

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The PostgreSQL store's database
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The Redis store's server
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// The PostgreSQL store's table
    #[arg(long, default_value = DEFAULT_POSTGRES_TABLE)]
    table: String,
    /// The Redis store's key prefix
    #[arg(long, default_value = DEFAULT_REDIS_PREFIX)]
    prefix: String,
}

enum Store {
    Postgres(PostgresStore),
    Redis(RedisStore),
}

impl Store {
    fn letters(&self) -> &dyn DeadLetters {
        match self {
            Store::Postgres(store) => store,
            Store::Redis(store) => store,
        }
    }

    /// The letters of a delivery by its ids: under a policy that keys each payload on
    /// its own (`payment.*`, `order.*`), its letters are not under the key its ids give.
    async fn letters_of(
        &self,
        game: &str,
        sandbox: bool,
        event_type: &str,
        id: &str,
    ) -> Result<Vec<DeadLetter>, String> {
        let filter = Filter::unresolved()
            .with_resolved()
            .game(game)
            .event_type(event_type);
        let listed = self
            .letters()
            .list(&filter)
            .await
            .map_err(|error| error.to_string())?;
        Ok(listed
            .into_iter()
            .filter(|letter| letter.delivery_id == id && letter.sandbox == sandbox)
            .collect())
    }

    /// The letter under the store key `key`.
    async fn letter(&self, key: &str) -> Result<Option<DeadLetter>, String> {
        let letter = self.letters().get(key).await;
        letter.map_err(|error| error.to_string())
    }

    async fn list(&self, filter: &Filter) -> Result<Vec<DeadLetter>, String> {
        let listed = self.letters().list(filter).await;
        listed.map_err(|error| error.to_string())
    }

    async fn record(&self, key: &RecordKey) -> Result<Option<Record>, String> {
        match self {
            Store::Postgres(store) => store.record(key).await,
            Store::Redis(store) => store.record(key).await,
        }
        .map_err(|error| error.to_string())
    }

    async fn forget(&self, key: &RecordKey) -> Result<Option<Record>, String> {
        match self {
            Store::Postgres(store) => store.forget(key).await,
            Store::Redis(store) => store.forget(key).await,
        }
        .map_err(|error| error.to_string())
    }

    async fn stuck(&self, age: Duration) -> Result<Vec<StuckClaim>, String> {
        match self {
            Store::Postgres(store) => store.stuck(age).await,
            Store::Redis(store) => store.stuck(age).await,
        }
        .map_err(|error| error.to_string())
    }
}

impl StoreArgs {
    async fn open(self) -> Result<Store, String> {
        let nonempty = |url: Option<String>| url.filter(|url| !url.is_empty());
        match (nonempty(self.database_url), nonempty(self.redis_url)) {
            (Some(_), Some(_)) => Err(
                "both a PostgreSQL and a Redis URL are set (flags or DATABASE_URL / REDIS_URL): give one"
                    .into(),
            ),
            (Some(url), None) => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&url)
                    .await
                    .map_err(|error| format!("PostgreSQL: {error}"))?;
                let store = PostgresStore::new(pool)
                    .table(&self.table)
                    .map_err(|error| error.to_string())?;
                Ok(Store::Postgres(store))
            }
            (None, Some(url)) => {
                let store = RedisStore::connect(&url)
                    .await
                    .map_err(|error| format!("Redis: {error}"))?;
                Ok(Store::Redis(store.prefix(self.prefix)))
            }
            (None, None) => {
                Err("no store: --database-url (DATABASE_URL) or --redis-url (REDIS_URL)".into())
            }
        }
    }
}

impl Delivery {
    /// The game, event type and id given, if the delivery was named by its ids.
    fn ids(&self) -> Option<(&str, &str, &str)> {
        let id = self.key.as_ref().or(self.event_id.as_ref())?;
        Some((
            self.game.as_deref()?,
            self.event_type.as_deref()?,
            id.as_str(),
        ))
    }

    /// The store key, and the delivery in words.
    fn key(&self) -> Result<(RecordKey, String), String> {
        if let Some(path) = &self.body {
            let body = fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
            let key = RecordKey::of_delivery(&body, self.per_payload).ok_or_else(|| {
                format!(
                    "{}: not an event with an idempotency_key or event_id",
                    path.display()
                )
            })?;
            return Ok((key, format!("the delivery in {}", path.display())));
        }
        if let Some(store_key) = &self.store_key {
            let key = RecordKey::from_hex(store_key)
                .ok_or_else(|| format!("{store_key:?} is not a store key of 64 hex digits"))?;
            return Ok((key, "the store key given".to_owned()));
        }
        let (Some(game), Some(event_type), Some(id)) = (
            &self.game,
            &self.event_type,
            self.key.as_ref().or(self.event_id.as_ref()),
        ) else {
            return Err("give --game, --event-type and --key (or --event-id), or --body".into());
        };
        let event_type = EventType::from(event_type.as_str());
        Ok((
            RecordKey::new(game, self.sandbox, &event_type, id),
            RecordKey::dedupe_key(game, self.sandbox, &event_type, id),
        ))
    }
}

impl OptionalDelivery {
    /// The game, event type and id given, if the delivery was named by its ids.
    fn ids<'a>(&'a self, filter: &'a LetterFilter) -> Option<(&'a str, &'a str, &'a str)> {
        let id = self.key.as_ref().or(self.event_id.as_ref())?;
        Some((
            filter.game.as_deref()?,
            filter.event_type.as_deref()?,
            id.as_str(),
        ))
    }

    /// The store key of the delivery given by its store key, or by its ids with the
    /// filter's game and event type.
    fn key(&self, filter: &LetterFilter) -> Result<RecordKey, String> {
        if let Some(store_key) = &self.store_key {
            return RecordKey::from_hex(store_key)
                .ok_or_else(|| format!("{store_key:?} is not a store key of 64 hex digits"));
        }
        let event_type = filter.event_type.as_deref();
        match (
            &filter.game,
            event_type,
            self.key.as_ref().or(self.event_id.as_ref()),
        ) {
            (Some(game), Some(event_type), Some(id)) => {
                let event_type = EventType::from(event_type);
                Ok(RecordKey::new(game, self.sandbox, &event_type, id))
            }
            _ => Err(
                "give --store-key, or --game, --event-type and --key (or --event-id), or --all"
                    .into(),
            ),
        }
    }
}

impl OptionalDelivery {
    /// Its letters: the one under its store key, or, by its ids, each payload's under
    /// a policy that keys payloads apart.
    async fn letters(
        &self,
        store: &Store,
        filter: &LetterFilter,
    ) -> Result<Vec<DeadLetter>, String> {
        let key = self.key(filter)?;
        if let Some(letter) = store.letter(key.as_str()).await? {
            return Ok(vec![letter]);
        }
        let Some((game, event_type, id)) = self.ids(filter) else {
            return Err(format!("no failed delivery is kept under {key}"));
        };
        let by_ids = store.letters_of(game, self.sandbox, event_type, id).await?;
        if by_ids.is_empty() {
            return Err(format!("no failed delivery is kept for {id}"));
        }
        Ok(by_ids)
    }
}

/// Sends each of `letters` to `url`, signed with `secret` now, and says how each went;
/// success only when each is resolved after. Resolved letters are never sent, stale ones
/// only with `stale`.
async fn replay(
    store: &Store,
    letters: Vec<DeadLetter>,
    stale: bool,
    url: &str,
    secret: &str,
) -> Result<ExitCode, String> {
    // A resolved letter was applied: replayed after its record is gone (the retention,
    // `forget_older_than`), it would be applied again.
    let (skipped, letters): (Vec<_>, Vec<_>) = letters
        .into_iter()
        .partition(|letter| letter.resolved || (letter.reason == Reason::Stale && !stale));
    for letter in &skipped {
        let why = if letter.resolved {
            "resolved since (applied, or declined): not replayed"
        } else {
            "stale: not replayed without --stale"
        };
        say!("{}  {why}", named(letter));
    }
    if letters.is_empty() {
        say!("nothing to replay");
        return Ok(ExitCode::SUCCESS);
    }
    let agent = crate::agent(Duration::from_secs(60));
    let mut all_applied = true;
    for letter in &letters {
        let answer = {
            let (agent, url, secret, body) = (
                agent.clone(),
                url.to_owned(),
                secret.to_owned(),
                letter.body.clone(),
            );
            tokio::task::spawn_blocking(move || crate::deliver(&agent, &url, &secret, &body))
                .await
                .map_err(|error| error.to_string())?
        };
        let resolved = store
            .letter(&letter.key)
            .await?
            .is_some_and(|letter| letter.resolved);
        // A 2xx that left the letter unresolved (a 202 for a type still without a
        // handler) applied nothing.
        all_applied &= answer
            .as_ref()
            .is_ok_and(|answer| (200..300).contains(&answer.status))
            && resolved;
        match answer {
            Ok(answer) => say!(
                "{}  {}{} {}  {}",
                named(letter),
                answer.status,
                if answer.replayed {
                    " (applied before: replayed)"
                } else {
                    ""
                },
                if resolved {
                    "resolved"
                } else {
                    "still failing: kept, see records failed"
                },
                answer.body
            ),
            Err(error) => say!("{}  not delivered: {error}", named(letter)),
        }
    }
    Ok(if all_applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A kept delivery in one line's words: its type, id and store key.
fn named(letter: &DeadLetter) -> String {
    format!(
        "{} {} {}",
        letter.event_type, letter.delivery_id, letter.key
    )
}

impl Records {
    pub(crate) fn run(self) -> Result<ExitCode, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the runtime: {error}"))?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<ExitCode, String> {
        match self {
            Records::Show { delivery, store } => {
                let (key, described) = delivery.key()?;
                let store = store.open().await?;
                let record = store.record(&key).await?;
                let mut letter = store.letter(key.as_str()).await?;
                if letter.is_none() {
                    if let Some((game, event_type, id)) = delivery.ids() {
                        let by_ids = store
                            .letters_of(game, delivery.sandbox, event_type, id)
                            .await?;
                        letter = by_ids.into_iter().next();
                    }
                }
                say!("delivery   {described}");
                say!("store key  {key}");
                match (record, &letter) {
                    (Some(record), _) => print_record(&record),
                    (None, Some(letter)) => say!(
                        "state      failed {} times, last because {}",
                        letter.attempts,
                        because(letter)
                    ),
                    (None, None) => {
                        say!("state      unknown: no record (never delivered here, or forgotten)")
                    }
                }
                if let Some(letter) = letter {
                    print_letter(&letter);
                }
                Ok(ExitCode::SUCCESS)
            }
            Records::Stuck { older_than, store } => {
                let age = Duration::from_secs(older_than);
                let stuck = store.open().await?.stuck(age).await?;
                if stuck.is_empty() {
                    say!("no claim open for {older_than} s or longer");
                }
                for claim in &stuck {
                    print_stuck(claim);
                }
                Ok(ExitCode::SUCCESS)
            }
            Records::Failed { filter, store } => {
                let store = store.open().await?;
                let letters = store.list(&filter.filter()).await?;
                if letters.is_empty() {
                    say!(
                        "no failed delivery kept{}",
                        if filter.resolved { "" } else { " unresolved" }
                    );
                }
                for letter in &letters {
                    print_letter_line(letter);
                }
                Ok(ExitCode::SUCCESS)
            }
            Records::Replay {
                url,
                secrets,
                delivery,
                all,
                stale,
                filter,
                store,
            } => {
                let store = store.open().await?;
                let letters = if all {
                    store.list(&filter.filter()).await?
                } else {
                    delivery.letters(&store, &filter).await?
                };
                replay(&store, letters, stale, &url, &secrets.get()).await
            }
            Records::Forget {
                delivery,
                store,
                yes,
            } => {
                let (key, described) = delivery.key()?;
                let store = store.open().await?;
                say!("delivery   {described}");
                say!("store key  {key}");
                let letter = store.letter(key.as_str()).await?;
                if let Some(letter) = &letter {
                    print_letter(letter);
                }
                if !yes {
                    match store.record(&key).await? {
                        Some(record) => print_record(&record),
                        None if letter.is_some() => {}
                        None => say!("state      unknown: nothing to forget"),
                    }
                    eprintln!(
                        "not forgotten: pass --yes to remove this record (its next delivery then runs the handler again)"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                // The record first: a key a delivery holds right now is refused, and then
                // its letter stays too.
                let forgotten_record = store.forget(&key).await?;
                let forgotten_letter = store.letters().forget(key.as_str()).await;
                let forgotten_letter = forgotten_letter.map_err(|error| error.to_string())?;
                if forgotten_letter.is_some() {
                    say!("forgotten: the kept failed delivery");
                }
                match forgotten_record {
                    Some(record) => {
                        print_record(&record);
                        say!("forgotten: the next delivery of this key runs the handler again; inventory untouched");
                        Ok(ExitCode::SUCCESS)
                    }
                    None if forgotten_letter.is_some() => Ok(ExitCode::SUCCESS),
                    None => {
                        say!("state      unknown: nothing to forget");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    }
}

fn print_record(record: &Record) {
    let state = match &record.state {
        RecordState::Completed { .. } => "completed".to_owned(),
        RecordState::Running {
            lease_remaining: Some(lease),
        } => {
            format!("in progress (lease renewed, {} ms left)", lease.as_millis())
        }
        RecordState::Running {
            lease_remaining: None,
        } => "in progress (a delivery's transaction holds it now)".to_owned(),
        RecordState::Expired => "in progress, lease run out (the next delivery runs)".to_owned(),
        RecordState::Released => "released (the next delivery runs)".to_owned(),
        RecordState::Unanswered => {
            "committed without an answer (duplicates get 503 until forgotten)".to_owned()
        }
        other => format!("{other:?}"),
    };
    say!("state      {state}");
    if let Some(at) = record.claimed_at {
        say!("claimed    {}", when(at));
    }
    if let Some(at) = record.completed_at {
        say!("completed  {}", when(at));
    }
    if let Some(attempts) = record.attempts {
        say!("attempts   {attempts}");
    }
    if let RecordState::Completed {
        status,
        content_type,
        body,
    } = &record.state
    {
        say!("status     {status}");
        if let Some(content_type) = content_type {
            say!("type       {content_type}");
        }
        say!("body       {}", String::from_utf8_lossy(body));
    }
}

/// Why a kept delivery failed last, in words.
fn because(letter: &DeadLetter) -> String {
    format!(
        "{} ({})",
        letter.reason.as_str().replace('_', " "),
        letter.detail
    )
}

fn print_letter(letter: &DeadLetter) {
    let resolved = if letter.resolved {
        " (resolved: a delivery of its key was answered finally since: applied, or declined)"
    } else {
        ""
    };
    say!(
        "failed     {} times{resolved}, last because {}",
        letter.attempts,
        because(letter)
    );
    say!("first seen {}", when(letter.first_seen));
    say!("last seen  {}", when(letter.last_seen));
    say!(
        "replay     aghanim-webhook records replay --store-key {} --url <your endpoint>",
        letter.key
    );
}

fn print_letter_line(letter: &DeadLetter) {
    let age = SystemTime::now()
        .duration_since(letter.first_seen)
        .map_or(0, |age| age.as_secs());
    say!(
        "{age:>7} s  {}  {}{}  {}  {}  {} attempts{}  {}  {}",
        letter.event_type,
        letter.game_id,
        if letter.sandbox { " sandbox" } else { "" },
        letter.delivery_id,
        letter.reason.as_str(),
        letter.attempts,
        if letter.resolved { "  resolved" } else { "" },
        letter.status,
        letter.key
    );
}

fn print_stuck(claim: &StuckClaim) {
    let age = claim.age.map_or_else(
        || "age unknown".to_owned(),
        |age| format!("{} s", age.as_secs()),
    );
    say!(
        "{}  {age}  {}",
        claim.key.as_deref().unwrap_or("(key not visible)"),
        claim.holder
    );
}

/// `at` as RFC 3339 UTC, and how long ago.
fn when(at: SystemTime) -> String {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let ago = SystemTime::now()
        .duration_since(at)
        .map_or(0, |ago| ago.as_secs());
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z ({ago} s ago)",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_gregorian() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(super::civil_from_days(20_515), (2026, 3, 3));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
