//! [`CommandService`]: a [`Repository`] as a `tower::Service`, so timeouts, rate limits and
//! idempotency layers stack onto command handling as onto HTTP.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_service::Service;

use super::repository::{Committed, Repository};
use crate::{aggregate::Aggregate, error::CommandError};

/// One command for one stream.
#[derive(Debug, Clone)]
pub struct CommandRequest<C> {
    /// The stream (aggregate instance).
    pub stream_id: String,
    /// The command.
    pub command: C,
    /// The version the caller saw, when it wants a stale view to be refused.
    pub expected_version: Option<u64>,
    /// The command's id, when it must be carried out at most once (a client's idempotency
    /// key, a message's event id): see [`Repository::execute_once`].
    pub command_id: Option<String>,
}

/// The service: each request is [`Repository::execute`]. Always ready; its future is boxed (it
/// awaits several PostgreSQL round trips).
#[derive(Debug, Clone)]
pub struct CommandService<A> {
    repository: Repository<A>,
}

impl<A: Aggregate> CommandService<A> {
    /// The service over `repository`.
    pub fn new(repository: Repository<A>) -> CommandService<A> {
        CommandService { repository }
    }
}

impl<A> Service<CommandRequest<A::Command>> for CommandService<A>
where
    A: Aggregate,
    A::Command: Clone + Sync,
{
    type Response = Committed<A>;
    type Error = CommandError<A::Error>;
    type Future = BoxFuture<'static, Result<Committed<A>, CommandError<A::Error>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CommandRequest<A::Command>) -> Self::Future {
        let repository = self.repository.clone();
        Box::pin(async move {
            match &request.command_id {
                Some(id) => {
                    repository
                        .execute_once(
                            &request.stream_id,
                            id,
                            request.command,
                            request.expected_version,
                        )
                        .await
                }
                None => {
                    repository
                        .execute(
                            &request.stream_id,
                            request.command,
                            request.expected_version,
                        )
                        .await
                }
            }
        })
    }
}
