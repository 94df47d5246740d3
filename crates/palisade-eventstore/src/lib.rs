//! Event sourcing on PostgreSQL for tower services: a pure aggregate model, an event store
//! with optimistic concurrency and a global order projections can trust, snapshots,
//! upcasting, a command handler as a `tower::Service`, and projections whose read-model write
//! and checkpoint commit together.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use palisade_eventstore::{Aggregate, DomainEvent, EventStore, Repository};
//! use palisade_outbox::Schema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! enum Event { Deposited { amount_cents: i64 } }
//! impl DomainEvent for Event {
//!     fn event_type(&self) -> &'static str { "account.deposited" }
//! }
//!
//! #[derive(Debug, Default, Clone, Serialize, Deserialize)]
//! struct Account { balance_cents: i64 }
//! impl Aggregate for Account {
//!     const TYPE: &'static str = "account";
//!     type Event = Event;
//!     type Command = i64;
//!     type Error = String;
//!     fn apply(&mut self, Event::Deposited { amount_cents }: &Event) {
//!         self.balance_cents += amount_cents;
//!     }
//!     fn handle(&self, amount: i64) -> Result<Vec<Event>, String> {
//!         Ok(vec![Event::Deposited { amount_cents: amount }])
//!     }
//! }
//!
//! let store = EventStore::new(pool, Schema::new("bank")?);
//! store.migrate().await?;
//! let accounts = Repository::<Account>::new(store).snapshot_every(100);
//! let done = accounts.execute("acct-1", 500, None).await?;   // retried on conflict
//! assert_eq!(done.state.balance_cents, 500);
//! # Ok(()) }
//! ```
//!
//! # The global order
//!
//! A `bigserial` position is allocated when a transaction inserts, and transactions commit in
//! another order: a projection that reads "after position 8" when 8 has committed and 7 has
//! not yet, checkpoints 8 and never sees 7. [`EventStore::read_all`] orders by
//! `(transaction id, position)` and returns only events of transactions older than the oldest
//! transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): everything it
//! returns is final, and nothing can later appear before it. Appends to different streams stay
//! concurrent. The cost: any transaction left open in the database holds projections back
//! while it is open — [`ProjectionRunner::status`] reports the lag.
//!
//! # Without a runtime
//!
//! With default features off this crate is the model alone — [`Aggregate`], [`DomainEvent`],
//! [`Loaded`], [`Upcasters`], [`RecordedEvent`] — with no tokio and no sqlx.

#![warn(missing_docs)]

mod aggregate;
mod error;
mod recorded;
mod upcast;

#[cfg(feature = "postgres")]
mod postgres;

pub use aggregate::{Aggregate, DomainEvent, Loaded};
pub use error::{CommandError, StoreError};
#[cfg(feature = "postgres")]
pub use postgres::{
    CommandRequest, CommandService, Committed, EventStore, NewStored, Projection, ProjectionRunner,
    ProjectionStatus, Repository, Snapshot,
};
pub use recorded::{Position, RecordedEvent};
pub use upcast::{MissingUpcaster, Upcasters};
