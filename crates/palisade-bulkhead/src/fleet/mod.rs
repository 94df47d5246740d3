//! The fleet-wide semaphore: [`FleetSemaphore`] (Redis leases, `scripts/semaphore.lua`), its
//! [`FleetPermit`]s, the [`FleetBulkheadLayer`] that runs calls under them, and the pure model
//! of the script ([`state`]).

mod layer;
mod permit;
mod semaphore;
pub mod state;

pub use layer::{FleetBulkhead, FleetBulkheadLayer, FleetFull};
pub use permit::FleetPermit;
pub use semaphore::{FleetError, FleetSemaphore};
