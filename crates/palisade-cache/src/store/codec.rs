//! The wire form of an [`Entry`] in a shared store: a versioned binary record, read with
//! every length checked (a corrupt or foreign value is an error — then a miss — never a
//! panic).
//!
//! ```text
//! u8 version=1 | u16 status | u64 request ms | u64 response ms | u64 purged ms (0: none)
//! u16 n, n × (u16 len, name, u32 len, value)          response fields
//! u16 m, m × (u16 len, name, u8 present, u32 len, value)   the request's Vary selection
//! u32 len, body
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::{Entry, policy::PolicyConfig, policy::vary::Selection};

const VERSION: u8 = 1;

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `entry` as bytes.
pub(crate) fn encode(entry: &Entry) -> Bytes {
    let mut out = BytesMut::with_capacity(entry.weight());
    out.put_u8(VERSION);
    out.put_u16(entry.status().as_u16());
    out.put_u64(millis(entry.request_time()));
    out.put_u64(millis(entry.response_time()));
    out.put_u64(entry.purged_at().map_or(0, millis));
    let fields: Vec<_> = entry.headers().iter().collect();
    out.put_u16(fields.len().min(u16::MAX as usize) as u16);
    for (name, value) in fields.into_iter().take(u16::MAX as usize) {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    let selection = entry.selection().fields();
    out.put_u16(selection.len() as u16);
    for (name, value) in selection {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u8(u8::from(value.is_some()));
        let value = value.as_deref().unwrap_or("");
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out.put_u32(entry.body().len() as u32);
    out.put_slice(entry.body());
    out.freeze()
}

/// The entry in `bytes`, its policy derived anew with `config`; `None` when `bytes` is not a
/// record this version wrote.
pub(crate) fn decode(mut bytes: Bytes, config: &PolicyConfig) -> Option<Entry> {
    fn take(bytes: &mut Bytes, n: usize) -> Option<Bytes> {
        (bytes.remaining() >= n).then(|| bytes.split_to(n))
    }
    fn u8_(b: &mut Bytes) -> Option<u8> {
        (b.remaining() >= 1).then(|| b.get_u8())
    }
    fn u16_(b: &mut Bytes) -> Option<u16> {
        (b.remaining() >= 2).then(|| b.get_u16())
    }
    fn u32_(b: &mut Bytes) -> Option<u32> {
        (b.remaining() >= 4).then(|| b.get_u32())
    }
    fn u64_(b: &mut Bytes) -> Option<u64> {
        (b.remaining() >= 8).then(|| b.get_u64())
    }
    if u8_(&mut bytes)? != VERSION {
        return None;
    }
    let status = StatusCode::from_u16(u16_(&mut bytes)?).ok()?;
    let request_time = time(u64_(&mut bytes)?);
    let response_time = time(u64_(&mut bytes)?);
    let purged_at = match u64_(&mut bytes)? {
        0 => None,
        ms => Some(time(ms)),
    };
    let mut headers = HeaderMap::new();
    for _ in 0..u16_(&mut bytes)? {
        let len = u16_(&mut bytes)? as usize;
        let name = HeaderName::from_bytes(&take(&mut bytes, len)?).ok()?;
        let len = u32_(&mut bytes)? as usize;
        let value = HeaderValue::from_maybe_shared(take(&mut bytes, len)?).ok()?;
        headers.append(name, value);
    }
    let mut selection = Vec::new();
    for _ in 0..u16_(&mut bytes)? {
        let len = u16_(&mut bytes)? as usize;
        let name = HeaderName::from_bytes(&take(&mut bytes, len)?).ok()?;
        let present = u8_(&mut bytes)? == 1;
        let len = u32_(&mut bytes)? as usize;
        let value = String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?;
        selection.push((name, present.then_some(value)));
    }
    let len = u32_(&mut bytes)? as usize;
    let body = take(&mut bytes, len)?;
    if bytes.has_remaining() {
        return None;
    }
    Some(Entry::new(
        status,
        headers,
        body,
        request_time,
        response_time,
        Selection::from_fields(selection),
        purged_at,
        config,
    ))
}

/// A short, stable name for a selection (the field of its variant in the URI's hash).
pub(crate) fn selection_id(selection: &Selection) -> String {
    let mut material = Vec::new();
    for (name, value) in selection.fields() {
        material.extend_from_slice(name.as_str().as_bytes());
        material.push(0);
        match value {
            Some(v) => {
                material.push(1);
                material.extend_from_slice(v.as_bytes());
            }
            None => material.push(0),
        }
        material.push(0);
    }
    if material.is_empty() {
        "-".to_owned()
    } else {
        palisade_core::key::digest_hex(&material)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.insert("vary", HeaderValue::from_static("accept-encoding"));
        let mut request = HeaderMap::new();
        request.insert("accept-encoding", HeaderValue::from_static("gzip"));
        Entry::new(
            StatusCode::OK,
            headers.clone(),
            Bytes::from_static(b"body"),
            time(1_000),
            time(2_000),
            Selection::of(&headers, &request),
            Some(time(3_000)),
            &PolicyConfig::default(),
        )
    }

    #[test]
    fn round_trips() {
        let e = entry();
        let back = decode(encode(&e), &PolicyConfig::default()).unwrap();
        assert_eq!(back.status(), e.status());
        assert_eq!(back.headers(), e.headers());
        assert_eq!(back.body(), e.body());
        assert_eq!(back.selection(), e.selection());
        assert_eq!(back.purged_at(), e.purged_at());
        assert_eq!(back.response_time(), e.response_time());
    }

    #[test]
    fn every_truncation_and_junk_is_refused_without_a_panic() {
        let bytes = encode(&entry());
        for cut in 0..bytes.len() {
            assert!(
                decode(bytes.slice(..cut), &PolicyConfig::default()).is_none(),
                "{cut}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode(longer.into(), &PolicyConfig::default()).is_none());
        assert!(decode(Bytes::from_static(b"\x02junk"), &PolicyConfig::default()).is_none());
    }
}
