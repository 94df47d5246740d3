//! The PostgreSQL side: [`EventStore`], [`Repository`] and its tower [`CommandService`], and
//! the [`ProjectionRunner`].

mod command;
mod projection;
mod repository;
mod store;

pub use command::{CommandRequest, CommandService};
pub use projection::{Projection, ProjectionRunner, ProjectionStatus};
pub use repository::{Committed, Repository};
pub use store::{EventStore, NewStored, Snapshot};
