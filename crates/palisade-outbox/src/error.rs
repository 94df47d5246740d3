//! [`OutboxError`]: what the outbox, relay and inbox report.

/// An error of the outbox, its relay or the inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The schema name is not a plain lowercase identifier.
    #[error("invalid PostgreSQL schema name {0:?}: use 1-63 characters of a-z, 0-9 and _")]
    InvalidSchema(String),
    /// An event field is unusable (empty, too long, or not JSON-serializable).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// The sink (broker) failed in a way the relay cannot work around.
    #[error("sink: {0}")]
    Sink(String),
}
