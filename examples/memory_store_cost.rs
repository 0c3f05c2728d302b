//! What a full `MemoryStore` costs: fills one to its default capacity with records as
//! the layer leaves them (a 64-hex key and fingerprint, the answer `{"status":"ok"}`
//! with its content type) and prints the process's resident memory before and after;
//! then the same for its dead letters, at their default bound, each holding a
//! 394-byte `item.add` delivery.
//!
//! ```text
//! cargo run --release --example memory_store_cost
//! ```

use std::time::Duration;

use aghanim_webhook::{
    dead_letter::{DeadLetter, DeadLetters, MemoryDeadLetters, Reason, DEFAULT_MAX_DEAD_LETTERS},
    idempotency::{
        ClaimRequest, IdempotencyStore, MemoryStore, OwnerToken, StoredResponse,
        DEFAULT_MEMORY_CAPACITY, DEFAULT_RETENTION,
    },
};
use bytes::Bytes;

/// Resident memory in bytes, from `/proc/self/statm` (Linux).
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn digest(serial: usize, salt: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{salt}{serial}"));
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The keys and fingerprints are made first, so that only the store is measured.
    let records: Vec<(String, String)> = (0..DEFAULT_MEMORY_CAPACITY)
        .map(|serial| (digest(serial, "key"), digest(serial, "fingerprint")))
        .collect();
    let answer = StoredResponse {
        status: 200,
        content_type: Some("application/json".to_owned()),
        body: Bytes::from_static(br#"{"status":"ok"}"#),
    };
    let store = MemoryStore::new();
    let before = resident().ok_or("no /proc/self/statm")?;
    for (key, fingerprint) in &records {
        let owner = OwnerToken::random();
        let claim = ClaimRequest::new(
            owner.clone(),
            fingerprint.as_str(),
            Duration::from_secs(15),
            DEFAULT_RETENTION,
        );
        store.claim(key, &claim).await?;
        store
            .complete(key, &owner, &answer, DEFAULT_RETENTION)
            .await?;
    }
    let after = resident().ok_or("no /proc/self/statm")?;
    let grown = after.saturating_sub(before);
    println!(
        "a full MemoryStore ({} records): resident memory {:.1} MiB -> {:.1} MiB, {:.1} MiB for the store, {} bytes per record",
        store.len(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        grown as f64 / 1048576.0,
        grown / store.len() as u64,
    );

    let letters: Vec<DeadLetter> = (0..DEFAULT_MAX_DEAD_LETTERS)
        .filter_map(|serial| {
            let body = format!(
                r#"{{"event_id":"whevt_{serial:024}","event_type":"item.add","game_id":"gm_2qLJ6z7q","sandbox":false,"idempotency_key":"ord_{serial:024}","event_data":{{"player_id":"player_{serial:016}","items":[{{"sku":"gems_pack_500","name":"500 gems","quantity":1,"price":499,"currency":"USD"}}],"order_id":"ord_{serial:024}","transaction_id":"tx_{serial:024}"}}}}"#
            );
            let detail = "500 internal: inventory constraint violated";
            DeadLetter::of_delivery(body.as_bytes(), false, Reason::HandlerFailed, 500, detail)
        })
        .collect();
    let body_bytes = letters.first().map_or(0, |letter| letter.body.len());
    let kept = MemoryDeadLetters::new();
    let before = resident().ok_or("no /proc/self/statm")?;
    for letter in &letters {
        kept.keep(letter).await?;
    }
    drop(letters);
    let after = resident().ok_or("no /proc/self/statm")?;
    let grown = after.saturating_sub(before);
    println!(
        "dead letters at their bound ({} letters of {body_bytes}-byte deliveries): {:.1} MiB, {} bytes per letter",
        kept.len(),
        grown as f64 / 1048576.0,
        grown / kept.len() as u64,
    );
    Ok(())
}
