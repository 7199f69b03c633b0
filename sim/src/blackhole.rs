//! A blackholed path, as real networks make them: a connection across it
//! takes every write and reports success, delivers nothing, raises no
//! error — and stays that way until it is replaced, even after the path
//! heals. New connections across it never finish their handshake.
//!
//! madsim's own partition (`clog_link`) is kinder: it holds what was sent
//! and delivers it at the heal, so a transport that never notices a dead
//! connection still recovers. Nothing in madsim 0.2.34 drops data on an
//! established stream (clogs hold, `reset_node` forgets the listeners of a
//! running node, RPC hooks see only datagrams), so the blackhole lives
//! here: every server's authenticator is wrapped, and the wrapper wraps
//! every stream it hands out, in both directions (outbound peer
//! connections and snapshot copies, inbound ones alike). With many groups
//! the wrapper also paces the stream's flushes (`pacing.rs`).

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use oar::runtime::auth::{AuthFuture, Authenticator, BoxedStream, Credential};

use crate::durability::{FrameTap, Promises};
use crate::pacing::Pacer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The blackholed paths of one run, shared by the nemesis and every
/// server's authenticator.
#[derive(Clone, Default)]
pub struct Blackholes {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    /// Directed paths (from, to) that swallow everything.
    cut: BTreeSet<(IpAddr, IpAddr)>,
    /// Directed paths (from, to) madsim holds (a partition or a clog):
    /// paced streams do not flush across them (see `Swallowed::poll_flush`).
    held: BTreeSet<(IpAddr, IpAddr)>,
    /// Every open connection end: its address, its peer's, and whether
    /// its writes vanish. Ends that were dropped are pruned as they are met.
    ends: Vec<(IpAddr, IpAddr, Weak<AtomicBool>)>,
    /// Swallowed streams their owners closed: kept open, because the FIN
    /// is lost in the blackhole too (the other end must find out by
    /// itself).
    closed_unheard: Vec<BoxedStream>,
}

impl std::fmt::Debug for Blackholes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.inner.lock().expect("blackholes");
        f.debug_struct("Blackholes")
            .field("cut", &registry.cut)
            .finish_non_exhaustive()
    }
}

impl Blackholes {
    /// Blackholes the path `from → to`: what connection ends at `from`
    /// write towards `to` is lost from now on, for as long as they live.
    pub fn cut(&self, from: IpAddr, to: IpAddr) {
        let mut registry = self.inner.lock().expect("blackholes");
        registry.cut.insert((from, to));
        registry.ends.retain(|(local, peer, dead)| {
            let Some(dead) = dead.upgrade() else {
                return false;
            };
            if (*local, *peer) == (from, to) {
                dead.store(true, Ordering::Relaxed);
            }
            true
        });
    }

    /// Every path carries new connections again; connections a blackhole
    /// swallowed stay dead until their owners replace them.
    pub fn heal(&self) {
        let mut registry = self.inner.lock().expect("blackholes");
        registry.cut.clear();
        registry.held.clear();
    }

    /// Notes that madsim holds what is sent on the path `from → to` until
    /// the heal (`clog_link`).
    pub fn hold(&self, from: IpAddr, to: IpAddr) {
        self.inner
            .lock()
            .expect("blackholes")
            .held
            .insert((from, to));
    }

    fn held(&self, from: IpAddr, to: IpAddr) -> bool {
        self.inner
            .lock()
            .expect("blackholes")
            .held
            .contains(&(from, to))
    }

    /// Whether any path is blackholed now.
    pub fn any(&self) -> bool {
        !self.inner.lock().expect("blackholes").cut.is_empty()
    }

    /// Whether a new connection between `a` and `b` would hang: its
    /// handshake needs both directions.
    fn blocked(&self, a: IpAddr, b: IpAddr) -> bool {
        let registry = self.inner.lock().expect("blackholes");
        registry.cut.contains(&(a, b)) || registry.cut.contains(&(b, a))
    }

    /// Keeps `stream` open for the rest of the run: its close is lost.
    fn bury(&self, stream: BoxedStream) {
        let mut registry = self.inner.lock().expect("blackholes");
        registry.closed_unheard.push(stream);
    }

    fn wrap(
        &self,
        inner: BoxedStream,
        path: (IpAddr, IpAddr),
        dead: Arc<AtomicBool>,
        tap: Option<FrameTap>,
        paced: bool,
    ) -> BoxedStream {
        Box::new(Swallowed {
            inner: Some(inner),
            path,
            dead,
            blackholes: self.clone(),
            tap,
            pacer: paced.then(Pacer::default),
        })
    }

    /// Registers a new connection end at `local` talking to `peer`.
    fn open(&self, local: IpAddr, peer: IpAddr) -> Arc<AtomicBool> {
        let mut registry = self.inner.lock().expect("blackholes");
        let dead = Arc::new(AtomicBool::new(registry.cut.contains(&(local, peer))));
        registry.ends.retain(|(_, _, end)| end.strong_count() > 0);
        registry.ends.push((local, peer, Arc::downgrade(&dead)));
        dead
    }
}

