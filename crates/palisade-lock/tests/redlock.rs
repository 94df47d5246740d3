//! Redlock on five private Redis nodes: a minority down still locks; a majority down fails
//! cleanly with no partial locks left; a paused node costs at most the per-node timeout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fred::interfaces::KeysInterface;
use palisade_lock::{LockError, Locker, Redlock};
use palisade_testkit::RedisNode;

async fn cluster(n: usize) -> (Vec<RedisNode>, Vec<fred::clients::Client>) {
    let nodes: Vec<RedisNode> = (0..n).map(|_| RedisNode::start()).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.client().await);
    }
    (nodes, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_three_nodes() {
    let (_nodes, clients) = cluster(2).await;
    assert!(Redlock::new(clients, Duration::from_secs(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_two_dead_nodes_of_five_and_fails_cleanly_with_three() {
    let (mut nodes, clients) = cluster(5).await;
    let locks = Redlock::new(clients.clone(), Duration::from_secs(5)).unwrap();
    assert_eq!(locks.quorum(), 3);
    let guard = locks.try_acquire("a").await.unwrap().unwrap();
    assert!(locks.try_acquire("a").await.unwrap().is_none());
    assert_eq!(
        guard.fencing_token(),
        None,
        "Redlock does not pretend to fence"
    );
    assert!(guard.release().await.unwrap());

    nodes[0].kill();
    nodes[1].kill();
    let guard = locks
        .try_acquire("b")
        .await
        .unwrap()
        .expect("3 of 5 is a quorum");
    assert!(locks.try_acquire("b").await.unwrap().is_none());
    guard.release().await.unwrap();

    nodes[2].kill();
    let err = locks.try_acquire("c").await.unwrap_err();
    assert!(matches!(err, LockError::Backend(_)), "{err}");
    // No node kept a partial lock.
    for client in &clients[3..] {
        let exists: i64 = client.exists(locks.key("c")).await.unwrap();
        assert_eq!(exists, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_quorum_failure_leaves_no_partial_locks() {
    let (_nodes, clients) = cluster(3).await;
    let locks = Redlock::new(clients.clone(), Duration::from_secs(5)).unwrap();
    // Someone else holds the key on two nodes: we can win at most one — and must undo it.
    for client in &clients[..2] {
        let _: () = client
            .set(
                locks.key("split"),
                "other",
                Some(fred::types::Expiration::PX(5000)),
                None,
                false,
            )
            .await
            .unwrap();
    }
    assert!(locks.try_acquire("split").await.unwrap().is_none());
    let exists: i64 = clients[2].exists(locks.key("split")).await.unwrap();
    assert_eq!(exists, 0, "the minority lock was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_costs_at_most_the_node_timeout() {
    let (nodes, clients) = cluster(5).await;
    let locks = Redlock::new(clients, Duration::from_secs(5))
        .unwrap()
        .with_node_timeout(Duration::from_millis(100));
    nodes[4].pause();
    let guard = tokio::time::timeout(Duration::from_secs(1), locks.try_acquire("p"))
        .await
        .expect("not delayed past the per-node timeout")
        .unwrap()
        .expect("4 of 5 granted");
    guard.release().await.unwrap();
    nodes[4].resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_three_clients() {
    let (nodes, _) = cluster(3).await;
    let inside = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut clients = Vec::new();
        for node in &nodes {
            clients.push(node.client().await);
        }
        let locks = Redlock::new(clients, Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let (locks, inside) = (locks.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    let guard = locks.acquire("r", Duration::from_secs(30)).await.unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                    tokio::task::yield_now().await;
                    inside.store(false, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
}
