use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fred::clients::Client;

use crate::{connect_url, unique_prefix};

/// How many ports (or, on restart, tries of the same port) before a node gives up.
const SPAWN_ATTEMPTS: usize = 5;

/// A private `redis-server` on a free loopback port, stopped (SIGKILL) and its directory removed
/// on drop.
pub struct RedisNode {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisNode {
    /// Starts a standalone node.
    pub fn start() -> RedisNode {
        Self::start_with(false)
    }

    fn start_with(cluster: bool) -> RedisNode {
        let dir = std::env::temp_dir().join(unique_prefix("redis-node"));
        std::fs::create_dir_all(&dir).expect("create redis-server directory");
        let mut node = RedisNode {
            port: 0,
            dir,
            cluster,
            child: None,
        };
        // A free port can be taken between choosing it and redis-server binding it (another
        // test's node chose it too): the server then exits at once, and the next port is tried.
        let mut failures = Vec::new();
        for _ in 0..SPAWN_ATTEMPTS {
            node.port = free_port(cluster);
            match node.spawn() {
                Ok(()) => return node,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("redis-server did not start: {}", failures.join("; "))
    }

    /// Starts redis-server on `self.port` and waits until it answers, as itself (`INFO` names
    /// its pid). `Err` when the
    /// server exited first (its log says why) or stayed silent for 10 s.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); install it (Debian: apt-get install redis-server)"
            )
        });
        let child = self.child.insert(child);
        let outcome = wait_for_ping(self.port, child, Duration::from_secs(10));
        if outcome.is_err() {
            self.kill();
        }
        outcome.map_err(|why| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            format!("port {}: {why} (log: {tail})", self.port)
        })
    }

    /// The node's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connected client that reconnects every 50 ms when the node goes away.
    pub async fn client(&self) -> Client {
        connect_url(&self.url(), Duration::from_secs(5))
            .await
            .expect("connect to private redis-server")
    }

    /// A redis-rs connection that reconnects by itself when the node comes back.
    pub async fn redis_rs(&self) -> redis::aio::ConnectionManager {
        crate::connect_redis_rs(&self.url(), Duration::from_secs(5))
            .await
            .expect("connect redis-rs to private redis-server")
    }

    /// Kills the server (SIGKILL): connections drop, data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    ///
    /// The port may be briefly taken by someone else after the kill; restarting retries a few
    /// times, 100 ms apart, then panics with the server's own words.
    pub fn restart(&mut self) {
        self.kill();
        let mut failures = Vec::new();
        for _ in 0..SPAWN_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(failure) => failures.push(failure),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart: {}", failures.join("; "))
    }

    /// Empties the server's script cache (`SCRIPT FLUSH`), as a restart or failover does:
    /// the next `EVALSHA` answers `NOSCRIPT`.
    pub fn script_flush(&self) {
        let reply = command(self.port, b"SCRIPT FLUSH\r\n").unwrap_or_default();
        assert!(reply.starts_with("+OK"), "SCRIPT FLUSH answered {reply:?}");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            send_signal(child, sig);
        }
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three private masters joined into a Redis Cluster, stopped on drop.
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
}

impl RedisCluster {
    /// Starts three cluster-enabled nodes and joins them with `redis-cli --cluster create`.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisNode> = (0..3).map(|_| RedisNode::start_with(true)).collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for node in &nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok(Duration::from_secs(20));
        cluster
    }

    fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for node in &self.nodes {
            loop {
                let info = command(node.port, b"CLUSTER INFO\r\n").unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster did not become ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=…`.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port));
        }
        url
    }

    /// A redis-rs cluster connection.
    pub async fn redis_rs(&self) -> redis::cluster_async::ClusterConnection {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_millis(500))
            .retries(2)
            .build()
            .expect("redis-rs cluster client");
        tokio::time::timeout(Duration::from_secs(10), client.get_async_connection())
            .await
            .expect("redis-rs cluster connection within 10 s")
            .expect("connect redis-rs to private redis cluster")
    }

    /// A connected cluster client.
    pub async fn client(&self) -> Client {
        connect_url(&self.url(), Duration::from_secs(10))
            .await
            .expect("connect to private redis cluster")
    }
}

/// A port that is free now and outside the kernel's ephemeral range, so no outgoing
/// connection can be given it as its source port. (A client reconnecting to a killed node on an
/// ephemeral port can connect *to itself* — TCP simultaneous open — and hold the port, so the
/// node cannot restart: seen as "Address already in use" in CI.) Cluster nodes also need
/// port + 10000 (the bus) free and outside the range.
/// Sends `sig` (`-STOP`, `-CONT`) to `child`.
pub(crate) fn send_signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} failed");
}

pub(crate) fn free_port(cluster: bool) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = if cluster {
        (10_000, ephemeral_low.saturating_sub(10_000))
    } else {
        (10_000, ephemeral_low)
    };
    assert!(
        high > low + 100,
        "the ephemeral port range starts at {ephemeral_low}: no room below it for test nodes"
    );
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u64.. {
        let pick = std::hash::BuildHasher::hash_one(&seed, attempt);
        let port = low + (pick % u64::from(high - low)) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && (!cluster || free(port + 10_000)) {
            return port;
        }
        assert!(attempt < 10_000, "no free port in {low}..{high}");
    }
    unreachable!()
}

fn command(port: u16, cmd: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(cmd).ok()?;
    let mut buf = vec![0u8; 8192];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_for_ping(port: u16, child: &mut Child, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        // Ours, not another test's node that won the same port: the answer names our pid.
        let own = format!("process_id:{}\r\n", child.id());
        if command(port, b"INFO server\r\n").is_some_and(|r| r.contains(&own)) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_as_the_server_exiting() {
        let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = std::env::temp_dir().join(unique_prefix("redis-node-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut node = RedisNode {
            port: squatter.local_addr().unwrap().port(),
            dir,
            cluster: false,
            child: None,
        };
        let failure = node.spawn().expect_err("the port is taken");
        assert!(failure.contains("exited"), "{failure}");
    }

    #[test]
    fn a_node_starts_and_restarts() {
        let mut node = RedisNode::start();
        assert!(
            command(node.port(), b"PING\r\n")
                .unwrap()
                .starts_with("+PONG")
        );
        node.restart();
        assert!(
            command(node.port(), b"PING\r\n")
                .unwrap()
                .starts_with("+PONG")
        );
    }
}
