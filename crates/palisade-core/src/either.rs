//! [`Either`]: one of two backends, chosen at run time, behind one type.
//!
//! A service that picks its stores from configuration (memory in development, Redis in
//! production) builds its layers once over `Either<Memory, Redis>`; every palisade store trait
//! (rate limit, idempotency, lock) is implemented for it, delegating to the side it holds.
//! Nest it for three choices: `Either<A, Either<B, C>>`. The cost is one `match` per call.
//!
//! ```
//! use palisade_core::Either;
//!
//! let redis_url: Option<&str> = None; // from the environment, say
//! let store: Either<&str, String> = match redis_url {
//!     None => Either::Left("in memory"),
//!     Some(url) => Either::Right(format!("redis at {url}")),
//! };
//! assert_eq!(store.as_ref().left(), Some(&"in memory"));
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

/// One of two values (backends, usually): `Left` or `Right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Either<L, R> {
    /// The first kind.
    Left(L),
    /// The second kind.
    Right(R),
}

impl<L, R> Either<L, R> {
    /// Borrows the value inside.
    pub fn as_ref(&self) -> Either<&L, &R> {
        match self {
            Either::Left(l) => Either::Left(l),
            Either::Right(r) => Either::Right(r),
        }
    }

    /// The left value, if it is one.
    pub fn left(self) -> Option<L> {
        match self {
            Either::Left(l) => Some(l),
            Either::Right(_) => None,
        }
    }

    /// The right value, if it is one.
    pub fn right(self) -> Option<R> {
        match self {
            Either::Left(_) => None,
            Either::Right(r) => Some(r),
        }
    }
}

pin_project! {
    /// The future of an [`Either`] backend's call: the one of the side that was called.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct EitherFuture<L, R> {
        #[pin]
        side: Side<L, R>,
    }
}

pin_project! {
    #[project = SideProj]
    #[derive(Debug)]
    enum Side<L, R> {
        Left { #[pin] future: L },
        Right { #[pin] future: R },
    }
}

impl<L, R> EitherFuture<L, R> {
    /// The left backend's future.
    pub fn left(future: L) -> Self {
        EitherFuture {
            side: Side::Left { future },
        }
    }

    /// The right backend's future.
    pub fn right(future: R) -> Self {
        EitherFuture {
            side: Side::Right { future },
        }
    }
}

impl<L, R, T> Future for EitherFuture<L, R>
where
    L: Future<Output = T>,
    R: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project().side.project() {
            SideProj::Left { future } => future.poll(cx),
            SideProj::Right { future } => future.poll(cx),
        }
    }
}
