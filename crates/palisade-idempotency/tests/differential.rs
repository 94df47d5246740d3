//! Every store is a twin of the pure state machine (`palisade_idempotency::state`): random
//! sequences of claim / renew / complete / fail / release over a few keys, fingerprints and
//! owners run through the model and through the memory store, the Redis scripts (on fred and
//! on redis-rs) and the PostgreSQL statements, and every answer is compared. Needs the Redis at
//! REDIS_URL and the PostgreSQL at DATABASE_URL.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_idempotency::{
    IdempotencyStore,
    state::{self, Record, Step},
    store::{Claim, Failed, Owner, RecordKey},
};
use proptest::{prelude::*, test_runner::TestCaseError};

const LEASE: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
enum Op {
    Claim {
        key: usize,
        fp: usize,
        owner: usize,
    },
    Renew {
        key: usize,
        owner: usize,
    },
    Complete {
        key: usize,
        owner: usize,
        response: usize,
    },
    Fail {
        key: usize,
        owner: usize,
        max: u32,
    },
    Release {
        key: usize,
        owner: usize,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let key = 0usize..3;
    let owner = 0usize..4;
    let op = prop_oneof![
        4 => (key.clone(), 0usize..2, owner.clone()).prop_map(|(key, fp, owner)| Op::Claim { key, fp, owner }),
        1 => (key.clone(), owner.clone()).prop_map(|(key, owner)| Op::Renew { key, owner }),
        2 => (key.clone(), owner.clone(), 0usize..3)
            .prop_map(|(key, owner, response)| Op::Complete { key, owner, response }),
        2 => (key.clone(), owner.clone(), 1u32..4).prop_map(|(key, owner, max)| Op::Fail { key, owner, max }),
        1 => (key, owner).prop_map(|(key, owner)| Op::Release { key, owner }),
    ];
    prop::collection::vec(op, 1..60)
}

/// An answer, comparable across stores (a lease's remainder within a few seconds).
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Claim(Claim),
    Done(bool),
    Failed(Option<Failed>),
    Released(Option<u32>),
}

fn same(model: &Answer, store: &Answer) -> bool {
    match (model, store) {
        (
            Answer::Claim(Claim::InFlight { lease_left: a }),
            Answer::Claim(Claim::InFlight { lease_left: b }),
        ) => a.abs_diff(*b) < Duration::from_secs(5),
        (a, b) => a == b,
    }
}

/// The model: one record per key, time since the case began.
struct Model {
    records: Vec<Option<Record<Duration>>>,
    started: Instant,
}

impl Model {
    fn run<R>(
        &mut self,
        key: usize,
        step: impl FnOnce(Option<&Record<Duration>>, Duration) -> Step<Duration, R>,
    ) -> R {
        let step = step(self.records[key].as_ref(), self.started.elapsed());
        if let Some(record) = step.write {
            self.records[key] = Some(record);
        }
        step.reply
    }

    fn apply(&mut self, op: &Op, owners: &[Owner]) -> Answer {
        match *op {
            Op::Claim { key, fp, owner } => Answer::Claim(self.run(key, |r, now| {
                state::claim(r, now, FPS[fp], &owners[owner], LEASE)
            })),
            Op::Renew { key, owner } => {
                Answer::Done(self.run(key, |r, now| state::renew(r, now, &owners[owner], LEASE)))
            }
            Op::Complete {
                key,
                owner,
                response,
            } => Answer::Done(self.run(key, |r, now| {
                state::complete(r, now, &owners[owner], response_bytes(response), RETENTION)
            })),
            Op::Fail { key, owner, max } => Answer::Failed(self.run(key, |r, now| {
                state::fail(r, now, &owners[owner], max, dead(), RETENTION)
            })),
            Op::Release { key, owner } => Answer::Released(
                self.run(key, |r, now| {
                    state::fail(r, now, &owners[owner], u32::MAX, Bytes::new(), RETENTION)
                })
                .map(|f| f.attempts),
            ),
        }
    }
}

const FPS: [&str; 2] = ["fp-a", "fp-b"];

fn response_bytes(i: usize) -> Bytes {
    Bytes::from(format!("response-{i}\x00\u{ff}"))
}

fn dead() -> Bytes {
    Bytes::from_static(b"dead-letter")
}

async fn apply<S: IdempotencyStore>(
    store: &S,
    keys: &[RecordKey],
    op: &Op,
    owners: &[Owner],
) -> Answer {
    match *op {
        Op::Claim { key, fp, owner } => Answer::Claim(
            store
                .claim(&keys[key], FPS[fp], &owners[owner], LEASE)
                .await
                .unwrap(),
        ),
        Op::Renew { key, owner } => Answer::Done(
            store
                .renew(&keys[key], &owners[owner], LEASE)
                .await
                .unwrap(),
        ),
        Op::Complete {
            key,
            owner,
            response,
        } => Answer::Done(
            store
                .complete(
                    &keys[key],
                    &owners[owner],
                    response_bytes(response),
                    RETENTION,
                )
                .await
                .unwrap(),
        ),
        Op::Fail { key, owner, max } => Answer::Failed(
            store
                .fail(&keys[key], &owners[owner], max, dead(), RETENTION)
                .await
                .unwrap(),
        ),
        Op::Release { key, owner } => Answer::Released(
            store
                .release(&keys[key], &owners[owner], RETENTION)
                .await
                .unwrap(),
        ),
    }
}

#[test]
fn every_store_is_a_twin_of_the_state_machine() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (fred, _redis) = rt.block_on(common::redis_store());
    let (redis_rs, _redis_too) = rt.block_on(common::redis_rs_store());
    let (postgres, _pg) = rt.block_on(common::postgres_store());
    let memory = common::memory_store();
    let case = std::cell::Cell::new(0u64);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in ops())| {
        case.set(case.get() + 1);
        // Fresh keys per case: no record from an earlier case.
        let keys: Vec<RecordKey> = (0..3)
            .map(|k| RecordKey::message("differential", &format!("{}-{k}", case.get())))
            .collect();
        let owners: Vec<Owner> = (0..4).map(|_| Owner::unique()).collect();
        let mut model = Model { records: vec![None, None, None], started: Instant::now() };
        for (i, op) in ops.iter().enumerate() {
            let expected = model.apply(op, &owners);
            let answers = rt.block_on(async {
                [
                    ("memory", apply(&memory, &keys, op, &owners).await),
                    ("redis (fred)", apply(&fred, &keys, op, &owners).await),
                    ("redis (redis-rs)", apply(&redis_rs, &keys, op, &owners).await),
                    ("postgres", apply(&postgres, &keys, op, &owners).await),
                ]
            });
            for (store, answer) in answers {
                if !same(&expected, &answer) {
                    return Err(TestCaseError::fail(format!(
                        "step {i} {op:?}: the model says {expected:?}, {store} says {answer:?}\nops: {ops:?}"
                    )));
                }
            }
        }
    });
}
