//! The orders and the customers read model in PostgreSQL, and the transactions that write an
//! order change together with its event.

use palisade::outbox::{NewEvent, Outbox, OutboxError, Schema};
use serde::Serialize;
use sqlx::{Executor, PgPool, Row};

/// The aggregate type of every order event.
pub const AGGREGATE: &str = "order";

/// An order, as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub amount_cents: i64,
}

/// A customer's read model, as `GET /customers/{id}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Customer {
    pub customer_id: String,
    pub orders_placed: i64,
    pub orders_paid: i64,
    pub orders_cancelled: i64,
    pub total_paid_cents: i64,
}

/// What a write did.
#[derive(Debug)]
pub enum Written {
    /// Committed, with the event id (and, for a transition, the order as it now is).
    Done {
        event_id: String,
        order: Option<Order>,
    },
    /// No such order.
    NotFound,
    /// The order exists but is not in a state that allows this (or, for a new order, it
    /// exists already); its current status.
    Conflict { status: String },
    /// `?fail=after_write`: written, then rolled back before commit.
    FailedOnPurpose,
}

/// The orders' tables, the outbox, and the transactions over them.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    schema: Schema,
    outbox: Outbox,
}

impl Store {
    /// Migrates the outbox and the service's own tables (idempotent, safe for several
    /// processes starting at once).
    pub async fn open(pool: PgPool, schema: Schema) -> Result<Store, OutboxError> {
        schema.migrate(&pool).await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("palisade-orders:{schema}"))
            .execute(&mut *tx)
            .await?;
        tx.execute(
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.orders (
                    order_id     text        PRIMARY KEY,
                    customer_id  text        NOT NULL,
                    status       text        NOT NULL,
                    amount_cents bigint      NOT NULL,
                    created_at   timestamptz NOT NULL DEFAULT now(),
                    updated_at   timestamptz NOT NULL DEFAULT now()
                );
                CREATE TABLE IF NOT EXISTS {schema}.customers (
                    customer_id      text   PRIMARY KEY,
                    orders_placed    bigint NOT NULL DEFAULT 0,
                    orders_paid      bigint NOT NULL DEFAULT 0,
                    orders_cancelled bigint NOT NULL DEFAULT 0,
                    total_paid_cents bigint NOT NULL DEFAULT 0
                );"
            )
            .as_str(),
        )
        .await?;
        tx.commit().await?;
        Ok(Store {
            outbox: Outbox::new(schema.clone()),
            pool,
            schema,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Inserts the order (status `placed`) and its `order.placed` event in one transaction.
    pub async fn place(
        &self,
        order: &Order,
        fail: bool,
        traceparent: Option<&str>,
    ) -> Result<Written, OutboxError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {}.orders (order_id, customer_id, status, amount_cents) \
             VALUES ($1, $2, 'placed', $3) ON CONFLICT (order_id) DO NOTHING",
            self.schema
        ))
        .bind(&order.order_id)
        .bind(&order.customer_id)
        .bind(order.amount_cents)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(Written::Conflict {
                status: "exists".into(),
            });
        }
        let event = event(order, "order.placed", traceparent);
        let enqueued = self.outbox.enqueue(&mut tx, event).await?;
        if fail {
            tx.rollback().await?;
            return Ok(Written::FailedOnPurpose);
        }
        tx.commit().await?;
        Ok(Written::Done {
            event_id: enqueued.id.to_string(),
            order: None,
        })
    }

    /// `placed` → `to`, with the event `event_type`, in one transaction. The `UPDATE … WHERE
    /// status = 'placed'` takes the row lock, so of two concurrent payments one wins and the
    /// other sees the new status (409).
    pub async fn transition(
        &self,
        order_id: &str,
        to: &str,
        event_type: &str,
        fail: bool,
        traceparent: Option<&str>,
    ) -> Result<Written, OutboxError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE {}.orders SET status = $2, updated_at = now() \
             WHERE order_id = $1 AND status = 'placed' \
             RETURNING customer_id, amount_cents",
            self.schema
        ))
        .bind(order_id)
        .bind(to)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let status: Option<String> = sqlx::query_scalar(&format!(
                "SELECT status FROM {}.orders WHERE order_id = $1",
                self.schema
            ))
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(match status {
                None => Written::NotFound,
                Some(status) => Written::Conflict { status },
            });
        };
        let order = Order {
            order_id: order_id.to_owned(),
            customer_id: row.try_get("customer_id")?,
            status: to.to_owned(),
            amount_cents: row.try_get("amount_cents")?,
        };
        let enqueued = self
            .outbox
            .enqueue(&mut tx, event(&order, event_type, traceparent))
            .await?;
        if fail {
            tx.rollback().await?;
            return Ok(Written::FailedOnPurpose);
        }
        tx.commit().await?;
        Ok(Written::Done {
            event_id: enqueued.id.to_string(),
            order: Some(order),
        })
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, OutboxError> {
        let row = sqlx::query(&format!(
            "SELECT order_id, customer_id, status, amount_cents FROM {}.orders WHERE order_id = $1",
            self.schema
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Order {
                order_id: row.try_get("order_id")?,
                customer_id: row.try_get("customer_id")?,
                status: row.try_get("status")?,
                amount_cents: row.try_get("amount_cents")?,
            })
        })
        .transpose()
    }

    /// The read model of `customer_id` (all zeros before the projector saw any event of it).
    pub async fn customer(&self, customer_id: &str) -> Result<Customer, OutboxError> {
        let row = sqlx::query(&format!(
            "SELECT orders_placed, orders_paid, orders_cancelled, total_paid_cents \
             FROM {}.customers WHERE customer_id = $1",
            self.schema
        ))
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        let get = |name: &str| -> Result<i64, OutboxError> {
            Ok(match &row {
                Some(row) => row.try_get(name)?,
                None => 0,
            })
        };
        Ok(Customer {
            customer_id: customer_id.to_owned(),
            orders_placed: get("orders_placed")?,
            orders_paid: get("orders_paid")?,
            orders_cancelled: get("orders_cancelled")?,
            total_paid_cents: get("total_paid_cents")?,
        })
    }
}

fn event(order: &Order, event_type: &str, traceparent: Option<&str>) -> NewEvent {
    let event = NewEvent::new(
        AGGREGATE,
        &order.order_id,
        event_type,
        serde_json::json!({
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "amount_cents": order.amount_cents,
            "status": order.status,
        }),
    );
    match traceparent {
        Some(traceparent) => event.header("traceparent", traceparent),
        None => event,
    }
}
