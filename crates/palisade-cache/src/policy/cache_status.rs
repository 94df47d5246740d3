//! The `Cache-Status` response field (RFC 9211): how this cache handled the request.

use http::HeaderValue;

/// Why the request went forward to the origin (`fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cache was configured not to handle the request (`bypass`).
    Bypass,
    /// The method is not cacheable (`method`).
    Method,
    /// Nothing stored for the URI (`uri-miss`).
    UriMiss,
    /// Something stored for the URI, but no variant matched the request's `Vary` fields
    /// (`vary-miss`).
    VaryMiss,
    /// Not found, reason unspecified (`miss`).
    Miss,
    /// The request's own directives sent it forward (`request`).
    Request,
    /// The stored response was stale, or said `no-cache` (`stale`).
    Stale,
}

impl Forward {
    /// Every reason, in declaration order (`why as usize` indexes it).
    pub const ALL: [Forward; 7] = [
        Forward::Bypass,
        Forward::Method,
        Forward::UriMiss,
        Forward::VaryMiss,
        Forward::Miss,
        Forward::Request,
        Forward::Stale,
    ];

    /// The `fwd` token (`uri-miss`, `stale`…).
    pub fn token(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Miss => "miss",
            Forward::Request => "request",
            Forward::Stale => "stale",
        }
    }
}

/// One `Cache-Status` member for this cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from the store without going forward.
    pub hit: bool,
    /// Why it went forward, if it did.
    pub fwd: Option<Forward>,
    /// The status the origin answered the forwarded request with.
    pub fwd_status: Option<u16>,
    /// The stored response's remaining freshness in seconds (negative: stale).
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    /// The request was collapsed with another one for the same response.
    pub collapsed: bool,
    /// Extra detail (e.g. why it was not stored), a token.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// A hit with `ttl` seconds of freshness left.
    pub fn hit(ttl: i64) -> Self {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..Default::default()
        }
    }

    /// Forwarded for `why`.
    pub fn forward(why: Forward) -> Self {
        CacheStatus {
            fwd: Some(why),
            ..Default::default()
        }
    }

    /// The field value, this cache being called `cache` (a token, or quoted when it is not
    /// one).
    pub fn to_header(&self, cache: &str) -> HeaderValue {
        let mut out = String::with_capacity(64);
        if !cache.is_empty()
            && cache
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
            && cache.as_bytes()[0].is_ascii_alphabetic()
        {
            out.push_str(cache);
        } else {
            out.push('"');
            for c in cache
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
            {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            out.push_str("; fwd=");
            out.push_str(fwd.token());
        }
        if let Some(status) = self.fwd_status {
            out.push_str(&format!("; fwd-status={status}"));
        }
        if let Some(ttl) = self.ttl {
            out.push_str(&format!("; ttl={ttl}"));
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=");
            out.push_str(detail);
        }
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("palisade"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_a_structured_list_member() {
        assert_eq!(CacheStatus::hit(12).to_header("edge"), "edge; hit; ttl=12");
        let mut s = CacheStatus::forward(Forward::UriMiss);
        s.stored = true;
        s.fwd_status = Some(200);
        assert_eq!(
            s.to_header("edge"),
            "edge; fwd=uri-miss; fwd-status=200; stored"
        );
        assert_eq!(
            CacheStatus::forward(Forward::Bypass).to_header("my cache"),
            "\"my cache\"; fwd=bypass"
        );
    }
}
