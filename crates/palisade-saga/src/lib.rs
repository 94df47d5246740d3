//! Sagas for tower services, persisted in PostgreSQL: an ordered list of steps, each an action
//! and its compensation (both `tower::Service<StepCall>`); state written before and after each
//! step; a lease on the saga's row so one instance drives it at a time and another resumes it
//! when that one dies — forwards, or compensating the completed steps in reverse order after a
//! step failed for good.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use palisade_outbox::Schema;
//! use palisade_saga::{SagaDefinition, SagaRunner, Step, StepCall, step_service};
//! use tower::service_fn;
//!
//! let call = |what: &'static str| {
//!     step_service(service_fn(move |call: StepCall| async move {
//!         // Send `call.idempotency_key` to the downstream: a resumed step repeats it.
//!         Ok::<_, std::io::Error>(serde_json::json!({ "done": what, "key": call.idempotency_key }))
//!     }))
//! };
//! let checkout = SagaDefinition::new("checkout", vec![
//!     Step::new("reserve", call("reserve"), call("release")),
//!     Step::new("charge", call("charge"), call("refund")),
//!     Step::new("ship", call("ship"), call("cancel")),
//! ])?;
//! let runner = SagaRunner::new(pool, Schema::new("shop")?, vec![checkout]);
//! runner.migrate().await?;
//! runner.start("co-1", "checkout", serde_json::json!({"order_id": "o-1"})).await?;
//! runner.run(tokio::signal::ctrl_c()).await;   // on every instance
//! # Ok(()) }
//! ```
//!
//! What is promised, plainly: each step's action (and compensation) is *called* at least once
//! per attempt and again after a resume; it is *executed* once only by downstreams that honour
//! [`StepCall::idempotency_key`]. A step that failed for certain ([`StepRefused`]) is not
//! compensated; one whose outcome is unknown (a timeout, a transport error, a 5xx) is, so
//! compensations must accept an action that never happened. A compensation that keeps failing
//! parks the saga as [`SagaStatus::Failed`] with the reason — never dropped.

#![warn(missing_docs)]

mod state;

#[cfg(feature = "postgres")]
mod definition;
#[cfg(feature = "postgres")]
mod runner;

#[cfg(feature = "postgres")]
pub use definition::{
    DefinitionError, SagaDefinition, Step, StepCall, StepRefused, StepService, step_service,
};
#[cfg(feature = "postgres")]
pub use runner::{SagaError, SagaRecord, SagaRunner};
pub use state::{Next, SagaState, SagaStatus, StepRecord, StepStatus};
