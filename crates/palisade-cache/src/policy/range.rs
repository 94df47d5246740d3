//! Serving one byte range of a stored complete response (RFC 9110 §14): `Range: bytes=…`
//! answered with 206 from the store instead of a trip to the origin.

use http::{HeaderMap, header};

/// How a stored complete representation of `len` bytes answers a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: the whole representation, 200. Several ranges, other units,
    /// malformed values and a failed `If-Range` all end here, as RFC 9110 allows.
    Whole,
    /// Bytes `start..=end`: 206 with `Content-Range`.
    Part {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// A range that starts beyond the end: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The answer to `request`'s `Range` (and `If-Range`) from the stored `response` fields with
/// a body of `len` bytes.
pub fn answer(request: &HeaderMap, response: &HeaderMap, len: u64) -> RangeAnswer {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        // Strong comparison with the ETag, or the exact Last-Modified date (§13.1.5).
        let etag_match = response
            .get(header::ETAG)
            .is_some_and(|e| !e.as_bytes().starts_with(b"W/") && e == if_range);
        let date_match = response.get(header::LAST_MODIFIED) == Some(if_range);
        if !etag_match && !date_match {
            return RangeAnswer::Whole;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // bytes=-N: the last N bytes.
        return match number(last) {
            Some(suffix) if suffix > 0 && len > 0 => RangeAnswer::Part {
                start: len.saturating_sub(suffix),
                end: len - 1,
            },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        };
    }
    let Some(start) = number(first) else {
        return RangeAnswer::Whole;
    };
    let last = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(l) => Some(l),
            None => return RangeAnswer::Whole,
        }
    };
    if last.is_some_and(|l| l < start) {
        return RangeAnswer::Whole;
    }
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    let end = last.map_or(len - 1, |l| l.min(len - 1));
    RangeAnswer::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(range: &'static str) -> RangeAnswer {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static(range));
        answer(&h, &HeaderMap::new(), 11)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ask("bytes=0-1"), RangeAnswer::Part { start: 0, end: 1 });
        assert_eq!(ask("bytes=5-"), RangeAnswer::Part { start: 5, end: 10 });
        assert_eq!(ask("bytes=-3"), RangeAnswer::Part { start: 8, end: 10 });
        assert_eq!(ask("bytes=3-100"), RangeAnswer::Part { start: 3, end: 10 });
        assert_eq!(ask("bytes=11-"), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,3-4"), RangeAnswer::Whole);
        assert_eq!(ask("items=0-1"), RangeAnswer::Whole);
        assert_eq!(ask("bytes=x-1"), RangeAnswer::Whole);
        assert_eq!(ask("bytes=4-2"), RangeAnswer::Whole);
    }

    #[test]
    fn if_range_must_match_strongly() {
        let mut request = HeaderMap::new();
        request.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        request.insert(header::IF_RANGE, HeaderValue::from_static("\"a\""));
        let mut stored = HeaderMap::new();
        stored.insert(header::ETAG, HeaderValue::from_static("\"a\""));
        assert_eq!(
            answer(&request, &stored, 11),
            RangeAnswer::Part { start: 0, end: 1 }
        );
        stored.insert(header::ETAG, HeaderValue::from_static("W/\"a\""));
        assert_eq!(answer(&request, &stored, 11), RangeAnswer::Whole);
    }
}
