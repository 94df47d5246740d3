//! A lock backend chosen at run time: [`Locker`] for [`Either`] of two backends.

use palisade_core::Either;

use crate::{LockError, LockGuard, Locker};

impl<A: Locker, B: Locker> Locker for Either<A, B> {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        match self {
            Either::Left(locks) => locks.try_acquire(name).await,
            Either::Right(locks) => locks.try_acquire(name).await,
        }
    }
}
