use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What a [`FaultProxy`] does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward everything at once.
    Pass,
    /// Forward every chunk after this delay.
    Latency(Duration),
    /// Close every connection, and every new one at once.
    Drop,
    /// Keep connections open but forward nothing (a partition or a dead host).
    BlackHole,
    /// Reset every connection (TCP RST, as a crashed peer or a middlebox does), and every new
    /// one at once.
    Reset,
}

/// A loopback TCP proxy in front of a server, with faults switched on and off at run time.
/// Stops (and closes its connections) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<FaultMode>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, rx) = watch::channel(FaultMode::Pass);
        let task = tokio::spawn(async move {
            let mut connections: Vec<JoinHandle<()>> = Vec::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                connections.retain(|c| !c.is_finished());
                let rx = rx.clone();
                connections.push(tokio::spawn(relay(client, upstream, rx)));
            }
        });
        FaultProxy { addr, mode, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://<addr>` for a Redis upstream.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switches the fault.
    pub fn set(&self, mode: FaultMode) {
        let _ = self.mode.send(mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(FaultMode::Drop);
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<FaultMode>) {
    let mut client = client;
    match *mode.borrow() {
        FaultMode::Drop => return,
        FaultMode::Reset => {
            let _ = client.set_zero_linger();
            return;
        }
        _ => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let ended = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        // When either direction ends, both sockets close.
        tokio::select! {
            ended = pump(client_read, server_write, mode.clone()) => ended,
            ended = pump(server_read, client_write, mode) => ended,
        }
    };
    if ended == Ended::Reset {
        // Linger 0: the close is an RST, not a FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Closed,
    Reset,
}

async fn pump<R, W>(mut from: R, mut to: W, mut mode: watch::Receiver<FaultMode>) -> Ended
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ended::Closed;
                }
                match *mode.borrow() {
                    FaultMode::Drop => return Ended::Closed,
                    FaultMode::Reset => return Ended::Reset,
                    _ => continue,
                }
            }
        };
        loop {
            let current = *mode.borrow();
            match current {
                FaultMode::Pass => break,
                FaultMode::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                FaultMode::Drop => return Ended::Closed,
                FaultMode::Reset => return Ended::Reset,
                FaultMode::BlackHole => {
                    if mode.changed().await.is_err() {
                        return Ended::Closed;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return Ended::Closed;
        }
    }
}
