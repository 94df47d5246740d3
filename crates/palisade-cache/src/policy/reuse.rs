//! Whether a stored response may answer a request (RFC 9111 §4, §4.2.4; RFC 5861).

use std::time::{Duration, SystemTime};

use super::{
    directives::{MaxStale, RequestDirectives, ResponseDirectives, Scope},
    freshness::current_age,
};

/// What the decision needs of a stored response.
#[derive(Debug, Clone, Copy)]
pub struct StoredView<'a> {
    /// Its effective directives (the targeted field's, or `Cache-Control`'s).
    pub directives: &'a ResponseDirectives,
    /// Its freshness lifetime.
    pub lifetime: Duration,
    /// Its corrected initial age.
    pub initial_age: Duration,
    /// When it was received.
    pub response_time: SystemTime,
    /// When a soft purge marked it stale, if one did.
    pub purged_at: Option<SystemTime>,
}

/// Why the origin must be asked before a stored response is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateWhy {
    /// It is stale (and no stale window covers it).
    Stale,
    /// The response says `no-cache`: validate every use.
    NoCache,
    /// The request asked for it (`no-cache`, `max-age`, `min-fresh`).
    Request,
}

/// How a stored response may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it as is: fresh, or stale within what the request accepts (`max-stale`).
    Serve,
    /// Serve it stale now and revalidate in the background (`stale-while-revalidate`).
    ServeStaleAndRevalidate,
    /// Ask the origin first (conditionally when it has validators). `stale_if_error`: if the
    /// origin fails (an error, or 500/502/503/504), the stored response may be served instead.
    Revalidate {
        /// Why.
        why: RevalidateWhy,
        /// Whether a stale-if-error window covers it.
        stale_if_error: bool,
    },
}

/// The decision and the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// How to use the stored response.
    pub reuse: Reuse,
    /// Its current age (the `Age` to send).
    pub age: Duration,
    /// Lifetime minus age, in seconds: negative once stale (`Cache-Status` `ttl`).
    pub ttl: i64,
}

/// Decides how the stored response may answer a request with `request` directives, at `now`.
pub fn decide(stored: &StoredView<'_>, request: &RequestDirectives, now: SystemTime) -> Decision {
    let age = current_age(stored.initial_age, stored.response_time, now);
    let lifetime = match stored.purged_at {
        Some(at) => stored
            .lifetime
            .min(current_age(stored.initial_age, stored.response_time, at)),
        None => stored.lifetime,
    };
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let ttl = secs(lifetime).saturating_sub(secs(age));
    let fresh = lifetime > age;
    let staleness = age.saturating_sub(lifetime);
    let d = stored.directives;
    let forbids_stale = d.forbids_stale();
    let window = |secs: Option<u64>| secs.is_some_and(|s| staleness <= Duration::from_secs(s));
    let stale_if_error =
        !fresh && !forbids_stale && (window(d.stale_if_error) || window(request.stale_if_error));
    let revalidate = |why| Decision {
        reuse: Reuse::Revalidate {
            why,
            stale_if_error,
        },
        age,
        ttl,
    };
    if d.no_cache == Scope::All {
        return revalidate(RevalidateWhy::NoCache);
    }
    if request.no_cache
        || request
            .max_age
            .is_some_and(|m| age > Duration::from_secs(m))
    {
        return revalidate(RevalidateWhy::Request);
    }
    if fresh {
        if request
            .min_fresh
            .is_some_and(|m| lifetime - age < Duration::from_secs(m))
        {
            return revalidate(RevalidateWhy::Request);
        }
        return Decision {
            reuse: Reuse::Serve,
            age,
            ttl,
        };
    }
    if !forbids_stale {
        let accepted = match request.max_stale {
            Some(MaxStale::Any) => true,
            Some(MaxStale::Seconds(s)) => staleness <= Duration::from_secs(s),
            None => false,
        };
        if accepted {
            return Decision {
                reuse: Reuse::Serve,
                age,
                ttl,
            };
        }
        // A request that limits age or asks for freshness does not get stale-while-revalidate.
        if request.max_age.is_none()
            && request.min_fresh.is_none()
            && window(d.stale_while_revalidate)
        {
            return Decision {
                reuse: Reuse::ServeStaleAndRevalidate,
                age,
                ttl,
            };
        }
    }
    revalidate(RevalidateWhy::Stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn decide_at(cc: &str, lifetime: u64, now: u64, request: &str) -> Reuse {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, cc.parse().unwrap());
        let d = ResponseDirectives::from_headers(&h);
        let mut rh = http::HeaderMap::new();
        if !request.is_empty() {
            rh.insert(http::header::CACHE_CONTROL, request.parse().unwrap());
        }
        let stored = StoredView {
            directives: &d,
            lifetime: Duration::from_secs(lifetime),
            initial_age: Duration::ZERO,
            response_time: t(0),
            purged_at: None,
        };
        decide(&stored, &RequestDirectives::from_headers(&rh), t(now)).reuse
    }

    const STALE: Reuse = Reuse::Revalidate {
        why: RevalidateWhy::Stale,
        stale_if_error: false,
    };

    #[test]
    fn fresh_stale_and_the_windows() {
        assert_eq!(decide_at("max-age=10", 10, 9, ""), Reuse::Serve);
        assert_eq!(decide_at("max-age=10", 10, 10, ""), STALE);
        let swr = "max-age=10, stale-while-revalidate=5";
        assert_eq!(decide_at(swr, 10, 15, ""), Reuse::ServeStaleAndRevalidate);
        assert_eq!(decide_at(swr, 10, 16, ""), STALE);
        let sie = "max-age=10, stale-if-error=5";
        assert_eq!(
            decide_at(sie, 10, 12, ""),
            Reuse::Revalidate {
                why: RevalidateWhy::Stale,
                stale_if_error: true
            }
        );
        // Forbidden stale: no window applies.
        assert_eq!(
            decide_at("s-maxage=10, stale-while-revalidate=5", 10, 12, ""),
            STALE
        );
        assert_eq!(
            decide_at("max-age=10, must-revalidate, stale-if-error=9", 10, 12, ""),
            STALE
        );
    }

    #[test]
    fn request_directives() {
        assert_eq!(
            decide_at("max-age=10", 10, 5, "max-age=3"),
            Reuse::Revalidate {
                why: RevalidateWhy::Request,
                stale_if_error: false
            }
        );
        assert_eq!(
            decide_at("max-age=10", 10, 5, "min-fresh=6"),
            Reuse::Revalidate {
                why: RevalidateWhy::Request,
                stale_if_error: false
            }
        );
        assert_eq!(decide_at("max-age=10", 10, 12, "max-stale=5"), Reuse::Serve);
        assert_eq!(decide_at("max-age=10", 10, 12, "max-stale"), Reuse::Serve);
        assert_eq!(
            decide_at("max-age=10, must-revalidate", 10, 12, "max-stale"),
            STALE
        );
        assert_eq!(
            decide_at("max-age=10", 10, 1, "no-cache"),
            Reuse::Revalidate {
                why: RevalidateWhy::Request,
                stale_if_error: false
            }
        );
        assert_eq!(
            decide_at("max-age=10, no-cache", 10, 1, ""),
            Reuse::Revalidate {
                why: RevalidateWhy::NoCache,
                stale_if_error: false
            }
        );
    }
}
