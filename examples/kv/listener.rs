//! The client listener: accepts connections for as long as the node runs,
//! whatever clients or the operating system do, and caps how many are
//! served at once.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The default cap on client connections served at once (Redis's default
/// `maxclients` is 10,000; a demo node stays well inside a file descriptor
/// limit of 1,024 raised a little).
pub(crate) const CLIENTS_MAX_DEFAULT: usize = 1024;

/// The reply to a connection over the cap, sent before closing it (Redis's
/// own words, so clients recognize it).
pub(crate) const CLIENTS_MAX_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// The pause after a failed accept: 10 ms, doubling to 1 s, back to 10 ms
/// after a success.
///
/// Why: an accept error is most often the process out of file descriptors
/// (EMFILE) or memory; retrying at once spins a core while nothing changes,
/// and giving up would take the whole node down for its clients' doing.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    /// The pause the next failure waits.
    next: Duration,
}

impl AcceptBackoff {
    /// The pause after the first failure in a row.
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    /// The longest pause.
    pub(crate) const MAX: Duration = Duration::from_secs(1);

    /// A backoff with no failure yet.
    pub(crate) fn new() -> Self {
        AcceptBackoff { next: Self::FIRST }
    }

    /// Records a failed accept; returns how long to wait before the next.
    pub(crate) fn on_failure(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(Self::MAX);
        pause
    }

    /// Records a successful accept: the next failure starts over.
    pub(crate) fn on_success(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A source of client connections: a [`TcpListener`], or in tests one that
/// fails on demand.
pub(crate) trait Acceptor {
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<TcpStream>> + Send;
}

impl Acceptor for TcpListener {
    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Accepts connections forever, spawning `serve` for each while fewer than
/// `clients_max` are served; one more is answered with
/// [`CLIENTS_MAX_REPLY`] and closed at once. An accept error is logged and
/// retried after an [`AcceptBackoff`] pause, never returned.
pub(crate) async fn run_accept_loop<A, S, F>(mut acceptor: A, clients_max: usize, serve: S)
where
    A: Acceptor,
    S: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(clients_max));
    let mut backoff = AcceptBackoff::new();
    loop {
        let stream = match acceptor.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                let pause = backoff.on_failure();
                eprintln!("kv: accepting a client failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        backoff.on_success();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // A fresh socket's send buffer takes the reply without
            // blocking; if it does not, the client misses only the reason.
            let _ = stream.try_write(CLIENTS_MAX_REPLY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = serve(stream);
        tokio::spawn(async move {
            client.await;
            drop(slot);
        });
    }
}
