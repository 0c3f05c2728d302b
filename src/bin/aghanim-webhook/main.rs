//! `aghanim-webhook`: send, sign and diagnose Aghanim webhook deliveries, and find their
//! records in the idempotency store.
//!
//! ```text
//! cargo install --path . --features cli
//! aghanim-webhook send item.add --url http://127.0.0.1:8000/webhook --repeat 5
//! aghanim-webhook sign event.json
//! aghanim-webhook diagnose --secret "$AGHANIM_WEBHOOK_SECRET" captured.http
//! aghanim-webhook records show --game gm_1 --event-type item.add --key ord_1 --database-url "$DATABASE_URL"
//! ```

/// `println!` that ends the tool quietly when standard output is closed (`| head`),
/// instead of panicking on the broken pipe.
macro_rules! say {
    () => {
        $crate::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod diagnose;
mod records;

use std::{
    fs,
    io::Read,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use aghanim_webhook::{
    events::EventType, idempotency::Policy, sign, testing::Sample, unix_now, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use clap::{Args, Parser, Subcommand};

/// The example server's development secret, used when no secret is given.
const DEVELOPMENT_SECRET: &str = "aghanim-webhook-development-secret";
const DEFAULT_URL: &str = "http://127.0.0.1:8000/webhook";

/// Send, sign and diagnose Aghanim webhook deliveries; find their idempotency records.
#[derive(Parser)]
#[command(
    name = "aghanim-webhook",
    version,
    about = "Send, sign and diagnose Aghanim webhook deliveries; find their idempotency records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a signed sample of any documented event type (or a file) to an endpoint, as
    /// Aghanim would, and print each answer.
    Send(Send),
    /// Print the signature headers and a curl command for a payload.
    Sign(Sign),
    /// Say which check a captured request fails, and why.
    Diagnose(Diagnose),
    /// Look up, list or forget idempotency records in your PostgreSQL or Redis store.
    #[command(subcommand)]
    Records(records::Records),
}

#[derive(Args)]
struct Secrets {
    /// The webhook secret [default: $AGHANIM_WEBHOOK_SECRET, else the example server's
    /// development secret]
    #[arg(long, env = "AGHANIM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

impl Secrets {
    fn get(self) -> String {
        self.secret.filter(|secret| !secret.is_empty()).unwrap_or_else(|| {
            eprintln!("no --secret and no AGHANIM_WEBHOOK_SECRET: using the example server's development secret");
            DEVELOPMENT_SECRET.to_owned()
        })
    }
}

#[derive(Args)]
struct Send {
    /// The event type to sample, e.g. item.add, player.verify, store.get, order.paid,
    /// payment.succeeded, subscription.renewed, coupon.redeemed; a type Aghanim does not
    /// document is sent too (with event_data {"player_id": ...}), to try a fallback
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    event_type: Option<String>,
    /// Send this file's bytes instead of a sample
    #[arg(long)]
    file: Option<PathBuf>,
    /// The endpoint
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    #[command(flatten)]
    secrets: Secrets,
    /// The player the sample is for
    #[arg(long, default_value = "testplayer")]
    player: String,
    /// The sample's ids (event_id whevt_ID, idempotency_key ord_ID) [default: from the time]
    #[arg(long)]
    id: Option<String>,
    /// Deliveries of the same event, with the same ids, as Aghanim's retries would send them
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// How many of them at once
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Seconds between deliveries (per concurrent sender)
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// Print the signed curl command instead of sending
    #[arg(long)]
    print_curl: bool,
}

#[derive(Args)]
struct Sign {
    /// The payload file, or - for standard input
    input: String,
    #[command(flatten)]
    secrets: Secrets,
    /// The signature timestamp, Unix seconds [default: now]
    #[arg(long)]
    timestamp: Option<u64>,
    /// The URL in the printed curl command
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
}

#[derive(Args)]
struct Diagnose {
    /// The captured request: raw HTTP (request line, headers, blank line, body), or
    /// header lines only with --body; - for standard input
    input: String,
    /// The body, when the capture holds only the headers
    #[arg(long)]
    body: Option<PathBuf>,
    #[command(flatten)]
    secrets: Secrets,
    /// The time to check the timestamp against, Unix seconds [default: now]
    #[arg(long)]
    now: Option<u64>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Send(send) => send.run(),
        Command::Sign(sign) => sign.run(),
        Command::Diagnose(diagnose) => diagnose.run(),
        Command::Records(records) => records.run(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to standard output; a reader gone (a broken pipe) ends the tool
/// with success and no message, as `head` expects of the commands before it.
fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: standard output: {error}");
        std::process::exit(1);
    }
}

fn read_input(input: &str) -> Result<Vec<u8>, String> {
    if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|error| format!("standard input: {error}"))?;
        Ok(bytes)
    } else {
        fs::read(input).map_err(|error| format!("{input}: {error}"))
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn curl(url: &str, timestamp: u64, signature: &str, data: &str) -> String {
    format!(
        "curl -i {url} -H 'content-type: application/json' -H '{TIMESTAMP_HEADER}: {timestamp}' \
         -H '{SIGNATURE_HEADER}: {signature}' --data-binary {data}",
        url = shell_quote(url),
    )
}

impl Send {
    fn run(self) -> Result<ExitCode, String> {
        let secret = self.secrets.get();
        let body = match (&self.event_type, &self.file) {
            (_, Some(file)) => {
                fs::read(file).map_err(|error| format!("{}: {error}", file.display()))?
            }
            (Some(event_type), None) => {
                let event_type = EventType::from(event_type.as_str());
                if !event_type.is_documented() {
                    eprintln!(
                        "note: {event_type} is not a documented event type: sending it with \
                         event_data {{\"player_id\": ...}}, as a type Aghanim adds later would come"
                    );
                }
                let id = self
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("cli{}", unix_now()));
                Sample::with_ids(event_type, &self.player, &id)
                    .game("gm_cli")
                    .sandbox(true)
                    .to_json()
                    .into_bytes()
            }
            (None, None) => return Err("name an event type or --file".into()),
        };
        if self.print_curl {
            let text = std::str::from_utf8(&body).map_err(|_| {
                "the payload is not UTF-8: curl --data-binary @file instead".to_owned()
            })?;
            let timestamp = unix_now();
            say!(
                "{}",
                curl(
                    &self.url,
                    timestamp,
                    &sign(&secret, timestamp, &body),
                    &shell_quote(text)
                )
            );
            return Ok(ExitCode::SUCCESS);
        }
        if self.repeat == 0
            || self.concurrency == 0
            || !(self.delay >= 0.0 && self.delay.is_finite())
        {
            return Err(
                "--repeat and --concurrency must be at least 1, --delay a number of seconds".into(),
            );
        }
        let shared = Arc::new((
            agent(Duration::from_secs(30)),
            body,
            secret,
            self.url.clone(),
        ));
        let senders = self.concurrency.min(self.repeat);
        let mut all_2xx = true;
        let threads: Vec<_> = (0..senders)
            .map(|sender| {
                let shared = Arc::clone(&shared);
                let (repeat, delay) = (self.repeat, self.delay);
                std::thread::spawn(move || {
                    let (agent, body, secret, url) = &*shared;
                    let mut lines = Vec::new();
                    for delivery in (sender..repeat).step_by(senders as usize) {
                        if delivery >= senders && delay > 0.0 {
                            std::thread::sleep(Duration::from_secs_f64(delay));
                        }
                        lines.push((delivery, deliver(agent, url, secret, body)));
                    }
                    lines
                })
            })
            .collect();
        let mut answers: Vec<_> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap_or_default())
            .collect();
        answers.sort_by_key(|(delivery, _)| *delivery);
        for (delivery, answer) in answers {
            match answer {
                Ok(answer) => {
                    all_2xx &= (200..300).contains(&answer.status);
                    say!(
                        "#{} {} {:.1} ms{} {}",
                        delivery + 1,
                        answer.status,
                        answer.latency.as_secs_f64() * 1000.0,
                        if answer.replayed { " (replayed)" } else { "" },
                        answer.body
                    );
                }
                Err(error) => {
                    all_2xx = false;
                    say!("#{} failed: {error}", delivery + 1);
                }
            }
        }
        for line in delivery_ids(&shared.1) {
            say!("{line}");
        }
        Ok(if all_2xx {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The delivery's ids, and the `records show` command that finds its record (under
/// the idempotency layer's default policy), for what `send` printed.
fn delivery_ids(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(event)) = serde_json::from_slice(body) else {
        return vec!["delivery   not a JSON object: no ids to find it by".into()];
    };
    let text = |field: &str| event.get(field).and_then(|value| value.as_str());
    let Some(event_type) = text("event_type") else {
        return vec!["delivery   no event_type: no record to find".into()];
    };
    let game = text("game_id").unwrap_or("");
    let sandbox = event.get("sandbox").and_then(serde_json::Value::as_bool) == Some(true);
    let key = text("idempotency_key").filter(|key| !key.is_empty());
    let event_id = text("event_id").filter(|id| !id.is_empty());
    let mut lines = vec![format!(
        "delivery   {event_type}  event_id {}  idempotency_key {}  game {}  {}",
        event_id.unwrap_or("-"),
        key.unwrap_or("-"),
        if game.is_empty() { "-" } else { game },
        if sandbox { "sandbox" } else { "live" },
    )];
    let event_type = EventType::from(event_type);
    let record = match Policy::default_for(&event_type) {
        Policy::Deduplicate => match (key, event_id) {
            (Some(key), _) => format!("--key {}", shell_quote(key)),
            (None, Some(id)) => format!("--event-id {}", shell_quote(id)),
            (None, None) => {
                lines.push("record     none: no idempotency_key nor event_id to key it by".into());
                return lines;
            }
        },
        Policy::DeduplicateAllowingChanges => {
            lines.push(
                "record     keyed by its payload under the default policy: aghanim-webhook records show \
                 --body FILE --per-payload, FILE holding the body sent"
                    .into(),
            );
            return lines;
        }
        _ => {
            lines.push(format!(
                "record     none: the idempotency layer's default policy does not deduplicate {event_type}"
            ));
            return lines;
        }
    };
    lines.push(format!(
        "record     aghanim-webhook records show --game {}{} --event-type {} {record}",
        shell_quote(game),
        if sandbox { " --sandbox" } else { "" },
        shell_quote(event_type.as_str()),
    ));
    lines
}

struct Answer {
    status: u16,
    latency: Duration,
    replayed: bool,
    body: String,
}

/// An HTTP client that reads every answer, whatever its status, each exchange within
/// `timeout`.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// One delivery, signed at the moment it is sent.
fn deliver(agent: &ureq::Agent, url: &str, secret: &str, body: &[u8]) -> Result<Answer, String> {
    let timestamp = unix_now();
    let started = Instant::now();
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "aghanim-webhook-cli")
        .header(TIMESTAMP_HEADER.as_str(), timestamp.to_string())
        .header(SIGNATURE_HEADER.as_str(), sign(secret, timestamp, body))
        .send(body)
        .map_err(|error| format!("{url}: {error}"))?;
    let latency = started.elapsed();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|error| format!("(unreadable body: {error})"));
    Ok(Answer {
        status: response.status().as_u16(),
        latency,
        replayed,
        body: text,
    })
}

impl Sign {
    fn run(self) -> Result<ExitCode, String> {
        let secret = self.secrets.get();
        let timestamp = self.timestamp.unwrap_or_else(unix_now);
        let body = read_input(&self.input)?;
        let signature = sign(&secret, timestamp, &body);
        say!("{TIMESTAMP_HEADER}: {timestamp}");
        say!("{SIGNATURE_HEADER}: {signature}");
        say!();
        let data = if self.input != "-" {
            // Absolute, so that the command works from any directory it is pasted in.
            let path = fs::canonicalize(&self.input)
                .map_err(|error| format!("{}: {error}", self.input))?;
            format!("@{}", shell_quote(&path.to_string_lossy()))
        } else {
            let text = std::str::from_utf8(&body).map_err(|_| {
                "the payload is not UTF-8: save it to a file and pass the file".to_owned()
            })?;
            shell_quote(text)
        };
        say!("{}", curl(&self.url, timestamp, &signature, &data));
        Ok(ExitCode::SUCCESS)
    }
}

impl Diagnose {
    fn run(self) -> Result<ExitCode, String> {
        let secret = self.secrets.get();
        let raw = read_input(&self.input)?;
        let body = match &self.body {
            Some(path) => {
                Some(fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?)
            }
            None => None,
        };
        let captured = diagnose::parse(&raw, body)?;
        let (accepted, findings) =
            diagnose::diagnose(&captured, &secret, self.now.unwrap_or_else(unix_now))?;
        for finding in findings {
            say!("{finding}");
        }
        Ok(if accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
