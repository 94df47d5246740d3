//! A stored response: what a replay sends back, and its byte encoding in the stores.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const MAGIC: &[u8; 4] = b"PID1";

/// The record of an operation that completed with a response too large to keep: replays are
/// refused with 409 rather than running the operation again.
pub(crate) const NOT_KEPT: &[u8] = b"PIDX";

/// A response kept for replay: status, headers, body and (for gRPC) trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status code.
    pub status: StatusCode,
    /// The headers kept (never hop-by-hop ones; `Set-Cookie` only when allowed).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, when the response had them (gRPC's `grpc-status`).
    pub trailers: Option<HeaderMap>,
}

/// A stored record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored idempotent response is corrupt: {0}")]
pub struct CorruptRecord(&'static str);

impl StoredResponse {
    /// The bytes a store keeps: a versioned, length-prefixed binary form.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.body.len() + 64);
        out.put_slice(MAGIC);
        out.put_u16(self.status.as_u16());
        put_headers(&mut out, &self.headers);
        match &self.trailers {
            Some(trailers) => {
                out.put_u8(1);
                put_headers(&mut out, trailers);
            }
            None => out.put_u8(0),
        }
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Reads back what [`encode`](Self::encode) wrote.
    pub fn decode(mut bytes: Bytes) -> Result<StoredResponse, CorruptRecord> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(CorruptRecord("unknown format"));
        }
        bytes.advance(4);
        let status = StatusCode::from_u16(bytes.get_u16()).map_err(|_| CorruptRecord("status"))?;
        let headers = get_headers(&mut bytes)?;
        let trailers = match take(&mut bytes, 1)?[0] {
            0 => None,
            _ => Some(get_headers(&mut bytes)?),
        };
        Ok(StoredResponse {
            status,
            headers,
            body: bytes,
            trailers,
        })
    }
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
}

fn get_headers(bytes: &mut Bytes) -> Result<HeaderMap, CorruptRecord> {
    let count = u32::from_be_bytes(take(bytes, 4)?.as_ref().try_into().unwrap_or_default());
    let mut headers = HeaderMap::with_capacity((count as usize).min(64));
    for _ in 0..count {
        let len = u16::from_be_bytes(take(bytes, 2)?.as_ref().try_into().unwrap_or_default());
        let name = HeaderName::from_bytes(&take(bytes, len as usize)?)
            .map_err(|_| CorruptRecord("header name"))?;
        let len = u32::from_be_bytes(take(bytes, 4)?.as_ref().try_into().unwrap_or_default());
        let value = HeaderValue::from_maybe_shared(take(bytes, len as usize)?)
            .map_err(|_| CorruptRecord("header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn take(bytes: &mut Bytes, n: usize) -> Result<Bytes, CorruptRecord> {
    if bytes.len() < n {
        return Err(CorruptRecord("truncated"));
    }
    Ok(bytes.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-many", "1".parse().unwrap());
        headers.append("x-many", "2".parse().unwrap());
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        for trailers in [None, Some(trailers)] {
            let stored = StoredResponse {
                status: StatusCode::CREATED,
                headers: headers.clone(),
                body: Bytes::from_static(b"{\"id\":1}\x00\xff"),
                trailers,
            };
            assert_eq!(StoredResponse::decode(stored.encode()).unwrap(), stored);
        }
    }

    proptest::proptest! {
        #[test]
        fn garbage_is_an_error_not_a_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(raw);
            let _ = StoredResponse::decode(Bytes::from(bytes));
        }
    }
}
