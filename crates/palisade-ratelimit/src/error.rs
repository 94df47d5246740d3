//! [`PolicyError`]: why a policy or limit was refused.

/// A policy or limit that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate-limit policy: {0}")]
pub struct PolicyError(String);

impl PolicyError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        PolicyError(message.into())
    }

    /// What is wrong, without the "invalid rate-limit policy" prefix.
    pub(crate) fn message(&self) -> &str {
        &self.0
    }
}
