//! A plain hyper 1 service behind the signature layer, shared with the end-to-end tests.

use std::{convert::Infallible, time::Duration};

use aghanim_webhook::{body::BufferedBody, AghanimSignatureLayer};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder};
use tower_http::timeout::TimeoutLayer;

/// How long a client may take to send its headers; hyper needs a timer to enforce it.
const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// How long a whole request may take, body included: the signature layer waits as long
/// as the body takes, so a client that stalls mid-body is cut off here, with 408.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Serves every connection `listener` accepts; only verified webhooks reach `handle`.
pub async fn serve(listener: TcpListener, secret: &str) -> std::io::Result<()> {
    let service = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_DEADLINE,
        ))
        .layer(AghanimSignatureLayer::new(secret))
        .service(service_fn(handle));
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // A client that hangs up mid-request is not the server's problem.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Acknowledges every verified event; a real game would parse the bytes and dispatch on
/// `event_type`. The body yields exactly the bytes that were verified.
async fn handle(request: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let event = request.into_body().collect().await?.to_bytes();
    println!("verified webhook: {} bytes", event.len());
    let mut response = Response::new(Full::new(Bytes::from_static(br#"{"status":"ok"}"#)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
