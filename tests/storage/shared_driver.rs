//! The crash-recovery workload of `driver.rs`, run against the server log
//! (`oar::storage::ServerLog`): many groups' batches interleaved in one log,
//! random overwrites, compactions, resets, removals and hard states, crashes
//! at random points. After each recovery every group must be in a state its
//! acknowledged writes allow: what the last successful flush left, or that
//! plus a prefix of the frames written since (a crash keeps a prefix of the
//! unsynced write, never a hole in it).

use std::collections::BTreeMap;
use std::path::Path;

use oar::core::{HardState, LogId, NodeId, Term};
use oar::storage::{Recovered, ServerLog, ServerLogOptions, WriteOp};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::driver::{Disk, Stats};

/// One group as the test believes it: its durable state and the state
/// after each frame written since the last flush.
#[derive(Clone, Debug, Default)]
struct GroupModel {
    durable: Recovered,
    pending: Vec<Recovered>,
}

impl GroupModel {
    fn current(&self) -> &Recovered {
        self.pending.last().unwrap_or(&self.durable)
    }

    fn last(&self) -> u64 {
        let c = self.current();
        c.last_purged.index.0 + c.entries.len() as u64
    }

    /// Applies `ops` frame by frame as the server log writes them: the
    /// last hard state first (if it changes), then every op that writes a
    /// frame.
    fn submit(&mut self, ops: &[WriteOp]) {
        let hs = ops.iter().rev().find_map(|op| match op {
            WriteOp::HardState(hs) => Some(*hs),
            _ => None,
        });
        if let Some(hs) = hs.filter(|hs| *hs != self.current().hard_state) {
            let mut next = self.current().clone();
            next.hard_state = hs;
            self.pending.push(next);
        }
        for op in ops {
            let mut next = self.current().clone();
            match op {
                WriteOp::Entries(entries) if !entries.is_empty() => {
                    let keep = entries[0].id.index.0 - next.last_purged.index.0 - 1;
                    next.entries.truncate(keep as usize);
                    next.entries.extend(entries.iter().cloned());
                }
                WriteOp::Compact(through) if through.index > next.last_purged.index => {
                    let drop = (through.index.0 - next.last_purged.index.0) as usize;
                    next.entries.drain(..drop.min(next.entries.len()));
                    next.last_purged = *through;
                }
                WriteOp::Reset(snapshot) => {
                    next.entries.clear();
                    next.last_purged = *snapshot;
                }
                _ => continue,
            }
            self.pending.push(next);
        }
    }
}

fn options(rng: &mut ChaCha8Rng) -> ServerLogOptions {
    ServerLogOptions {
        segment_bytes_max: rng.random_range(300..3000),
        preallocate: rng.random_bool(0.7),
        closed_segments_max: rng.random_range(1..6),
    }
}

/// Random ops for `model`'s group: a batch of entries (sometimes an
/// overwrite, sometimes after a new term), a compaction, a reset, or a
/// hard state alone.
fn random_ops(rng: &mut ChaCha8Rng, model: &GroupModel, term: &mut u64) -> Vec<WriteOp> {
    let c = model.current();
    let purged = c.last_purged.index.0;
    let last = model.last();
    let mut ops = Vec::new();
    if rng.random_bool(0.2) {
        *term += 1;
        let vote = rng.random_range(0..4);
        ops.push(WriteOp::HardState(HardState {
            term: Term(*term),
            voted_for: (vote != 0).then_some(NodeId(vote)),
        }));
    }
    match rng.random_range(0..100) {
        0..75 => {
            let first = match rng.random_bool(0.15) {
                true => rng.random_range(purged + 1..=last + 1),
                false => last + 1,
            };
            let batch = (first..first + rng.random_range(1..6))
                .map(|i| match rng.random_range(0..20) {
                    0 => super::config_entry(*term, i),
                    _ => super::entry(*term, i, rng.random_range(0..200)),
                })
                .collect();
            ops.push(WriteOp::Entries(batch));
        }
        75..92 => {
            let through = rng.random_range(purged..=last + 2);
            let t = c
                .entries
                .get((through.saturating_sub(purged + 1)) as usize)
                .filter(|_| through > purged)
                .map_or(*term, |e| e.id.term.0);
            ops.push(WriteOp::Compact(LogId::new(t, through)));
        }
        92..96 => ops.push(WriteOp::Reset(LogId::new(
            *term,
            last + rng.random_range(1..10),
        ))),
        _ => {}
    }
    ops
}

/// Runs `rounds` rounds of random ops over groups of one server log in
/// `dir`, each round ended by a crash at a random point.
pub fn run_shared_seed(
    seed: u64,
    disk: &dyn Disk,
    dir: &Path,
    rounds: u32,
) -> Result<Stats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let options = options(&mut rng);
    let group_count = rng.random_range(2..24u64);
    let mut models: BTreeMap<u64, GroupModel> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut term = 1u64;
    let open = |disk: &dyn Disk| {
        ServerLog::open(disk.fs(), dir, options).map_err(|e| format!("open: {e}"))
    };
    let (mut log, found) = open(disk)?;
    check(&mut models, &found, &mut stats)?;
    for round in 0..rounds {
        disk.power_off_after(rng.random_range(0..200));
        for _ in 0..rng.random_range(1..80) {
            let group = rng.random_range(1..=group_count);
            let model = models.entry(group).or_default();
            let result = match rng.random_range(0..100) {
                0..70 => {
                    let ops = random_ops(&mut rng, model, &mut term);
                    model.submit(&ops);
                    log.submit(group, ops).map(drop)
                }
                70..97 => log.flush().map(|()| {
                    for m in models.values_mut() {
                        if let Some(last) = m.pending.pop() {
                            m.durable = last;
                        }
                        m.pending.clear();
                    }
                }),
                _ => {
                    model.pending.push(Recovered::default());
                    log.remove_group(group)
                }
            };
            if let Err(e) = result {
                if !disk.is_powered_off() {
                    return Err(format!("round {round}: failed with the power on: {e}"));
                }
                stats.crashes_mid_op += 1;
                break;
            }
        }
        drop(log);
        disk.crash();
        let (reopened, found) = open(disk).map_err(|e| format!("round {round}: {e}"))?;
        log = reopened;
        check(&mut models, &found, &mut stats).map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(stats)
}

/// Checks every group recovered to its durable state or a later pending
/// one, then adopts what was found (recovery made it durable).
fn check(
    models: &mut BTreeMap<u64, GroupModel>,
    found: &BTreeMap<u64, Recovered>,
    stats: &mut Stats,
) -> Result<(), String> {
    for group in found.keys() {
        models.entry(*group).or_default();
    }
    for (group, model) in models.iter_mut() {
        let got = found.get(group).cloned().unwrap_or_default();
        let Some(at) = std::iter::once(&model.durable)
            .chain(&model.pending)
            .position(|s| *s == got)
        else {
            return Err(format!(
                "group {group}: recovered {got:?}\ndurable {:?}\n{} pending",
                model.durable,
                model.pending.len()
            ));
        };
        stats.acked_checked += model.durable.entries.len() as u64;
        stats.recovered_unacked += at as u64;
        model.durable = got;
        model.pending.clear();
    }
    Ok(())
}
