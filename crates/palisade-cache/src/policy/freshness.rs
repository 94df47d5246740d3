//! Freshness lifetime and age (RFC 9111 §4.2): pure arithmetic on header values and times
//! the caller supplies.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{PolicyConfig, directives::ResponseDirectives};

/// An HTTP-date (IMF-fixdate, RFC 850 or asctime form, RFC 9110 §5.6.7); `None` when it
/// does not parse. Day and month names and `GMT` are read case-insensitively; nothing else
/// is forgiven (another zone, a two-digit year in the IMF form, a missing comma: `None`).
pub fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?.trim();
    if let Ok(at) = httpdate::parse_http_date(text) {
        return Some(at);
    }
    // Words title-cased (`THU` → `Thu`), `GMT` upper-cased.
    let mut fixed = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            fixed.push(if word_start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            word_start = false;
        } else {
            fixed.push(c);
            word_start = true;
        }
    }
    let fixed = fixed.replace("Gmt", "GMT");
    httpdate::parse_http_date(&fixed)
        .ok()
        .or_else(|| asctime(&fixed))
}

/// asctime's `Sun Nov  6 08:49:37 1994` (a space-padded day), which `httpdate` reads only with
/// the day padded to two digits by a space — also accepted with a one-digit day.
fn asctime(text: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = text.split_ascii_whitespace().collect();
    let [weekday, month, day, time, year] = parts.as_slice() else {
        return None;
    };
    if day.len() > 2 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // As IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`. The weekday is redundant, and asctime
    // dates from old software get it wrong: any day of the week is accepted.
    let _ = weekday;
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|w| {
            httpdate::parse_http_date(&format!("{w}, {day:0>2} {month} {year} {time} GMT")).ok()
        })
}

/// `b - a`, or zero when `b` is earlier.
pub fn elapsed(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// Status codes a cache may give a heuristic lifetime (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// How long a response stays fresh, and whether that was guessed (heuristic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// The freshness lifetime.
    pub duration: Duration,
    /// Whether it came from the heuristic (no explicit expiration).
    pub heuristic: bool,
}

/// Whether the response says explicitly when it expires (`s-maxage`, `max-age`, or, unless a
/// targeted field replaced `Cache-Control`, `Expires`).
pub fn has_explicit_expiration(
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    targeted: bool,
) -> bool {
    directives.s_maxage.is_some()
        || directives.max_age.is_some()
        || (!targeted && headers.contains_key(header::EXPIRES))
}

/// The freshness lifetime of a response to a shared cache (§4.2.1): `s-maxage`, else
/// `max-age`, else `Expires` − `Date` (an invalid `Expires` is in the past), else the
/// heuristic where allowed (a fraction of the time since `Last-Modified`, capped), else zero.
pub fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    targeted: bool,
    response_time: SystemTime,
    config: &PolicyConfig,
) -> Lifetime {
    let explicit = |secs: u64| Lifetime {
        duration: Duration::from_secs(secs),
        heuristic: false,
    };
    if let Some(secs) = directives.s_maxage.or(directives.max_age) {
        return explicit(secs);
    }
    let date = date_of(headers, response_time);
    if !targeted {
        if let Some(expires) = headers.get(header::EXPIRES) {
            return match http_date(expires) {
                Some(at) => explicit(elapsed(date, at).as_secs()),
                None => explicit(0),
            };
        }
    }
    let heuristic_allowed = heuristically_cacheable(status) || directives.public;
    let last_modified = headers.get(header::LAST_MODIFIED).and_then(http_date);
    match last_modified {
        Some(modified) if heuristic_allowed && modified < date => Lifetime {
            duration: elapsed(modified, date)
                .mul_f64(config.heuristic_fraction)
                .min(config.heuristic_cap),
            heuristic: true,
        },
        _ => explicit(0),
    }
}

/// The response's `Date`, or when it arrived if it has none (or an invalid one).
pub fn date_of(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    headers
        .get(header::DATE)
        .and_then(http_date)
        .unwrap_or(response_time)
}

/// The `Age` the response arrived with: the first member of the first line (`Age: 7200, 0`
/// is 7200 s old), a non-negative integer — anything else is ignored.
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let line = headers.get(header::AGE)?.to_str().ok()?;
    let value = line.split(',').next().unwrap_or("").trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Larger than 2^31 counts as 2^31 (RFC 9111 §1.2.2): arithmetic on it cannot overflow.
    let max = super::directives::MAX_DELTA;
    Some(value.parse::<u64>().map_or(max, |v| v.min(max)))
}

