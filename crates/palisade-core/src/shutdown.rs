//! [`until`]: run a piece of work until a shutdown signal, whichever ends first — the loop of
//! every relay, consumer, projection runner and saga runner.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

pin_project! {
    /// The future of [`until`]: `Some(output)` when the work ended first, `None` when the
    /// shutdown signal did (the work is then dropped, cancelled at its next await point).
    #[must_use = "futures do nothing unless polled"]
    pub struct Until<S, W> {
        #[pin]
        shutdown: S,
        #[pin]
        work: W,
    }
}

/// Runs `work` until `shutdown` completes. The shutdown signal is polled first, so a signal
/// that is already complete stops work that would otherwise be ready too.
///
/// ```
/// use palisade_core::shutdown::until;
///
/// let stopped = until(std::future::ready(()), std::future::pending::<u32>());
/// let finished = until(std::future::pending::<()>(), std::future::ready(7));
/// # let _ = (stopped, finished);
/// ```
pub fn until<S: Future, W: Future>(shutdown: S, work: W) -> Until<S, W> {
    Until { shutdown, work }
}

impl<S: Future, W: Future> Future for Until<S, W> {
    type Output = Option<W::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.shutdown.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        this.work.poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        future.as_mut().poll(&mut cx)
    }

    #[test]
    fn the_first_to_finish_decides_and_shutdown_wins_a_tie() {
        assert_eq!(
            poll_once(until(std::future::ready(()), std::future::pending::<u8>())),
            Poll::Ready(None)
        );
        assert_eq!(
            poll_once(until(std::future::pending::<()>(), std::future::ready(7))),
            Poll::Ready(Some(7))
        );
        assert_eq!(
            poll_once(until(std::future::ready(()), std::future::ready(7))),
            Poll::Ready(None)
        );
        assert!(
            poll_once(until(
                std::future::pending::<()>(),
                std::future::pending::<u8>()
            ))
            .is_pending()
        );
    }
}
