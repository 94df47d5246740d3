//! A store chosen at run time: [`Store`] for [`Either`] of two stores (memory for one
//! instance, Redis for a fleet) behind one type.

use std::{sync::Arc, time::Duration, time::SystemTime};

use palisade_core::{BackendError, Either};

use super::{PurgeMode, Store};
use crate::{Entry, policy::PolicyConfig};

impl<A: Store, B: Store> Store for Either<A, B> {
    async fn get(&self, key: &str, policy: &PolicyConfig) -> Result<Vec<Arc<Entry>>, BackendError> {
        match self {
            Either::Left(s) => s.get(key, policy).await,
            Either::Right(s) => s.get(key, policy).await,
        }
    }

    async fn put(&self, key: &str, entry: Arc<Entry>) -> Result<bool, BackendError> {
        match self {
            Either::Left(s) => s.put(key, entry).await,
            Either::Right(s) => s.put(key, entry).await,
        }
    }

    async fn purge_key(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        match self {
            Either::Left(s) => s.purge_key(key, mode, now).await,
            Either::Right(s) => s.purge_key(key, mode, now).await,
        }
    }

    async fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        match self {
            Either::Left(s) => s.purge_surrogate_key(surrogate_key, mode, now).await,
            Either::Right(s) => s.purge_surrogate_key(surrogate_key, mode, now).await,
        }
    }

    async fn purge_all(
        &self,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        match self {
            Either::Left(s) => s.purge_all(mode, now).await,
            Either::Right(s) => s.purge_all(mode, now).await,
        }
    }

    async fn claim_fetch(
        &self,
        key: &str,
        lease: Duration,
    ) -> Result<Option<String>, BackendError> {
        match self {
            Either::Left(s) => s.claim_fetch(key, lease).await,
            Either::Right(s) => s.claim_fetch(key, lease).await,
        }
    }

    async fn release_fetch(&self, key: &str, token: &str) {
        match self {
            Either::Left(s) => s.release_fetch(key, token).await,
            Either::Right(s) => s.release_fetch(key, token).await,
        }
    }

    fn stored_bytes(&self) -> Option<u64> {
        match self {
            Either::Left(s) => s.stored_bytes(),
            Either::Right(s) => s.stored_bytes(),
        }
    }

    fn evictions(&self) -> Option<u64> {
        match self {
            Either::Left(s) => s.evictions(),
            Either::Right(s) => s.evictions(),
        }
    }

    async fn fetch_claimed(&self, key: &str) -> Result<bool, BackendError> {
        match self {
            Either::Left(s) => s.fetch_claimed(key).await,
            Either::Right(s) => s.fetch_claimed(key).await,
        }
    }
}
