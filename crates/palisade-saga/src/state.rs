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
    /// Refused for certain (the step said it did not happen, see `StepRefused`): not
    /// compensated.
    Failed,
    /// Failed with an unknown outcome (timed out, a transport error, its driver died and the
    /// deadline passed): it may have happened, so it is compensated like a done step.
    Uncertain,
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
    /// Attempts of the action so far (across resumes).
    pub attempts: u32,
    /// Attempts of the compensation so far (across resumes).
    #[serde(default)]
    pub compensation_attempts: u32,
    /// This is the step whose failure turned the saga around.
    #[serde(default)]
    pub failed: bool,
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
                    compensation_attempts: 0,
                    failed: false,
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
            SagaStatus::Compensating => match self.steps.iter().rposition(|s| {
                matches!(
                    s.status,
                    StepStatus::Done | StepStatus::Compensating | StepStatus::Uncertain
                )
            }) {
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

    /// Step `i` failed for good — `definite` when the step said it did not happen, else with
    /// an unknown outcome (then it is compensated too): compensation begins (or the saga is
    /// compensated at once when nothing may have happened).
    pub fn failed(&mut self, i: usize, error: String, definite: bool) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = if definite {
                StepStatus::Failed
            } else {
                StepStatus::Uncertain
            };
            step.failed = true;
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
            step.compensation_attempts += 1;
        }
    }

    /// Step `i` was compensated.
    pub fn compensated(&mut self, i: usize) {
        if let Some(step) = self.steps.get_mut(i) {
            step.status = StepStatus::Compensated;
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

    /// The step whose failure turned the saga around, and why.
    pub fn failure(&self) -> Option<(&str, &str)> {
        self.steps
            .iter()
            .find(|s| s.failed)
            .map(|s| (s.name.as_str(), s.error.as_deref().unwrap_or("")))
    }

    /// The parked compensation, when the saga failed.
    pub fn parked(&self) -> Option<(&str, &str)> {
        self.steps
            .iter()
            .find(|s| s.status == StepStatus::CompensationFailed)
            .map(|s| (s.name.as_str(), s.error.as_deref().unwrap_or("")))
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
        s.failed(2, "no courier".into(), true);
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
        s.failed(0, "out of stock".into(), true);
        assert_eq!(s.status, SagaStatus::Compensated);
        assert_eq!(s.next(), Next::Done(SagaStatus::Compensated));
    }

    #[test]
    fn an_uncertain_failure_is_compensated_too() {
        let mut s = three();
        s.starting(0);
        s.succeeded(0, serde_json::json!(null));
        s.starting(1);
        s.failed(1, "timed out".into(), false);
        assert_eq!(s.next(), Next::Compensate(1), "it may have charged: refund");
        s.compensating(1);
        s.compensated(1);
        assert_eq!(s.next(), Next::Compensate(0));
        s.compensating(0);
        s.compensated(0);
        assert_eq!(s.status, SagaStatus::Compensated);
        assert_eq!(s.failure(), Some(("charge", "timed out")));
    }

    #[test]
    fn a_failing_compensation_parks_the_saga() {
        let mut s = three();
        s.starting(0);
        s.succeeded(0, serde_json::json!(null));
        s.starting(1);
        s.failed(1, "declined".into(), true);
        s.compensating(0);
        s.compensation_failed(0, "inventory down".into());
        assert_eq!(s.status, SagaStatus::Failed);
        assert!(s.status.is_terminal());
    }
}
