//! Signatures made by Python's `hmac` with Aghanim's recipe (`tests/vectors/generate.py`)
//! are reproduced by `sign` and accepted by the verifier and the layer.

use crate::common;

use aghanim_webhook::{sign, AghanimSignatureLayer, Secret, Verifier};
use bytes::Bytes;
use common::stack;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tower::ServiceExt;

struct Vector {
    name: String,
    secret: String,
    timestamp: u64,
    body: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../vectors/vectors.json");
    let Value::Array(entries) = serde_json::from_str(text).expect("vectors.json parses") else {
        panic!("vectors.json is not an array");
    };
    let field = |entry: &Value, name: &str| entry[name].as_str().expect(name).to_owned();
    let vectors: Vec<Vector> = entries
        .iter()
        .map(|entry| Vector {
            name: field(entry, "name"),
            secret: field(entry, "secret"),
            timestamp: entry["timestamp"].as_u64().expect("timestamp"),
            body: match entry.get("body_repeat") {
                Some(repeat) => {
                    let pattern = repeat["pattern"].as_str().expect("pattern");
                    let len = repeat["len"].as_u64().expect("len") as usize;
                    pattern.repeat(len / pattern.len() + 1)[..len].to_owned()
                }
                None => field(entry, "body"),
            },
            signature: field(entry, "signature"),
        })
        .collect();
    assert!(vectors.len() >= 10, "too few vectors");
    vectors
}

#[test]
fn sign_reproduces_every_python_signature() {
    for vector in vectors() {
        let ours = sign(&vector.secret, vector.timestamp, &vector.body);
        assert_eq!(ours, vector.signature, "{}", vector.name);
    }
}

#[test]
fn verifier_accepts_every_python_signature_and_nothing_nearby() {
    for vector in vectors() {
        let verifier = Verifier::new(Secret::new(&vector.secret).unwrap());
        let timestamp = vector.timestamp.to_string();
        let verified = verifier.verify(
            timestamp.as_bytes(),
            vector.signature.as_bytes(),
            vector.body.as_bytes(),
            vector.timestamp,
        );
        assert_eq!(verified, Ok(vector.timestamp), "{}", vector.name);

        let mut altered = vector.body.clone().into_bytes();
        altered.push(b' ');
        let tampered = verifier.verify(
            timestamp.as_bytes(),
            vector.signature.as_bytes(),
            &altered,
            vector.timestamp,
        );
        assert!(tampered.is_err(), "{}", vector.name);
    }
}

#[tokio::test]
async fn layer_accepts_every_python_signature() {
    for vector in vectors() {
        let timestamp = vector.timestamp;
        let layer = AghanimSignatureLayer::new(&vector.secret).clock(move || timestamp);
        let (service, _) = stack(layer);
        let request = Request::post("/webhook")
            .header("x-aghanim-signature-timestamp", timestamp)
            .header("x-aghanim-signature", &vector.signature)
            .body(Full::<Bytes>::from(vector.body.clone()))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", vector.name);
    }
}
