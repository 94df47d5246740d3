//! Request and response bodies, once for every layer: [`collect_within`] reads a body into
//! memory up to a limit, and [`PrefixedBody`] sends on what was read (then the rest of the
//! stream, or the error it ended with).
//!
//! Retry buffers request bodies to send them again, idempotency buffers request bodies to
//! fingerprint them and response bodies to store them; all three read with [`collect_within`]
//! and hand the inner service or the client a [`PrefixedBody`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use palisade_core::body::{Collected, PrefixedBody, collect_within};
//!
//! match collect_within(Full::new(Bytes::from_static(b"hello")), 1024).await {
//!     Collected::Complete { data, .. } => assert_eq!(data, "hello"),
//!     _ => unreachable!("5 bytes fit in 1 KiB"),
//! }
//! // Too large: the bytes read so far, then the rest, sent once.
//! let Collected::TooLarge { prefix, rest } =
//!     collect_within(Full::new(Bytes::from_static(b"hello")), 3).await
//! else {
//!     unreachable!()
//! };
//! let body = PrefixedBody::prefixed(prefix, rest);
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// What [`collect_within`] read.
#[derive(Debug)]
pub enum Collected<B: Body> {
    /// The whole body, no longer than the limit, and its trailers (merged if several frames).
    Complete {
        /// The data.
        data: Bytes,
        /// The trailers, if any.
        trailers: Option<HeaderMap>,
    },
    /// Longer than the limit (by its size hint, or once read past it): what was read, and the
    /// body with the rest unread.
    TooLarge {
        /// The bytes read before the limit was passed (empty when the size hint told).
        prefix: Bytes,
        /// The rest of the body.
        rest: B,
    },
    /// The body failed after `prefix`.
    Failed {
        /// The bytes read before the error.
        prefix: Bytes,
        /// The body's error.
        error: B::Error,
    },
}

/// Reads `body` into memory while it stays within `limit` bytes; stops reading as soon as it
/// cannot (memory stays bounded by `limit` plus one frame). A body of one frame is kept as is,
/// without a copy. The returned [`Collect`] is a plain future (no allocation), so layers can
/// hold it in their own response futures.
pub fn collect_within<B>(body: B, limit: usize) -> Collect<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    Collect {
        body: Some(body),
        limit,
        data: Chunks::default(),
        trailers: None,
    }
}

/// The future of [`collect_within`]: resolves to what was [`Collected`].
///
/// Invariant: `body` is `Some` until the future has resolved; `data` never holds more than
/// `limit` bytes plus the last frame read.
#[must_use = "futures do nothing unless polled"]
pub struct Collect<B> {
    body: Option<B>,
    limit: usize,
    data: Chunks,
    trailers: Option<HeaderMap>,
}

impl<B> std::fmt::Debug for Collect<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collect")
            .field("limit", &self.limit)
            .field("read", &self.data.len())
            .field("done", &self.body.is_none())
            .finish()
    }
}

impl<B> std::future::Future for Collect<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Collected<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Collected<B>> {
        let this = self.get_mut();
        let body = this
            .body
            .as_mut()
            .expect("`Collect` polled after it resolved");
        if this.data.len() == 0 && body.size_hint().lower() > this.limit as u64 {
            return Poll::Ready(Collected::TooLarge {
                prefix: Bytes::new(),
                rest: this.take_body(),
            });
        }
        loop {
            let body = this.body.as_mut().expect("present until resolved");
            if body.is_end_stream() {
                break;
            }
            let frame = match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => break,
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(error))) => {
                    this.body = None;
                    return Poll::Ready(Collected::Failed {
                        prefix: std::mem::take(&mut this.data).freeze(),
                        error,
                    });
                }
            };
            match frame.into_data() {
                Ok(chunk) => {
                    this.data.push(chunk);
                    if this.data.len() > this.limit {
                        return Poll::Ready(Collected::TooLarge {
                            prefix: std::mem::take(&mut this.data).freeze(),
                            rest: this.take_body(),
                        });
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        this.trailers.get_or_insert_with(HeaderMap::new).extend(t);
                    }
                }
            }
        }
        this.body = None;
        Poll::Ready(Collected::Complete {
            data: std::mem::take(&mut this.data).freeze(),
            trailers: this.trailers.take(),
        })
    }
}

impl<B> Collect<B> {
    fn take_body(&mut self) -> B {
        self.body.take().expect("present until resolved")
    }
}

/// Bytes read so far: a single chunk is kept as is (no copy), several are joined.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&data);
        } else if let Some(first) = self.first.take() {
            let mut joined = BytesMut::with_capacity(first.len() + data.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&data);
            self.joined = Some(joined);
        } else {
            self.first = Some(data);
        }
    }

    fn len(&self) -> usize {
        match (&self.joined, &self.first) {
            (Some(j), _) => j.len(),
            (None, Some(f)) => f.len(),
            (None, None) => 0,
        }
    }

    fn freeze(self) -> Bytes {
        match (self.joined, self.first) {
            (Some(j), _) => j.freeze(),
            (None, Some(f)) => f,
            (None, None) => Bytes::new(),
        }
    }
}

/// The error of a [`PrefixedBody`]: the inner body's own error, boxed (only on the error path).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A body that was (partly) read into memory, sent on: the whole body held in memory, or
    /// the bytes read so far followed by the rest of the stream, or by the error the stream
    /// failed with. Whole bodies can be cloned cheaply ([`whole`](Self::whole) again with the
    /// same `Bytes`); a prefixed one is sent once. Errors are boxed, as hyper and tonic take
    /// them.
    pub struct PrefixedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Whole {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        Prefixed {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
        Failed {
            prefix: Option<Bytes>,
            error: Option<BoxError>,
        },
    }
}

