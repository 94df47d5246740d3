use std::time::Duration;

use super::*;

const S: Micros = 1_000_000;

/// Runs `cost` at `now`, applying the update when it fits, as a store does.
fn run(alg: &Algorithm, state: &mut Option<LimitState>, now: Micros, cost: u64) -> Step {
    let step = decide(alg, state.as_ref(), now, cost);
    if step.fits {
        step.update.clone().apply(state);
    }
    step
}

#[test]
fn token_bucket_matches_the_seed_example() {
    // Capacity 10 at 5/s: ten at t=0, five at t=1, full (ten) at t=2.
    let alg = Algorithm::TokenBucket(TokenBucket::new(10, 5.0).unwrap());
    let mut st = None;
    let t0 = 1_000 * S;
    for _ in 0..10 {
        assert!(run(&alg, &mut st, t0, 1).fits);
    }
    let denied = run(&alg, &mut st, t0, 1);
    assert!(!denied.fits);
    assert_eq!(denied.retry_after, Some(200_000));
    assert_eq!(denied.remaining_before, 0);
    for _ in 0..5 {
        assert!(run(&alg, &mut st, t0 + S, 1).fits);
    }
    assert!(!run(&alg, &mut st, t0 + S, 1).fits);
    let full = decide(&alg, st.as_ref(), t0 + 3 * S, 0);
    assert_eq!(full.remaining_before, 10);
    assert_eq!(full.reset_before, 0);
}

#[test]
fn token_bucket_fractional_refill_is_not_lost_to_frequent_calls() {
    // 0.5 token/s, polled every 100 ms: one token every 2 s regardless of polling.
    let alg = Algorithm::TokenBucket(TokenBucket::new(1, 0.5).unwrap());
    let mut st = None;
    assert!(run(&alg, &mut st, 0, 1).fits);
    let mut admitted = 0;
    for i in 1..=200 {
        if run(&alg, &mut st, i * 100_000, 1).fits {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10); // 20 s at 0.5/s
}

#[test]
fn denied_requests_consume_nothing_and_costs_above_capacity_never_fit() {
    for alg in all(5, Duration::from_secs(10)) {
        let mut st = None;
        assert!(run(&alg, &mut st, S, 3).fits, "{alg:?}");
        let before = st.clone();
        let denied = run(&alg, &mut st, S, 3);
        assert!(!denied.fits, "{alg:?}");
        assert!(denied.retry_after.unwrap() > 0, "{alg:?}");
        assert_eq!(st, before, "{alg:?}");
        let never = decide(&alg, st.as_ref(), S, 6);
        assert_eq!(never.retry_after, None, "{alg:?}");
    }
}

#[test]
fn retry_after_is_exactly_when_the_cost_fits() {
    for alg in all(4, Duration::from_secs(2)) {
        let mut st = None;
        let mut now = 7 * S + 123;
        for _ in 0..50 {
            let step = decide(&alg, st.as_ref(), now, 2);
            if step.fits {
                step.update.apply(&mut st);
                now += 1;
                continue;
            }
            let wait = step.retry_after.unwrap();
            assert!(wait > 0);
            if !matches!(alg, Algorithm::FixedWindow(_)) || wait > 1 {
                assert!(
                    !decide(&alg, st.as_ref(), now + wait - 1, 2).fits,
                    "{alg:?}"
                );
            }
            assert!(decide(&alg, st.as_ref(), now + wait, 2).fits, "{alg:?}");
            now += wait;
        }
    }
}

#[test]
fn sliding_log_is_exact_over_any_window() {
    let alg =
        Algorithm::SlidingWindowLog(SlidingWindowLog::new(3, Duration::from_secs(1)).unwrap());
    let mut st = None;
    assert!(run(&alg, &mut st, 100_000, 2).fits);
    assert!(run(&alg, &mut st, 900_000, 1).fits);
    assert!(!run(&alg, &mut st, 1_099_999, 1).fits);
    // At 1.1 s the first two leave the window.
    assert!(run(&alg, &mut st, 1_100_000, 2).fits);
    assert!(!run(&alg, &mut st, 1_100_001, 1).fits);
}

#[test]
fn fixed_window_resets_on_the_edge() {
    let alg = Algorithm::FixedWindow(FixedWindow::new(2, Duration::from_secs(1)).unwrap());
    let mut st = None;
    assert!(run(&alg, &mut st, 999_000, 2).fits);
    let denied = run(&alg, &mut st, 999_500, 1);
    assert_eq!(denied.retry_after, Some(500));
    assert!(run(&alg, &mut st, 1_000_000, 2).fits);
}

#[test]
fn gcra_burst_then_steady_rate() {
    let alg = Algorithm::Gcra(
        Gcra::new(10, Duration::from_secs(1))
            .unwrap()
            .with_burst(3)
            .unwrap(),
    );
    let mut st = None;
    for _ in 0..3 {
        assert!(run(&alg, &mut st, S, 1).fits);
    }
    let denied = run(&alg, &mut st, S, 1);
    assert_eq!(denied.retry_after, Some(100_000));
    assert!(run(&alg, &mut st, S + 100_000, 1).fits);
}

/// Every field of a GCRA step, exactly: what is left, when it resets, before and after — and a
/// refusal changes nothing, so its "after" is its "before".
#[test]
fn gcra_steps_exactly() {
    // 10 per second (100 ms apart), bursts of 3: tolerance 200 ms beyond the emission interval.
    let alg = Algorithm::Gcra(
        Gcra::new(10, Duration::from_secs(1))
            .unwrap()
            .with_burst(3)
            .unwrap(),
    );
    let mut st = None;
    let first = run(&alg, &mut st, S, 1);
    assert_eq!(
        (first.remaining_before, first.remaining_after),
        (3, 2),
        "a fresh key has the whole burst"
    );
    assert_eq!((first.reset_before, first.reset_after), (0, 100_000));
    let second = run(&alg, &mut st, S + 50_000, 1);
    assert_eq!((second.remaining_before, second.remaining_after), (2, 1));
    assert_eq!((second.reset_before, second.reset_after), (50_000, 150_000));
    run(&alg, &mut st, S + 50_000, 1);
    let refused = run(&alg, &mut st, S + 50_000, 1);
    assert!(!refused.fits);
    assert_eq!(refused.remaining_after, 0);
    assert_eq!(refused.reset_after, refused.reset_before);
    assert_eq!(refused.reset_before, 250_000);
    assert_eq!(refused.retry_after, Some(50_000));
}

fn all(quota: u64, window: Duration) -> Vec<Algorithm> {
    let per_second = quota as f64 / window.as_secs_f64();
    vec![
        Algorithm::TokenBucket(TokenBucket::new(quota, per_second).unwrap()),
        Algorithm::Gcra(Gcra::new(quota, window).unwrap()),
        Algorithm::SlidingWindowLog(SlidingWindowLog::new(quota, window).unwrap()),
        Algorithm::FixedWindow(FixedWindow::new(quota, window).unwrap()),
    ]
}
