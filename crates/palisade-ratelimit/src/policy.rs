//! Policies: named sets of limits checked together, built in code or loaded from TOML.
//!
//! ```
//! use palisade_ratelimit::Policy;
//!
//! let policy: Policy = toml::from_str(r#"
//!     name = "api"
//!     on_backend_error = "fail_closed"
//!
//!     [[limits]]
//!     name = "burst"
//!     algorithm = "token_bucket"
//!     capacity = 10
//!     refill_per_second = 5
//!
//!     [[limits]]
//!     name = "daily"
//!     algorithm = "fixed_window"
//!     quota = 1000
//!     window = "1day"
//! "#).unwrap();
//! assert_eq!(policy.limits().len(), 2);
//! ```

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use http::HeaderValue;
use palisade_core::OnBackendError;
use serde::Deserialize;

use crate::algorithm::{Algorithm, FixedWindow, Gcra, SlidingWindowLog, TokenBucket};
pub use crate::error::PolicyError;

/// Most limits one policy may hold (all checked in one atomic step).
pub const MAX_LIMITS: usize = 4;

/// One named limit: an [`Algorithm`] with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    name: Arc<str>,
    /// The name as a structured-field string (`"name"`), serialized once.
    sf_name: Box<str>,
    algorithm: Algorithm,
}

impl Limit {
    /// A limit called `name` (shown to clients in `RateLimit-Policy`; letters, digits, `-`, `_`,
    /// `.`; at most 64 bytes).
    pub fn new(name: &str, algorithm: impl Into<Algorithm>) -> Result<Limit, PolicyError> {
        validate_name("limit", name)?;
        Ok(Limit {
            name: name.into(),
            sf_name: crate::sf::sf_string(name)?.into(),
            algorithm: algorithm.into(),
        })
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn sf_name(&self) -> &str {
        &self.sf_name
    }

    /// How the limit counts.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }
}

macro_rules! into_algorithm {
    ($($t:ident),*) => {$(
        impl From<$t> for Algorithm {
            fn from(a: $t) -> Algorithm {
                Algorithm::$t(a)
            }
        }
    )*};
}
into_algorithm!(TokenBucket, Gcra, SlidingWindowLog, FixedWindow);

/// How a decision ended, for the decision counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed = 0,
    Rejected = 1,
    ShadowRejected = 2,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Allowed, Outcome::Rejected, Outcome::ShadowRejected];

    fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Rejected => "rejected",
            Outcome::ShadowRejected => "shadow_rejected",
        }
    }
}

/// A named set of limits checked together: a request passes only if its cost fits **every**
/// limit, and then it is taken from all of them (e.g. 10/s *and* 1000/day).
///
/// The policy name scopes the stored counters: two layers with the same policy name share
/// counters for the same key (one quota across routes); give each its own name to count
/// separately.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    name: Arc<str>,
    limits: Vec<Limit>,
    /// `"<policy>.<limit>.<algorithm>"` per limit: the store namespace of each limit.
    namespaces: Vec<Arc<str>>,
    on_backend_error: OnBackendError,
    /// The `RateLimit-Policy` field value, built once.
    header: HeaderValue,
    /// Decision counters, registered on first use so no label is built per request.
    counters: OnceLock<[metrics::Counter; 3]>,
}

impl Policy {
    /// A policy named `name` with one limit of the same name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_ratelimit::{Gcra, Policy};
    ///
    /// let policy = Policy::new("login", Gcra::new(10, Duration::from_secs(60)).unwrap()).unwrap();
    /// assert_eq!(policy.header_value(), "\"login\";q=10;w=60");
    /// ```
    pub fn new(name: &str, algorithm: impl Into<Algorithm>) -> Result<Policy, PolicyError> {
        Policy::builder(name).limit(name, algorithm)?.build()
    }

    /// Starts a policy with several limits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_ratelimit::{FixedWindow, Policy, TokenBucket};
    ///
    /// let policy = Policy::builder("api")
    ///     .limit("per-second", TokenBucket::new(10, 10.0)?)?
    ///     .limit("daily", FixedWindow::new(1000, Duration::from_secs(86_400))?)?
    ///     .build()?;
    /// assert_eq!(policy.header_value(), "\"per-second\";q=10;w=1, \"daily\";q=1000;w=86400");
    /// # Ok::<(), palisade_ratelimit::PolicyError>(())
    /// ```
    pub fn builder(name: &str) -> PolicyBuilder {
        PolicyBuilder {
            name: name.to_owned(),
            limits: Vec::new(),
            on_backend_error: OnBackendError::default(),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its limits.
    pub fn limits(&self) -> &[Limit] {
        &self.inner.limits
    }

    /// What happens when the store cannot decide.
    pub fn on_backend_error(&self) -> OnBackendError {
        self.inner.on_backend_error
    }

    /// The `RateLimit-Policy` field value (IETF draft-10 syntax).
    pub fn header_value(&self) -> &HeaderValue {
        &self.inner.header
    }

    pub(crate) fn namespaces(&self) -> &[Arc<str>] {
        &self.inner.namespaces
    }

    /// Counts a decision in `palisade_ratelimit_decisions_total{policy, outcome}`.
    ///
    /// The counters are registered with the recorder installed at the policy's first decision:
    /// install the metrics exporter before serving traffic.
    pub(crate) fn record(&self, outcome: Outcome) {
        let counters = self.inner.counters.get_or_init(|| {
            Outcome::ALL.map(|outcome| {
                metrics::counter!(
                    "palisade_ratelimit_decisions_total",
                    "policy" => self.inner.name.to_string(),
                    "outcome" => outcome.label()
                )
            })
        });
        counters[outcome as usize].increment(1);
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.inner.name)
            .field("limits", &self.inner.limits)
            .field("on_backend_error", &self.inner.on_backend_error)
            .finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name == other.inner.name
            && self.inner.limits == other.inner.limits
            && self.inner.on_backend_error == other.inner.on_backend_error
    }
}

/// Builds a [`Policy`] of several limits.
#[derive(Debug)]
pub struct PolicyBuilder {
    name: String,
    limits: Vec<Limit>,
    on_backend_error: OnBackendError,
}

impl PolicyBuilder {
    /// Adds a limit.
    pub fn limit(
        mut self,
        name: &str,
        algorithm: impl Into<Algorithm>,
    ) -> Result<PolicyBuilder, PolicyError> {
        self.limits.push(Limit::new(name, algorithm)?);
        Ok(self)
    }

