//! [`SagaDefinition`]: the ordered steps of a saga, each an action and its compensation, both
//! tower services.

use std::{collections::HashSet, time::Duration};

use serde_json::Value;
use tower::{BoxError, Service, ServiceExt, util::BoxCloneSyncService};

/// What a step's action or compensation receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCall {
    /// The saga.
    pub saga_id: String,
    /// The step's name.
    pub step: String,
    /// `"<saga id>:<step>:action"` or `…:compensation`: the same on every attempt and after a
    /// resume, so a downstream that honours idempotency keys executes it once.
    pub idempotency_key: String,
    /// The saga's input.
    pub input: Value,
}

/// A step's action or compensation: any `tower::Service<StepCall>` answering a JSON result
/// (boxed: a saga's steps are different services).
pub type StepService = BoxCloneSyncService<StepCall, Value, BoxError>;

/// The error a step returns when it knows its action **did not happen** (a declined card, an
/// empty stock): the step is then not compensated. Any other error — a timeout, a transport
/// failure, a 5xx — leaves the outcome unknown, and the step is compensated as if it had
/// happened, so compensations must accept an action that never took place (a refund of
/// nothing is a no-op).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct StepRefused(pub String);

/// Boxes `service` as a [`StepService`].
pub fn step_service<S>(service: S) -> StepService
where
    S: Service<StepCall, Response = Value> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service.map_err(Into::into))
}

/// One step.
#[derive(Clone)]
pub struct Step {
    pub(crate) name: String,
    pub(crate) action: StepService,
    pub(crate) compensation: StepService,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
}

impl Step {
    /// A step named `name`: `action`, undone by `compensation` (every step has one: a saga
    /// must be able to go back from any point). Defaults: 10 s per attempt, 3 attempts —
    /// counted across resumes, so a step that crashes its process is not retried forever.
    pub fn new(name: impl Into<String>, action: StepService, compensation: StepService) -> Step {
        Step {
            name: name.into(),
            action,
            compensation,
            timeout: Duration::from_secs(10),
            attempts: 3,
        }
    }

    /// Bounds each attempt of the action (and of the compensation) by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Step {
        self.timeout = timeout;
        self
    }

    /// Tries the action at most `attempts` times before compensating.
    pub fn attempts(mut self, attempts: u32) -> Step {
        self.attempts = attempts.max(1);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Why a definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// No steps.
    #[error("a saga needs at least one step")]
    Empty,
    /// Two steps share a name (names key the state and the idempotency keys).
    #[error("two steps are named {0:?}")]
    DuplicateStep(String),
}

/// A saga's steps, in order, with the policies around them.
#[derive(Debug, Clone)]
pub struct SagaDefinition {
    pub(crate) name: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) compensation_attempts: u32,
}

impl SagaDefinition {
    /// The definition `name` over `steps`; refused when empty or when names repeat.
    pub fn new(
        name: impl Into<String>,
        steps: Vec<Step>,
    ) -> Result<SagaDefinition, DefinitionError> {
        if steps.is_empty() {
            return Err(DefinitionError::Empty);
        }
        let mut seen = HashSet::new();
        for step in &steps {
            if !seen.insert(step.name.clone()) {
                return Err(DefinitionError::DuplicateStep(step.name.clone()));
            }
        }
        Ok(SagaDefinition {
            name: name.into(),
            steps,
            deadline: None,
            compensation_attempts: 5,
        })
    }

    /// The whole saga must complete within `deadline` of its start; past it, the step running
    /// counts as failed and the saga compensates.
    pub fn deadline(mut self, deadline: Duration) -> SagaDefinition {
        self.deadline = Some(deadline);
        self
    }

    /// Tries each compensation at most `n` times (default 5) before parking the saga as
    /// failed for an operator.
    pub fn compensation_attempts(mut self, n: u32) -> SagaDefinition {
        self.compensation_attempts = n.max(1);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step names, in order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }
}
