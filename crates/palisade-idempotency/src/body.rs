//! [`IdempotencyBody`]: the response body the layer returns.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Boxed error of a streamed inner body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The layer's response body: a body held in memory (a replay, a refusal, or a response
    /// the layer buffered to store), or the inner service's body streamed through untouched
    /// (requests the layer does not deduplicate, responses it does not store).
    pub struct IdempotencyBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<B> IdempotencyBody<B> {
    /// A body held in memory, with optional trailers.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        IdempotencyBody {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// The inner service's body, streamed.
    pub fn streaming(body: B) -> Self {
        Self::prefixed(Bytes::new(), body)
    }

    /// A body that fails with `error` (the inner body failed while the layer buffered it).
    pub(crate) fn failed(error: BoxError) -> Self {
        IdempotencyBody {
            kind: Kind::Failed { error: Some(error) },
        }
    }

    /// Bytes already read from `rest`, then the rest of it.
    pub(crate) fn prefixed(prefix: Bytes, rest: B) -> Self {
        IdempotencyBody {
            kind: Kind::Streaming {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }
}

impl<B> From<Bytes> for IdempotencyBody<B> {
    fn from(data: Bytes) -> Self {
        Self::buffered(data, None)
    }
}

impl<B> Default for IdempotencyBody<B> {
    fn default() -> Self {
        Self::buffered(Bytes::new(), None)
    }
}

impl<B> Body for IdempotencyBody<B>
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
            KindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Streaming { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx).map_err(Into::into)
            }
            KindProj::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Failed { .. } => SizeHint::new(),
        }
    }
}
