//! The session table: which sessions are open, which replies each still
//! holds, and when each expires. A pure function of the log (and the
//! snapshot it started from): every replica holds the same table.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::SessionError;
use super::options::SessionOptions;

/// A client session's id: the index of the log entry that opened it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// One open session.
#[derive(Clone, Debug, Default)]
struct Session {
    /// Log time of its last request.
    last_active_ms: u64,
    /// Its key in `SessionTable::by_activity`: its last activity when it
    /// was last indexed, at or before `last_active_ms`.
    indexed_ms: u64,
    /// Replies below this sequence number were forgotten on the client's
    /// word. Invariant: no key of `replies` is below it.
    forgotten_below: u64,
    /// Recorded replies by sequence number.
    replies: Replies,
    /// Invariant: the sum of `replies`' lengths.
    reply_bytes: usize,
    /// Sequence numbers of fresh requests in the apply batch under way, not
    /// yet recorded: empty between batches (so in no snapshot and in no
    /// comparison). Kept here, not in a set of the batch's own, so a request
    /// costs no lookup besides its session's; the buffer is reused.
    pending: Vec<u64>,
}

/// Equal in what the log decides; where the expiry index has it may lag.
impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        self.last_active_ms == other.last_active_ms
            && self.forgotten_below == other.forgotten_below
            && self.replies == other.replies
            && self.reply_bytes == other.reply_bytes
    }
}

impl Eq for Session {}

/// A session's recorded replies in order of sequence number. A deque, not
/// a map: a client with one request in flight records one reply and drops
/// the one before on every request, which a deque does at its two ends in
/// the buffer it already has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Replies(VecDeque<(u64, Bytes)>);

impl Replies {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn search(&self, seq: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&seq, |(s, _)| *s)
    }

    fn get(&self, seq: u64) -> Option<&Bytes> {
        self.search(seq).ok().map(|at| &self.0[at].1)
    }

    /// Records `reply` under `seq`; the reply it replaces, if any.
    fn insert(&mut self, seq: u64, reply: Bytes) -> Option<Bytes> {
        // The common case, a client's newest request: no search, no shift.
        if self.0.back().is_none_or(|(last, _)| *last < seq) {
            self.0.push_back((seq, reply));
            return None;
        }
        match self.search(seq) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, reply)),
            Err(at) => {
                self.0.insert(at, (seq, reply));
                None
            }
        }
    }

    /// Removes the first reply if its sequence number is below `seq`.
    fn pop_below(&mut self, seq: u64) -> Option<Bytes> {
        match self.0.front() {
            Some((first, _)) if *first < seq => self.0.pop_front().map(|(_, reply)| reply),
            _ => None,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.0.iter()
    }
}

/// What to do with a session request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not seen before: apply it, then [`SessionTable::record`] its reply
    /// (it counts against the session's limits until then).
    Fresh,
    /// The same request is fresh earlier in the batch, not yet recorded:
    /// apply what came before, then decide again. Nothing was touched.
    InFlight,
    /// A retry of an applied request: its recorded reply.
    Duplicate(Bytes),
    /// Refused; not applied.
    Refused(SessionError),
}

/// The sessions of one group.
#[derive(Clone, Debug)]
pub(crate) struct SessionTable {
    options: SessionOptions,
    /// The largest time stamped on an applied entry.
    log_time_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// (indexed activity, session), for expiry in order. Invariant: one
    /// element per session, matching its `indexed_ms`. A request only moves
    /// `last_active_ms`; expiry re-indexes a session found active since, so
    /// a busy session costs no tree update per request.
    by_activity: BTreeSet<(u64, SessionId)>,
    /// Invariant: the sum of every session's `reply_bytes`.
    reply_bytes: usize,
    /// The log time of the last expiry sweep; `None` until the first (as
    /// after loading a snapshot). Every session indexed since is active at
    /// its time or later, so until log time moves nothing more expires.
    swept_ms: Option<u64>,
}

/// Equal in what the log decides; where the expiry index has each session
/// may lag (a replica that loaded a snapshot has it up to date).
impl PartialEq for SessionTable {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
            && self.log_time_ms == other.log_time_ms
            && self.sessions == other.sessions
            && self.reply_bytes == other.reply_bytes
    }
}

impl Eq for SessionTable {}

impl SessionTable {
    /// An empty table.
    pub(crate) fn new(options: SessionOptions) -> Self {
        SessionTable {
            options,
            log_time_ms: 0,
            sessions: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            reply_bytes: 0,
            swept_ms: None,
        }
    }

