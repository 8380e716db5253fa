//! A terminal's network, as a loopback TCP forwarder the demo can cut and
//! restore: cut, it refuses new connections and closes open ones, as a
//! pulled cable or a dead uplink would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
pub struct Link {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on every cut so open connections close.
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Link {
    /// Forwards a new loopback port to `upstream`. Call inside a runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, watch) = tokio::sync::watch::channel(0u64);
        let is_up = Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut watch = watch.clone();
                watch.mark_unchanged();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = forward(client, upstream) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Ok(Link { addr, up, cuts })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
