//! Differential tests on both Redis clients: a pure model and its Lua twin, driven by the
//! same random operation sequences ([`check`], [`differential_on_both_clients!`](crate::differential_on_both_clients)).

use std::{fmt::Debug, future::Future};

use proptest::{
    strategy::Strategy,
    test_runner::{Config, TestCaseError, TestRunner},
};

/// A current-thread runtime with time and I/O, for property tests that block on async steps.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `cases` random sequences from `steps` through `run(client, prefix, steps)` (a clone of
/// `client` each), each case
/// under its own key prefix (below `prefix`); a case fails with `run`'s message, shrunk to a
/// minimal sequence, and the sequence is printed.
pub fn check<C: Clone, S, F, Fut>(
    rt: &tokio::runtime::Runtime,
    client: &C,
    prefix: &str,
    cases: u32,
    steps: S,
    run: F,
) where
    S: Strategy,
    S::Value: Debug,
    F: Fn(C, String, S::Value) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let case = std::cell::Cell::new(0u64);
    let result = TestRunner::new(config).run(&steps, |steps| {
        case.set(case.get() + 1);
        let shown = format!("{steps:?}");
        rt.block_on(run(
            client.clone(),
            format!("{prefix}:case-{}", case.get()),
            steps,
        ))
        .map_err(|e| TestCaseError::fail(format!("{e}\nsteps: {shown}")))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// Defines `mod $name { fn fred(); fn redis_rs(); }`: [`check`] of `$run` (an
/// `async fn(&C, String, Steps) -> Result<(), String>` generic over the client) with the
/// sequences of `$steps()` (a strategy function), on the shared Redis with each client.
#[macro_export]
macro_rules! differential_on_both_clients {
    ($name:ident, cases: $cases:expr, steps: $steps:ident, run: $run:ident $(,)?) => {
        mod $name {
            #[test]
            fn fred() {
                let rt = $crate::differential::runtime();
                let redis = rt.block_on($crate::TestRedis::connect());
                let client = redis.client.clone();
                $crate::differential::check(
                    &rt,
                    &client,
                    &redis.prefix,
                    $cases,
                    super::$steps(),
                    |c, p, s| async move { super::$run(&c, p, s).await },
                );
            }

            #[test]
            fn redis_rs() {
                let rt = $crate::differential::runtime();
                let redis = rt.block_on($crate::TestRedis::connect());
                let client = rt.block_on(redis.redis_rs());
                $crate::differential::check(
                    &rt,
                    &client,
                    &redis.prefix,
                    $cases,
                    super::$steps(),
                    |c, p, s| async move { super::$run(&c, p, s).await },
                );
            }
        }
    };
}
