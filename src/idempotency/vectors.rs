//! The store format pinned: every fingerprint and store key in
//! `tests/vectors/idempotency.json` (made by `tests/vectors/idempotency.py` from their
//! documented form) must come out byte for byte. A failure here is a change of the
//! format that records persist in: read the rule in that script before touching either.

use serde::Deserialize;

use super::{fingerprint::fingerprint, key::Delivery, Policy};
use crate::{events::peek_event_type, sign::lower_hex};

#[derive(Deserialize)]
struct Vectors {
    fingerprints: Vec<FingerprintVector>,
    store_keys: Vec<KeyVector>,
}

#[derive(Deserialize)]
struct FingerprintVector {
    name: String,
    event_data: String,
    fingerprint: String,
}

#[derive(Deserialize)]
struct KeyVector {
    name: String,
    body: String,
    memory: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    postgres: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../../tests/vectors/idempotency.json"))
        .expect("idempotency.json parses")
}

#[test]
fn fingerprints_are_pinned() {
    let vectors = vectors();
    assert!(vectors.fingerprints.len() >= 15);
    for vector in vectors.fingerprints {
        assert_eq!(
            lower_hex(&fingerprint(&vector.event_data)),
            vector.fingerprint,
            "{}",
            vector.name
        );
    }
}

/// The key the layer gives `body` under its type's default policy.
fn delivery(body: &str) -> Delivery {
    let event_type = peek_event_type(body.as_bytes()).expect("an event type");
    let per_payload = match Policy::default_for(&event_type) {
        Policy::Deduplicate => false,
        Policy::DeduplicateAllowingChanges => true,
        Policy::PassThrough => panic!("{event_type} is not deduplicated"),
    };
    Delivery::of(body.as_bytes(), per_payload).expect("a deduplicated delivery")
}

#[test]
fn store_keys_are_pinned() {
    let vectors = vectors();
    assert!(vectors.store_keys.len() >= 15);
    for vector in vectors.store_keys {
        let delivery = delivery(&vector.body);
        // The memory store and the PostgreSQL table's `key` keep the digest as it is.
        assert_eq!(
            delivery.store_key.as_str(),
            vector.memory,
            "{}",
            vector.name
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            delivery.store_key.as_str(),
            vector.postgres,
            "{}",
            vector.name
        );
        #[cfg(feature = "redis")]
        assert_eq!(
            super::store::redis_key(super::DEFAULT_REDIS_PREFIX, delivery.store_key.as_str()),
            vector.redis,
            "{}",
            vector.name
        );
    }
}
