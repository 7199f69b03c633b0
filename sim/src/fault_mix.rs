//! Swarm testing: each seed draws its own fault mix — which fault kinds
//! the nemesis may inject and how often — as TigerBeetle's VOPR draws its
//! `*_probability` options. A seed that never crashes explores long
//! partitions; one that never heals explores a cluster that limps along.
//!
//! The mix is a [`FaultWeights`]: one named weight a fault kind. The
//! nemesis draws a kind with probability `weight / total` at each step. The
//! mix comes from the seed alone, prints as `name=weight,…`, and a printed
//! mix given back on the command line replays the same run.

use std::fmt;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::options::FaultSet;

/// Which `--faults` class a fault kind belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// Partitions, clogs, slow links and their healing.
    Net,
    /// Crashes, pauses and their recovery.
    Crash,
    /// I/O errors and bit flips.
    Disk,
    /// Membership changes and leadership transfers.
    Membership,
    /// A process outside the cluster attacking the front door.
    Stranger,
    /// Snapshots on demand: drawn whatever the faults.
    Housekeeping,
}

impl FaultSet {
    /// Whether this `--faults` choice lets kinds of `class` through.
    pub fn allows(self, class: FaultClass) -> bool {
        match class {
            FaultClass::Net => self.net(),
            FaultClass::Crash => self.crash(),
            FaultClass::Disk => self.disk(),
            FaultClass::Membership => self.membership(),
            FaultClass::Stranger => self.stranger(),
            FaultClass::Housekeeping => self != FaultSet::None,
        }
    }
}

