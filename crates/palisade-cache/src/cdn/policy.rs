//! [`CdnPolicy`]: what a route tells the caches in front of it, from code or TOML.

use std::{collections::BTreeMap, time::Duration};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// The caching headers one route's responses carry for the caches in front of the service
/// (browsers, CDNs, an edge proxy): `Cache-Control`, `CDN-Cache-Control` (RFC 9213),
/// `Surrogate-Key` (for purging by tag) and `Vary`. Deserialisable (durations as `"60s"`,
/// `"1h"`), so policies can live in TOML ([`CdnPolicy::from_toml`]).
///
/// ```
/// use std::time::Duration;
/// use palisade_cache::CdnPolicy;
///
/// // Browsers keep it a minute, CDNs an hour (serving it stale for a day if the origin is
/// // down, and up to 30 s while they refetch it); purge it by "products".
/// let policy = CdnPolicy {
///     max_age: Some(Duration::from_secs(60)),
///     cdn_max_age: Some(Duration::from_secs(3600)),
///     stale_while_revalidate: Some(Duration::from_secs(30)),
///     stale_if_error: Some(Duration::from_secs(86400)),
///     surrogate_keys: vec!["products".into()],
///     vary: vec!["accept-encoding".into()],
///     ..CdnPolicy::default()
/// };
/// let headers = policy.headers().unwrap();
/// assert_eq!(headers.cache_control.unwrap(), "public, max-age=60");
/// assert_eq!(
///     headers.cdn_cache_control.unwrap(),
///     "max-age=3600, stale-while-revalidate=30, stale-if-error=86400"
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnPolicy {
    /// `Cache-Control: max-age`: how long every cache, browsers included, may reuse it.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// `Cache-Control: s-maxage`: the same for shared caches only (it also forbids them
    /// serving it stale).
    #[serde(default, with = "humantime_serde")]
    pub shared_max_age: Option<Duration>,
    /// `CDN-Cache-Control: max-age`: for CDNs only, which then ignore `Cache-Control`.
    #[serde(default, with = "humantime_serde")]
    pub cdn_max_age: Option<Duration>,
    /// `stale-while-revalidate` (on `CDN-Cache-Control` when set, else `Cache-Control`).
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (on `CDN-Cache-Control` when set, else `Cache-Control`).
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
    /// `private`: for the user's own cache only (shared caches must not store it).
    #[serde(default)]
    pub private: bool,
    /// `no-store`: no cache may keep it (every other setting is then ignored).
    #[serde(default)]
    pub no_store: bool,
    /// `immutable` (RFC 8246): it never changes while fresh.
    #[serde(default)]
    pub immutable: bool,
    /// `Surrogate-Key` tags, for purging by tag.
    #[serde(default)]
    pub surrogate_keys: Vec<String>,
    /// Request fields the response varies on (added to `Vary`).
    #[serde(default)]
    pub vary: Vec<String>,
    /// Replace caching headers the handler set itself (default: keep them).
    #[serde(default)]
    pub overwrite: bool,
    /// Also mark error responses (4xx, 5xx) cacheable (default: only 2xx and 3xx get the
    /// policy — an error page cached for an hour is an outage for an hour).
    #[serde(default)]
    pub errors_too: bool,
}

/// Why a [`CdnPolicy`] cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdnPolicyError {
    /// A surrogate key is empty or holds whitespace or a non-printable byte.
    #[error("surrogate key {0:?} must be printable ASCII without spaces")]
    SurrogateKey(String),
    /// A `vary` entry is not a header name.
    #[error("`{0}` is not a header name (vary)")]
    Vary(String),
    /// `private` with a shared-cache lifetime.
    #[error("a private response has no shared-cache lifetime (shared_max_age, cdn_max_age)")]
    PrivateShared,
    /// The TOML did not parse into policies.
    #[error("CDN policies: {0}")]
    Toml(String),
}

/// The header values a policy renders to (`None`: the policy says nothing of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdnHeaders {
    /// `Cache-Control`.
    pub cache_control: Option<HeaderValue>,
    /// `CDN-Cache-Control`.
    pub cdn_cache_control: Option<HeaderValue>,
    /// `Surrogate-Key`.
    pub surrogate_key: Option<HeaderValue>,
    /// Names to add to `Vary`.
    pub vary: Vec<HeaderName>,
}

fn header(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).expect("rendered from digits, tokens and checked keys")
}

