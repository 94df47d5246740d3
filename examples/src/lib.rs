//! Pieces the example binaries share with their tests.

pub mod problem;
pub mod redis;
pub mod serve;

use bytes::{Buf, BufMut};

/// The ids the example services accept in paths and bodies: 1–128 bytes of letters, digits,
/// `-`, `_`, `.` and `:` (they go in paths, broker headers and database keys).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default_filter`).
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
use serde_json::Value;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// gRPC messages as JSON values: a tonic codec, so the examples need no protobuf code
/// generation (with prost the layers are the same).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Encode = Value;
    type Decode = Value;
    type Encoder = JsonCodec;
    type Decoder = JsonCodec;

    fn encoder(&mut self) -> JsonCodec {
        JsonCodec
    }

    fn decoder(&mut self) -> JsonCodec {
        JsonCodec
    }
}

impl Encoder for JsonCodec {
    type Item = Value;
    type Error = Status;

    fn encode(&mut self, item: Value, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for JsonCodec {
    type Item = Value;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Value>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("not JSON: {e}")))
    }
}
