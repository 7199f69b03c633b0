//! The clients' writes through client sessions (Raft thesis §6.3): a
//! client opens a session and sends every operation as the next request of
//! it; an attempt whose outcome is unknown (no answer in time, the leader
//! shut down or lost its entry's fate) is retried with the same (session,
//! seq) at whichever server leads, until a reply or the retry deadline.
//! The session table answers a retry of an applied request with the reply
//! recorded then, so the history keeps one operation for all its attempts,
//! and an operation ends unknown only when the deadline passes (or the
//! fault phase ends) with an attempt of unknown outcome behind it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use oar::runtime::{Error, Node, SessionError, SessionId};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::workload::ClientContext;

/// How an operation ended, as its client knows it.
pub enum Ended {
    /// Applied (once), with the state machine's reply.
    Applied(Bytes),
    /// Definitely not applied.
    Fail,
    /// Perhaps applied.
    Unknown,
}

/// How many attempt timeouts a retried operation may take in all.
const DEADLINE_ATTEMPTS: u32 = 5;

/// One client's session: its id once opened, and the sequence number of
/// its next request.
#[derive(Default)]
pub struct ClientSession {
    id: Option<SessionId>,
    next_seq: u64,
}

impl ClientSession {
    /// Applies `command` as this session's next request, retrying
    /// attempts of unknown outcome with the same sequence number;
    /// `target` is the server tried first, and left where the last attempt
    /// went.
    pub async fn apply(
        &mut self,
        ctx: &ClientContext,
        rng: &mut ChaCha8Rng,
        target: &mut usize,
        command: Bytes,
    ) -> Ended {
        let deadline = tokio::time::Instant::now() + ctx.op_timeout * DEADLINE_ATTEMPTS;
        let mut maybe_applied = false;
        // The request's sequence number, fixed across its attempts while
        // the session lives.
        let mut request_seq = None;
        let give_up = |maybe_applied: bool| {
            if maybe_applied {
                Ended::Unknown
            } else {
                Ended::Fail
            }
        };
        loop {
            if tokio::time::Instant::now() >= deadline || ctx.stop.load(Ordering::Relaxed) {
                return give_up(maybe_applied);
            }
            let member = ctx.members[*target].lock().expect("member").clone();
            let Some(member) = member else {
                *target = rng.random_range(0..ctx.members.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let Some(session) = self.id else {
                // A session opened by an attempt of unknown outcome is
                // never used; it expires.
                match tokio::time::timeout(ctx.op_timeout, member.open_session()).await {
                    Ok(Ok(id)) => {
                        self.id = Some(id);
                        self.next_seq = 1;
                    }
                    Ok(Err(e)) => retarget(ctx, rng, target, &e),
                    Err(_) => retarget(ctx, rng, target, &Error::Shutdown),
                }
                pause(rng).await;
                continue;
            };
            let seq = *request_seq.get_or_insert_with(|| {
                self.next_seq += 1;
                self.next_seq - 1
            });
            // One request outstanding: every reply below it was received.
            let attempt = member.apply_in_session(session, seq, seq, command.clone());
            match tokio::time::timeout(ctx.op_timeout, attempt).await {
                Ok(Ok(applied)) => return Ended::Applied(applied.response),
                Ok(Err(Error::Session(SessionError::Expired { .. }))) => {
                    // The session is gone: whether an earlier attempt was
                    // applied cannot be told; if none was, start afresh.
                    self.id = None;
                    if maybe_applied {
                        return Ended::Unknown;
                    }
                    // The new session numbers from 1: the old number would
                    // be far ahead of it, and a later request of the new
                    // session with that number would be taken for a retry
                    // (found with sessions expiring mid-run).
                    request_seq = None;
                }
                Ok(Err(Error::Session(e))) => {
                    debug_assert!(
                        !matches!(e, SessionError::ReplyForgotten { .. }),
                        "a client with one request outstanding never sends one below its watermark"
                    );
                    return give_up(maybe_applied);
                }
                Ok(Err(Error::SessionsDisabled)) => panic!("the simulated group keeps sessions"),
                Ok(Err(e)) => {
                    maybe_applied |= !not_applied(&e);
                    retarget(ctx, rng, target, &e);
                }
                Err(_) => {
                    maybe_applied = true;
                    retarget(ctx, rng, target, &Error::Shutdown);
                }
            }
            pause(rng).await;
        }
    }
}

/// Whether `error` says the attempt certainly did not reach the state
/// machine (refused before the log, or its entry replaced).
pub fn not_applied(error: &Error) -> bool {
    matches!(
        error,
        Error::NotLeader { .. } | Error::Overwritten(_) | Error::NotRunning
    )
}

/// Where the next attempt goes after `error`: the leader a refusal names,
/// or a server at random.
pub fn retarget(ctx: &ClientContext, rng: &mut ChaCha8Rng, target: &mut usize, error: &Error) {
    *target = match error {
        Error::NotLeader {
            leader: Some(id), ..
        } => (id.0 as usize).saturating_sub(1).min(ctx.members.len() - 1),
        _ => rng.random_range(0..ctx.members.len()),
    };
}

/// A short, jittered wait between attempts.
async fn pause(rng: &mut ChaCha8Rng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(5..30))).await;
}

/// Applies `command` once with plain [`Node::apply`] (no session): an
/// attempt of unknown outcome ends the operation unknown.
pub async fn apply_plain(
    ctx: &ClientContext,
    rng: &mut ChaCha8Rng,
    target: &mut usize,
    member: &Node,
    command: Bytes,
) -> Ended {
    match tokio::time::timeout(ctx.op_timeout, member.apply(command)).await {
        Ok(Ok(applied)) => Ended::Applied(applied.response),
        Ok(Err(e)) => {
            retarget(ctx, rng, target, &e);
            if not_applied(&e) {
                Ended::Fail
            } else {
                Ended::Unknown
            }
        }
        Err(_) => {
            retarget(ctx, rng, target, &Error::Shutdown);
            Ended::Unknown
        }
    }
}
