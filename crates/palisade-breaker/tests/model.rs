//! The atomic breaker against a plain sequential reference model: random sequences of calls
//! and clock advances under paused time must produce the same admissions, waits and states.

use std::{collections::VecDeque, time::Duration};

use palisade_breaker::{BreakerPolicy, CircuitBreaker, OpenDuration, Outcome, State};
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
            let mut now = 0u64;
            for (i, (advance, failed)) in steps.into_iter().enumerate() {
                now += advance;
                tokio::time::advance(Duration::from_millis(advance)).await;
                let expected = model.call(now, failed);
                let actual = match breaker.try_acquire() {
                    Ok(permit) => {
                        permit.record(if failed { Outcome::Failure } else { Outcome::Success });
                        Ok(())
                    }
                    Err(open) => Err(open.retry_after.map(|d| d.as_millis() as u64)),
                };
                prop_assert_eq!(actual, expected, "step {}", i);
                prop_assert_eq!(breaker.state(), model.state, "step {}", i);
            }
            Ok(())
        })?;
    }
}
