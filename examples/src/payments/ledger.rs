//! The orders' ledgers: charges per order, and the "in critical section" mark that detects
//! two handlers working on one order at once (which the lock must make impossible).
//!
//! A charge is **keyed** by its idempotency record: appending it twice (a re-run after an
//! unknown outcome — the first append timed out but landed) finds the first charge instead of
//! adding a second. That is the handler's half of "never charge twice"; the idempotency layer's
//! half is keeping the claim while the outcome is unknown.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use palisade::{
    BackendError,
    core::redis::{Arg, RedisScript},
};
use serde::Serialize;

/// One order's ledger, as `GET /orders/{order_id}/charges` reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Charges {
    pub count: u64,
    pub total_cents: u64,
    pub overlaps: u64,
}

/// Where ledgers live: in this process, or in Redis for a fleet.
pub trait Ledger: Clone + Send + Sync + 'static {
    /// Marks the order as being worked on; `true` if it already was (an overlap, recorded).
    fn enter(
        &self,
        order: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
    /// Clears the mark set with `token`.
    fn leave(
        &self,
        order: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Appends the charge `charge_id` once; returns its 1-based position in the order's
    /// ledger — the first append's position when `charge_id` was appended before.
    fn append(
        &self,
        order: &str,
        charge_id: &str,
        cents: u64,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;
    /// The order's ledger.
    fn charges(&self, order: &str) -> impl Future<Output = Result<Charges, BackendError>> + Send;
}

/// One order in memory: its charges, and the token of the handler inside, if any.
type OrderState = (Charges, Option<String>);

/// Charge ids remembered in memory: the oldest is forgotten beyond this many (a re-run after
/// that many later payments would append again — far beyond any idempotency lease).
const REMEMBERED_CHARGES: usize = 100_000;

#[derive(Default)]
struct MemoryState {
    orders: HashMap<String, OrderState>,
    charges: HashMap<String, u64>,
    order_of_charges: std::collections::VecDeque<String>,
}

/// Ledgers in memory (one process).
#[derive(Clone, Default)]
pub struct MemoryLedger(Arc<Mutex<MemoryState>>);

impl MemoryLedger {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ledger for MemoryLedger {
    async fn enter(&self, order: &str, token: &str) -> Result<bool, BackendError> {
        let mut state = self.state();
        let map = &mut state.orders;
        let (charges, mark) = map.entry(order.to_owned()).or_default();
        if mark.is_some() {
            charges.overlaps += 1;
            return Ok(true);
        }
        *mark = Some(token.to_owned());
        Ok(false)
    }

    async fn leave(&self, order: &str, token: &str) -> Result<(), BackendError> {
        let mut state = self.state();
        if let Some((_, mark)) = state.orders.get_mut(order) {
            if mark.as_deref() == Some(token) {
                *mark = None;
            }
        }
        Ok(())
    }

    async fn append(&self, order: &str, charge_id: &str, cents: u64) -> Result<u64, BackendError> {
        let mut state = self.state();
        let charge = format!("{order}\0{charge_id}");
        if let Some(seq) = state.charges.get(&charge) {
            return Ok(*seq);
        }
        let (charges, _) = state.orders.entry(order.to_owned()).or_default();
        charges.count += 1;
        charges.total_cents += cents;
        let seq = charges.count;
        state.charges.insert(charge.clone(), seq);
        state.order_of_charges.push_back(charge);
        if state.order_of_charges.len() > REMEMBERED_CHARGES
            && let Some(oldest) = state.order_of_charges.pop_front()
        {
            state.charges.remove(&oldest);
        }
        Ok(seq)
    }

    async fn charges(&self, order: &str) -> Result<Charges, BackendError> {
        let state = self.state();
        Ok(state
            .orders
            .get(order)
            .map(|(c, _)| c.clone())
            .unwrap_or_default())
    }
}

// The mark lives as long as the order's lock lease (ARGV[2]): a crashed handler's mark goes
// with its lock, and no later payment logs a false overlap.
static ENTER: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end \
         redis.call('INCR', KEYS[2]) return 1",
    )
});
static LEAVE: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0",
    )
});
// KEYS[3] remembers the charge: an append that already happened answers its first position.
static APPEND: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "local seen = redis.call('GET', KEYS[3]) if seen then return tonumber(seen) end \
         local seq = redis.call('INCR', KEYS[1]) redis.call('INCRBY', KEYS[2], ARGV[1]) \
         redis.call('SET', KEYS[3], seq, 'PX', ARGV[2]) return seq",
    )
});
static CHARGES: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "return {tonumber(redis.call('GET', KEYS[1]) or '0'), \
                 tonumber(redis.call('GET', KEYS[2]) or '0'), \
                 tonumber(redis.call('GET', KEYS[3]) or '0')}",
    )
});

