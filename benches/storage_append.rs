//! Appends through the real segment log versus the raw limit of the disk.
//!
//! For batch sizes 1, 16 and 256 entries of 4 KiB payload (plus a 32-byte
//! record header), one `fdatasync` a batch, through `LogWriter` over real
//! files, side by side with two raw limits, each a plain loop of one write
//! and one `fdatasync` a batch in a preallocated file:
//! - **raw seq** writes batch after batch through a segment-sized file,
//!   wrapping at its end: the access pattern of any append-only log, and so
//!   the limit a log can reach;
//! - **raw same** overwrites the same bytes every time: the disk's best case,
//!   which a log cannot have, because on a virtual disk rewriting the same
//!   blocks stays in the host's caches (at 1 MiB batches it runs up to twice
//!   as fast as raw seq on this machine).
//!
//! Each measurement runs for `OAR_BENCH_SECS` seconds (default 3), ours and
//! both raw loops interleaved in slices so that drift of a shared machine
//! hits all three.
//!
//! `cargo bench --bench storage_append` (`OAR_BENCH_DIR` picks the disk,
//! `OAR_BENCH_LOGS` a comma list of the rows' log names).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::{Entry, EntryPayload, LogId};
use oar::storage::{LogOptions, LogWriter, StdFileSystem, WriteOp};

const PAYLOAD_BYTES: usize = 4096;
const BATCHES: [usize; 3] = [1, 16, 256];
const SLICES: u32 = 6;

/// Appends through the log.
struct Ours {
    writer: LogWriter,
    next: u64,
    payload: Bytes,
    /// Keep only about this many entries, purging older ones as snapshots
    /// would (steady state); `None` lets the log grow.
    keep: Option<u64>,
}

impl Ours {
    fn new(dir: &Path, options: LogOptions, keep: Option<u64>) -> Ours {
        let (writer, _) = LogWriter::open(Arc::new(StdFileSystem), dir, options).unwrap();
        let mut ours = Ours {
            writer,
            next: 1,
            payload: Bytes::from(vec![0xa5u8; PAYLOAD_BYTES]),
            keep,
        };
        // Warm up: the first segments, and in steady state a full pool of
        // purged files.
        let warm_entries = keep.map_or(1, |keep| 4 * keep);
        while ours.next <= warm_entries {
            ours.run(256, Duration::ZERO);
        }
        ours
    }

    fn run(&mut self, batch: usize, budget: Duration) -> (u64, Duration) {
        let start = Instant::now();
        let mut appended = 0;
        loop {
            for _ in 0..batch {
                let entry = Entry {
                    id: LogId::new(1, self.next),
                    payload: EntryPayload::Command(self.payload.clone()),
                };
                self.next += 1;
                self.writer.submit(WriteOp::Entries(vec![entry].into()));
            }
            self.writer.flush().unwrap();
            appended += batch as u64;
            if let Some(keep) = self.keep
                && self.next - self.writer.log().first_index().0 > 2 * keep
            {
                self.writer
                    .truncate_prefix(LogId::new(1, self.next - 1 - keep))
                    .unwrap();
            }
            if start.elapsed() >= budget {
                break;
            }
        }
        (appended, start.elapsed())
    }
}

/// Entries of this bench that fit a segment.
fn per_segment() -> u64 {
    LogOptions::default().segment_bytes_max / (PAYLOAD_BYTES as u64 + 32)
}

/// A raw loop: write `batch` entries' bytes at successive offsets of a
/// preallocated file of `region` bytes (wrapping at its end; `region` of one
/// batch rewrites the same bytes), one `fdatasync` each.
fn raw(file: &std::fs::File, batch: usize, region: u64, budget: Duration) -> (u64, Duration) {
    let buf = vec![0x5au8; batch * (PAYLOAD_BYTES + 32)];
    let batches_per_region = (region / buf.len() as u64).max(1);
    let start = Instant::now();
    let mut appended = 0;
    let mut n = 0;
    while start.elapsed() < budget {
        let offset = (n % batches_per_region) * buf.len() as u64;
        file.write_all_at(&buf, offset).unwrap();
        file.sync_data().unwrap();
        n += 1;
        appended += batch as u64;
    }
    (appended, start.elapsed())
}

/// A run's throughput: entries over time.
#[derive(Default)]
struct Tally {
    entries: u64,
    elapsed: Duration,
}

impl Tally {
    fn add(&mut self, (entries, elapsed): (u64, Duration)) {
        self.entries += entries;
        self.elapsed += elapsed;
    }

    fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() {
    let secs: f64 = std::env::var("OAR_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // OAR_BENCH_DIR picks the disk; the default is the system temp dir.
    let base = std::env::var_os("OAR_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let raw_path = tmp.path().join("raw");
    let raw_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&raw_path)
        .unwrap();
    let raw_bytes = 64 << 20;
    raw_file.write_all_at(&vec![0u8; raw_bytes], 0).unwrap();
    raw_file.sync_all().unwrap();

    let grow = LogOptions {
        preallocate: false,
        ..LogOptions::default()
    };
    // compacted: purged segments are recycled, so writes overwrite owned
    // blocks (direct I/O, the default); buffered: the same through the page
    // cache; zeroed: the log only grows, each segment zero-filled at
    // creation; grown: the log only grows, each batch extends the file.
    let big = LogOptions {
        segment_bytes_max: 64 << 20,
        ..LogOptions::default()
    };
    let buffered = LogOptions {
        direct_io: false,
        ..LogOptions::default()
    };
    let variants = [
        ("compacted", LogOptions::default(), Some(2 * per_segment())),
        ("buffered", buffered, Some(2 * per_segment())),
        ("compact-64M", big, Some(16 * per_segment())),
        ("zeroed", LogOptions::default(), None),
        ("grown", grow, None),
    ];
    println!(
        "entry: {PAYLOAD_BYTES} B payload + 32 B header; segment {} MiB; one fdatasync per batch; {secs} s per cell",
        LogOptions::default().segment_bytes_max >> 20
    );
    println!(
        "{:<12} {:>6} {:>11} {:>8} {:>11} {:>6} {:>11} {:>6}",
        "log", "batch", "ours ops/s", "MB/s", "raw seq", "ratio", "raw same", "ratio"
    );
    let wanted = std::env::var("OAR_BENCH_LOGS").ok();
    let wanted = |name: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| w.split(',').any(|n| n == name))
    };
    for (name, options, keep) in variants.into_iter().filter(|v| wanted(v.0)) {
        for batch in BATCHES {
            let mut ours = Ours::new(&tmp.path().join(format!("{name}-{batch}")), options, keep);
            let slice = Duration::from_secs_f64(secs / f64::from(SLICES));
            let (mut o, mut seq, mut same) = (Tally::default(), Tally::default(), Tally::default());
            let region = options.segment_bytes_max.min(raw_bytes as u64);
            for _ in 0..SLICES {
                o.add(ours.run(batch, slice));
                seq.add(raw(&raw_file, batch, region, slice));
                same.add(raw(&raw_file, batch, 0, slice));
            }
            let mb = |rate: f64| rate * (PAYLOAD_BYTES + 32) as f64 / 1e6;
            println!(
                "{name:<12} {batch:>6} {:>11.0} {:>8.1} {:>11.0} {:>6.2} {:>11.0} {:>6.2}",
                o.rate(),
                mb(o.rate()),
                seq.rate(),
                o.rate() / seq.rate(),
                same.rate(),
                o.rate() / same.rate()
            );
        }
    }
    // Why raw same is out of a log's reach at large batches: rewriting the
    // blocks the last sync just wrote is the disk's special case.
    let batch = 256;
    let bytes = (batch * (PAYLOAD_BYTES + 32)) as u64;
    print!("raw, {batch}-entry batches, cycling through a region of");
    for batches in [1, 2, 8, 32] {
        let mut tally = Tally::default();
        let slice = Duration::from_secs_f64(secs / f64::from(SLICES));
        for _ in 0..SLICES / 2 {
            tally.add(raw(&raw_file, batch, batches * bytes, slice));
        }
        let label = if batches == 1 { " (same)" } else { "" };
        print!(" {batches} batch{label}: {:.0} ops/s;", tally.rate());
    }
    println!();
    // What a batch costs before any I/O: framing (copy + CRC32C).
    let entries: Vec<Entry> = (1..=256)
        .map(|i| Entry {
            id: LogId::new(1, i),
            payload: EntryPayload::Command(Bytes::from(vec![0xa5u8; PAYLOAD_BYTES])),
        })
        .collect();
    let mut buf = Vec::with_capacity(256 * (PAYLOAD_BYTES + 32));
    let start = Instant::now();
    let rounds = 2000;
    for _ in 0..rounds {
        buf.clear();
        for e in &entries {
            oar::storage::record::encode(e, 1, &mut buf).unwrap();
        }
    }
    let per_batch = start.elapsed() / rounds;
    println!("cpu: framing a 256-entry batch (copy + CRC32C of 1 MiB) takes {per_batch:?}");
}
