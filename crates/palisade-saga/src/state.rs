//! The saga state machine: pure, time-free decisions of what to do next.

use serde::{Deserialize, Serialize};

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Running its steps forwards.
    Running,
    /// A step failed: undoing the completed ones, last first.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every completed step was compensated.
    Compensated,
    /// A compensation kept failing: parked for an operator (see the failed step's reason).
    Failed,
}

impl SagaStatus {
    /// Completed, compensated or failed: nothing more will run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
        )
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started and not known to have finished (a resumed saga runs it again, with the same
    /// idempotency key).
    Running,
    /// Succeeded.
    Done,
    /// Failed (its compensation is not run: it did not happen).
    Failed,
    /// Being compensated.
    Compensating,
    /// Compensated.
    Compensated,
    /// Its compensation kept failing; parked.
    CompensationFailed,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// Attempts made (of the action, then of the compensation).
    pub attempts: u32,
    /// The last error, when it failed.
    pub error: Option<String>,
    /// The action's result, when it succeeded.
    pub result: Option<serde_json::Value>,
}

/// What the orchestrator does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run step `i`'s action.
    Run(usize),
    /// Run step `i`'s compensation.
    Compensate(usize),
    /// Nothing: the saga is terminal.
    Done(SagaStatus),
}

/// A saga's whole state, as persisted after every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The status.
    pub status: SagaStatus,
    /// Every step, in definition order.
    pub steps: Vec<StepRecord>,
}

impl SagaState {
    /// A fresh saga over steps named `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> SagaState {
        SagaState {
            status: SagaStatus::Running,
            steps: names
                .into_iter()
                .map(|name| StepRecord {
                    name: name.to_owned(),
                    status: StepStatus::Pending,
                    attempts: 0,
                    error: None,
                    result: None,
                })
                .collect(),
        }
    }

    /// The next thing to do. Running: the first step not done (a `Running` one is run again).
    /// Compensating: the last step that is done or being compensated.
    pub fn next(&self) -> Next {
        match self.status {
            SagaStatus::Running => match self
                .steps
                .iter()
                .position(|s| !matches!(s.status, StepStatus::Done))
            {
                Some(i) => Next::Run(i),
                None => Next::Done(SagaStatus::Completed),
            },
            SagaStatus::Compensating => match self
                .steps
                .iter()
                .rposition(|s| matches!(s.status, StepStatus::Done | StepStatus::Compensating))
            {
                Some(i) => Next::Compensate(i),
                None => Next::Done(SagaStatus::Compensated),
            },
            terminal => Next::Done(terminal),
        }
    }

    /// Step `i` is about to run (recorded before the call).
    pub fn starting(&mut self, i: usize) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Running;
            step.attempts += 1;
        }
    }

    /// Step `i` succeeded with `result`; the saga completes after the last step.
    pub fn succeeded(&mut self, i: usize, result: serde_json::Value) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Done;
            step.result = Some(result);
            step.error = None;
        }
        if matches!(self.next(), Next::Done(SagaStatus::Completed)) {
            self.status = SagaStatus::Completed;
        }
    }

    /// Step `i` failed for good: compensation begins (or the saga is compensated at once when
    /// nothing was done before it).
    pub fn failed(&mut self, i: usize, error: String) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Failed;
            step.error = Some(error);
        }
        self.status = SagaStatus::Compensating;
        if let Next::Done(done) = self.next() {
            self.status = done;
        }
    }

    /// Step `i`'s compensation is about to run.
    pub fn compensating(&mut self, i: usize) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Compensating;
            step.attempts += 1;
        }
    }

    /// Step `i` was compensated.
    pub fn compensated(&mut self, i: usize) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Compensated;
            step.error = None;
        }
        if let Next::Done(done) = self.next() {
            self.status = done;
        }
    }

    /// Step `i`'s compensation kept failing: the saga is parked as failed.
    pub fn compensation_failed(&mut self, i: usize, error: String) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::CompensationFailed;
            step.error = Some(error);
        }
        self.status = SagaStatus::Failed;
    }

    /// The first failed step and its reason, when the saga failed or was compensated.
    pub fn failure(&self) -> Option<(&str, &str)> {
        self.steps.iter().find_map(|s| match s.status {
            StepStatus::Failed | StepStatus::CompensationFailed => {
                Some((s.name.as_str(), s.error.as_deref().unwrap_or("")))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> SagaState {
        SagaState::new(["reserve", "charge", "ship"])
    }

    #[test]
    fn all_steps_succeed() {
        let mut s = three();
        for i in 0..3 {
            assert_eq!(s.next(), Next::Run(i));
            s.starting(i);
            assert_eq!(
                s.next(),
                Next::Run(i),
                "a running step is run again on resume"
            );
            s.succeeded(i, serde_json::json!(i));
        }
        assert_eq!(s.status, SagaStatus::Completed);
        assert_eq!(s.next(), Next::Done(SagaStatus::Completed));
    }

    #[test]
    fn a_failure_compensates_the_done_steps_in_reverse() {
        let mut s = three();
        s.starting(0);
        s.succeeded(0, serde_json::json!(null));
        s.starting(1);
        s.succeeded(1, serde_json::json!(null));
        s.starting(2);
        s.failed(2, "no courier".into());
        assert_eq!(s.status, SagaStatus::Compensating);
        assert_eq!(s.next(), Next::Compensate(1));
        s.compensating(1);
        assert_eq!(
            s.next(),
            Next::Compensate(1),
            "resumed mid-compensation: again"
        );
        s.compensated(1);
        assert_eq!(s.next(), Next::Compensate(0));
        s.compensating(0);
        s.compensated(0);
        assert_eq!(s.status, SagaStatus::Compensated);
        assert_eq!(s.failure(), Some(("ship", "no courier")));
    }

    #[test]
    fn a_first_step_failure_is_compensated_at_once() {
        let mut s = three();
        s.starting(0);
        s.failed(0, "out of stock".into());
        assert_eq!(s.status, SagaStatus::Compensated);
        assert_eq!(s.next(), Next::Done(SagaStatus::Compensated));
    }

    #[test]
    fn a_failing_compensation_parks_the_saga() {
        let mut s = three();
        s.starting(0);
        s.succeeded(0, serde_json::json!(null));
        s.starting(1);
        s.failed(1, "declined".into());
        s.compensating(0);
        s.compensation_failed(0, "inventory down".into());
        assert_eq!(s.status, SagaStatus::Failed);
        assert!(s.status.is_terminal());
    }
}
