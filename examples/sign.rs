//! Signs any payload the way Aghanim does, to test a deployed endpoint by hand.
//!
//! ```text
//! cargo run --example sign -- [--secret S] [--timestamp T] [--url U] <file|->
//! ```
//!
//! The secret defaults to `AGHANIM_WEBHOOK_SECRET`, else to the example server's
//! development secret; the timestamp to now; the URL to the example server.

use std::{env, error::Error, fs, io::Read, process::ExitCode};

use aghanim_webhook::{sign, unix_now, SIGNATURE_HEADER, TIMESTAMP_HEADER};

const DEVELOPMENT_SECRET: &str = "aghanim-webhook-development-secret";
const USAGE: &str =
    "usage: cargo run --example sign -- [--secret S] [--timestamp T] [--url U] <file|->";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut secret = env::var("AGHANIM_WEBHOOK_SECRET")
        .ok()
        .filter(|secret| !secret.is_empty());
    let mut timestamp = None;
    let mut url = "http://127.0.0.1:8000/webhook".to_owned();
    let mut input = None;

    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--secret" => secret = Some(value()?),
            "--timestamp" => timestamp = Some(value()?.parse::<u64>()?),
            "--url" => url = value()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if input.is_none() => input = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}").into()),
        }
    }
    let input = input.ok_or("name a payload file, or - for standard input")?;
    let secret = secret.unwrap_or_else(|| {
        eprintln!("no --secret and no AGHANIM_WEBHOOK_SECRET: using the example server's development secret");
        DEVELOPMENT_SECRET.to_owned()
    });
    let timestamp = timestamp.unwrap_or_else(unix_now);

    let body = if input == "-" {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body)?;
        body
    } else {
        fs::read(&input).map_err(|error| format!("{input}: {error}"))?
    };
    let signature = sign(&secret, timestamp, &body);

    println!("{TIMESTAMP_HEADER}: {timestamp}");
    println!("{SIGNATURE_HEADER}: {signature}");
    println!();
    let data = if input != "-" {
        format!("@{}", shell_quote(&input))
    } else if let Ok(text) = std::str::from_utf8(&body) {
        shell_quote(text)
    } else {
        return Err("the payload is not UTF-8: save it to a file and pass the file".into());
    };
    println!(
        "curl -i {url} -H 'content-type: application/json' \
         -H '{TIMESTAMP_HEADER}: {timestamp}' -H '{SIGNATURE_HEADER}: {signature}' \
         --data-binary {data}",
        url = shell_quote(&url),
    );
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
