//! [`Shared`]: what every call of one [`Retry`](crate::Retry) (and its clones) shares.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{RetryBudget, RetryEvent, RetryPolicy};

/// The policy, budget, classifier and event channel of one retry service: one `Arc` clone per
/// call instead of four.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) budget: RetryBudget,
    pub(crate) classify: C,
    pub(crate) events: broadcast::Sender<RetryEvent>,
}
