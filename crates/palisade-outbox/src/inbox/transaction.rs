//! [`InboxTransaction`]: the transaction an inbox opens for a handler, shared with it.

use std::sync::Arc;

use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

/// The PostgreSQL transaction an [`Inbox`](crate::Inbox) opened for one message. The handler
/// [`lock`](Self::lock)s it to write; the inbox commits it after the handler succeeded, or
/// rolls it back when the handler failed or its future was dropped.
#[derive(Debug, Clone)]
pub struct InboxTransaction {
    cell: Arc<Mutex<Option<Transaction<'static, Postgres>>>>,
}

/// The handler used its [`InboxTransaction`] after the inbox had finished it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inbox transaction was already committed or rolled back")]
pub struct TransactionFinished;

impl InboxTransaction {
    pub(crate) fn new(tx: Transaction<'static, Postgres>) -> InboxTransaction {
        InboxTransaction {
            cell: Arc::new(Mutex::new(Some(tx))),
        }
    }

    /// The connection of the transaction, for `sqlx::query(..).execute(&mut *conn)`.
    pub async fn lock(&self) -> Result<MappedMutexGuard<'_, PgConnection>, TransactionFinished> {
        let guard = self.cell.lock().await;
        MutexGuard::try_map(guard, |tx| tx.as_mut().map(|tx| &mut **tx))
            .map_err(|_| TransactionFinished)
    }

    pub(crate) async fn take(&self) -> Option<Transaction<'static, Postgres>> {
        self.cell.lock().await.take()
    }
}
