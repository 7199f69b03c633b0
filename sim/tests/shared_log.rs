//! The simulator on one log per server (`--shared-log`): every group's
//! member on a server writes to that server's one log, and the checks read
//! each group's durable log back from it.
#![cfg(madsim)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use oar::core::{EntryPayload, RaftOptions, Role};
use oar::storage::FileSystem;
use oar_sim::cluster::{ServerSetup, SimCluster, shared_log_dir};
use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{Verdict, run};

const GROUPS: usize = 3;
const WRITES: usize = 5;

#[test]
fn every_group_of_a_server_writes_to_its_one_log() {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(4, madsim::Config::default());
    runtime.block_on(async {
        let raft = RaftOptions {
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            heartbeat_interval: Duration::from_millis(60),
            ..RaftOptions::default()
        };
        let setup = ServerSetup {
            shared_log: true,
            ..ServerSetup::plain()
        };
        let mut cluster = SimCluster::start_untraced(3, 4, raft, setup, GROUPS);

        // Each group's leader commits a few commands of its own.
        for g in 0..GROUPS {
            let mut written = 0;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                for i in 0..3 {
                    let Some(member) = cluster.member_in(g, i) else {
                        continue;
                    };
                    let leads = matches!(member.status().await, Ok(s) if s.role == Role::Leader);
                    while leads && written < WRITES {
                        let command = Bytes::from(format!("group {g} write {written}"));
                        if member.apply(command).await.is_err() {
                            break;
                        }
                        written += 1;
                    }
                }
                if written == WRITES {
                    break;
                }
            }
            assert_eq!(written, WRITES, "group {} took its writes", g + 1);
        }

        // No server has a log of a member's own: one log, and it is in use.
        for node in &cluster.nodes {
            let data = node.fs.list_dir(Path::new("/data")).expect("data dir");
            assert_eq!(data, vec!["server".to_string()], "{}", node.id);
            let segments = node.fs.list_dir(&shared_log_dir()).expect("log dir");
            assert!(segments.iter().any(|name| name.starts_with("log_")));
        }
        // Every group's commands are durable on a majority, read back from
        // the servers' shared logs, each in its own group's log only.
        for g in 0..GROUPS {
            let logs = cluster.durable_logs(g);
            let holding = logs
                .values()
                .filter(|log| {
                    let commands: Vec<String> = log
                        .entries
                        .iter()
                        .filter_map(|e| match &e.payload {
                            EntryPayload::Command(data) => {
                                Some(String::from_utf8_lossy(data).into_owned())
                            }
                            _ => None,
                        })
                        .collect();
                    let own =
                        (0..WRITES).all(|w| commands.contains(&format!("group {g} write {w}")));
                    let foreign = commands
                        .iter()
                        .any(|c| !c.starts_with(&format!("group {g} ")));
                    own && !foreign
                })
                .count();
            assert!(
                holding >= 2,
                "group {}: {holding} servers hold its writes",
                g + 1
            );
        }
    });
}

/// Crashes, restarts and latent corruption of closed segments against
/// three groups sharing each server's log: every group's checks pass
/// (durability included), and the corruption is found at a restart.
#[test]
fn crashes_and_corrupted_segments_of_a_shared_log_keep_every_group_whole() {
    let weights = FaultWeights::only(FaultKind::Crash, 10)
        .with(FaultKind::Restart, 5)
        .with(FaultKind::MetaBitFlip, 5);
    let options = SimOptions {
        groups: GROUPS,
        shared_log: true,
        faults: FaultSet::All,
        fault_weights: weights,
        fault_phase: Duration::from_secs(20),
        trace: true,
        ..SimOptions::new(6)
    };
    let output = run(&options);
    let report = &output.report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
    // A flipped bit in a closed segment kept its server out at a restart.
    let events = output.trace.events();
    let named = |name: &str| events.iter().filter(|e| e["event"] == name).count();
    assert!(
        named("flip_bit") > 0 && named("storage_refused") > 0,
        "{report:?}"
    );
}
