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

/// The deliveries of `tests/vectors/idempotency.json` with the keys each store must
/// write for them (the store format; the rule for changing it is in that file's
/// script).
#[cfg(feature = "idempotency")]
fn store_key_vectors(store: &str) -> Vec<(String, String)> {
    let vectors: Value = serde_json::from_str(include_str!("../vectors/idempotency.json"))
        .expect("idempotency.json parses");
    vectors["store_keys"]
        .as_array()
        .expect("store_keys")
        .iter()
        .map(|vector| {
            let text = |field: &str| vector[field].as_str().expect(field).to_owned();
            (text("body"), text(store))
        })
        .collect()
}

/// Sends every vector delivery through the layer on `store`; 200 to each.
#[cfg(feature = "idempotency")]
async fn deliver_all(
    idempotency: aghanim_webhook::idempotency::IdempotencyLayer,
    bodies: &[String],
) {
    use aghanim_webhook::{body::BufferedBody, idempotency::DeliveryTransaction};
    use http::Response;

    let service = tower::ServiceBuilder::new()
        .layer(common::layer())
        .layer(idempotency)
        .service_fn(|request: Request<BufferedBody>| async move {
            // On the transactional store the delivery's transaction must be there.
            let transactional = request.extensions().get::<DeliveryTransaction>().is_some();
            Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from(format!(
                "{{\"transactional\":{transactional}}}"
            ))))
        });
    for body in bodies {
        let response = service
            .clone()
            .oneshot(common::signed_text(body.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{body}");
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_writes_the_pinned_keys_under_the_default_prefix() {
    use aghanim_webhook::idempotency::{IdempotencyLayer, RedisStore};

    // A server of its own: the default prefix, and nothing else in it.
    let Some(server) = common::redis_server::RedisServer::start() else {
        return;
    };
    let vectors = store_key_vectors("redis");
    let bodies: Vec<String> = vectors.iter().map(|(body, _)| body.clone()).collect();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    deliver_all(IdempotencyLayer::new(store), &bodies).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut written: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut pinned: Vec<String> = vectors.into_iter().map(|(_, key)| key).collect();
    for keys in [&mut written, &mut pinned] {
        keys.sort();
        keys.dedup();
    }
    assert_eq!(written, pinned);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_writes_the_pinned_keys() {
    use aghanim_webhook::idempotency::{IdempotencyLayer, PostgresStore};

    let Some(server) = common::postgres_server::PostgresServer::shared() else {
        return;
    };
    let pool = sqlx::PgPool::connect(&server.database()).await.unwrap();
    let store = PostgresStore::new(pool.clone());
    store.migrate().await.unwrap();
    let vectors = store_key_vectors("postgres");
    let bodies: Vec<String> = vectors.iter().map(|(body, _)| body.clone()).collect();
    deliver_all(IdempotencyLayer::transactional(store), &bodies).await;
    let written: Vec<String> =
        sqlx::query_scalar("SELECT key FROM aghanim_idempotency ORDER BY key")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut pinned: Vec<String> = vectors.into_iter().map(|(_, key)| key).collect();
    pinned.sort();
    pinned.dedup();
    assert_eq!(written, pinned);
}
