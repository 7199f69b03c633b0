//! Concurrent Redis-protocol clients of the kv example on a [`Bed`], each
//! on its own thread in the bridge's namespace, recording every GET and SET
//! they send into one [`History`] for the linearizability checker.
//!
//! Every SET writes a value no other operation writes (`<client>.<seq>`), so
//! a read names the write it saw. Each operation starts at a random node and
//! follows `-MOVED` redirections (a redirected attempt is recorded as
//! failed: the server refused it before proposing it). A timeout or a broken
//! connection is an unknown outcome: the write may land later, or never.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oar_check::history::{History, OpId, Operation, Outcome, Reply as HistoryReply};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::bed::enter_netns;
use super::resp::{Connection, Reply};

/// Keys the clients share (few, so that operations on a key overlap).
pub const KEYS: usize = 4;
/// Give up on a reply (or a connect) after this long: an unknown outcome.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Redirections an operation follows before it starts over elsewhere.
const HOPS_MAX: usize = 3;

/// Records operations as clients invoke and complete them, on one clock.
struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

impl Recorder {
    /// The clock is read under the lock, so records are in invoke order.
    fn invoke(&self, client: u64, key: &str, operation: Operation) -> OpId {
        let mut history = self.history.lock().expect("history lock");
        history.invoke(client, key, operation, self.now_ns())
    }

    fn complete(&self, op: OpId, outcome: Outcome) {
        let mut history = self.history.lock().expect("history lock");
        let now = self.now_ns();
        history
            .complete(op, now, outcome)
            .expect("a valid completion");
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).expect("a short run")
    }
}

/// The running clients; [`Clients::stop`] ends them and returns the history.
pub struct Clients {
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
    threads: Vec<JoinHandle<u64>>,
}

/// What every client needs to know.
struct Target {
    /// The bridge's namespace, where the clients live.
    ns: String,
    /// Each node's Redis-protocol address.
    nodes: Vec<SocketAddr>,
}

impl Clients {
    /// Starts `count` clients in namespace `ns` against `nodes`; client `i`
    /// draws its operations from `seed + i`.
    pub fn start(count: u64, ns: &str, nodes: Vec<SocketAddr>, seed: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let recorder = Arc::new(Recorder {
            start: Instant::now(),
            history: Mutex::new(History::new()),
        });
        let target = Arc::new(Target {
            ns: ns.to_owned(),
            nodes,
        });
        let threads = (0..count)
            .map(|client| {
                let (stop, recorder, target) = (stop.clone(), recorder.clone(), target.clone());
                std::thread::spawn(move || {
                    run_client(client, seed.wrapping_add(client), &target, &recorder, &stop)
                })
            })
            .collect();
        Clients {
            stop,
            recorder,
            threads,
        }
    }

    /// Stops the clients (each finishes its operation in flight) and
    /// returns the history and the number of operations that succeeded.
    pub fn stop(self) -> (History, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let succeeded = self
            .threads
            .into_iter()
            .map(|thread| thread.join().expect("client thread"))
            .sum();
        let history = self.recorder.history.lock().expect("history lock").clone();
        (history, succeeded)
    }
}

/// One client: random keys, half reads and half writes, until stopped.
/// Returns how many operations succeeded.
fn run_client(
    client: u64,
    seed: u64,
    target: &Target,
    recorder: &Recorder,
    stop: &AtomicBool,
) -> u64 {
    enter_netns(&target.ns);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut connections: Vec<Option<Connection>> = target.nodes.iter().map(|_| None).collect();
    let (mut seq, mut succeeded) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let key = format!("k{}", rng.random_range(0..KEYS));
        let operation = if rng.random_bool(0.5) {
            Operation::Get
        } else {
            seq += 1;
            Operation::Put {
                value: format!("{client}.{seq}"),
            }
        };
        let mut node = rng.random_range(0..target.nodes.len());
        for _ in 0..HOPS_MAX {
            if connections[node].is_none() {
                match Connection::open(target.nodes[node], REPLY_TIMEOUT) {
                    Ok(connection) => connections[node] = Some(connection),
                    Err(_) => {
                        // Nothing sent, nothing to record.
                        std::thread::sleep(Duration::from_millis(20));
                        break;
                    }
                }
            }
            let connection = connections[node].as_mut().expect("just opened");
            let op = recorder.invoke(client, &key, operation.clone());
            let reply = call(connection, &key, &operation);
            let (outcome, redirect) = classify(&operation, reply, &target.nodes);
            if outcome == Outcome::Unknown {
                // A late reply would be read as the next command's.
                connections[node] = None;
            }
            succeeded += u64::from(matches!(outcome, Outcome::Ok(_)));
            recorder.complete(op, outcome);
            match redirect {
                Some(leader) => node = leader,
                None => break,
            }
        }
    }
    succeeded
}

fn call(connection: &mut Connection, key: &str, operation: &Operation) -> std::io::Result<Reply> {
    match operation {
        Operation::Get => connection.call(&[b"GET", key.as_bytes()]),
        Operation::Put { value } => connection.call(&[b"SET", key.as_bytes(), value.as_bytes()]),
        other => unreachable!("the kv example has no {}", other.name()),
    }
}

/// What a reply means for the history, and where a redirection points.
///
/// `-MOVED` and `-CLUSTERDOWN` come from a node that refused to propose
/// (`Error::NotLeader`): the operation did not and will not take effect.
/// Other errors (a group shut down, an outcome lost to a snapshot) and no
/// reply at all leave it unknown.
fn classify(
    operation: &Operation,
    reply: std::io::Result<Reply>,
    nodes: &[SocketAddr],
) -> (Outcome, Option<usize>) {
    let reply = match reply {
        Ok(reply) => reply,
        Err(_) => return (Outcome::Unknown, None),
    };
    match (operation, reply) {
        (Operation::Put { .. }, Reply::Simple(ok)) if ok == "OK" => {
            (Outcome::Ok(HistoryReply::Done), None)
        }
        (Operation::Get, Reply::Bulk(value)) => {
            let value = value.map(|v| String::from_utf8(v).expect("values the clients wrote"));
            (Outcome::Ok(HistoryReply::Value(value)), None)
        }
        (_, Reply::Error(e)) if e.starts_with("MOVED ") => {
            let leader: Option<SocketAddr> = e.rsplit(' ').next().and_then(|a| a.parse().ok());
            let node = nodes.iter().position(|addr| Some(*addr) == leader);
            (Outcome::Fail, node)
        }
        (_, Reply::Error(e)) if e.starts_with("CLUSTERDOWN") => (Outcome::Fail, None),
        (_, Reply::Error(_)) => (Outcome::Unknown, None),
        (operation, reply) => panic!("{} answered {reply:?}", operation.name()),
    }
}
