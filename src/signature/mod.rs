//! The signature middleware: [`AghanimSignatureLayer`] and its service, future and bodies.

pub mod body;
mod budget;
mod buffer;
mod future;
mod layer;
mod service;

pub(crate) use body::{BufferedBody, ResponseBody};
pub use future::ResponseFuture;
pub use layer::{AghanimSignatureLayer, DEFAULT_BODY_LIMIT, DEFAULT_BUFFER_BUDGET};
pub use service::AghanimSignature;