/// The corrected initial age of a response (§4.2.3): the larger of its apparent age (the time
/// since its `Date`) and its `Age` plus the time the request took.
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent = elapsed(date_of(headers, response_time), response_time);
    let delay = elapsed(request_time, response_time);
    let corrected = Duration::from_secs(age_value(headers).unwrap_or(0)).saturating_add(delay);
    apparent.max(corrected)
}

/// The age of a stored response at `now`: its initial age plus the time it has been stored.
pub fn current_age(initial_age: Duration, response_time: SystemTime, now: SystemTime) -> Duration {
    initial_age.saturating_add(elapsed(response_time, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn s_maxage_then_max_age_then_expires() {
        let config = PolicyConfig::default();
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(0))),
            ("expires", httpdate::fmt_http_date(at(100))),
        ]);
        let d = ResponseDirectives {
            max_age: Some(10),
            ..Default::default()
        };
        let l = lifetime(StatusCode::OK, &h, &d, false, at(0), &config);
        assert_eq!(l.duration, Duration::from_secs(10));
        let l = lifetime(
            StatusCode::OK,
            &h,
            &Default::default(),
            false,
            at(0),
            &config,
        );
        assert_eq!(l.duration, Duration::from_secs(100));
        // A targeted field replaces Expires too.
        let l = lifetime(
            StatusCode::OK,
            &h,
            &Default::default(),
            true,
            at(0),
            &config,
        );
        assert_eq!(l.duration, Duration::ZERO);
        let bad = headers(&[("expires", "0".into())]);
        let l = lifetime(
            StatusCode::OK,
            &bad,
            &Default::default(),
            false,
            at(0),
            &config,
        );
        assert_eq!(
            l,
            Lifetime {
                duration: Duration::ZERO,
                heuristic: false
            }
        );
    }

    #[test]
    fn dates_forgive_case_and_asctime_only() {
        let date = |s: &'static str| http_date(&HeaderValue::from_static(s));
        let expected = date("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        assert_eq!(date("THU, 18 AUG 2050 02:01:18 gmt"), Some(expected));
        assert_eq!(date("Thu Aug 18 02:01:18 2050"), Some(expected));
        assert!(date("Mon Aug  8 02:01:18 2050").is_some());
        assert!(
            date("Thu Aug  8 02:01:18 2050").is_some(),
            "a wrong asctime weekday"
        );
        assert_eq!(date("Thu, 18 Aug 2050 02:01:18 UTC"), None);
        assert_eq!(date("Thu 18 Aug 2050 02:01:18 GMT"), None);
        assert_eq!(date("0"), None);
    }

    #[test]
    fn heuristic_is_a_capped_tenth_of_the_last_modified_age() {
        let config = PolicyConfig::default();
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(1000))),
            ("last-modified", httpdate::fmt_http_date(at(0))),
        ]);
        let l = lifetime(
            StatusCode::OK,
            &h,
            &Default::default(),
            false,
            at(1000),
            &config,
        );
        assert_eq!(
            l,
            Lifetime {
                duration: Duration::from_secs(100),
                heuristic: true
            }
        );
        // Not for a status that is not heuristically cacheable (unless public).
        let l = lifetime(
            StatusCode::CREATED,
            &h,
            &Default::default(),
            false,
            at(1000),
            &config,
        );
        assert_eq!(l.duration, Duration::ZERO);
    }

    #[test]
    fn initial_age_takes_the_larger_of_apparent_and_corrected() {
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(0))),
            ("age", "30".into()),
        ]);
        assert_eq!(initial_age(&h, at(9), at(10)), Duration::from_secs(31));
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(0))),
            ("age", "x".into()),
        ]);
        assert_eq!(initial_age(&h, at(10), at(50)), Duration::from_secs(50));
        let h = headers(&[("age", "7200, 0".into())]);
        assert_eq!(age_value(&h), Some(7200));
        // Hostile ages are capped, and nothing downstream overflows.
        let h = headers(&[("age", "18446744073709551615".into())]);
        assert_eq!(age_value(&h), Some(crate::policy::directives::MAX_DELTA));
        let huge = initial_age(&h, at(0), at(1));
        let _ = current_age(huge, at(0), at(u32::MAX as u64));
        assert_eq!(
            current_age(Duration::from_secs(5), at(10), at(20)),
            Duration::from_secs(15)
        );
    }
}
