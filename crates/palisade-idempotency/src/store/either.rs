//! A store chosen at run time: [`IdempotencyStore`] for [`Either`] of two stores.

use std::time::Duration;

use bytes::Bytes;
use palisade_core::{BackendError, Either};

use super::{Claim, Failed, IdempotencyStore, Owner, RecordKey};

impl<A: IdempotencyStore, B: IdempotencyStore> IdempotencyStore for Either<A, B> {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        match self {
            Either::Left(s) => s.claim(key, fingerprint, owner, lease).await,
            Either::Right(s) => s.claim(key, fingerprint, owner, lease).await,
        }
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        match self {
            Either::Left(s) => s.complete(key, owner, response, retention).await,
            Either::Right(s) => s.complete(key, owner, response, retention).await,
        }
    }

    async fn release(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        match self {
            Either::Left(s) => s.release(key, owner, retention).await,
            Either::Right(s) => s.release(key, owner, retention).await,
        }
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        match self {
            Either::Left(s) => s.fail(key, owner, max_attempts, dead, retention).await,
            Either::Right(s) => s.fail(key, owner, max_attempts, dead, retention).await,
        }
    }

    async fn release_late_claim(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        match self {
            Either::Left(s) => s.release_late_claim(key, owner, retention).await,
            Either::Right(s) => s.release_late_claim(key, owner, retention).await,
        }
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        match self {
            Either::Left(s) => s.renew(key, owner, lease).await,
            Either::Right(s) => s.renew(key, owner, lease).await,
        }
    }
}
