//! A TCP proxy that can swallow a path: writes succeed, nothing arrives, no
//! error (as a middlebox or a half-dead path can), so only probes notice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A proxy to `target` that forwards until `swallow` is set; from then on
/// its connections read and drop everything, in both directions, for as
/// long as they live, and new ones are taken but never forwarded.
pub async fn swallowing_proxy(target: SocketAddr, swallow: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let swallow = swallow.clone();
            tokio::spawn(async move {
                if swallow.load(Ordering::SeqCst) {
                    return drain(client).await;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                let dead = Arc::new(AtomicBool::new(false));
                let up = tokio::spawn(forward(
                    from_client,
                    to_server,
                    swallow.clone(),
                    dead.clone(),
                ));
                forward(from_server, to_client, swallow, dead).await;
                let _ = up.await;
            });
        }
    });
    addr
}

/// Copies until `swallow` is set, then reads and drops for good, even
/// after the heal (keeping the writing half open, so that the other end
/// sees no error); `dead` is the connection's latch, shared by both
/// directions.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallow: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if swallow.load(Ordering::SeqCst) {
            dead.store(true, Ordering::SeqCst);
        }
        if !dead.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn drain(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}
