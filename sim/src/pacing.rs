//! Paced flushes on a simulated stream, for runs of many groups.
//!
//! madsim 0.2.34 sends a stream's bytes on each flush as one message and
//! delivers a stream's messages one at a time, each in a `sleep_until`
//! that lasts at least 1 ms (madsim's floor, `TimeHandle::sleep_until`):
//! a simulated connection carries at most 1,000 flushes a second, and past
//! that its backlog grows without bound, which no real network does (a
//! kernel coalesces what is written while the link is busy). One group's
//! traffic stays far below it; a hundred groups' heartbeats between two
//! servers, on the one connection they share, went past it (commits then
//! took seconds, every probe timed out, and elections followed). So, with
//! many groups, a server's stream lets a flush through at most once per
//! [`FLUSH_INTERVAL`]; a writer waits out the rest, and what it was given
//! meanwhile goes out together with its next flush, as a kernel would send
//! it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The shortest time between two flushes of a paced stream: twice
/// madsim's delivery floor, so that the receiving end keeps up.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

/// When a paced stream may flush next.
#[derive(Debug, Default)]
pub struct Pacer {
    /// The earliest time of the next flush (none yet: at once).
    next: Option<Instant>,
    /// The wait for `next`, while a flush waits.
    wait: Option<Pin<Box<Sleep>>>,
}

impl Pacer {
    /// Ready when a flush may go now; otherwise waits (and wakes `cx`).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(next) = self.next else {
            return Poll::Ready(());
        };
        if Instant::now() >= next {
            self.wait = None;
            return Poll::Ready(());
        }
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.wait = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The path is held: no flush before another interval has passed.
    pub fn hold_off(&mut self) {
        let at = Instant::now() + FLUSH_INTERVAL;
        if self.next.is_none_or(|next| next < at) {
            self.next = Some(at);
            self.wait = None;
        }
    }

    /// A flush just went out.
    pub fn flushed(&mut self) {
        self.next = Some(Instant::now() + FLUSH_INTERVAL);
    }
}
