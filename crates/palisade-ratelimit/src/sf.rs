//! Structured-field serialization (RFC 9651) done once, when a policy is built: each limit's
//! name as an sf-string, and the whole `RateLimit-Policy` value.

use http::HeaderValue;

use crate::error::PolicyError;

pub(crate) fn sf_string(name: &str) -> Result<String, PolicyError> {
    let name = sfv::StringRef::from_str(name)
        .map_err(|e| PolicyError::invalid(format!("limit name `{name}`: {e}")))?;
    let mut out = String::new();
    let _ = sfv::ItemSerializer::with_buffer(&mut out).bare_item(name);
    Ok(out)
}

/// `"burst";q=100;w=60, "daily";q=1000;w=86400`.
///
/// `limits` gives each limit's name, quota and window (µs; written in whole seconds, rounded
/// up, at least 1).
pub(crate) fn policy_header<'a>(
    limits: impl IntoIterator<Item = (&'a str, u64, u64)>,
) -> Result<HeaderValue, PolicyError> {
    let mut list = sfv::ListSerializer::new();
    for (name_text, quota, window) in limits {
        let name = sfv::StringRef::from_str(name_text)
            .map_err(|e| PolicyError::invalid(format!("limit name `{name_text}`: {e}")))?;
        let quota =
            sfv::Integer::try_from(quota).map_err(|e| PolicyError::invalid(e.to_string()))?;
        let window = sfv::Integer::try_from(window.div_ceil(1_000_000).max(1))
            .map_err(|e| PolicyError::invalid(e.to_string()))?;
        let _ = list
            .bare_item(name)
            .parameter(sfv::KeyRef::constant("q"), quota)
            .parameter(sfv::KeyRef::constant("w"), window);
    }
    let value = list.finish().unwrap_or_default();
    HeaderValue::from_str(&value).map_err(|e| PolicyError::invalid(e.to_string()))
}
