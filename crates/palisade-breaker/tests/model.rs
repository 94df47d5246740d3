//! The atomic breaker against its pure state machine (`palisade_breaker::state::Machine`),
//! and the machine against a plain model written here as simply as possible: random sequences
//! of calls and clock advances under paused time must produce the same admissions, waits and
//! states in all three.

use std::{collections::VecDeque, time::Duration};

use palisade_breaker::{
    BreakerPolicy, CircuitBreaker, OpenDuration, Outcome, State,
    state::{Machine, Ticket},
};
use proptest::prelude::*;

const WINDOW: usize = 5;
const MIN_CALLS: usize = 3;
const PROBES: u32 = 2;
const CONSECUTIVE: u32 = 4;

/// The specification, written as simply as possible.
struct Model {
    state: State,
    window: VecDeque<bool>,
    consecutive: u32,
    open_until: u64,
    reopenings: u32,
    probes_done: u32,
    probe_failures: u32,
}

fn wait_ms(reopenings: u32) -> u64 {
    (1000u64 << reopenings.min(3)).min(8000)
}

impl Model {
    /// One call at `now` (ms) that ends at once as `failed`: `Ok(())` if admitted, else the
    /// wait reported.
    fn call(&mut self, now: u64, failed: bool) -> Result<(), Option<u64>> {
        if self.state == State::Open {
            if now < self.open_until {
                return Err(Some(self.open_until - now));
            }
            self.state = State::HalfOpen;
        }
        if self.state == State::HalfOpen {
            self.probes_done += 1;
            self.probe_failures += u32::from(failed);
            if f64::from(self.probe_failures) / f64::from(PROBES) >= 0.5 {
                self.reopenings += 1;
                self.open(now);
            } else if self.probes_done >= PROBES {
                self.state = State::Closed;
                self.window.clear();
                self.consecutive = 0;
                self.reopenings = 0;
            }
            return Ok(());
        }
        self.window.push_back(failed);
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        let failures = self.window.iter().filter(|f| **f).count();
        let rate_trips =
            self.window.len() >= MIN_CALLS && failures as f64 / self.window.len() as f64 >= 0.5;
        let evaluate = failed || self.window.len() == MIN_CALLS;
        if (evaluate && rate_trips) || self.consecutive >= CONSECUTIVE {
            self.open(now);
        }
        Ok(())
    }

    fn open(&mut self, now: u64) {
        self.state = State::Open;
        self.open_until = now + wait_ms(self.reopenings);
        self.probes_done = 0;
        self.probe_failures = 0;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn atomic_breaker_matches_the_model(
        steps in prop::collection::vec((prop_oneof![3 => Just(0u64), 2 => 0u64..1500, 1 => 0u64..9000], prop::bool::weighted(0.45)), 1..200)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let breaker = CircuitBreaker::new(
                BreakerPolicy::builder("model")
                    .count_window(WINDOW as u32)
                    .minimum_calls(MIN_CALLS as u32)
                    .failure_rate(0.5)
                    .consecutive_failures(CONSECUTIVE)
                    .half_open_probes(PROBES)
                    .open_for(OpenDuration {
                        base: Duration::from_secs(1),
                        multiplier: 2.0,
                        max: Duration::from_secs(8),
                        jitter: 0.0,
                    })
                    .build()
                    .unwrap(),
            );
            let mut model = Model {
                state: State::Closed,
                window: VecDeque::new(),
                consecutive: 0,
                open_until: 0,
                reopenings: 0,
                probes_done: 0,
                probe_failures: 0,
            };
            let policy = breaker.policy().clone();
            let mut machine = Machine::new(&policy);
            let mut now = 0u64;
            for (i, (advance, failed)) in steps.into_iter().enumerate() {
                now += advance;
                tokio::time::advance(Duration::from_millis(advance)).await;
                let outcome = if failed { Outcome::Failure } else { Outcome::Success };
                let expected = model.call(now, failed);
                let by_machine = match machine.admit(&policy, now * 1000) {
                    Ok(ticket) => {
                        machine.record(&policy, ticket, outcome, false, now * 1000, 0.5);
                        Ok(())
                    }
                    Err(refused) => Err(refused.retry_after.map(|d| d.as_millis() as u64)),
                };
                let actual = match breaker.try_acquire() {
                    Ok(permit) => {
                        permit.record(outcome);
                        Ok(())
                    }
                    Err(open) => Err(open.retry_after.map(|d| d.as_millis() as u64)),
                };
                prop_assert_eq!(by_machine, expected, "machine, step {}", i);
                prop_assert_eq!(machine.state(), model.state, "machine, step {}", i);
                prop_assert_eq!(actual, expected, "step {}", i);
                prop_assert_eq!(breaker.state(), model.state, "step {}", i);
            }
            Ok(())
        })?;
    }
}

