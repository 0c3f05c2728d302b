//! The signature middleware: [`AghanimSignatureLayer`] and its service, future and bodies.

mod budget;
mod buffer;
mod config;
mod future;
mod layer;
mod metrics;
mod service;
mod trace;

pub use future::ResponseFuture;
pub use layer::{AghanimSignatureLayer, DEFAULT_BODY_LIMIT, DEFAULT_BUFFER_BUDGET};
pub use service::AghanimSignature;
