//! A store chosen at run time: [`RateLimitStore`] for [`Either`] of two stores.

use palisade_core::{Either, EitherFuture, key::Key};

use crate::Policy;

use super::{Checked, Mode, RateLimitStore};

impl<A: RateLimitStore, B: RateLimitStore> RateLimitStore for Either<A, B> {
    type Future = EitherFuture<A::Future, B::Future>;

    fn check(&self, policy: &Policy, key: &Key, cost: u64, mode: Mode) -> Checked<Self::Future> {
        match self {
            Either::Left(store) => match store.check(policy, key, cost, mode) {
                Checked::Ready(decision) => Checked::Ready(decision),
                Checked::Pending(future) => Checked::Pending(EitherFuture::left(future)),
            },
            Either::Right(store) => match store.check(policy, key, cost, mode) {
                Checked::Ready(decision) => Checked::Ready(decision),
                Checked::Pending(future) => Checked::Pending(EitherFuture::right(future)),
            },
        }
    }
}