/// A server's authenticator whose streams a blackhole can swallow (and
/// whose writes a [`FrameTap`] may read).
#[derive(Debug)]
pub struct BlackholeAuthenticator {
    inner: Arc<dyn Authenticator>,
    /// The server's own address: the local end of every stream.
    ip: IpAddr,
    blackholes: Blackholes,
    /// Where the server's promises go, read off what it writes.
    promises: Option<Promises>,
    /// Its streams pace their flushes (`pacing.rs`).
    paced: bool,
}

impl BlackholeAuthenticator {
    /// Wraps `inner` for the server at `ip`.
    pub fn new(inner: Arc<dyn Authenticator>, ip: IpAddr, blackholes: Blackholes) -> Self {
        BlackholeAuthenticator {
            inner,
            ip,
            blackholes,
            promises: None,
            paced: false,
        }
    }

    /// Paces the flushes of every stream (`pacing.rs`): for servers that
    /// host many groups.
    pub fn paced(mut self, paced: bool) -> Self {
        self.paced = paced;
        self
    }

    /// Reads what the server writes on every stream into `promises`.
    pub fn tapped(mut self, promises: Promises) -> Self {
        self.promises = Some(promises);
        self
    }

    fn tap(&self) -> Option<FrameTap> {
        self.promises.clone().map(FrameTap::new)
    }
}

impl Authenticator for BlackholeAuthenticator {
    fn accept(&self, stream: TcpStream) -> AuthFuture<(BoxedStream, Credential)> {
        let (ip, blackholes, tap, paced) =
            (self.ip, self.blackholes.clone(), self.tap(), self.paced);
        let peer = stream.peer_addr().map(|a| a.ip());
        let accepted = self.inner.accept(stream);
        Box::pin(async move {
            let peer = peer?;
            let (stream, credential) = accepted.await?;
            let dead = blackholes.open(ip, peer);
            Ok((
                blackholes.wrap(stream, (ip, peer), dead, tap, paced),
                credential,
            ))
        })
    }

    fn connect(&self, stream: TcpStream, addr: SocketAddr) -> AuthFuture<BoxedStream> {
        let (ip, blackholes, tap, paced) =
            (self.ip, self.blackholes.clone(), self.tap(), self.paced);
        let peer = addr.ip();
        if blackholes.blocked(ip, peer) {
            // A SYN into a blackhole is never answered: the dialer's own
            // timeout ends the attempt, and the other end hears nothing.
            blackholes.bury(Box::new(stream));
            return Box::pin(std::future::pending());
        }
        let connected = self.inner.connect(stream, addr);
        Box::pin(async move {
            let stream = connected.await?;
            let dead = blackholes.open(ip, peer);
            Ok(blackholes.wrap(stream, (ip, peer), dead, tap, paced))
        })
    }
}

/// A stream whose writes vanish once `dead` is set (reads pass through:
/// the other end's writes are swallowed on its own side).
struct Swallowed {
    /// `None` only while dropping.
    inner: Option<BoxedStream>,
    /// (this end, the other end).
    path: (IpAddr, IpAddr),
    dead: Arc<AtomicBool>,
    blackholes: Blackholes,
    tap: Option<FrameTap>,
    /// Paces its flushes, if set.
    pacer: Option<Pacer>,
}

impl Swallowed {
    fn dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn inner(&mut self) -> Pin<&mut BoxedStream> {
        Pin::new(self.inner.as_mut().expect("open stream"))
    }
}

impl Drop for Swallowed {
    fn drop(&mut self) {
        if self.dead()
            && let Some(inner) = self.inner.take()
        {
            self.blackholes.bury(inner);
        }
    }
}

impl AsyncRead for Swallowed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for Swallowed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = match self.dead() {
            true => Poll::Ready(Ok(buf.len())),
            false => self.inner().poll_write(cx, buf),
        };
        // What the server sent, swallowed or not, is what it promised.
        if let (Poll::Ready(Ok(n)), Some(tap)) = (&written, &mut self.tap) {
            tap.written(&buf[..*n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead() {
            return Poll::Ready(Ok(()));
        }
        // A paced stream does not flush across a held path: madsim would
        // hold each flush as a message of its own and, at the heal,
        // deliver the backlog one message at a time, each after its own
        // latency (seconds of stale heartbeats with many groups, seen
        // holding a follower in a deposed leader's lease past the
        // recovery bound). A kernel keeps what is written meanwhile in its
        // buffer and sends it together once the path is back.
        let (path, held) = (self.path, self.pacer.is_some());
        let held = held && self.blackholes.held(path.0, path.1);
        if let Some(pacer) = &mut self.pacer {
            if held {
                pacer.hold_off();
            }
            if pacer.poll_ready(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let flushed = self.inner().poll_flush(cx);
        if let (Poll::Ready(Ok(())), Some(pacer)) = (&flushed, &mut self.pacer) {
            pacer.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN into a blackhole is lost too.
        if self.dead() {
            return Poll::Ready(Ok(()));
        }
        self.inner().poll_shutdown(cx)
    }
}
