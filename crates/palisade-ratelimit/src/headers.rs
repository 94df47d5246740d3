//! The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-10)
//! and the legacy `X-RateLimit-*` trio.
//!
//! `RateLimit-Policy` never changes for a policy, so it is serialized once (with `sfv`). The
//! per-response `RateLimit` field reuses the limits' serialized names and appends integers.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Decision;

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

/// `"burst";r=0;t=3, "daily";r=997;t=52000`.
///
/// Built per response, so it is written by hand into one exactly-sized buffer: the names
/// were serialized by `sfv` when the policy was built, and the rest is integers.
pub fn rate_limit_value(decision: &Decision) -> HeaderValue {
    let limits = decision.policy().limits();
    let len: usize = limits.iter().map(|l| l.sf_name().len() + 2 + 6 + 40).sum();
    let mut out = Vec::with_capacity(len);
    for (i, (limit, outcome)) in limits.iter().zip(decision.limits()).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(limit.sf_name().as_bytes());
        out.extend_from_slice(b";r=");
        push_decimal(&mut out, outcome.remaining());
        out.extend_from_slice(b";t=");
        push_decimal(&mut out, outcome.reset_seconds());
    }
    // Visible ASCII only (sf-strings of validated names, digits, separators).
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).unwrap_or(HeaderValue::from_static(""))
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Adds `RateLimit-Policy` and `RateLimit`, and with `legacy` the `X-RateLimit-*` trio for the
/// tightest limit.
///
/// Both IETF fields are structured-field lists, so they are **appended**: with two rate-limit
/// layers stacked (per client IP outside, per API key inside) the client sees both policies,
/// the inner layer's first. The legacy trio holds one limit and is replaced.
pub fn insert(headers: &mut HeaderMap, decision: &Decision, legacy: bool) {
    headers.reserve(if legacy { 5 } else { 2 });
    headers.append(&RATELIMIT_POLICY, decision.policy().header_value().clone());
    headers.append(&RATELIMIT, rate_limit_value(decision));
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
            headers.insert(&X_RATELIMIT_LIMIT, limit.algorithm().quota().into());
            headers.insert(&X_RATELIMIT_REMAINING, outcome.remaining().into());
            headers.insert(
                X_RATELIMIT_RESET.clone(),
                (now + outcome.reset_seconds()).into(),
            );
        }
    }
}