    /// Sets the backend-failure policy (default: fail open).
    pub fn on_backend_error(mut self, policy: OnBackendError) -> PolicyBuilder {
        self.on_backend_error = policy;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Policy, PolicyError> {
        validate_name("policy", &self.name)?;
        if self.limits.is_empty() || self.limits.len() > MAX_LIMITS {
            return Err(PolicyError::invalid(format!(
                "policy `{}` needs 1..={MAX_LIMITS} limits, has {}",
                self.name,
                self.limits.len()
            )));
        }
        for (i, limit) in self.limits.iter().enumerate() {
            if self.limits[..i].iter().any(|l| l.name == limit.name) {
                return Err(PolicyError::invalid(format!(
                    "policy `{}` has two limits named `{}`",
                    self.name, limit.name
                )));
            }
        }
        let namespaces = self
            .limits
            .iter()
            .map(|l| {
                let code = match l.algorithm {
                    Algorithm::TokenBucket(_) => "tb",
                    Algorithm::Gcra(_) => "gcra",
                    Algorithm::SlidingWindowLog(_) => "swl",
                    Algorithm::FixedWindow(_) => "fw",
                };
                Arc::from(format!("{}.{}.{}", self.name, l.name, code))
            })
            .collect();
        let header = crate::sf::policy_header(
            self.limits
                .iter()
                .map(|l| (l.name(), l.algorithm().quota(), l.algorithm().window())),
        )?;
        Ok(Policy {
            inner: Arc::new(PolicyInner {
                name: self.name.into(),
                limits: self.limits,
                namespaces,
                on_backend_error: self.on_backend_error,
                header,
                counters: OnceLock::new(),
            }),
        })
    }
}

fn validate_name(what: &str, name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::invalid(format!(
            "{what} name `{name}` must be 1-64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// A limit as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
pub enum LimitConfig {
    /// `capacity`, `refill_per_second`.
    TokenBucket {
        /// Limit name.
        name: String,
        /// Largest burst.
        capacity: u64,
        /// Tokens per second (fractional allowed).
        refill_per_second: f64,
    },
    /// `quota` per `window`, optional `burst`.
    Gcra {
        /// Limit name.
        name: String,
        /// Units per window.
        quota: u64,
        /// The window (`"1m"`, `"1h 30m"`…).
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Largest burst (default: the quota).
        #[serde(default)]
        burst: Option<u64>,
    },
    /// `quota` per trailing `window`, exact.
    SlidingWindowLog {
        /// Limit name.
        name: String,
        /// Units per window.
        quota: u64,
        /// The window.
        #[serde(with = "humantime_serde")]
        window: Duration,
    },
    /// `quota` per aligned `window`.
    FixedWindow {
        /// Limit name.
        name: String,
        /// Units per window.
        quota: u64,
        /// The window.
        #[serde(with = "humantime_serde")]
        window: Duration,
    },
}

/// A policy as written in configuration; deserialize a [`Policy`] directly to get it validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy name.
    pub name: String,
    /// `fail_open` (default) or `fail_closed`.
    #[serde(default)]
    pub on_backend_error: OnBackendError,
    /// The limits, checked together.
    pub limits: Vec<LimitConfig>,
}

impl TryFrom<PolicyConfig> for Policy {
    type Error = PolicyError;

    fn try_from(config: PolicyConfig) -> Result<Policy, PolicyError> {
        let context = |e: PolicyError| {
            PolicyError::invalid(format!("policy `{}`: {}", config.name, e.message()))
        };
        let mut builder = Policy::builder(&config.name).on_backend_error(config.on_backend_error);
        for limit in &config.limits {
            builder = match limit {
                LimitConfig::TokenBucket {
                    name,
                    capacity,
                    refill_per_second,
                } => builder.limit(
                    name,
                    TokenBucket::new(*capacity, *refill_per_second).map_err(context)?,
                ),
                LimitConfig::Gcra {
                    name,
                    quota,
                    window,
                    burst,
                } => {
                    let mut gcra = Gcra::new(*quota, *window).map_err(context)?;
                    if let Some(burst) = burst {
                        gcra = gcra.with_burst(*burst).map_err(context)?;
                    }
                    builder.limit(name, gcra)
                }
                LimitConfig::SlidingWindowLog {
                    name,
                    quota,
                    window,
                } => builder.limit(
                    name,
                    SlidingWindowLog::new(*quota, *window).map_err(context)?,
                ),
                LimitConfig::FixedWindow {
                    name,
                    quota,
                    window,
                } => builder.limit(name, FixedWindow::new(*quota, *window).map_err(context)?),
            }
            .map_err(context)?;
        }
        builder.build()
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Policy, D::Error> {
        let config = PolicyConfig::deserialize(deserializer)?;
        Policy::try_from(config).map_err(serde::de::Error::custom)
    }
}
