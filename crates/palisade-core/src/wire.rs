//! The wire formats every layer reads or writes, in one place: `Retry-After` (RFC 9110
//! §10.2.3), gRPC's `grpc-status` and `grpc-retry-pushback-ms` (gRFC A6).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

/// `grpc-status`: the call's gRPC status code (0 is OK), in headers or trailers.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// `grpc-retry-pushback-ms`: how long the server asks the client to wait before retrying (a
/// negative or malformed value: do not retry).
pub static GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The `grpc-status` in `headers`, if present and numeric.
pub fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get(&GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `headers` carry a `grpc-status` other than OK (a malformed one counts as failed).
pub fn grpc_failed(headers: &HeaderMap) -> bool {
    headers.contains_key(&GRPC_STATUS) && grpc_status(headers) != Some(0)
}

/// Whole seconds for `Retry-After`, rounded **up** and never 0: a client told "0" retries at
/// once, which is what the refusal was for.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
    .max(1)
}

/// `wait` as a `Retry-After` value (delta-seconds, rounded up, at least 1).
pub fn retry_after_value(wait: Duration) -> HeaderValue {
    retry_after_seconds(wait).into()
}

/// `wait` as a `grpc-retry-pushback-ms` value (at least 1 ms).
pub fn pushback_value(wait: Duration) -> HeaderValue {
    u64::try_from(wait.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .into()
}

/// What the server said about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Wait this long first.
    Wait(Duration),
    /// Do not retry (gRPC: a negative or malformed `grpc-retry-pushback-ms`).
    DoNotRetry,
}

/// Reads `grpc-retry-pushback-ms`, then `Retry-After` (delta-seconds or HTTP-date).
pub fn server_wait(headers: &HeaderMap) -> Option<Pushback> {
    if let Some(value) = headers.get(&GRPC_RETRY_PUSHBACK_MS) {
        return Some(
            match value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(ms) => Pushback::Wait(Duration::from_millis(ms)),
                None => Pushback::DoNotRetry,
            },
        );
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Pushback::Wait(Duration::from_secs(seconds)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(Pushback::Wait(
        date.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn grpc_status_is_read_once() {
        assert_eq!(grpc_status(&headers(&[("grpc-status", "14")])), Some(14));
        assert!(grpc_failed(&headers(&[("grpc-status", "14")])));
        assert!(!grpc_failed(&headers(&[("grpc-status", "0")])));
        assert!(grpc_failed(&headers(&[("grpc-status", "x")])));
        assert!(!grpc_failed(&headers(&[])));
    }

    #[test]
    fn waits_are_written_up_and_read_back() {
        assert_eq!(retry_after_value(Duration::from_millis(1001)), "2");
        assert_eq!(retry_after_value(Duration::ZERO), "1");
        assert_eq!(pushback_value(Duration::from_micros(10)), "1");
        let wait = headers(&[("retry-after", "3")]);
        assert_eq!(
            server_wait(&wait),
            Some(Pushback::Wait(Duration::from_secs(3)))
        );
        let push = headers(&[("grpc-retry-pushback-ms", "250"), ("retry-after", "9")]);
        assert_eq!(
            server_wait(&push),
            Some(Pushback::Wait(Duration::from_millis(250)))
        );
        let never = headers(&[("grpc-retry-pushback-ms", "-1")]);
        assert_eq!(server_wait(&never), Some(Pushback::DoNotRetry));
    }
}
