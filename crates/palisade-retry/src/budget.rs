//! [`RetryBudget`]: retries limited to a fraction of requests, shared by all clones of a layer.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
};

use tokio::time::Instant;

const WINDOW_SECONDS: u64 = 10;

/// Retries may be at most `ratio` of the requests seen over the last 10 seconds, plus
/// `min_per_second` retries per second regardless — the Finagle/linkerd design. Shared by
/// every clone of the layer, so a failing upstream sees at most `1 + ratio` times its normal
/// load however many callers retry.
///
/// ```
/// use palisade_retry::RetryBudget;
///
/// let budget = RetryBudget::new(0.2, 1);
/// for _ in 0..100 {
///     budget.deposit();
/// }
/// let granted = (0..100).filter(|_| budget.withdraw()).count();
/// assert_eq!(granted, 30); // 20 % of 100 requests + 1/s over the 10 s window
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio: f64,
    min_per_second: u32,
    epoch: Instant,
    /// Per second: `stamp` = second + 1 (0: empty), requests, retries.
    buckets: [Bucket; WINDOW_SECONDS as usize],
}

#[derive(Default)]
struct Bucket {
    stamp: AtomicU64,
    requests: AtomicI64,
    retries: AtomicI64,
}

impl RetryBudget {
    /// Retries up to `ratio` (0.0 ..= 1.0) of requests plus `min_per_second`.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        RetryBudget {
            inner: Arc::new(Inner {
                ratio: ratio.clamp(0.0, 1.0),
                min_per_second,
                epoch: Instant::now(),
                buckets: Default::default(),
            }),
        }
    }

    fn second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.inner.epoch)
            .as_secs()
    }

    fn bucket(&self, second: u64) -> &Bucket {
        let bucket = &self.inner.buckets[(second % WINDOW_SECONDS) as usize];
        let stamp = bucket.stamp.load(Relaxed);
        if stamp < second + 1
            && bucket
                .stamp
                .compare_exchange(stamp, second + 1, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.requests.store(0, Relaxed);
            bucket.retries.store(0, Relaxed);
        }
        bucket
    }

    /// Counts a request (every first attempt).
    pub fn deposit(&self) {
        self.bucket(self.second()).requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let second = self.second();
        let oldest = (second + 1).saturating_sub(WINDOW_SECONDS);
        let (mut requests, mut retries) = (0i64, 0i64);
        for b in &self.inner.buckets {
            let stamp = b.stamp.load(Relaxed);
            if stamp > oldest && stamp <= second + 1 {
                requests += b.requests.load(Relaxed);
                retries += b.retries.load(Relaxed);
            }
        }
        let allowed = (requests as f64 * self.inner.ratio).floor() as i64
            + i64::from(self.inner.min_per_second) * WINDOW_SECONDS as i64;
        if retries < allowed {
            self.bucket(second).retries.fetch_add(1, Relaxed);
            true
        } else {
            false
        }
    }
}

impl Default for RetryBudget {
    /// 20 % of requests plus 10 retries per second (tower's `TpsBudget` defaults).
    fn default() -> Self {
        RetryBudget::new(0.2, 10)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("min_per_second", &self.inner.min_per_second)
            .finish()
    }
}