/// Declares the fault kinds once: the enum, the weights struct with one
/// named field a kind, and the tables between them.
macro_rules! fault_kinds {
    ($( $(#[doc = $doc:literal])* $kind:ident, $field:ident, $class:ident, $default:literal; )*) => {
        /// A kind of fault the nemesis injects.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FaultKind {
            $( $(#[doc = $doc])* $kind, )*
        }

        impl FaultKind {
            /// Every kind, in the order the nemesis draws them.
            pub const ALL: &[FaultKind] = &[$(FaultKind::$kind,)*];

            /// The kind's name: its field in [`FaultWeights`].
            pub fn name(self) -> &'static str {
                match self { $(FaultKind::$kind => stringify!($field),)* }
            }

            /// The `--faults` class it belongs to.
            pub fn class(self) -> FaultClass {
                match self { $(FaultKind::$kind => FaultClass::$class,)* }
            }

            /// Its weight in the unswarmed mix (the old nemesis' odds).
            pub fn default_weight(self) -> u32 {
                match self { $(FaultKind::$kind => $default,)* }
            }
        }

        /// How often the nemesis draws each fault kind: a kind of weight
        /// `w` is drawn with probability `w / total`; zero switches it off.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct FaultWeights {
            $( $(#[doc = $doc])* pub $field: u32, )*
        }

        impl FaultWeights {
            /// The weight of `kind`.
            pub fn weight(&self, kind: FaultKind) -> u32 {
                match kind { $(FaultKind::$kind => self.$field,)* }
            }

            fn weight_mut(&mut self, kind: FaultKind) -> &mut u32 {
                match kind { $(FaultKind::$kind => &mut self.$field,)* }
            }
        }

        impl Default for FaultWeights {
            /// The unswarmed mix.
            fn default() -> Self {
                FaultWeights { $( $field: $default, )* }
            }
        }
    };
}

fault_kinds! {
    /// Cut the leader off (forces elections, leaves deposed leaders with
    /// uncommitted tails).
    PartitionLeader, partition_leader, Net, 8;
    /// Cut a random side off: a lone node, a minority or a majority.
    PartitionRandom, partition_random, Net, 9;
    /// Two halves that reach each other only through one bridge node.
    PartitionBridge, partition_bridge, Net, 3;
    /// Blackhole a side (often the leader), sometimes one way: its
    /// connections swallow every write until replaced, new ones hang until
    /// the heal.
    Blackhole, blackhole, Net, 8;
    /// Cut one link one way.
    ClogLink, clog_link, Net, 10;
    /// Make every message slow for a while.
    SlowNetwork, slow_network, Net, 6;
    /// Restore every link and normal latency.
    HealNetwork, heal_network, Net, 14;
    /// Crash a server (power loss or process death).
    Crash, crash, Crash, 12;
    /// Restart a crashed server, or one whose disk failed.
    Restart, restart, Crash, 14;
    /// Stop scheduling a server's tasks.
    Pause, pause, Crash, 6;
    /// Let a paused server run again.
    Resume, resume, Crash, 8;
    /// Make a server's next sync fail (the group fail-stops).
    SyncError, sync_error, Disk, 6;
    /// Flip a bit in a crashed server's term/vote file.
    MetaBitFlip, meta_bit_flip, Disk, 4;
    /// Remove, re-add or promote a server.
    MembershipChange, membership_change, Membership, 14;
    /// Hand leadership to another server.
    Transfer, transfer, Membership, 6;
    /// Replace two voters at once (a joint change with disjoint majorities).
    Replacement, replacement, Membership, 4;
    /// Add a learner and leave it one: cut off (its catch-up stalls), or
    /// with the leader and its learners cut off from the other voters.
    LingeringLearner, linger, Membership, 4;
    /// Start a membership change and strike the leader while it holds an
    /// uncommitted configuration.
    ConfigWindow, config_window, Membership, 4;
    /// A voter catches up through a snapshot that crossed a membership
    /// change it missed, and campaigns the moment it installed it.
    InstallCampaign, install_campaign, Membership, 3;
    /// As `install_campaign`, but it crashes and restarts instead.
    InstallRestart, install_restart, Crash, 3;
    /// Ask a server for a snapshot now.
    Snapshot, snapshot, Housekeeping, 6;
    /// Heal everything and inject nothing until a write commits: the
    /// recovery bound checked in the middle of a run, under client load.
    Lull, lull, Housekeeping, 3;
    /// A process outside the cluster connects and sends what it should not.
    Stranger, stranger, Stranger, 6;
    /// Aim the clocks apart (the leader's slowest, the others' fastest the
    /// drift bound allows), pause the leader, let the others elect and
    /// write, then read at the leader the moment it resumes.
    LeasePause, lease_pause, Crash, 4;
    /// Hand leadership to a voter and cut its power the moment it has won
    /// (or led a write), then restart it.
    FreshLeaderRestart, fresh_leader_restart, Crash, 3;
}

impl FaultKind {
    /// Kinds that end a fault: a mix never switches them off, so that a
    /// seed without them does not merely stall.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            FaultKind::HealNetwork | FaultKind::Restart | FaultKind::Resume | FaultKind::Lull
        )
    }

    /// Kinds the nemesis runs as tactics that wait on the cluster.
    pub fn is_tactic(self) -> bool {
        matches!(
            self,
            FaultKind::LingeringLearner
                | FaultKind::ConfigWindow
                | FaultKind::InstallCampaign
                | FaultKind::InstallRestart
                | FaultKind::LeasePause
                | FaultKind::FreshLeaderRestart
        )
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// Salt of the generator the mix is drawn from (its own stream, so that
/// replaying with an explicit mix changes nothing else).
const SWARM_SALT: u64 = 0x4641_554c_544d_4958;

impl FaultWeights {
    /// The seed's own mix: each kind that is not a recovery is off a
    /// quarter of the time; every kind on gets a weight in
    /// `[1, 2 × default]`.
    pub fn swarm(seed: u64) -> FaultWeights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SWARM_SALT);
        let mut weights = FaultWeights::default();
        for &kind in FaultKind::ALL {
            let off = !kind.is_recovery() && rng.random_range(0..4) == 0;
            let weight = rng.random_range(1..=2 * kind.default_weight());
            *weights.weight_mut(kind) = if off { 0 } else { weight };
        }
        weights
    }

    /// Only `kind`, at `weight`: everything else off.
    pub fn only(kind: FaultKind, weight: u32) -> FaultWeights {
        let mut weights = FaultWeights::default();
        for &other in FaultKind::ALL {
            *weights.weight_mut(other) = 0;
        }
        *weights.weight_mut(kind) = weight;
        weights
    }

    /// This mix with `kind` set to `weight`.
    pub fn with(mut self, kind: FaultKind, weight: u32) -> FaultWeights {
        *self.weight_mut(kind) = weight;
        self
    }

    /// This mix with the kinds `faults` does not allow switched off.
    pub fn filtered(mut self, faults: FaultSet) -> FaultWeights {
        for &kind in FaultKind::ALL {
            if !faults.allows(kind.class()) {
                *self.weight_mut(kind) = 0;
            }
        }
        self
    }

    /// The sum of all weights; zero means no faults at all.
    pub fn total(&self) -> u64 {
        FaultKind::ALL
            .iter()
            .map(|&k| u64::from(self.weight(k)))
            .sum()
    }

    /// The kind a uniform draw `point` in `[0, total)` falls on.
    ///
    /// # Panics
    /// If `point >= total()`.
    pub fn kind_at(&self, point: u64) -> FaultKind {
        let mut rest = point;
        for &kind in FaultKind::ALL {
            let weight = u64::from(self.weight(kind));
            if rest < weight {
                return kind;
            }
            rest -= weight;
        }
        panic!("draw {point} beyond the total weight {}", self.total());
    }

    /// Whether any kind of `class` is on.
    pub fn any_on(&self, class: FaultClass) -> bool {
        FaultKind::ALL
            .iter()
            .any(|&k| k.class() == class && self.weight(k) > 0)
    }

    /// Overrides weights from `name=weight,…` (kinds not named keep theirs).
    ///
    /// # Errors
    /// An unknown kind name or a weight that is not a number.
    pub fn override_from(mut self, text: &str) -> Result<FaultWeights, String> {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected NAME=WEIGHT, got {pair:?}"))?;
            let kind = FaultKind::from_name(name.trim()).ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {name:?}; kinds: {}", names.join(" "))
            })?;
            *self.weight_mut(kind) = weight
                .trim()
                .parse()
                .map_err(|e| format!("weight of {name}: {e}"))?;
        }
        Ok(self)
    }
}

