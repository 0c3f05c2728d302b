//! What a deduplicated delivery was answered, read off the response: the idempotency
//! tests on every store and the PostgreSQL tests compare these.

use std::fmt::Debug;

use aghanim_webhook::idempotency::IdempotencyOutcome;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

#[derive(Debug)]
pub struct Sent {
    pub status: StatusCode,
    pub outcome: Option<IdempotencyOutcome>,
    pub replayed: bool,
    pub retry_after: Option<String>,
    pub body: String,
}

/// Sends `request` through `stack` (owned, so that it can be spawned) and reads the answer.
pub async fn send_owned<S, B>(stack: S, request: Request<Full<Bytes>>) -> Result<Sent, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    let response = stack.oneshot(request).await?;
    let outcome = response.extensions().get::<IdempotencyOutcome>().copied();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(Sent {
        status,
        outcome,
        replayed,
        retry_after,
        body: String::from_utf8(body.to_vec()).unwrap(),
    })
}
