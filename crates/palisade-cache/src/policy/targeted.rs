//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and fields like it, which
//! replace `Cache-Control` and `Expires` for the caches they target.
//!
//! A targeted field is a Structured Fields dictionary (RFC 8941). The first field of the
//! target list with a valid, non-empty value wins; a field that does not parse is ignored,
//! as if absent (then the next one, then `Cache-Control`).

use http::{HeaderMap, HeaderName};
use sfv::{BareItem, Dictionary, ListEntry, Parser};

use super::directives::{Directive, MAX_DELTA, ResponseDirectives};

/// The directives of the first targeted field in `targets` (in order) with a valid,
/// non-empty value, or `None` when no such field is present.
pub fn targeted_directives(
    headers: &HeaderMap,
    targets: &[HeaderName],
) -> Option<ResponseDirectives> {
    targets.iter().find_map(|name| {
        let lines: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        if lines.is_empty() {
            return None;
        }
        let joined = lines.join(&b", "[..]);
        let dictionary: Dictionary = Parser::new(&joined).parse().ok()?;
        if dictionary.is_empty() {
            return None;
        }
        let mut list = Vec::with_capacity(dictionary.len());
        for (key, entry) in &dictionary {
            let ListEntry::Item(item) = entry else {
                continue;
            };
            let name = key.as_str();
            let value = match (&item.bare_item, expected_type(name)) {
                (BareItem::Boolean(false), _) => continue,
                (BareItem::Boolean(true), Expected::Flag | Expected::Any) => None,
                (BareItem::Integer(i), Expected::Seconds | Expected::Any) => {
                    // A negative delta is invalid: for freshness, stale.
                    let i = i64::from(*i);
                    Some(if i < 0 {
                        "invalid".to_owned()
                    } else {
                        (i as u64).min(MAX_DELTA).to_string()
                    })
                }
                (BareItem::String(s), Expected::Any) => Some(s.as_str().to_owned()),
                (BareItem::Token(t), Expected::Any) => Some(t.as_str().to_owned()),
                (_, Expected::Any) => continue,
                // A known directive of the wrong type: the field is invalid, and ignored.
                _ => return None,
            };
            list.push(Directive {
                name: name.to_owned(),
                value,
            });
        }
        Some(ResponseDirectives::from_directives(list))
    })
}

/// The type RFC 9213 gives a directive in a targeted field.
enum Expected {
    /// An Integer of seconds.
    Seconds,
    /// A Boolean (a bare key).
    Flag,
    /// Not one this cache checks.
    Any,
}

fn expected_type(name: &str) -> Expected {
    match name {
        "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error" => Expected::Seconds,
        "no-store" | "public" | "must-revalidate" | "proxy-revalidate" | "must-understand"
        | "immutable" => Expected::Flag,
        _ => Expected::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cdn() -> HeaderName {
        HeaderName::from_static("cdn-cache-control")
    }

    #[test]
    fn a_valid_field_replaces_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(
            cdn(),
            HeaderValue::from_static("max-age=60, must-revalidate"),
        );
        let d = targeted_directives(&headers, &[cdn()]).unwrap();
        assert_eq!(d.max_age, Some(60));
        assert!(d.must_revalidate);
    }

    #[test]
    fn an_invalid_field_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(cdn(), HeaderValue::from_static("max-age=\"60"));
        assert_eq!(targeted_directives(&headers, &[cdn()]), None);
        headers.insert(cdn(), HeaderValue::from_static(""));
        assert_eq!(targeted_directives(&headers, &[cdn()]), None);
        // Valid Structured Field, wrong type for max-age: ignored as a whole.
        headers.insert(cdn(), HeaderValue::from_static("max-age=\"10000\""));
        assert_eq!(targeted_directives(&headers, &[cdn()]), None);
    }

    #[test]
    fn the_first_target_in_order_wins() {
        let mine = HeaderName::from_static("palisade-cache-control");
        let mut headers = HeaderMap::new();
        headers.insert(cdn(), HeaderValue::from_static("max-age=60"));
        headers.insert(mine.clone(), HeaderValue::from_static("no-store"));
        let d = targeted_directives(&headers, &[mine, cdn()]).unwrap();
        assert!(d.no_store);
    }
}
