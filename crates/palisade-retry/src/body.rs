//! [`ReplayBody`]: a request body kept in memory so it can be sent again.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body the inner service receives: the buffered bytes (replayable), or — when the
    /// body was larger than the cap or failed to read — what was read plus the rest of the
    /// original stream, sent once.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Buffered in full: every attempt sends the same bytes.
        Full {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        // Too large (or failing): the bytes already read, then the rest of the stream, once.
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
    }
}

impl<B> ReplayBody<B> {
    /// A replayable copy of buffered bytes.
    pub(crate) fn replay(data: &Bytes, trailers: &Option<HeaderMap>) -> Self {
        ReplayBody {
            kind: Kind::Full {
                data: Some(data.clone()),
                trailers: trailers.clone(),
            },
        }
    }

    /// `prefix` (already read), then the rest of `rest`: sent once.
    pub(crate) fn streaming(prefix: Option<Bytes>, rest: B) -> Self {
        ReplayBody {
            kind: Kind::Streaming { prefix, rest },
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data, trailers } => {
                if let Some(data) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Streaming { prefix, rest } => {
                if let Some(prefix) = prefix.take().filter(|p| !p.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data, trailers } => {
                data.as_ref().is_none_or(|d| d.is_empty()) && trailers.is_none()
            }
            Kind::Streaming { prefix, rest } => {
                prefix.as_ref().is_none_or(|p| p.is_empty()) && rest.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + extra);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + extra);
                }
                out
            }
        }
    }
}

/// Reads `body` into memory if it fits in `limit` bytes.
pub(crate) enum Buffered<B> {
    /// Complete: replayable.
    Complete(Bytes, Option<HeaderMap>),
    /// Not replayable: send this once.
    Once(ReplayBody<B>),
}

pub(crate) async fn buffer<B>(body: B, limit: usize) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Buffered::Once(ReplayBody::streaming(None, body));
    }
    let mut body = body;
    let mut collected = Collected::default();
    let mut trailers = None;
    loop {
        if body.is_end_stream() {
            return Buffered::Complete(collected.freeze(), trailers);
        }
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Buffered::Complete(collected.freeze(), trailers),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    collected.push(data);
                    if collected.len() > limit {
                        return Buffered::Once(ReplayBody::streaming(
                            Some(collected.freeze()),
                            body,
                        ));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
            // The inner service will see the same error when it reads the rest.
            Some(Err(_)) => {
                return Buffered::Once(ReplayBody::streaming(Some(collected.freeze()), body));
            }
        }
    }
}

/// Body bytes read so far: a single chunk is kept as is (no copy), several are joined.
#[derive(Default)]
struct Collected {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Collected {
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
