//! `scripts/fleet.lua` is the twin of the pure record (`palisade_breaker::fleet::state`):
//! random sequences of open / close / lease / read by a few instances, with short and long
//! periods and pauses that let short keys expire, run through both — on the fred and the
//! redis-rs client — and every reply is compared. The model runs at the server time each reply
//! reports. Needs the Redis at REDIS_URL.
//!
//! Short periods are 100 ms and a pause is 130 ms, while the steps between pauses take a few
//! milliseconds: every expiry the sequence reaches is far (≥ 30 ms) from a step, so the two
//! clocks never disagree at a boundary.

use std::{sync::LazyLock, time::Duration};

use palisade_breaker::fleet::state::{FleetOp, FleetRecord, FleetReply};
use palisade_core::redis::{Arg, RedisClient, RedisScript};
use proptest::prelude::*;

static FLEET: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../src/scripts/fleet.lua")));

const SHORT: u64 = 100;
const LONG: u64 = 60_000;
const PAUSE: Duration = Duration::from_millis(130);

#[derive(Debug, Clone, Copy)]
enum Step {
    Run(FleetOp, usize, bool),
    Pause,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let op = prop_oneof![
        Just(FleetOp::Open),
        Just(FleetOp::Close),
        Just(FleetOp::Lease),
        Just(FleetOp::Read),
    ];
    let step = prop_oneof![
        9 => (op, 0usize..3, any::<bool>()).prop_map(|(op, id, long)| Step::Run(op, id, long)),
        1 => Just(Step::Pause),
    ];
    prop::collection::vec(step, 1..30)
}

async fn run<C: RedisClient>(client: &C, prefix: String, steps: Vec<Step>) -> Result<(), String> {
    let keys = [
        format!("{prefix}:{{fleet}}:open"),
        format!("{prefix}:{{fleet}}:probe"),
    ];
    let mut model = FleetRecord::default();
    for (i, &step) in steps.iter().enumerate() {
        let Step::Run(op, id, long) = step else {
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        let me = format!("instance-{id}");
        let ms = if long { LONG } else { SHORT };
        let args = [
            Arg::from(op.as_str()),
            Arg::from(me.as_str()),
            Arg::Int(ms as i64),
        ];
        let reply: Vec<i64> = FLEET
            .invoke(client, &keys, &args, Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        let [now, open_until, holder, recovered] = reply[..] else {
            return Err(format!("step {i}: reply {reply:?}"));
        };
        let got = FleetReply {
            open_until: open_until as u64,
            holder: holder == 1,
            recovered: recovered == 1,
        };
        let expected = model.step(now as u64, op, &me, ms);
        if got != expected {
            return Err(format!(
                "step {i} ({op:?} by {me}, {ms} ms, server time {now}): the model says \
                 {expected:?}, the script {got:?}"
            ));
        }
        // The keys live exactly as long as the model says (measured from this reply's time,
        // within the few milliseconds the PTTL round trip takes).
        let (state_expiry, lease_expiry) = model.expiries();
        for (key, expiry) in keys.iter().zip([state_expiry, lease_expiry]) {
            let ttl = client
                .command("PTTL", &[Arg::from(key.as_str())])
                .await
                .map_err(|e| format!("{e:?}"))?
                .as_int()
                .unwrap_or(-3);
            let ok = match expiry {
                None => ttl == -2,
                Some(at) => {
                    let left = at as i64 - now;
                    // The script's TIME and the server's expiry clock may differ by a millisecond.
                    ttl <= left + 2 && ttl >= left - 20
                }
            };
            if !ok {
                return Err(format!(
                    "step {i} ({op:?} by {me}, {ms} ms): {key} has PTTL {ttl}, the model \
                     expires it at {expiry:?} (now {now})"
                ));
            }
        }
    }
    Ok(())
}

palisade_testkit::differential_on_both_clients!(
    the_script_is_a_twin_of_the_record,
    cases: 24,
    steps: steps,
    run: run,
);
