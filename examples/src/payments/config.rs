//! Settings from the environment and, optionally, a TOML file (`PAYMENTS_CONFIG`).

use std::{net::SocketAddr, time::Duration};

use palisade::{
    breaker::{BreakerPolicy, OpenDuration},
    key::{ClientIp, ForwardedHeader},
    ratelimit::{Policy, TokenBucket},
};
use serde::Deserialize;

use crate::serve::ServeLimits;

/// Everything the service needs to start.
pub struct Settings {
    pub addr: SocketAddr,
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
    /// Prefix of every Redis key this service writes (several services may share a Redis).
    pub redis_prefix: String,
    pub payments: PaymentsRoute,
    pub quote: QuoteRoute,
    /// Connection limits (header and body timeouts, connection count).
    pub limits: ServeLimits,
    /// Who the client is: the peer, or — behind trusted proxies — the header they write.
    pub client_ip: ClientIp,
}

/// `POST /orders/{order_id}/payments`.
pub struct PaymentsRoute {
    pub rate_limit: Policy,
    /// Per client IP, before the API key is even looked at (rotating keys escape nothing).
    pub ip_rate_limit: Policy,
    /// The accepted API keys; `None` accepts any non-empty key.
    pub api_keys: Option<Vec<String>>,
    /// The idempotency lease: how long a key stays blocked after an unknown outcome.
    pub idempotency_lease: Duration,
    /// Every payment is answered within this (waiting for the order's lock included).
    pub request_budget: Duration,
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
/// idempotency_lease = "10s"
/// request_budget = "16s"
/// [payments.ip_rate_limit]          # a palisade rate-limit policy, per client IP
/// name = "payments-ip"
/// [[payments.ip_rate_limit.limits]]
/// name = "per-client-ip"
/// algorithm = "token_bucket"
/// capacity = 5000
/// refill_per_second = 2000
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
    #[serde(default, with = "humantime_serde")]
    idempotency_lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_budget: Option<Duration>,
    ip_rate_limit: Option<Policy>,
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
        let ip_capacity: Option<u64> = parsed("PAYMENTS_IP_RATE_CAPACITY")?;
        let ip_refill: Option<f64> = parsed("PAYMENTS_IP_RATE_REFILL_PER_SEC")?;
        let ip_rate_limit = match (file.payments.ip_rate_limit, ip_capacity, ip_refill) {
            (Some(policy), None, None) => policy,
            (_, capacity, refill) => {
                let bucket = TokenBucket::new(capacity.unwrap_or(5000), refill.unwrap_or(2000.0))
                    .map_err(|e| format!("ip rate limit: {e}"))?;
                Policy::builder("payments-ip")
                    .limit("per-client-ip", bucket)
                    .and_then(|b| b.build())
                    .map_err(|e| format!("ip rate limit: {e}"))?
            }
        };
        let api_keys = env("PAYMENTS_API_KEYS").map(|keys| {
            keys.split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect::<Vec<_>>()
        });
        let client_ip = client_ip()?;
        let defaults = ServeLimits::default();
        let limits = ServeLimits {
            header_read_timeout: duration("PAYMENTS_HEADER_TIMEOUT")?
                .unwrap_or(defaults.header_read_timeout),
            body_timeout: duration("PAYMENTS_BODY_TIMEOUT")?.unwrap_or(defaults.body_timeout),
            max_body: defaults.max_body,
            max_connections: parsed("PAYMENTS_MAX_CONNECTIONS")?
                .unwrap_or(defaults.max_connections),
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
            limits,
            client_ip,
            payments: PaymentsRoute {
                rate_limit,
                ip_rate_limit,
                api_keys,
                request_budget: duration("PAYMENTS_REQUEST_BUDGET")?
                    .or(file.payments.request_budget)
                    .unwrap_or(Duration::from_secs(16)),
                idempotency_lease: duration("PAYMENTS_IDEMPOTENCY_LEASE")?
                    .or(file.payments.idempotency_lease)
                    .unwrap_or(Duration::from_secs(10)),
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

fn duration(name: &str) -> Result<Option<Duration>, String> {
    env(name)
        .map(|v| {
            humantime_serde::re::humantime::parse_duration(v.trim())
                .map_err(|e| format!("{name}={v:?}: {e}"))
        })
        .transpose()
}

/// `PAYMENTS_TRUSTED_PROXIES` (comma-separated CIDRs; unset: none, the peer is the client) and
/// `PAYMENTS_CLIENT_IP_HEADER` (`x-forwarded-for`, the default; `forwarded`; or a single-value
/// header such as `cf-connecting-ip`, `true-client-ip`, `x-real-ip`).
fn client_ip() -> Result<ClientIp, String> {
    let Some(proxies) = env("PAYMENTS_TRUSTED_PROXIES") else {
        return Ok(ClientIp::direct());
    };
    let proxies = proxies
        .split(',')
        .map(|cidr| {
            let cidr = cidr.trim();
            cidr.parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| format!("PAYMENTS_TRUSTED_PROXIES: {cidr:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = match env("PAYMENTS_CLIENT_IP_HEADER")
        .map(|h| h.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
        Some("forwarded") => ForwardedHeader::Forwarded,
        Some(name) => ForwardedHeader::Single(
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("PAYMENTS_CLIENT_IP_HEADER={name:?}: {e}"))?,
        ),
    };
    Ok(ClientIp::trusting(proxies).header(header))
}
