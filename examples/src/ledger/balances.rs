//! The `balances` projection: each account's balance and the global position of the last
//! event folded in.

use futures_util::future::BoxFuture;
use palisade::eventstore::{Projection, RecordedEvent};
use sqlx::PgConnection;

use crate::account::AccountEvent;

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
                "CREATE TABLE IF NOT EXISTS {table} (\
                    account_id    text   PRIMARY KEY, \
                    balance_cents bigint NOT NULL, \
                    position      bigint NOT NULL)"
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
            // An event this projection cannot read stops it (the lag shows it) rather than
            // being skipped past for good.
            let decoded = serde_json::from_value::<AccountEvent>(event.payload.clone())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            sqlx::query(&format!(
                "INSERT INTO {table} AS b (account_id, balance_cents, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE SET \
                 balance_cents = b.balance_cents + EXCLUDED.balance_cents, \
                 position = EXCLUDED.position"
            ))
            .bind(&event.stream_id)
            .bind(decoded.delta())
            .bind(event.position.global_position)
            .execute(conn)
            .await
            .map(drop)
        })
    }
}
