//! Linearizability on real networks (issue 20): three kv processes in
//! network namespaces, six concurrent clients, and every fault of the bed
//! in turn, each held for a few seconds and healed: the leader isolated, a
//! follower and then the leader alone on the minority side (the clients
//! still reach both sides), one-way partitions (a leader that cannot send,
//! a follower that cannot hear), a quarter of the packets between servers
//! lost, the leader's process paused. After every heal a write must commit
//! again. The clients' history is then checked with oar-check's WGL search
//! (the simulator's checker).
//!
//! About 45 s. Runs as root with iproute2 and skips (saying why) elsewhere.
//! The clients' seed is printed; `OAR_LIN_SEED` sets it. A failure prints
//! the history file and the smallest key whose own history is not
//! linearizable, written beside it.

mod netns;
#[path = "runtime/pki.rs"]
mod pki;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netns::bed::{self, Bed};
use netns::clients::Clients;
use netns::kv::{KvCluster, kv_binary};
use oar_check::history::{History, Operation, Outcome, Reply};
use oar_check::linearizability::{CheckOptions, Verdict, check_with};

/// How long each fault is held.
const FAULT_HOLD: Duration = Duration::from_secs(3);
/// Traffic on the healed cluster before the next fault.
const SETTLE: Duration = Duration::from_millis(1500);
/// After a heal, a write must commit within this long (the heal test's
/// bound is 3 s; this one only asks that no run needs a restart).
const RECOVERY_MAX: Duration = Duration::from_secs(15);
/// Search budget: a few seconds in a debug build; the histories of this
/// run need far less.
const MAX_STEPS: u64 = 20_000_000;
const CLIENTS: u64 = 6;

/// The faults, in the order they are injected.
#[derive(Clone, Copy, Debug)]
enum Fault {
    IsolateLeader,
    FollowerInMinority,
    LeaderInMinority,
    LeaderCannotSend,
    FollowerCannotHear,
    Loss,
    PauseLeader,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::IsolateLeader,
        Fault::FollowerInMinority,
        Fault::LeaderInMinority,
        Fault::LeaderCannotSend,
        Fault::FollowerCannotHear,
        Fault::Loss,
        Fault::PauseLeader,
    ];

    /// Injects the fault around `leader`; returns what was done.
    fn inject(self, bed: &Bed, cluster: &mut KvCluster<'_>, leader: usize) -> String {
        let follower = (leader + 1) % bed.nodes();
        let others = |node: usize| (0..bed.nodes()).filter(move |&i| i != node);
        match self {
            Fault::IsolateLeader => bed.isolate(leader),
            Fault::FollowerInMinority => bed.partition(&[follower]),
            Fault::LeaderInMinority => bed.partition(&[leader]),
            Fault::LeaderCannotSend => others(leader).for_each(|i| bed.block(leader, i)),
            Fault::FollowerCannotHear => others(follower).for_each(|i| bed.block(i, follower)),
            Fault::Loss => {
                for from in 0..bed.nodes() {
                    others(from).for_each(|to| bed.lossy(from, to, 2));
                }
            }
            Fault::PauseLeader => cluster.pause(leader),
        }
        format!("{self:?} (leader n{leader}, follower n{follower})")
    }
}

/// A bed, or `None` (with the reason printed) where one cannot be made.
fn bed_or_skip(test: &str) -> Option<Bed> {
    if let Some(why) = bed::unavailable() {
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    bed::remove_stale();
    Some(Bed::new(3).expect("bed"))
}

#[test]
fn clients_see_one_linearizable_store_through_every_fault() {
    let Some(bed) = bed_or_skip("clients_see_one_linearizable_store_through_every_fault") else {
        return;
    };
    let binary = kv_binary().expect("kv example");
    let seed = std::env::var("OAR_LIN_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs())
        },
        |s| s.parse().expect("OAR_LIN_SEED: a u64"),
    );
    eprintln!("real-network linearizability run, OAR_LIN_SEED={seed}");
    let mut cluster = KvCluster::start(&bed, &binary);
    let mut leader = cluster.wait_for_leader(Duration::from_secs(30));
    let addrs = (0..bed.nodes()).map(|i| cluster.client_addr(i)).collect();
    let start = Instant::now();
    let clients = Clients::start(CLIENTS, &bed.bridge_ns(), addrs, seed);
    std::thread::sleep(SETTLE);
    for fault in Fault::ALL {
        let what = fault.inject(&bed, &mut cluster, leader);
        let at = start.elapsed().as_secs_f64();
        std::thread::sleep(FAULT_HOLD);
        if matches!(fault, Fault::PauseLeader) {
            cluster.resume(leader);
        }
        bed.heal();
        let Some((took, answered)) = cluster.first_commit(leader, "probe", RECOVERY_MAX) else {
            for i in 0..bed.nodes() {
                eprintln!("n{i} log tail:\n{}", cluster.log_tail(i, 20));
            }
            panic!("no write committed within {RECOVERY_MAX:?} of healing {what}");
        };
        eprintln!(
            "{at:5.1} s  {what}: held {FAULT_HOLD:?}, healed; a write committed {:.2} s later",
            took.as_secs_f64()
        );
        leader = answered;
        std::thread::sleep(SETTLE);
    }
    let (history, succeeded) = clients.stop();
    drop(cluster);
    check_history(&history, succeeded, seed);
}

