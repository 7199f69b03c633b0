//! Which life of each peer server its inbound connections belong to.
//!
//! A server names its start (its incarnation: the wall clock when its
//! process started) in every `Hello`. Once a higher incarnation connects
//! from an address, the process behind the lower one is gone, and so is
//! everything it had not yet delivered: its connections here are closed.
//! Without this, bytes an earlier life wrote before it died (a vote request
//! sent into a partition, say) could still be read after its successor
//! took over, and a delayed request for a newer term would depose a
//! healthy leader. Real TCP delivers nothing of a dead process's unsent
//! bytes; a connection left half-open by a crash, or a network that
//! buffers (the simulator's retries a clogged link's data with backoff),
//! can.
//!
//! Only ever forward: a connection naming a lower incarnation than the
//! newest one seen is served as before (never refused: after a clock step
//! back the new life names a lower number), just not tracked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The newest incarnation seen from each peer server address that has an
/// open connection here.
#[derive(Debug, Default)]
pub(crate) struct PeerLives {
    newest: Mutex<BTreeMap<SocketAddr, watch::Sender<u64>>>,
}

/// One inbound connection's life: ends once a newer incarnation of its
/// server connects.
#[derive(Debug)]
pub(crate) struct PeerLife {
    lives: Arc<PeerLives>,
    addr: SocketAddr,
    incarnation: u64,
    newest: watch::Receiver<u64>,
}

impl PeerLives {
    /// Registers a connection from the server at `addr` in `incarnation`,
    /// closing (through their [`PeerLife::superseded`]) the connections of
    /// its earlier lives. `None` (not tracked) for an unnamed incarnation
    /// or one below the newest seen.
    pub(crate) fn enter(self: &Arc<Self>, addr: SocketAddr, incarnation: u64) -> Option<PeerLife> {
        if incarnation == 0 {
            return None;
        }
        let mut newest = self.newest.lock().expect("peer lives");
        let sender = newest
            .entry(addr)
            .or_insert_with(|| watch::Sender::new(incarnation));
        let seen = *sender.borrow();
        if incarnation < seen {
            return None;
        }
        if incarnation > seen {
            sender.send_replace(incarnation);
        }
        Some(PeerLife {
            lives: Arc::clone(self),
            addr,
            incarnation,
            newest: sender.subscribe(),
        })
    }

    /// Addresses tracked (for tests: entries go with their last connection).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.newest.lock().expect("peer lives").len()
    }
}

impl PeerLife {
    /// Resolves once a newer incarnation of this connection's server has
    /// connected. Cancel-safe.
    pub(crate) async fn superseded(&mut self) {
        let mine = self.incarnation;
        // The sender lives in the table while this receiver does.
        let _ = self.newest.wait_for(|newest| *newest > mine).await;
    }
}

impl Drop for PeerLife {
    fn drop(&mut self) {
        let mut newest = self.lives.newest.lock().unwrap_or_else(|e| e.into_inner());
        // The last connection from this address forgets it, so the table
        // holds only addresses with open connections.
        if newest
            .get(&self.addr)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            newest.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr() -> SocketAddr {
        "10.0.0.2:7000".parse().unwrap()
    }

    async fn ended(life: &mut PeerLife) -> bool {
        tokio::time::timeout(Duration::from_millis(20), life.superseded())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_newer_life_ends_the_older_ones_only() {
        let lives = Arc::new(PeerLives::default());
        let mut first = lives.enter(addr(), 10).unwrap();
        let mut second = lives.enter(addr(), 10).unwrap();
        assert!(!ended(&mut first).await, "same life: both stay");
        let mut newer = lives.enter(addr(), 11).unwrap();
        assert!(ended(&mut first).await);
        assert!(ended(&mut second).await);
        assert!(!ended(&mut newer).await);
        let other: SocketAddr = "10.0.0.2:7001".parse().unwrap();
        let mut elsewhere = lives.enter(other, 5).unwrap();
        assert!(!ended(&mut elsewhere).await, "another server at one IP");
    }

    #[tokio::test]
    async fn an_older_or_unnamed_life_is_served_untracked() {
        let lives = Arc::new(PeerLives::default());
        let mut newer = lives.enter(addr(), 11).unwrap();
        assert!(lives.enter(addr(), 10).is_none());
        assert!(lives.enter(addr(), 0).is_none());
        assert!(!ended(&mut newer).await, "an older life never ends a newer");
    }

    #[tokio::test]
    async fn an_address_is_forgotten_with_its_last_connection() {
        let lives = Arc::new(PeerLives::default());
        let first = lives.enter(addr(), 10).unwrap();
        let second = lives.enter(addr(), 10).unwrap();
        drop(first);
        assert_eq!(lives.tracked(), 1);
        drop(second);
        assert_eq!(lives.tracked(), 0);
    }
}
