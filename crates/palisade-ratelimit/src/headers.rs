//! The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-10)
//! and the legacy `X-RateLimit-*` trio.
//!
//! `RateLimit-Policy` never changes for a policy, so it is serialized once (with `sfv`). The
//! per-response `RateLimit` field reuses the limits' serialized names and appends integers.

use std::{
    fmt::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Decision, policy::Limit, policy::PolicyError};

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (Unix seconds).
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

pub(crate) fn sf_string(name: &str) -> Result<String, PolicyError> {
    let name = sfv::StringRef::from_str(name)
        .map_err(|e| PolicyError::invalid(format!("limit name `{name}`: {e}")))?;
    let mut out = String::new();
    let _ = sfv::ItemSerializer::with_buffer(&mut out).bare_item(name);
    Ok(out)
}

/// `"burst";q=100;w=60, "daily";q=1000;w=86400`.
pub(crate) fn policy_header(limits: &[Limit]) -> Result<HeaderValue, PolicyError> {
    let mut list = sfv::ListSerializer::new();
    for limit in limits {
        let name = sfv::StringRef::from_str(limit.name())
            .map_err(|e| PolicyError::invalid(format!("limit name `{}`: {e}", limit.name())))?;
        let quota = sfv::Integer::try_from(limit.algorithm().quota())
            .map_err(|e| PolicyError::invalid(e.to_string()))?;
        let window = sfv::Integer::try_from(limit.algorithm().window().div_ceil(1_000_000).max(1))
            .map_err(|e| PolicyError::invalid(e.to_string()))?;
        let _ = list
            .bare_item(name)
            .parameter(sfv::KeyRef::constant("q"), quota)
            .parameter(sfv::KeyRef::constant("w"), window);
    }
    let value = list.finish().unwrap_or_default();
    HeaderValue::from_str(&value).map_err(|e| PolicyError::invalid(e.to_string()))
}

/// `"burst";r=0;t=3, "daily";r=997;t=52000`.
pub fn rate_limit_value(decision: &Decision) -> HeaderValue {
    let mut out = String::with_capacity(48);
    for (i, (limit, outcome)) in decision
        .policy()
        .limits()
        .iter()
        .zip(decision.limits())
        .enumerate()
    {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(limit.sf_name());
        let _ = write!(
            out,
            ";r={};t={}",
            outcome.remaining(),
            outcome.reset_seconds()
        );
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

/// Adds `RateLimit-Policy` and `RateLimit`, and with `legacy` the `X-RateLimit-*` trio for the
/// tightest limit.
pub fn insert(headers: &mut HeaderMap, decision: &Decision, legacy: bool) {
    headers.insert(
        RATELIMIT_POLICY.clone(),
        decision.policy().header_value().clone(),
    );
    headers.insert(RATELIMIT.clone(), rate_limit_value(decision));
    if legacy {
        let tightest = decision
            .policy()
            .limits()
            .iter()
            .zip(decision.limits())
            .min_by_key(|(_, o)| (o.fits(), o.remaining()));
        if let Some((limit, outcome)) = tightest {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            headers.insert(X_RATELIMIT_LIMIT.clone(), limit.algorithm().quota().into());
            headers.insert(X_RATELIMIT_REMAINING.clone(), outcome.remaining().into());
            headers.insert(
                X_RATELIMIT_RESET.clone(),
                (now + outcome.reset_seconds()).into(),
            );
        }
    }
}