impl fmt::Display for FaultWeights {
    /// `name=weight,…` for every kind, the form `override_from` reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &kind) in FaultKind::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{}={}", kind.name(), self.weight(kind))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_mix_reads_back_the_same() {
        for seed in 0..50 {
            let mix = FaultWeights::swarm(seed);
            let text = mix.to_string();
            let back = FaultWeights::default().override_from(&text).unwrap();
            assert_eq!(back, mix, "seed {seed}: {text}");
        }
        let err = FaultWeights::default().override_from("crash=1,nope=2");
        assert!(err.unwrap_err().contains("unknown fault kind"));
    }

    #[test]
    fn seeds_draw_different_mixes_and_never_switch_recoveries_off() {
        let mixes: Vec<_> = (0..200).map(FaultWeights::swarm).collect();
        assert_eq!(FaultWeights::swarm(7), FaultWeights::swarm(7));
        let distinct: std::collections::BTreeSet<String> =
            mixes.iter().map(|m| m.to_string()).collect();
        assert!(distinct.len() > 190);
        for &kind in FaultKind::ALL {
            let off = mixes.iter().filter(|m| m.weight(kind) == 0).count();
            if kind.is_recovery() {
                assert_eq!(off, 0, "{kind:?}");
            } else {
                assert!((20..80).contains(&off), "{kind:?} off in {off} of 200");
            }
        }
    }

    #[test]
    fn classes_filter_the_mix_and_draws_land_on_weights() {
        let net = FaultWeights::default().filtered(FaultSet::Net);
        assert!(net.any_on(FaultClass::Net));
        assert!(!net.any_on(FaultClass::Crash) && !net.any_on(FaultClass::Stranger));
        assert_eq!(FaultWeights::default().filtered(FaultSet::None).total(), 0);
        let disk = FaultWeights::default().filtered(FaultSet::Disk);
        assert!(disk.any_on(FaultClass::Crash) && disk.any_on(FaultClass::Disk));

        let mix = FaultWeights::only(FaultKind::Crash, 2).with(FaultKind::Stranger, 3);
        assert_eq!(mix.total(), 5);
        let kinds: Vec<_> = (0..5).map(|p| mix.kind_at(p)).collect();
        use FaultKind::{Crash, Stranger};
        assert_eq!(kinds, [Crash, Crash, Stranger, Stranger, Stranger]);
    }
}
