//! The errors of the store and of command handling.

/// An event store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream is not at the expected version: another append got there first.
    #[error("version conflict: expected {expected}, the stream is at {actual}")]
    Conflict {
        /// The version the append expected.
        expected: u64,
        /// The stream's version.
        actual: u64,
    },
    /// A stored event or snapshot cannot be decoded into today's types.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What (`event 3 of stream a-1`).
        what: String,
        /// Why.
        reason: String,
    },
    /// Invalid input (an empty stream id, a bad name).
    #[error("invalid: {0}")]
    Invalid(String),
    /// PostgreSQL failed.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox refused an event enqueued with the append.
    #[cfg(feature = "postgres")]
    #[error("outbox: {0}")]
    Outbox(#[from] palisade_outbox::OutboxError),
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate refused it (a domain error): nothing was appended.
    #[error("rejected: {0}")]
    Rejected(E),
    /// The caller's explicit expected version is stale.
    #[error("version conflict: expected {expected}, the stream is at {actual}")]
    Conflict {
        /// The caller's expected version.
        expected: u64,
        /// The stream's version.
        actual: u64,
    },
    /// Without an explicit expected version, every retry still met a concurrent append.
    #[error("still conflicting after {attempts} attempts")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
