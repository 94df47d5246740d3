//! Creating the stream the sink publishes to.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::OutboxError;

/// Gets the stream `name`, or creates it over `subject_prefix.>` with a deduplication window
/// of `duplicate_window` (JetStream drops a message whose `Nats-Msg-Id` it saw within the
/// window — make it longer than the longest a relay can take to republish after a crash;
/// JetStream's default is 2 minutes).
pub async fn ensure_stream(
    context: &jetstream::Context,
    name: &str,
    subject_prefix: &str,
    duplicate_window: Duration,
) -> Result<stream::Stream, OutboxError> {
    context
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{subject_prefix}.>")],
            duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| OutboxError::Sink(format!("stream {name}: {e}")))
}
