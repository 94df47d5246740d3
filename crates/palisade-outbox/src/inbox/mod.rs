//! The idempotent consumer: [`InboxLayer`] claims each event id in `processed_messages` in the
//! same PostgreSQL transaction as the handler's writes; [`DedupLayer`] deduplicates through
//! the idempotency crate's stores for handlers without a database.

mod dedup;
mod layer;
mod service;
mod transaction;

pub use dedup::{Dedup, DedupHandlerError, DedupLayer};
pub use layer::InboxLayer;
pub use service::{Handled, Inbox, InboxError};
pub use transaction::{InboxTransaction, TransactionFinished};
