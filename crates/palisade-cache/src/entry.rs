//! [`Entry`]: one stored response, with what the policy derived from it at store time.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::policy::{
    self, PolicyConfig, ResponsePolicy,
    directives::Scope,
    freshness::{initial_age, lifetime},
    reuse::StoredView,
    validation::is_hop_by_hop,
    vary::Selection,
};

/// A stored response: status, fields and body as the origin sent them (minus hop-by-hop
/// fields and fields `private="…"` keeps out of shared caches), when it was requested and
/// received, the request fields it was selected by (`Vary`), its surrogate keys, and the
/// directives, lifetime and initial age the policy derived from it.
#[derive(Debug, Clone)]
pub struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    request_time: SystemTime,
    response_time: SystemTime,
    selection: Selection,
    surrogate_keys: Vec<String>,
    purged_at: Option<SystemTime>,
    // Derived from the above (and the layer's policy) — recomputed whenever they change.
    policy: ResponsePolicy,
    lifetime: Duration,
    initial_age: Duration,
}

impl Entry {
    /// A stored response received at `response_time` for a request sent at `request_time`,
    /// selected by `selection`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        request_time: SystemTime,
        response_time: SystemTime,
        selection: Selection,
        purged_at: Option<SystemTime>,
        config: &PolicyConfig,
    ) -> Entry {
        let policy = policy::response_policy(&headers, config);
        let dropped: Vec<_> = headers
            .keys()
            .filter(|name| is_hop_by_hop(name, &headers))
            .cloned()
            .collect();
        for name in dropped {
            headers.remove(name);
        }
        if let Scope::Fields(fields) = &policy.directives.private {
            for name in fields {
                headers.remove(name);
            }
        }
        let lifetime = lifetime(
            status,
            &headers,
            &policy.directives,
            policy.targeted,
            response_time,
            config,
        )
        .duration;
        let initial_age = initial_age(&headers, request_time, response_time);
        let surrogate_keys = policy::surrogate_keys(&headers);
        Entry {
            status,
            headers,
            body,
            request_time,
            response_time,
            selection,
            surrogate_keys,
            purged_at,
            policy,
            lifetime,
            initial_age,
        }
    }

    /// The same response with its fields freshened by a validating 304 received at
    /// `response_time` (§4.3.4): new timing, new lifetime, not purged any more.
    pub fn freshened(
        &self,
        update: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        config: &PolicyConfig,
    ) -> Entry {
        let mut headers = self.headers.clone();
        // The stored `Age` described the old response; the 304 is the new one (its own `Age`,
        // if any, is merged below).
        headers.remove(http::header::AGE);
        policy::validation::freshen(&mut headers, update);
        if !update.contains_key(http::header::DATE) {
            // A recipient records when a message without `Date` arrived (RFC 9110 §6.6.1):
            // otherwise the old `Date` would make the freshened response look old.
            if let Ok(date) = http::HeaderValue::from_str(&httpdate::fmt_http_date(response_time)) {
                headers.insert(http::header::DATE, date);
            }
        }
        Entry::new(
            self.status,
            headers,
            self.body.clone(),
            request_time,
            response_time,
            self.selection.clone(),
            None,
            config,
        )
    }

    /// The same response, marked stale at `at` by a soft purge.
    pub fn purged(&self, at: SystemTime) -> Entry {
        let mut entry = self.clone();
        entry.purged_at = Some(self.purged_at.map_or(at, |p| p.min(at)));
        entry
    }

    /// What the reuse decision needs.
    pub fn view(&self) -> StoredView<'_> {
        StoredView {
            directives: &self.policy.directives,
            lifetime: self.lifetime,
            initial_age: self.initial_age,
            response_time: self.response_time,
            purged_at: self.purged_at,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stored fields.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// When the request that fetched it was sent.
    pub fn request_time(&self) -> SystemTime {
        self.request_time
    }

    /// When it was received.
    pub fn response_time(&self) -> SystemTime {
        self.response_time
    }

    /// The request fields it was selected by.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Its `Surrogate-Key` tags.
    pub fn surrogate_keys(&self) -> &[String] {
        &self.surrogate_keys
    }

    /// When a soft purge marked it stale.
    pub fn purged_at(&self) -> Option<SystemTime> {
        self.purged_at
    }

    /// Its effective directives.
    pub fn policy(&self) -> &ResponsePolicy {
        &self.policy
    }

    /// Roughly how many bytes it holds (body, fields, bookkeeping): what stores bound.
    pub fn weight(&self) -> usize {
        let fields: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        self.body.len() + fields + 256
    }
}