/// Writes `history` under the target directory and checks it; panics with
/// the file and the smallest violating key if it is not linearizable.
fn check_history(history: &History, succeeded: u64, seed: u64) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real_linearizability");
    // Only the last run's files are kept (a history is a few megabytes).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("history directory");
    let path = dir.join(format!("history-{seed}.jsonl"));
    write_history(history, &path);
    let unknown = history
        .records()
        .iter()
        .filter(|r| r.outcome == Outcome::Unknown)
        .count();
    eprintln!(
        "{} operations ({succeeded} ok, {unknown} unknown) in {}",
        history.len(),
        path.display()
    );
    assert!(
        succeeded >= 100,
        "only {succeeded} operations succeeded: the run checked little"
    );
    let resolved = without_unread_unknown_writes(history);
    let options = CheckOptions {
        max_steps: Some(MAX_STEPS),
        ..CheckOptions::default()
    };
    let started = Instant::now();
    match check_with(&resolved, &options) {
        Verdict::Linearizable => eprintln!(
            "linearizable (checked in {:.2} s)",
            started.elapsed().as_secs_f64()
        ),
        verdict @ Verdict::Timeout { .. } => {
            panic!("history {}: {verdict}", path.display())
        }
        Verdict::NotLinearizable(_) => {
            let (key, violation, ops) = smallest_violating_key(&resolved);
            let key_path = dir.join(format!("history-{seed}-key-{key}.jsonl"));
            write_history(&by_key(history).remove(&key).unwrap_or_default(), &key_path);
            panic!(
                "NOT LINEARIZABLE: history {}; smallest violating key {key:?} ({ops} operations, \
                 in {}): {violation}",
                path.display(),
                key_path.display()
            );
        }
    }
}

fn write_history(history: &History, path: &Path) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("history file"));
    history.write_jsonl(&mut file).expect("history written");
}

/// `history` with every write of unknown outcome whose value no read
/// returned marked as never applied. Exact, not only sound: values are
/// unique, so no read was explained by such a write, and dropping it from a
/// linearization leaves every read's value as it was. It spares the search
/// the many orders in which unseen writes could have landed.
fn without_unread_unknown_writes(history: &History) -> History {
    let read: BTreeSet<(&str, &str)> = history
        .records()
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ok(Reply::Value(Some(value))) => Some((r.key.as_str(), value.as_str())),
            _ => None,
        })
        .collect();
    history.resolve_unknowns(|r| match &r.operation {
        Operation::Put { value } => read.contains(&(r.key.as_str(), value.as_str())),
        _ => true,
    })
}

/// Each key's own history (keys are independent: the whole is
/// linearizable exactly when every key's is).
fn by_key(history: &History) -> BTreeMap<String, History> {
    let mut keys: BTreeMap<String, History> = BTreeMap::new();
    for record in history.records() {
        let part = keys.entry(record.key.clone()).or_default();
        let op = part.invoke(
            record.client,
            record.key.as_str(),
            record.operation.clone(),
            record.invoke_ns,
        );
        if let Some(complete_ns) = record.complete_ns {
            part.complete(op, complete_ns, record.outcome.clone())
                .expect("completions as recorded");
        }
    }
    keys
}

/// The key with the fewest operations whose history is not linearizable:
/// (key, the checker's account of it, its number of operations).
fn smallest_violating_key(history: &History) -> (String, String, usize) {
    let options = CheckOptions {
        max_steps: Some(MAX_STEPS),
        ..CheckOptions::default()
    };
    by_key(history)
        .into_iter()
        .filter_map(|(key, part)| match check_with(&part, &options) {
            Verdict::NotLinearizable(violation) => Some((key, violation.to_string(), part.len())),
            _ => None,
        })
        .min_by_key(|(_, _, ops)| *ops)
        .expect("a violating key, as the whole history has one")
}
