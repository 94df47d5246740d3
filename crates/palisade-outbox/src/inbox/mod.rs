//! The idempotent consumer: [`InboxLayer`] claims each event id in `processed_messages` in the
//! same PostgreSQL transaction as the handler's writes.

mod layer;
mod service;
mod transaction;

pub use layer::InboxLayer;
pub use service::{Handled, Inbox, InboxError};
pub use transaction::{InboxTransaction, TransactionFinished};
