//! The integration tests, one binary: linked once, run in one process, sharing one
//! private Redis and one private PostgreSQL (each test its own keys or database).
//! `tests/allocations.rs` is a binary of its own, since it installs a global allocator.

#[path = "../common/mod.rs"]
mod common;
// The example game server's webhook stack, which the end-to-end tests and the CLI's
// tests run in process.
#[path = "../../examples/server/app.rs"]
mod server_app;

mod cli;
mod dead_letters;
mod dispatch;
mod e2e;
mod events;
mod extract;
mod hostile;
mod idempotency;
mod layer;
mod metrics;
mod postgres;
mod properties;
mod records;
mod testing;
mod tracing;
mod vectors;
