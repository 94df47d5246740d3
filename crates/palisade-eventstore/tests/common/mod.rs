//! An account aggregate and a balances projection for the event store tests.

#![allow(dead_code)]

use futures_util::future::BoxFuture;
use palisade_eventstore::{Aggregate, DomainEvent, EventStore, Projection, RecordedEvent};
use palisade_outbox::Schema;
use palisade_testkit::TestPostgres;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Deposited { amount_cents: i64 },
    Withdrawn { amount_cents: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited { .. } => "account.deposited",
            AccountEvent::Withdrawn { .. } => "account.withdrawn",
        }
    }
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance_cents: i64,
    /// Events applied (to tell a snapshot load from a replay in tests).
    pub applied: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the amount must be positive")]
    InvalidAmount,
    #[error("insufficient funds")]
    InsufficientFunds,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        self.applied += 1;
        match event {
            AccountEvent::Deposited { amount_cents } => self.balance_cents += amount_cents,
            AccountEvent::Withdrawn { amount_cents } => self.balance_cents -= amount_cents,
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Deposit(n) | AccountCommand::Withdraw(n) if n <= 0 => {
                Err(AccountError::InvalidAmount)
            }
            AccountCommand::Deposit(n) => Ok(vec![AccountEvent::Deposited { amount_cents: n }]),
            AccountCommand::Withdraw(n) if n > self.balance_cents => {
                Err(AccountError::InsufficientFunds)
            }
            AccountCommand::Withdraw(n) => Ok(vec![AccountEvent::Withdrawn { amount_cents: n }]),
        }
    }
}

pub async fn store() -> (TestPostgres, EventStore) {
    let pg = TestPostgres::with_max_connections(30).await;
    let store = EventStore::new(pg.pool.clone(), Schema::new(&pg.schema).unwrap());
    store.migrate().await.unwrap();
    (pg, store)
}

/// Balances per stream, from account events.
pub struct Balances;

impl Projection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn table(&self) -> &str {
        "balances"
    }

    fn create<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (account_id text PRIMARY KEY, \
                 balance_cents bigint NOT NULL, events bigint NOT NULL)"
            ))
            .execute(conn)
            .await
            .map(drop)
        })
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let delta = match serde_json::from_value::<AccountEvent>(event.payload.clone()) {
                Ok(AccountEvent::Deposited { amount_cents }) => amount_cents,
                Ok(AccountEvent::Withdrawn { amount_cents }) => -amount_cents,
                Err(_) => return Ok(()),
            };
            sqlx::query(&format!(
                "INSERT INTO {table} AS b (account_id, balance_cents, events) VALUES ($1, $2, 1) \
                 ON CONFLICT (account_id) DO UPDATE SET balance_cents = b.balance_cents + $2, \
                 events = b.events + 1"
            ))
            .bind(&event.stream_id)
            .bind(delta)
            .execute(conn)
            .await
            .map(drop)
        })
    }
}