impl CdnPolicy {
    /// Named policies from TOML: one table per policy.
    ///
    /// ```
    /// let policies = palisade_cache::CdnPolicy::from_toml(r#"
    ///     [catalog]
    ///     max_age = "1m"
    ///     cdn_max_age = "1h"
    ///     stale_if_error = "1d"
    ///     surrogate_keys = ["catalog"]
    ///
    ///     [account]
    ///     private = true
    /// "#).unwrap();
    /// assert!(policies["account"].private);
    /// ```
    pub fn from_toml(text: &str) -> Result<BTreeMap<String, CdnPolicy>, CdnPolicyError> {
        let policies: BTreeMap<String, CdnPolicy> =
            toml::from_str(text).map_err(|e| CdnPolicyError::Toml(e.to_string()))?;
        for policy in policies.values() {
            policy.headers()?;
        }
        Ok(policies)
    }

    /// The header values, checked.
    pub fn headers(&self) -> Result<CdnHeaders, CdnPolicyError> {
        for key in &self.surrogate_keys {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(CdnPolicyError::SurrogateKey(key.clone()));
            }
        }
        let vary = self
            .vary
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| CdnPolicyError::Vary(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.private && (self.shared_max_age.is_some() || self.cdn_max_age.is_some()) {
            return Err(CdnPolicyError::PrivateShared);
        }
        let surrogate_key =
            (!self.surrogate_keys.is_empty()).then(|| header(self.surrogate_keys.join(" ")));
        if self.no_store {
            return Ok(CdnHeaders {
                cache_control: Some(HeaderValue::from_static("no-store")),
                cdn_cache_control: None,
                surrogate_key,
                vary,
            });
        }
        let secs = |d: Duration| d.as_secs();
        let stale = |parts: &mut Vec<String>| {
            if let Some(d) = self.stale_while_revalidate {
                parts.push(format!("stale-while-revalidate={}", secs(d)));
            }
            if let Some(d) = self.stale_if_error {
                parts.push(format!("stale-if-error={}", secs(d)));
            }
        };
        let mut cc = Vec::new();
        let mentions_cc = self.max_age.is_some()
            || self.shared_max_age.is_some()
            || self.private
            || self.immutable
            || (self.cdn_max_age.is_none()
                && (self.stale_while_revalidate.is_some() || self.stale_if_error.is_some()));
        if mentions_cc {
            cc.push(if self.private { "private" } else { "public" }.to_owned());
            if let Some(d) = self.max_age {
                cc.push(format!("max-age={}", secs(d)));
            }
            if let Some(d) = self.shared_max_age {
                cc.push(format!("s-maxage={}", secs(d)));
            }
            if self.cdn_max_age.is_none() && !self.private {
                stale(&mut cc);
            }
            if self.immutable {
                cc.push("immutable".to_owned());
            }
        }
        let cdn_cache_control = self.cdn_max_age.map(|d| {
            let mut parts = vec![format!("max-age={}", secs(d))];
            stale(&mut parts);
            header(parts.join(", "))
        });
        Ok(CdnHeaders {
            cache_control: (!cc.is_empty()).then(|| header(cc.join(", "))),
            cdn_cache_control,
            surrogate_key,
            vary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_checks() {
        let p = CdnPolicy {
            no_store: true,
            max_age: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        assert_eq!(p.headers().unwrap().cache_control.unwrap(), "no-store");
        let p = CdnPolicy {
            max_age: Some(Duration::from_secs(5)),
            stale_if_error: Some(Duration::from_secs(9)),
            immutable: true,
            ..Default::default()
        };
        assert_eq!(
            p.headers().unwrap().cache_control.unwrap(),
            "public, max-age=5, stale-if-error=9, immutable"
        );
        let bad = CdnPolicy {
            surrogate_keys: vec!["a b".into()],
            ..Default::default()
        };
        assert!(matches!(
            bad.headers(),
            Err(CdnPolicyError::SurrogateKey(_))
        ));
        let bad = CdnPolicy {
            private: true,
            cdn_max_age: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(bad.headers(), Err(CdnPolicyError::PrivateShared));
        assert!(
            CdnPolicy::from_toml("[x]\nmax_age = 5\n").is_err(),
            "durations are strings"
        );
        assert!(CdnPolicy::from_toml("[x]\nunknown = true\n").is_err());
    }
}
