//! Builds each store against the real servers, isolated per test.
#![allow(dead_code)]

use palisade_idempotency::{DualStore, MemoryStore, PostgresStore, RedisStore};
use palisade_testkit::{TestPostgres, TestRedis};

pub async fn redis_store() -> (RedisStore<fred::clients::Client>, TestRedis) {
    let redis = TestRedis::connect().await;
    let store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    (store, redis)
}

pub async fn redis_rs_store() -> (RedisStore<redis::aio::ConnectionManager>, TestRedis) {
    let redis = TestRedis::connect().await;
    let store = RedisStore::new(redis.redis_rs().await).with_prefix(&redis.prefix);
    (store, redis)
}

pub async fn postgres_store() -> (PostgresStore, TestPostgres) {
    let pg = TestPostgres::connect().await;
    let store = PostgresStore::new(pg.pool.clone());
    store.migrate().await.expect("migrate");
    (store, pg)
}

pub type Dual = DualStore<RedisStore<fred::clients::Client>, PostgresStore>;

pub async fn dual_store() -> (Dual, TestRedis, TestPostgres) {
    let (redis, r) = redis_store().await;
    let (pg, p) = postgres_store().await;
    (DualStore::new(redis, pg), r, p)
}

pub fn memory_store() -> MemoryStore {
    MemoryStore::new()
}