/// One step of the richer sequences: wait, then start a call (kept open for a while, maybe
/// overlapping the next ones), or end the oldest open call in some way.
#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Start,
    End(Outcome),
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..400).prop_map(Step::Wait),
        1 => (1000u64..9000).prop_map(Step::Wait),
        4 => Just(Step::Start),
        2 => Just(Step::End(Outcome::Success)),
        2 => Just(Step::End(Outcome::Failure)),
        1 => Just(Step::End(Outcome::Ignored)),
        1 => Just(Step::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Time window, slow calls, overlapping calls, ignored and cancelled ones, probes that
    /// end out of order: the atomic breaker and the machine agree on every admission, wait,
    /// state and failures-in-a-row count.
    #[test]
    fn atomic_breaker_matches_the_machine_with_slow_and_overlapping_calls(
        steps in prop::collection::vec(step(), 1..300)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let policy = BreakerPolicy::builder("machine")
                .time_window(3)
                .minimum_calls(4)
                .failure_rate(0.5)
                .slow_calls(Duration::from_millis(200), 0.6)
                .consecutive_failures(5)
                .half_open_probes(3)
                .open_for(OpenDuration {
                    base: Duration::from_secs(1),
                    multiplier: 2.0,
                    max: Duration::from_secs(8),
                    jitter: 0.0,
                })
                .build()
                .unwrap();
            let breaker = CircuitBreaker::new(policy.clone());
            let mut machine = Machine::new(&policy);
            // Calls in flight: the breaker's permit, the machine's ticket, when it started.
            let mut open: VecDeque<(palisade_breaker::Permit, Ticket, u64)> = VecDeque::new();
            let mut now = 0u64;
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Wait(ms) => {
                        now += ms * 1000;
                        tokio::time::advance(Duration::from_millis(ms)).await;
                    }
                    Step::Start => {
                        let actual = breaker.try_acquire();
                        let expected = machine.admit(&policy, now);
                        match (actual, expected) {
                            (Ok(permit), Ok(ticket)) => open.push_back((permit, ticket, now)),
                            (Err(open), Err(refused)) => {
                                prop_assert_eq!(open.state, refused.state, "step {}", i);
                                prop_assert_eq!(open.retry_after, refused.retry_after, "step {}", i);
                            }
                            (a, e) => prop_assert!(false, "step {}: breaker {:?}, machine {:?}", i, a.map(|_| ()), e),
                        }
                    }
                    Step::End(outcome) => {
                        if let Some((permit, ticket, started)) = open.pop_front() {
                            let slow = now - started >= 200_000;
                            permit.record(outcome);
                            machine.record(&policy, ticket, outcome, slow, now, 0.5);
                        }
                    }
                    Step::Cancel => {
                        if let Some((permit, ticket, _)) = open.pop_front() {
                            drop(permit);
                            machine.release(ticket);
                        }
                    }
                }
                prop_assert_eq!(breaker.state(), machine.state(), "step {}", i);
                prop_assert_eq!(
                    breaker.snapshot().consecutive_failures,
                    machine.consecutive_failures(),
                    "step {}", i
                );
            }
            Ok(())
        })?;
    }
}
