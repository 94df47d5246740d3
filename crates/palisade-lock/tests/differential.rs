//! The Redis lock scripts are twins of the pure record (`palisade_lock::state`): random
//! sequences of acquire / extend / release by a few owners on a few names, leases of two
//! lengths, leases forced to run out, and fenced writes, run through both — on the fred and
//! the redis-rs client — and every answer is compared. Needs the Redis at REDIS_URL.
//!
//! Each name's fencing counter is seeded above the server clock (2^52 µs, year 2112), so the
//! `last + 1` rule decides every token and the model predicts it exactly; one name is left
//! unseeded, where the token must come from the server clock.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use palisade_core::redis::{Arg, RedisClient, RedisScript};
use palisade_lock::{
    RedisLock,
    fencing::fenced_set,
    state::{Acquired, LockRecord, fence_accepts},
};
use proptest::prelude::*;

static ACQUIRE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../src/scripts/acquire.lua")));
static EXTEND: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../src/scripts/extend.lua")));
static RELEASE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../src/scripts/release.lua")));

/// Seeded names' counters start here: above any server time in µs, below 2^53 (Lua numbers
/// are doubles).
const SEED: u64 = 1 << 52;
/// The name whose counter is not seeded.
const UNSEEDED: usize = 2;
/// A "forced expiry" moves that name's model clock this far (ms).
const JUMP: u64 = 10_000_000;
const WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire,
    Extend,
    Release,
    /// The lease runs out now (Redis: `PEXPIRE 0`; the model: that name's clock jumps).
    Expire,
    /// A write to the fenced resource with this token.
    FencedSet(u64),
}

/// (operation, name, owner, long lease)
fn steps() -> impl Strategy<Value = Vec<(Op, usize, usize, bool)>> {
    let op = prop_oneof![
        5 => Just(Op::Acquire),
        2 => Just(Op::Extend),
        3 => Just(Op::Release),
        1 => Just(Op::Expire),
        2 => (1u64..8).prop_map(Op::FencedSet),
    ];
    prop::collection::vec((op, 0usize..3, 0usize..3, any::<bool>()), 1..60)
}

fn ttl_ms(long: bool) -> u64 {
    if long { 120_000 } else { 60_000 }
}

async fn server_time_us<C: RedisClient>(client: &C) -> u64 {
    let reply = client.command("TIME", &[]).await.unwrap();
    let parts: Vec<i64> = palisade_core::redis::FromReply::from_reply(reply).unwrap();
    parts[0] as u64 * 1_000_000 + parts[1] as u64
}

/// One sequence, on `client`, keys under `prefix`.
async fn run<C: RedisClient>(
    client: &C,
    prefix: String,
    steps: Vec<(Op, usize, usize, bool)>,
) -> Result<(), String> {
    let lock = RedisLock::new(client.clone(), Duration::from_secs(60)).with_prefix(&prefix);
    let resource = format!("{prefix}:resource");
    let started = std::time::Instant::now();
    let mut models: Vec<LockRecord> = vec![LockRecord::default(); 3];
    let mut jumps = [0u64; 3];
    let mut fence = 0u64;
    let mut fenced_value: Option<String> = None;
    let mut tokens: HashMap<usize, u64> = HashMap::new();
    for name in 0..3 {
        if name != UNSEEDED {
            let args = [
                Arg::from(lock.fence_key(&format!("n{name}"))),
                Arg::from(SEED.to_string()),
            ];
            client.command("SET", &args).await.unwrap();
        }
    }
    for (i, &(op, name, owner, long)) in steps.iter().enumerate() {
        let lock_name = format!("n{name}");
        let key = lock.key(&lock_name);
        let owner_token = format!("owner-{owner}");
        let now = started.elapsed().as_millis() as u64 + jumps[name];
        let model = &mut models[name];
        let fail = |what: String| Err(format!("step {i} ({op:?} n{name} owner-{owner}): {what}"));
        match op {
            Op::Acquire => {
                let before = server_time_us(client).await;
                let keys = [key.clone(), lock.fence_key(&lock_name)];
                let args = [
                    Arg::from(owner_token.as_str()),
                    Arg::Int(ttl_ms(long) as i64),
                ];
                let reply: i64 = ACQUIRE.invoke(client, &keys, &args, WITHIN).await.unwrap();
                // A seeded counter is the model's floor: `last + 1` takes over from the first token.
                let floor = if name == UNSEEDED { before } else { SEED + 1 };
                let expected = model.acquire(&owner_token, ttl_ms(long), now, floor);
                match expected {
                    Acquired::Granted { token } if name != UNSEEDED => {
                        if reply != token as i64 {
                            return fail(format!("model token {token}, script {reply}"));
                        }
                    }
                    Acquired::Granted { .. } => {
                        // From the server clock: at least its time before the call, and above
                        // the name's last token.
                        let last = tokens.get(&name).copied().unwrap_or(0);
                        if reply < before as i64 || reply <= last as i64 {
                            return fail(format!(
                                "script token {reply}, server time before {before}, last {last}"
                            ));
                        }
                        tokens.insert(name, reply as u64);
                    }
                    Acquired::Held { left_ms } => {
                        // -(ms left) - 1, within the time this step took.
                        let left = -reply - 1;
                        if reply >= 0 || (left - left_ms as i64).abs() > 1_000 {
                            return fail(format!("model held for {left_ms} ms, script {reply}"));
                        }
                    }
                }
            }
            Op::Extend | Op::Release => {
                let (script, expected) = match op {
                    Op::Extend => (&*EXTEND, model.extend(&owner_token, ttl_ms(long), now)),
                    _ => (&*RELEASE, model.release(&owner_token, now)),
                };
                let args = [
                    Arg::from(owner_token.as_str()),
                    Arg::Int(ttl_ms(long) as i64),
                ];
                let args = if matches!(op, Op::Extend) {
                    &args[..]
                } else {
                    &args[..1]
                };
                let reply: i64 = script
                    .invoke(client, std::slice::from_ref(&key), args, WITHIN)
                    .await
                    .unwrap();
                if reply != i64::from(expected) {
                    return fail(format!("model {expected}, script {reply}"));
                }
            }
            Op::Expire => {
                // A timeout that is not positive expires the key at once: no waiting.
                client
                    .command("PEXPIRE", &[Arg::from(key.as_str()), Arg::Int(0)])
                    .await
                    .unwrap();
                jumps[name] += JUMP;
            }
            Op::FencedSet(token) => {
                let value = format!("v{i}");
                // Through the crate's public fenced write (it runs `fenced_set.lua`).
                let reply = fenced_set(client, &resource, value.as_bytes(), token)
                    .await
                    .unwrap();
                let expected = fence_accepts(fence, token);
                if reply != expected {
                    return fail(format!(
                        "fence at {fence}: model {expected}, script {reply}"
                    ));
                }
                if expected {
                    fence = token;
                    fenced_value = Some(value);
                }
                let stored = client
                    .command("HGET", &[Arg::from(resource.as_str()), Arg::from("value")])
                    .await
                    .unwrap();
                let stored: Option<bytes::Bytes> =
                    palisade_core::redis::FromReply::from_reply(stored).unwrap();
                let stored = stored.map(|b| String::from_utf8_lossy(&b).into_owned());
                if stored != fenced_value {
                    return fail(format!("stored {stored:?}, model {fenced_value:?}"));
                }
            }
        }
    }
    Ok(())
}

palisade_testkit::differential_on_both_clients!(
    the_scripts_are_twins_of_the_record,
    cases: 48,
    steps: steps,
    run: run,
);
