//! The lock backends: in memory, one Redis (or Cluster), Redlock over N Redis nodes, and
//! PostgreSQL advisory locks. Each is a [`Locker`](crate::Locker).

mod either;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
pub(crate) mod redlock;