const TIMEOUT: Duration = Duration::from_millis(500);

/// Ledgers in Redis, shared by every instance: `<prefix>:ledger:{<order>}:{count,total,…}`.
#[derive(Clone)]
pub struct RedisLedger {
    client: fred::clients::Client,
    prefix: Arc<str>,
    /// How long the critical-section mark lives (the order lock's lease).
    mark_ttl: Duration,
    /// How long a charge id is remembered (the idempotency retention).
    remember: Duration,
}

impl RedisLedger {
    pub fn new(
        client: fred::clients::Client,
        prefix: &str,
        mark_ttl: Duration,
        remember: Duration,
    ) -> Self {
        RedisLedger {
            client,
            prefix: prefix.into(),
            mark_ttl,
            remember,
        }
    }

    fn key(&self, order: &str, field: &str) -> String {
        // The order id is the hash tag: one order's keys share a Cluster slot. Braces in the id
        // would break the tag, so they are replaced.
        let order = order.replace(['{', '}'], "_");
        format!("{}:ledger:{{{order}}}:{field}", self.prefix)
    }
}

impl Ledger for RedisLedger {
    async fn enter(&self, order: &str, token: &str) -> Result<bool, BackendError> {
        let overlap: i64 = ENTER
            .invoke(
                &self.client,
                &[self.key(order, "critical"), self.key(order, "overlaps")],
                &[
                    Arg::from(token),
                    Arg::Int(self.mark_ttl.as_millis().max(1) as i64),
                ],
                TIMEOUT,
            )
            .await?;
        Ok(overlap == 1)
    }

    async fn leave(&self, order: &str, token: &str) -> Result<(), BackendError> {
        let _: i64 = LEAVE
            .invoke(
                &self.client,
                &[self.key(order, "critical")],
                &[Arg::from(token)],
                TIMEOUT,
            )
            .await?;
        Ok(())
    }

    async fn append(&self, order: &str, charge_id: &str, cents: u64) -> Result<u64, BackendError> {
        let seq: i64 = APPEND
            .invoke(
                &self.client,
                &[
                    self.key(order, "count"),
                    self.key(order, "total"),
                    self.key(order, &format!("charge:{charge_id}")),
                ],
                &[
                    Arg::Int(cents as i64),
                    Arg::Int(self.remember.as_millis().max(1) as i64),
                ],
                TIMEOUT,
            )
            .await?;
        Ok(seq as u64)
    }

    async fn charges(&self, order: &str) -> Result<Charges, BackendError> {
        let values: Vec<i64> = CHARGES
            .invoke(
                &self.client,
                &[
                    self.key(order, "count"),
                    self.key(order, "total"),
                    self.key(order, "overlaps"),
                ],
                &[],
                TIMEOUT,
            )
            .await?;
        let get = |i: usize| values.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(Charges {
            count: get(0),
            total_cents: get(1),
            overlaps: get(2),
        })
    }
}

/// The ledger chosen at run time (memory, or Redis for a fleet), like the other backends.
impl<A: Ledger, B: Ledger> Ledger for palisade::Either<A, B> {
    async fn enter(&self, order: &str, token: &str) -> Result<bool, BackendError> {
        match self {
            palisade::Either::Left(l) => l.enter(order, token).await,
            palisade::Either::Right(l) => l.enter(order, token).await,
        }
    }

    async fn leave(&self, order: &str, token: &str) -> Result<(), BackendError> {
        match self {
            palisade::Either::Left(l) => l.leave(order, token).await,
            palisade::Either::Right(l) => l.leave(order, token).await,
        }
    }

    async fn append(&self, order: &str, charge_id: &str, cents: u64) -> Result<u64, BackendError> {
        match self {
            palisade::Either::Left(l) => l.append(order, charge_id, cents).await,
            palisade::Either::Right(l) => l.append(order, charge_id, cents).await,
        }
    }

    async fn charges(&self, order: &str) -> Result<Charges, BackendError> {
        match self {
            palisade::Either::Left(l) => l.charges(order).await,
            palisade::Either::Right(l) => l.charges(order).await,
        }
    }
}
