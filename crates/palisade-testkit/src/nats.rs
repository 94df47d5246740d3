//! [`NatsServer`]: a private `nats-server -js` to kill, restart and pause.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    node::{free_port, send_signal},
    unique_prefix,
};

/// The shared NATS tests use: `NATS_URL`, else `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A private `nats-server` with JetStream on a free loopback port, its store in a temporary
/// directory that survives [`kill`](Self::kill) / [`restart`](Self::restart) (streams and
/// durable consumers persist, as on a real broker restart). SIGKILLed and removed on drop.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server, or panics explaining how to install `nats-server`.
    pub fn start() -> NatsServer {
        let dir = std::env::temp_dir().join(unique_prefix("nats-server"));
        std::fs::create_dir_all(&dir).expect("create nats-server directory");
        let mut server = NatsServer {
            port: 0,
            dir,
            child: None,
        };
        let mut failures = Vec::new();
        for _ in 0..5 {
            server.port = free_port(false);
            match server.spawn() {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("nats-server did not start: {}", failures.join("; "))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("nats.log");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}); install it (Debian: apt-get install \
                     nats-server) or put it on PATH"
                )
            });
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                self.child = None;
                return Err(format!("port {}: exited {status} ({tail})", self.port));
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    // JetStream is ready once the log says so.
                    let ready =
                        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server is ready"));
                    if ready {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("port {}: not ready within 10 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL). Its store stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("nats.log"));
        let mut failures = Vec::new();
        for _ in 0..5 {
            match self.spawn() {
                Ok(()) => return,
                Err(failure) => failures.push(failure),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("nats-server did not restart: {}", failures.join("; "))
    }

    /// Freezes the server (SIGSTOP).
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

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
