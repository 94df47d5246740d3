//! The layer's bodies: [`InnerBody`] (what the inner service receives) and [`IdempotencyBody`]
//! (what the layer returns).

use bytes::Bytes;
use http_body_util::{Either, Full};

/// The request body the inner service receives: the buffered body, or the original one when
/// the layer lets the request through untouched.
pub type InnerBody<B> = Either<Full<Bytes>, B>;

/// The layer's response body: a body held in memory (a replay, a refusal, or a response the
/// layer buffered to store), or the inner service's body streamed through untouched (requests
/// the layer does not deduplicate, responses it does not store), or what was read of it before
/// it failed. Core's [`PrefixedBody`](palisade_core::body::PrefixedBody), shared with the retry
/// layer.
pub type IdempotencyBody<B> = palisade_core::body::PrefixedBody<B>;

pub use palisade_core::body::BoxError;
