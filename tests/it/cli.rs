#![cfg(feature = "cli")]
//! The `aghanim-webhook` command-line tool against the example server, in process.

use crate::common;

use crate::server_app;

use std::{
    net::SocketAddr,
    process::{Command, Output},
};

use aghanim_webhook::{events::EventType, idempotency::DEFAULT_RUN_TIMEOUT, sign, unix_now};
use common::SECRET;

const TOOL: &str = env!("CARGO_BIN_EXE_aghanim-webhook");

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            server_app::in_memory(SECRET, DEFAULT_RUN_TIMEOUT).router,
        )
        .await
    });
    address
}

/// Runs the tool with `args` off the runtime's threads; its output as text.
async fn tool(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new(TOOL)
            .args(&args)
            .env("AGHANIM_WEBHOOK_SECRET", SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_event_type_is_sent_and_answered_2xx() {
    let url = format!("http://{}/webhook", server().await);
    for event_type in EventType::DOCUMENTED {
        let event_type = event_type.as_str();
        let (ok, out, err) = tool(&["send", event_type, "--url", &url]).await;
        assert!(ok, "{event_type}: {out}{err}");
        assert!(out.starts_with("#1 200 "), "{event_type}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn five_deliveries_of_one_purchase_credit_once() {
    let url = format!("http://{}/webhook", server().await);
    let (ok, out, err) = tool(&[
        "send",
        "item.add",
        "--url",
        &url,
        "--repeat",
        "5",
        "--concurrency",
        "2",
        "--id",
        "five",
    ])
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().filter(|line| line.contains(" 200 ")).count(),
        5,
        "{out}"
    );
    assert_eq!(out.matches("(replayed)").count(), 4, "{out}");

    let (ok, out, _) = tool(&["send", "player.verify", "--url", &url]).await;
    assert!(ok);
    assert!(
        out.contains(r#""balances":[{"quantity":1,"sku":"gems_100"}]"#),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_prints_the_crates_signature_and_a_curl() {
    let file = std::env::temp_dir().join(format!("cli-sign-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"{"event_type":"player.verify","event_data":{"player_id":"testplayer"}}"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (ok, out, _) = tool(&["sign", path, "--timestamp", "1700000000"]).await;
    let body = std::fs::read(&file).unwrap();
    assert!(ok);
    assert!(
        out.contains("x-aghanim-signature-timestamp: 1700000000"),
        "{out}"
    );
    assert!(out.contains(&format!(
        "x-aghanim-signature: {}",
        sign(SECRET, 1_700_000_000, &body)
    )));
    assert!(out.contains("curl -i "));

    let (ok, _, err) = tool(&["sign", "/no/such/file.json"]).await;
    assert!(!ok && err.contains("/no/such/file.json"), "{err}");
    std::fs::write(&file, [0xff, 0xfe]).unwrap();
    let (ok, _, err) = tool(&["send", "--file", path, "--print-curl"]).await;
    assert!(!ok && err.contains("not UTF-8"), "{err}");
    let _ = std::fs::remove_file(&file);
}

fn captured(body: &str, timestamp: u64, signed_body: &str, secret: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: game.example\r\ncontent-type: application/json\r\n\
         x-aghanim-signature-timestamp: {timestamp}\r\nx-aghanim-signature: {}\r\n\r\n{body}",
        sign(secret, timestamp, signed_body)
    )
}

async fn diagnose(request: &str, extra: &[&str]) -> (bool, String) {
    let file = std::env::temp_dir().join(format!(
        "cli-diagnose-{}-{}.http",
        std::process::id(),
        request.len()
    ));
    std::fs::write(&file, request).unwrap();
    let mut args = vec!["diagnose", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (ok, out, err) = tool(&args).await;
    let _ = std::fs::remove_file(&file);
    (ok, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn diagnose_names_the_check_that_fails() {
    let body = r#"{"event_type":"item.add","event_data":{"player_id":"p"}}"#;
    let now = unix_now();

    let (ok, out) = diagnose(&captured(body, now, body, SECRET), &[]).await;
    assert!(ok && out.contains("verdict: accepted"), "{out}");

    let (ok, out) = diagnose(&captured(body, now, body, "another-secret"), &[]).await;
    assert!(!ok && out.contains("the secret is not the one"), "{out}");

    let tampered = body.replace(r#""p""#, r#""attacker""#);
    let (ok, out) = diagnose(&captured(&tampered, now, body, SECRET), &[]).await;
    assert!(!ok && out.contains("does not match"), "{out}");

    let with_newline = format!("{body}\n");
    let (ok, out) = diagnose(&captured(&with_newline, now, body, SECRET), &[]).await;
    assert!(!ok && out.contains("trailing newline was added"), "{out}");

    // The clock given, so that a second passing before the tool reads it cannot make
    // it 901 s.
    let at = now.to_string();
    let (ok, out) = diagnose(&captured(body, now - 900, body, SECRET), &["--now", &at]).await;
    assert!(!ok && out.contains("900 s"), "{out}");

    let unsigned = format!("POST /webhook HTTP/1.1\r\nhost: x\r\n\r\n{body}");
    let (ok, out) = diagnose(&unsigned, &[]).await;
    assert!(
        !ok && out.contains("no x-aghanim-signature-timestamp header"),
        "{out}"
    );

    let not_hex = captured(body, now, body, SECRET)
        .replace("x-aghanim-signature: ", "x-aghanim-signature: sha256=");
    let (ok, out) = diagnose(&not_hex, &[]).await;
    assert!(!ok && out.contains("not exactly 64 hex digits"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_has_help_and_bad_arguments_are_clear() {
    for command in [
        &["--help"][..],
        &["send", "--help"],
        &["sign", "--help"],
        &["diagnose", "--help"],
    ] {
        let (ok, out, _) = tool(command).await;
        assert!(ok && out.contains("Usage:"), "{command:?}: {out}");
    }
    let (ok, _, err) = tool(&["send", "item.add", "--repeat", "0"]).await;
    assert!(!ok && err.contains("--repeat"), "{err}");
    let (ok, out, _) = tool(&["send", "item.add", "--url", "http://127.0.0.1:1/webhook"]).await;
    assert!(!ok && out.contains("failed:"), "{out}");
    let (ok, _, err) = tool(&["send"]).await;
    assert!(!ok && err.contains("required"), "{err}");
}

/// A real `item.add` as Aghanim documents it, keys in its own (unsorted) order.
const REAL_ITEM_ADD: &str = r#"{"event_id":"whevt_eSeXmERbUGh","game_id":"gm_exoqPsmvqRu","event_type":"item.add","event_time":1725548450,"event_data":{"player_id":"2D2R-OP3C","items":[{"id":"itm_eSeXmERbUGh","name":"Crystals","description":"A pouch of crystals","sku":"crystals_100","quantity":1,"price":199,"price_decimal":1.99,"currency":"USD","type":"item","nested_items":null}],"reason":"Order paid ord_eSeXmERbUGh"},"idempotency_key":"ord_eSeXmERbUGh","request_id":null,"sandbox":false,"trigger":null,"transaction_id":"whtx_eSeXmERbUGh","context":null}"#;

/// The same, pretty-printed by something that kept the key order (Python's `json.dumps(..,
/// indent=2)`, a proxy's logger, a pasted copy).
const REAL_ITEM_ADD_PRETTY: &str = r#"{
  "event_id": "whevt_eSeXmERbUGh",
  "game_id": "gm_exoqPsmvqRu",
  "event_type": "item.add",
  "event_time": 1725548450,
  "event_data": {
    "player_id": "2D2R-OP3C",
    "items": [
      {
        "id": "itm_eSeXmERbUGh",
        "name": "Crystals",
        "description": "A pouch of crystals",
        "sku": "crystals_100",
        "quantity": 1,
        "price": 199,
        "price_decimal": 1.99,
        "currency": "USD",
        "type": "item",
        "nested_items": null
      }
    ],
    "reason": "Order paid ord_eSeXmERbUGh"
  },
  "idempotency_key": "ord_eSeXmERbUGh",
  "request_id": null,
  "sandbox": false,
  "trigger": null,
  "transaction_id": "whtx_eSeXmERbUGh",
  "context": null
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn diagnose_recognises_a_real_delivery_pretty_printed_in_its_own_key_order() {
    let now = unix_now();
    let request = captured(REAL_ITEM_ADD_PRETTY, now, REAL_ITEM_ADD, SECRET);
    let (ok, out) = diagnose(&request, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("the JSON was re-serialized (compact; envelope keys kept, nested keys kept)"),
        "{out}"
    );
    assert!(!out.contains("the secret is not the one"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_prints_the_delivery_ids_and_the_records_line_that_finds_it() {
    let url = format!("http://{}/webhook", server().await);
    let (ok, out, err) = tool(&["send", "item.add", "--url", &url, "--id", "ids1"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("event_id whevt_ids1  idempotency_key ord_ids1  game gm_cli  sandbox"),
        "{out}"
    );
    assert!(
        out.contains(
            "aghanim-webhook records show --game 'gm_cli' --sandbox --event-type 'item.add' --key 'ord_ids1'"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_sends_an_event_type_aghanim_does_not_document() {
    let url = format!("http://{}/webhook", server().await);
    let (ok, out, err) = tool(&["send", "quest.done", "--url", &url]).await;
    // The example server's fallback refuses types nobody documents: the answer shows it
    // was sent.
    assert!(!ok, "{out}{err}");
    assert!(
        out.starts_with("#1 400 ") && out.contains("unknown_event_type"),
        "{out}"
    );
    assert!(err.contains("not a documented event type"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_prints_the_body_file_as_an_absolute_path() {
    let directory = std::env::temp_dir();
    let name = format!("cli-sign-relative-{}.json", std::process::id());
    std::fs::write(
        directory.join(&name),
        r#"{"event_type":"x","event_data":{}}"#,
    )
    .unwrap();
    let output = tokio::task::spawn_blocking({
        let (directory, name) = (directory.clone(), name.clone());
        move || {
            Command::new(TOOL)
                .args(["sign", &name])
                .current_dir(directory)
                .env("AGHANIM_WEBHOOK_SECRET", SECRET)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(directory.join(&name));
    let out = String::from_utf8(output.stdout).unwrap();
    let absolute = std::fs::canonicalize(&directory).unwrap().join(&name);
    assert!(
        out.contains(&format!("--data-binary @'{}'", absolute.display())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_standard_output_ends_the_tool_quietly() {
    // More than a pipe holds, so that the tool must write after the reader is gone.
    let file = std::env::temp_dir().join(format!("cli-pipe-{}.json", std::process::id()));
    let big = format!(
        r#"{{"event_type":"x","event_data":{{"pad":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    std::fs::write(&file, big).unwrap();
    let path = file.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(TOOL)
            .args(["send", "--file", &path, "--print-curl"])
            .env("AGHANIM_WEBHOOK_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head -0`
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&file);
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{:?}: {err}", output.status);
    assert!(!err.contains("panicked"), "{err}");
}
