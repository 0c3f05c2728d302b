//! The transactional path (feature `postgres`): one database transaction per delivery
//! holds the claim, the handler's writes and the recorded answer.

mod connection;
mod failure;
mod gate;
mod letters;
mod records;
mod run;
mod savepoint;
mod store;
mod transaction;

pub use connection::DeliveryConnection;
pub(crate) use run::in_transaction;
pub use savepoint::DeliverySavepoint;
pub use store::{PostgresStore, DEFAULT_POSTGRES_TABLE};
pub use transaction::DeliveryTransaction;
