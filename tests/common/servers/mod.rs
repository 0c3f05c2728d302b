//! Private, throwaway Redis and PostgreSQL servers, for the tests and the idempotency
//! benchmark (which includes this folder with `#[path]`).

#[cfg(feature = "postgres")]
pub mod pgbouncer;
#[cfg(feature = "postgres")]
pub mod postgres_server;
pub mod redis_server;

mod reaper;
mod skipped;