    /// Open sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Moves log time to `time_ms` (never back) and expires the sessions
    /// idle for longer than the expiry.
    pub(crate) fn advance(&mut self, time_ms: u64) {
        self.log_time_ms = self.log_time_ms.max(time_ms);
        // Most entries of a batch carry the same millisecond: no sweep.
        if self.swept_ms == Some(self.log_time_ms) {
            return;
        }
        let expiry = u64::try_from(self.options.expiry.as_millis()).unwrap_or(u64::MAX);
        while let Some(&(indexed, id)) = self.by_activity.first() {
            if indexed.saturating_add(expiry) >= self.log_time_ms {
                break;
            }
            let active = self.sessions.get(&id).map_or(indexed, |s| s.last_active_ms);
            match active.saturating_add(expiry) >= self.log_time_ms {
                true => self.reindex(id, active),
                false => self.remove(id),
            }
        }
        self.swept_ms = Some(self.log_time_ms);
    }

    fn reindex(&mut self, id: SessionId, active: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            self.by_activity.remove(&(s.indexed_ms, id));
            s.indexed_ms = active;
            self.by_activity.insert((active, id));
        }
    }

    /// Opens session `id` (the index of the entry that opens it).
    pub(crate) fn open(&mut self, id: SessionId) -> Result<(), SessionError> {
        if self.sessions.len() >= self.options.sessions_max {
            return Err(SessionError::TooManySessions {
                max: self.options.sessions_max,
            });
        }
        let session = Session {
            last_active_ms: self.log_time_ms,
            indexed_ms: self.log_time_ms,
            ..Session::default()
        };
        self.by_activity.insert((self.log_time_ms, id));
        self.sessions.insert(id, session);
        Ok(())
    }

    /// Closes a session and forgets its replies.
    pub(crate) fn close(&mut self, id: SessionId) -> Result<(), SessionError> {
        match self.sessions.contains_key(&id) {
            true => {
                self.remove(id);
                Ok(())
            }
            false => Err(SessionError::Expired { session: id }),
        }
    }

    fn remove(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_activity.remove(&(s.indexed_ms, id));
            self.reply_bytes -= s.reply_bytes;
        }
    }

    /// Decides a request: touches the session, forgets the replies below
    /// `first_unacked`, then answers from the record, refuses, or lets it
    /// apply. Fresh requests not yet recorded count against the session's
    /// reply limit.
    pub(crate) fn decide(&mut self, id: SessionId, seq: u64, first_unacked: u64) -> Decision {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Decision::Refused(SessionError::Expired { session: id });
        };
        if session.pending.contains(&seq) {
            return Decision::InFlight;
        }
        session.last_active_ms = self.log_time_ms;
        if first_unacked > session.forgotten_below {
            session.forgotten_below = first_unacked;
            while let Some(dropped) = session.replies.pop_below(first_unacked) {
                session.reply_bytes -= dropped.len();
                self.reply_bytes -= dropped.len();
            }
        }
        if seq < session.forgotten_below {
            return Decision::Refused(SessionError::ReplyForgotten { session: id, seq });
        }
        if let Some(reply) = session.replies.get(seq) {
            return Decision::Duplicate(reply.clone());
        }
        let pending = session.pending.len();
        let full = session.replies.len() + pending >= self.options.replies_per_session_max
            || session.reply_bytes >= self.options.reply_bytes_per_session_max
            || self.reply_bytes >= self.options.reply_bytes_max;
        match full {
            true => Decision::Refused(SessionError::ReplyCacheFull { session: id }),
            false => {
                session.pending.push(seq);
                Decision::Fresh
            }
        }
    }

    /// Forgets that a fresh request is pending without recording a reply
    /// (its batch failed).
    pub(crate) fn unmark(&mut self, id: SessionId, seq: u64) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.pending.retain(|&s| s != seq);
        }
    }

    /// Records the reply of an applied fresh request (dropped if the session
    /// ended meanwhile, e.g. closed later in the same batch).
    pub(crate) fn record(&mut self, id: SessionId, seq: u64, reply: Bytes) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        // Mostly one pending request a session, found at once.
        if let Some(at) = session.pending.iter().position(|&s| s == seq) {
            session.pending.swap_remove(at);
        }
        if seq < session.forgotten_below {
            return;
        }
        session.reply_bytes += reply.len();
        self.reply_bytes += reply.len();
        if let Some(old) = session.replies.insert(seq, reply) {
            session.reply_bytes -= old.len();
            self.reply_bytes -= old.len();
        }
    }

    /// The table as bytes, for a snapshot: `version u8 = 1 | log_time u64 |
    /// count u32 | per session: id u64 | last_active u64 | forgotten_below
    /// u64 | replies u32 | per reply: seq u64 | len u32 | bytes`.
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.reply_bytes);
        out.put_u8(1);
        out.put_u64(self.log_time_ms);
        out.put_u32(self.sessions.len() as u32);
        for (id, s) in &self.sessions {
            out.put_u64(id.0);
            out.put_u64(s.last_active_ms);
            out.put_u64(s.forgotten_below);
            out.put_u32(s.replies.len() as u32);
            for (seq, reply) in s.replies.iter() {
                out.put_u64(*seq);
                out.put_u32(reply.len() as u32);
                out.put_slice(reply);
            }
        }
        out.freeze()
    }

    /// Reads a table written by [`encode`](Self::encode).
    ///
    /// # Errors
    /// A description of what is wrong with the bytes.
    pub(crate) fn decode(options: SessionOptions, mut bytes: Bytes) -> Result<Self, String> {
        fn need(bytes: &Bytes, n: usize) -> Result<(), String> {
            match bytes.len() >= n {
                true => Ok(()),
                false => Err("truncated session table".into()),
            }
        }
        need(&bytes, 13)?;
        if bytes.get_u8() != 1 {
            return Err("unknown session table version".into());
        }
        let mut table = SessionTable::new(options);
        table.log_time_ms = bytes.get_u64();
        let count = bytes.get_u32();
        for _ in 0..count {
            need(&bytes, 28)?;
            let id = SessionId(bytes.get_u64());
            let active = bytes.get_u64();
            let mut session = Session {
                last_active_ms: active,
                indexed_ms: active,
                forgotten_below: bytes.get_u64(),
                ..Session::default()
            };
            let replies = bytes.get_u32();
            for _ in 0..replies {
                need(&bytes, 12)?;
                let seq = bytes.get_u64();
                let len = bytes.get_u32() as usize;
                need(&bytes, len)?;
                session.reply_bytes += len;
                // A hostile snapshot's repeated sequence number replaces
                // the reply, as a map would (and as `record` does).
                if let Some(old) = session.replies.insert(seq, bytes.split_to(len)) {
                    session.reply_bytes -= old.len();
                }
            }
            table.reply_bytes += session.reply_bytes;
            table.by_activity.insert((session.indexed_ms, id));
            if table.sessions.insert(id, session).is_some() {
                return Err(format!("session {id} twice in the session table"));
            }
        }
        if !bytes.is_empty() {
            return Err("trailing bytes after the session table".into());
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn table() -> SessionTable {
        SessionTable::new(SessionOptions {
            expiry: Duration::from_millis(100),
            sessions_max: 2,
            replies_per_session_max: 2,
            ..SessionOptions::default()
        })
    }

    const S: SessionId = SessionId(7);

    #[test]
    fn replies_recorded_out_of_order_are_kept_in_order() {
        let mut t = table();
        t.open(S).unwrap();
        // A pipelining client's 3 applied before its 2.
        assert_eq!(t.decide(S, 3, 1), Decision::Fresh);
        assert_eq!(t.decide(S, 2, 1), Decision::Fresh);
        t.record(S, 3, Bytes::from_static(b"three"));
        t.record(S, 2, Bytes::from_static(b"two"));
        let dup = |b: &'static [u8]| Decision::Duplicate(Bytes::from_static(b));
        assert_eq!(t.decide(S, 2, 1), dup(b"two"));
        assert_eq!(t.decide(S, 3, 1), dup(b"three"));
        // Acknowledging 2 forgets 2 only (the front), keeping 3.
        assert_eq!(t.decide(S, 3, 3), dup(b"three"));
        assert_eq!(t.reply_bytes, 5);
    }

    #[test]
    fn a_retry_gets_the_recorded_reply_and_the_watermark_forgets_it() {
        let mut t = table();
        t.open(S).unwrap();
        assert_eq!(t.decide(S, 1, 1), Decision::Fresh);
        t.record(S, 1, Bytes::from_static(b"one"));
        assert_eq!(
            t.decide(S, 1, 1),
            Decision::Duplicate(Bytes::from_static(b"one"))
        );
        // The client acknowledged 1: its reply goes, and a retry of 1 is
        // refused rather than applied again.
        assert_eq!(t.decide(S, 2, 2), Decision::Fresh);
        assert_eq!(t.reply_bytes, 0);
        assert_eq!(
            t.decide(S, 1, 2),
            Decision::Refused(SessionError::ReplyForgotten { session: S, seq: 1 })
        );
    }

    #[test]
    fn fresh_requests_not_yet_recorded_count_against_the_limit() {
        let mut t = table();
        t.open(S).unwrap();
        assert_eq!(t.decide(S, 1, 1), Decision::Fresh);
        assert_eq!(
            t.decide(S, 1, 1),
            Decision::InFlight,
            "the same, unrecorded"
        );
        assert_eq!(t.decide(S, 2, 1), Decision::Fresh);
        assert_eq!(
            t.decide(S, 3, 1),
            Decision::Refused(SessionError::ReplyCacheFull { session: S })
        );
        t.record(S, 1, Bytes::from_static(b"one"));
        t.record(S, 2, Bytes::new());
        assert_eq!(
            t.decide(S, 1, 1),
            Decision::Duplicate(Bytes::from_static(b"one"))
        );
        // Recorded, the two still fill the session; acknowledged, they go.
        assert_eq!(t.decide(S, 3, 3), Decision::Fresh);
    }

    #[test]
    fn sessions_expire_by_log_time_only() {
        let mut t = table();
        t.advance(1_000);
        t.open(S).unwrap();
        t.advance(1_100);
        assert_eq!(t.len(), 1, "exactly the expiry is not past it");
        t.advance(1_050); // time never runs back
        t.advance(1_101);
        assert_eq!(t.len(), 0);
        assert_eq!(
            t.decide(S, 1, 1),
            Decision::Refused(SessionError::Expired { session: S })
        );
    }

    #[test]
    fn a_session_active_since_it_was_indexed_is_kept() {
        let mut t = table();
        t.advance(1_000);
        t.open(S).unwrap();
        t.advance(1_090);
        assert_eq!(t.decide(S, 1, 1), Decision::Fresh);
        // Indexed at 1,000, active at 1,090: not idle for the expiry yet.
        t.advance(1_150);
        assert_eq!(t.len(), 1);
        t.advance(1_191);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_snapshot_naming_a_session_twice_is_refused() {
        let mut t = table();
        t.open(S).unwrap();
        let mut bytes = t.encode().to_vec();
        let session = bytes[13..].to_vec();
        bytes.extend_from_slice(&session);
        bytes[9..13].copy_from_slice(&2u32.to_be_bytes());
        assert!(SessionTable::decode(t.options.clone(), Bytes::from(bytes)).is_err());
    }

    #[test]
    fn limits_refuse_with_typed_errors() {
        let mut t = table();
        t.open(SessionId(1)).unwrap();
        t.open(SessionId(2)).unwrap();
        assert_eq!(
            t.open(SessionId(3)),
            Err(SessionError::TooManySessions { max: 2 })
        );
        t.record(SessionId(1), 1, Bytes::new());
        t.record(SessionId(1), 2, Bytes::new());
        assert_eq!(
            t.decide(SessionId(1), 3, 1),
            Decision::Refused(SessionError::ReplyCacheFull {
                session: SessionId(1)
            })
        );
        assert_eq!(t.decide(SessionId(1), 3, 2), Decision::Fresh);
    }

    #[test]
    fn a_snapshot_repeating_a_sequence_number_keeps_the_byte_counts_true() {
        let mut t = table();
        t.open(S).unwrap();
        t.record(S, 3, Bytes::from_static(b"first"));
        let mut bytes = t.encode().to_vec();
        // The same reply twice: the count of replies says 2, seq 3 both times.
        let reply_at = bytes.len() - (8 + 4 + 5);
        let reply = bytes[reply_at..].to_vec();
        bytes.extend_from_slice(&reply);
        let count_at = reply_at - 4;
        bytes[count_at..reply_at].copy_from_slice(&2u32.to_be_bytes());
        let back = SessionTable::decode(t.options.clone(), Bytes::from(bytes)).unwrap();
        assert_eq!(back, t, "one reply, counted once");
    }

    #[test]
    fn the_table_round_trips_and_garbage_is_an_error() {
        let mut t = table();
        t.advance(5);
        t.open(S).unwrap();
        t.record(S, 3, Bytes::from_static(b"reply"));
        let back = SessionTable::decode(t.options.clone(), t.encode()).unwrap();
        assert_eq!(back, t);
        let bytes = t.encode();
        for cut in 0..bytes.len() {
            assert!(SessionTable::decode(t.options.clone(), bytes.slice(..cut)).is_err());
        }
    }
}
