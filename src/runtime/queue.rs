//! The per-group queues (the group task's inbox, the apply task's queue):
//! a `VecDeque` under a mutex, with the receiver's waker. Its buffer is allocated on
//! the first push and released by [`Sender::release_if_empty`], which the
//! group task calls on its timer ticks and once quiet, so an idle group
//! holds none (tokio's mpsc keeps its first 32-slot block for the channel's
//! life: 3.6 KB an inbox, 1.8 KB an apply queue, and grown blocks under
//! load; issue 15). A busy group keeps its buffer between ticks: releasing
//! it at every drain cost a third of one client's writes/s.
//!
//! Semantics are those of `tokio::sync::mpsc` that the runtime relies on: a
//! bound (`try_send` refuses, `send` waits for room), one receiver, `recv`
//! ends (`None`) once the queue is closed or every sender is gone and it is
//! empty, `recv` is cancel-safe, and a dropped receiver closes the queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Why a send was refused; the item comes back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    /// The queue holds its bound.
    Full(T),
    /// The receiver closed the queue or is gone.
    Closed(T),
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    senders: usize,
    /// The receiver, waiting for an item (under the queue's own lock: a
    /// `Notify` took a second lock and cost a single client's writes ~30 %
    /// of their latency).
    receiver: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes senders waiting for room (bounded queues only).
    room: Notify,
    bound: usize,
}

impl<T> Shared<T> {
    fn release_if_empty(&self) {
        let mut state = self.lock();
        if state.items.is_empty() && state.items.capacity() > 0 {
            state.items = VecDeque::new();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No critical section panics with the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half; cheap to clone.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `bound` items (at least one).
pub(crate) fn bounded<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    channel(bound.max(1))
}

/// A queue without a bound (its only sender is the group task, which the
/// inbox's bound already paces).
pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    channel(usize::MAX)
}

fn channel<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            senders: 1,
            receiver: None,
        }),
        room: Notify::new(),
        bound,
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` if there is room.
    pub(crate) fn try_send(&self, item: T) -> Result<(), Refused<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Refused::Closed(item));
        }
        if state.items.len() >= self.shared.bound {
            return Err(Refused::Full(item));
        }
        state.items.push_back(item);
        let receiver = state.receiver.take();
        drop(state);
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; refused (`Closed`) only once the
    /// queue is closed.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), Refused<T>> {
        // Without registering first: registering takes `Notify`'s lock.
        match self.try_send(item) {
            Err(Refused::Full(back)) => item = back,
            other => return other,
        }
        loop {
            // Registered before the check, so that a pop or a close between
            // the check and the wait still wakes this sender.
            let room = self.shared.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            match self.try_send(item) {
                Err(Refused::Full(back)) => item = back,
                other => return other,
            }
            room.await;
        }
    }

    /// Frees the queue's buffer if nothing is queued (an idle group's
    /// queues then hold no memory).
    pub(crate) fn release_if_empty(&self) {
        self.shared.release_if_empty();
    }

    /// Whether the receiver closed the queue or is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let receiver = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            match state.senders {
                0 => state.receiver.take(),
                _ => None,
            }
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is closed, or every sender is
    /// gone, and it is empty. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = self.pop(&mut state) {
            return Poll::Ready(Some(item));
        }
        if state.closed || state.senders == 0 {
            return Poll::Ready(None);
        }
        // Checked and registered under one lock: no push slips between.
        if !state
            .receiver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.receiver = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut state = self.shared.lock();
        self.pop(&mut state)
    }

    /// [`Sender::release_if_empty`], from the receiving end.
    pub(crate) fn release_if_empty(&self) {
        self.shared.release_if_empty();
    }

    /// Refuses every later send; what is queued can still be received.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.room.notify_waiters();
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if self.shared.bound != usize::MAX {
            self.shared.room.notify_one();
        }
        Some(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        self.shared.room.notify_waiters();
        // Dropped outside the lock: an item's drop may wake its waiter.
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_refuses_when_full_and_a_waiting_send_gets_the_room() {
        let (tx, mut rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(Refused::Full(3))));
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(3).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn the_buffer_comes_with_the_first_push_and_goes_once_drained() {
        let (tx, mut rx) = bounded(64);
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.shared.lock().items.capacity() >= 10);
        for _ in 0..9 {
            rx.try_recv().unwrap();
        }
        tx.release_if_empty();
        assert!(rx.shared.lock().items.capacity() >= 1);
        assert_eq!(rx.recv().await, Some(9));
        tx.release_if_empty();
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    #[tokio::test]
    async fn close_refuses_sends_and_wakes_waiters_but_keeps_what_was_queued() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(2).await })
        };
        tokio::task::yield_now().await;
        rx.close();
        assert!(matches!(waiting.await.unwrap(), Err(Refused::Closed(2))));
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(3), Err(Refused::Closed(3))));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn recv_ends_when_every_sender_is_gone_and_a_dropped_receiver_closes() {
        let (tx, mut rx) = unbounded::<u32>();
        let other = tx.clone();
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx);
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        drop(other);
        assert_eq!(reader.await.unwrap(), None);

        let (tx, rx) = unbounded::<u32>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(1), Err(Refused::Closed(1))));
    }
}
