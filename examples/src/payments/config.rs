//! Settings from the environment and, optionally, a TOML file (`PAYMENTS_CONFIG`).

use std::{net::SocketAddr, time::Duration};

use palisade::{
    breaker::{BreakerPolicy, OpenDuration},
    ratelimit::{Policy, TokenBucket},
};
use serde::Deserialize;

/// Everything the service needs to start.
pub struct Settings {
    pub addr: SocketAddr,
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
    /// Prefix of every Redis key this service writes (several services may share a Redis).
    pub redis_prefix: String,
    pub payments: PaymentsRoute,
    pub quote: QuoteRoute,
}

/// `POST /orders/{order_id}/payments`.
pub struct PaymentsRoute {
    pub rate_limit: Policy,
    pub lock_ttl: Duration,
    pub lock_wait: Duration,
    pub idempotency_retention: Duration,
}

/// `GET /quote` and its client stack.
pub struct QuoteRoute {
    pub breaker: BreakerPolicy,
    pub concurrency: u32,
    pub queue: u32,
    pub max_wait: Duration,
    pub attempts: u32,
    pub attempt_timeout: Duration,
}

/// The TOML file: every key optional, per route.
///
/// ```toml
/// [payments]
/// lock_ttl = "10s"
/// lock_wait = "10s"
/// idempotency_retention = "24h"
/// [payments.rate_limit]             # a palisade rate-limit policy
/// name = "payments"
/// on_backend_error = "fail_open"
/// [[payments.rate_limit.limits]]
/// name = "burst"
/// algorithm = "token_bucket"
/// capacity = 20
/// refill_per_second = 5
///
/// [quote]
/// concurrency = 8
/// queue = 16
/// max_wait = "1s"
/// attempts = 3
/// attempt_timeout = "1s"
/// [quote.breaker]                   # a palisade breaker policy
/// name = "upstream"
/// failure_rate = 0.5
/// window = { calls = 10 }
/// minimum_calls = 5
/// open = "5s"
/// ```
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    payments: PaymentsFile,
    #[serde(default)]
    quote: QuoteFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PaymentsFile {
    rate_limit: Option<Policy>,
    #[serde(default, with = "humantime_serde")]
    lock_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    lock_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idempotency_retention: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QuoteFile {
    breaker: Option<BreakerPolicy>,
    concurrency: Option<u32>,
    queue: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_wait: Option<Duration>,
    attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    attempt_timeout: Option<Duration>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| format!("{name}={v:?}: {e}"))
        })
        .transpose()
}

impl Settings {
    /// Reads `PAYMENTS_*`, `REDIS_URL`, `DATABASE_URL` and the optional TOML file.
    pub fn from_env() -> Result<Settings, String> {
        let file: File = match env("PAYMENTS_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("PAYMENTS_CONFIG={path}: {e}"))?;
                toml::from_str(&text).map_err(|e| format!("PAYMENTS_CONFIG={path}: {e}"))?
            }
            None => File::default(),
        };
        let capacity: Option<u64> = parsed("PAYMENTS_RATE_CAPACITY")?;
        let refill: Option<f64> = parsed("PAYMENTS_RATE_REFILL_PER_SEC")?;
        // The environment wins over the file; the file over the defaults (20, 5/s).
        let rate_limit = match (file.payments.rate_limit, capacity, refill) {
            (Some(policy), None, None) => policy,
            (_, capacity, refill) => {
                let bucket = TokenBucket::new(capacity.unwrap_or(20), refill.unwrap_or(5.0))
                    .map_err(|e| format!("rate limit: {e}"))?;
                Policy::builder("payments")
                    .limit("per-api-key", bucket)
                    .and_then(|b| b.build())
                    .map_err(|e| format!("rate limit: {e}"))?
            }
        };
        let breaker = match file.quote.breaker {
            Some(policy) => policy,
            None => BreakerPolicy::builder("upstream")
                .count_window(10)
                .minimum_calls(5)
                .failure_rate(0.5)
                .open_for(OpenDuration::fixed(Duration::from_secs(5)))
                .build()
                .map_err(|e| format!("breaker: {e}"))?,
        };
        Ok(Settings {
            addr: parsed("PAYMENTS_ADDR")?.unwrap_or(([127, 0, 0, 1], 3000).into()),
            redis_url: env("REDIS_URL"),
            database_url: env("DATABASE_URL"),
            redis_prefix: env("PAYMENTS_REDIS_PREFIX").unwrap_or_else(|| "payments".to_owned()),
            payments: PaymentsRoute {
                rate_limit,
                lock_ttl: file.payments.lock_ttl.unwrap_or(Duration::from_secs(10)),
                lock_wait: file.payments.lock_wait.unwrap_or(Duration::from_secs(10)),
                idempotency_retention: file
                    .payments
                    .idempotency_retention
                    .unwrap_or(Duration::from_secs(24 * 3600)),
            },
            quote: QuoteRoute {
                breaker,
                concurrency: file.quote.concurrency.unwrap_or(8),
                queue: file.quote.queue.unwrap_or(16),
                max_wait: file.quote.max_wait.unwrap_or(Duration::from_secs(1)),
                attempts: file.quote.attempts.unwrap_or(3),
                attempt_timeout: file.quote.attempt_timeout.unwrap_or(Duration::from_secs(1)),
            },
        })
    }
}
