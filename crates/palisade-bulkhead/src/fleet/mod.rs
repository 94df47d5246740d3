//! The fleet-wide semaphore: [`FleetSemaphore`] (Redis leases, `scripts/semaphore.lua`), its
//! [`FleetPermit`]s, its admission as a bulkhead [`Semaphore`](crate::Semaphore)
//! (`admission.rs`), and the pure model of the script ([`state`]).

mod admission;
mod permit;
mod semaphore;
pub mod state;

pub use admission::{FleetAcquisition, FleetFull, FleetRefusal};
pub use permit::FleetPermit;
pub use semaphore::{FleetError, FleetSemaphore};