fn non_empty(bytes: Bytes) -> Option<Bytes> {
    (!bytes.is_empty()).then_some(bytes)
}

impl<B> PrefixedBody<B> {
    /// A body held in memory, with optional trailers.
    pub fn whole(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        PrefixedBody {
            kind: Kind::Whole {
                data: non_empty(data),
                trailers,
            },
        }
    }

    /// `prefix` (already read from `rest`), then the rest of `rest`.
    pub fn prefixed(prefix: Bytes, rest: B) -> Self {
        PrefixedBody {
            kind: Kind::Prefixed {
                prefix: non_empty(prefix),
                rest,
            },
        }
    }

    /// The whole of `body`, streamed through untouched.
    pub fn streamed(body: B) -> Self {
        Self::prefixed(Bytes::new(), body)
    }

    /// `prefix`, then `error`: the body as it was read, failure included.
    pub fn failed(prefix: Bytes, error: impl Into<BoxError>) -> Self {
        PrefixedBody {
            kind: Kind::Failed {
                prefix: non_empty(prefix),
                error: Some(error.into()),
            },
        }
    }

    /// What [`collect_within`] read, sent on: whole, prefixed or failed.
    pub fn from_collected(collected: Collected<B>) -> Self
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        match collected {
            Collected::Complete { data, trailers } => Self::whole(data, trailers),
            Collected::TooLarge { prefix, rest } => Self::prefixed(prefix, rest),
            Collected::Failed { prefix, error } => Self::failed(prefix, error),
        }
    }
}

impl<B> From<Bytes> for PrefixedBody<B> {
    fn from(data: Bytes) -> Self {
        Self::whole(data, None)
    }
}

impl<B> Default for PrefixedBody<B> {
    /// An empty body.
    fn default() -> Self {
        Self::whole(Bytes::new(), None)
    }
}

impl<B> Body for PrefixedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Whole { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Prefixed { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx).map_err(Into::into)
            }
            KindProj::Failed { prefix, error } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                Poll::Ready(error.take().map(Err))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Whole { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Whole { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Failed { prefix, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(prefix.as_ref().map_or(0, |p| p.len() as u64));
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    type Frames = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, &'static str>>>,
    >;

    fn frames(items: Vec<Result<Frame<Bytes>, &'static str>>) -> Frames {
        StreamBody::new(futures_util::stream::iter(items))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, &'static str> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    fn trailer(name: &'static str) -> Result<Frame<Bytes>, &'static str> {
        let mut map = HeaderMap::new();
        map.insert(name, http::HeaderValue::from_static("1"));
        Ok(Frame::trailers(map))
    }

    #[tokio::test]
    async fn a_single_frame_is_kept_without_a_copy() {
        let bytes = Bytes::from(vec![7u8; 64]);
        let Collected::Complete { data, trailers } =
            collect_within(Full::<Bytes>::new(bytes.clone()), 64).await
        else {
            panic!("64 bytes fit in 64")
        };
        assert_eq!(data.as_ptr(), bytes.as_ptr());
        assert!(trailers.is_none());
    }

    #[tokio::test]
    async fn frames_are_joined_and_trailers_merged() {
        let body = frames(vec![data("ab"), data("cd"), trailer("x-a"), trailer("x-b")]);
        let Collected::Complete { data, trailers } = collect_within(body, 4).await else {
            panic!("4 bytes fit in 4")
        };
        assert_eq!(data, "abcd");
        let trailers = trailers.unwrap();
        assert!(trailers.contains_key("x-a") && trailers.contains_key("x-b"));
    }

    #[tokio::test]
    async fn one_byte_over_stops_reading_and_keeps_the_rest() {
        let body = frames(vec![data("ab"), data("cde"), data("fg")]);
        let Collected::TooLarge { prefix, rest } = collect_within(body, 4).await else {
            panic!("5 bytes do not fit in 4")
        };
        assert_eq!(prefix, "abcde");
        let whole = PrefixedBody::prefixed(prefix, rest)
            .collect()
            .await
            .unwrap();
        assert_eq!(whole.to_bytes(), "abcdefg");
    }

    #[tokio::test]
    async fn a_size_hint_above_the_limit_reads_nothing() {
        let Collected::TooLarge { prefix, rest } =
            collect_within(Full::new(Bytes::from_static(b"hello")), 4).await
        else {
            panic!("5 bytes do not fit in 4")
        };
        assert!(prefix.is_empty());
        assert_eq!(rest.size_hint().exact(), Some(5));
    }

    #[tokio::test]
    async fn an_error_is_kept_and_sent_on_after_the_prefix() {
        let body = frames(vec![data("ab"), Err("reset"), data("never")]);
        let collected = collect_within(body, 100).await;
        let Collected::Failed { prefix, error } = &collected else {
            panic!("the body failed")
        };
        assert_eq!((prefix.as_ref(), *error), (&b"ab"[..], "reset"));
        let mut sent = PrefixedBody::from_collected(collected);
        assert_eq!(sent.size_hint().lower(), 2);
        let first = sent.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        assert_eq!(
            sent.frame().await.unwrap().unwrap_err().to_string(),
            "reset"
        );
        assert!(sent.frame().await.is_none() && sent.is_end_stream());
    }

    #[tokio::test]
    async fn a_whole_body_replays_data_then_trailers() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", http::HeaderValue::from_static("0"));
        let mut body: PrefixedBody<Full<Bytes>> =
            PrefixedBody::whole(Bytes::from_static(b"xy"), Some(map));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "xy");
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.into_trailers().unwrap().contains_key("grpc-status"));
        assert!(body.is_end_stream());
        let empty: PrefixedBody<Full<Bytes>> = PrefixedBody::whole(Bytes::new(), None);
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
