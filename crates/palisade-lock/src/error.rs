//! [`LockError`]: why a lock could not be taken or kept.

use std::time::Duration;

use palisade_core::BackendError;

/// Why a lock operation failed. "Someone else holds it" is not an error of
/// [`try_acquire`](crate::Locker::try_acquire) (that returns `Ok(None)`), only of the waiting forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Still held by someone else when the wait ran out.
    #[error("lock `{name}` is held by another owner (waited {waited:?})")]
    Busy {
        /// The lock.
        name: String,
        /// How long this caller waited.
        waited: Duration,
    },
    /// The backend (Redis, the Redlock quorum, PostgreSQL) could not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The lock was lost while the protected work ran (lease expired, node flushed or
    /// restarted, connection dropped); the work was cancelled.
    #[error("lock `{0}` was lost while held; the protected work was cancelled")]
    Lost(String),
    /// The lock name is empty or longer than 512 bytes.
    #[error("invalid lock name: {0}")]
    InvalidName(&'static str),
}

/// Checks a lock name: 1–512 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), LockError> {
    if name.is_empty() {
        return Err(LockError::InvalidName("empty"));
    }
    if name.len() > 512 {
        return Err(LockError::InvalidName("longer than 512 bytes"));
    }
    Ok(())
}
