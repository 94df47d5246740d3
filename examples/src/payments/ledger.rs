//! The orders' ledgers: charges per order, and the "in critical section" mark that detects
//! two handlers working on one order at once (which the lock must make impossible).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use fred::types::Value;
use palisade::{BackendError, core::script::RedisScript};
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
    /// Appends a charge; returns its 1-based position in the order's ledger.
    fn append(
        &self,
        order: &str,
        cents: u64,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;
    /// The order's ledger.
    fn charges(&self, order: &str) -> impl Future<Output = Result<Charges, BackendError>> + Send;
}

/// One order in memory: its charges, and the token of the handler inside, if any.
type OrderState = (Charges, Option<String>);

/// Ledgers in memory (one process).
#[derive(Clone, Default)]
pub struct MemoryLedger(Arc<Mutex<HashMap<String, OrderState>>>);

impl Ledger for MemoryLedger {
    async fn enter(&self, order: &str, token: &str) -> Result<bool, BackendError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (charges, mark) = map.entry(order.to_owned()).or_default();
        if mark.is_some() {
            charges.overlaps += 1;
            return Ok(true);
        }
        *mark = Some(token.to_owned());
        Ok(false)
    }

    async fn leave(&self, order: &str, token: &str) -> Result<(), BackendError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, mark)) = map.get_mut(order) {
            if mark.as_deref() == Some(token) {
                *mark = None;
            }
        }
        Ok(())
    }

    async fn append(&self, order: &str, cents: u64) -> Result<u64, BackendError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (charges, _) = map.entry(order.to_owned()).or_default();
        charges.count += 1;
        charges.total_cents += cents;
        Ok(charges.count)
    }

    async fn charges(&self, order: &str) -> Result<Charges, BackendError> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(order).map(|(c, _)| c.clone()).unwrap_or_default())
    }
}

static ENTER: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 60000) then return 0 end \
         redis.call('INCR', KEYS[2]) return 1",
    )
});
static LEAVE: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0",
    )
});
static APPEND: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "local seq = redis.call('INCR', KEYS[1]) redis.call('INCRBY', KEYS[2], ARGV[1]) return seq",
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
}

impl RedisLedger {
    pub fn new(client: fred::clients::Client, prefix: &str) -> Self {
        RedisLedger {
            client,
            prefix: prefix.into(),
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
                vec![self.key(order, "critical"), self.key(order, "overlaps")],
                vec![Value::from(token)],
                TIMEOUT,
            )
            .await?;
        Ok(overlap == 1)
    }

    async fn leave(&self, order: &str, token: &str) -> Result<(), BackendError> {
        let _: i64 = LEAVE
            .invoke(
                &self.client,
                self.key(order, "critical"),
                vec![Value::from(token)],
                TIMEOUT,
            )
            .await?;
        Ok(())
    }

    async fn append(&self, order: &str, cents: u64) -> Result<u64, BackendError> {
        let seq: i64 = APPEND
            .invoke(
                &self.client,
                vec![self.key(order, "count"), self.key(order, "total")],
                vec![Value::from(cents as i64)],
                TIMEOUT,
            )
            .await?;
        Ok(seq as u64)
    }

    async fn charges(&self, order: &str) -> Result<Charges, BackendError> {
        let values: Vec<i64> = CHARGES
            .invoke(
                &self.client,
                vec![
                    self.key(order, "count"),
                    self.key(order, "total"),
                    self.key(order, "overlaps"),
                ],
                Vec::<Value>::new(),
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
