//! Appends through the real segment log versus the raw limit of the disk.
//!
//! For batch sizes 1, 16 and 256 entries of 4 KiB payload (plus a 32-byte
//! record header), one `fdatasync` a batch, through `LogWriter` over real
//! files, side by side with the raw limit: a loop that overwrites the same
//! bytes (batch × 4 KiB) in a preallocated file and `fdatasync`s. Each
//! measurement runs for `OAR_BENCH_SECS` seconds (default 3), ours and raw
//! interleaved in slices so that drift of a shared machine hits both.
//!
//! `cargo bench --bench storage_append` (`OAR_BENCH_DIR` picks the disk).

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
                self.writer.submit(WriteOp::Entries(vec![entry]));
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

/// The raw limit: overwrite the same bytes of a preallocated file, fdatasync.
fn raw(file: &std::fs::File, batch: usize, budget: Duration) -> (u64, Duration) {
    let buf = vec![0x5au8; batch * (PAYLOAD_BYTES + 32)];
    let start = Instant::now();
    let mut appended = 0;
    while start.elapsed() < budget {
        file.write_all_at(&buf, 0).unwrap();
        file.sync_data().unwrap();
        appended += batch as u64;
    }
    (appended, start.elapsed())
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
    raw_file
        .write_all_at(&vec![0u8; 256 * (PAYLOAD_BYTES + 32)], 0)
        .unwrap();
    raw_file.sync_all().unwrap();

    let grow = LogOptions {
        preallocate: false,
        ..LogOptions::default()
    };
    // compacted: purged segments are recycled, so writes overwrite owned
    // blocks; zeroed: the log only grows, each segment zero-filled at
    // creation; grown: the log only grows, each batch extends the file.
    let big = LogOptions {
        segment_bytes_max: 64 << 20,
        ..LogOptions::default()
    };
    let variants = [
        ("compacted", LogOptions::default(), Some(2 * per_segment())),
        ("compact-64M", big, Some(16 * per_segment())),
        ("zeroed", LogOptions::default(), None),
        ("grown", grow, None),
    ];
    println!(
        "entry: {PAYLOAD_BYTES} B payload + 32 B header; segment {} MiB; one fdatasync per batch; {secs} s per cell",
        LogOptions::default().segment_bytes_max >> 20
    );
    println!(
        "{:<12} {:>6} {:>12} {:>9} {:>12} {:>9} {:>7}",
        "log", "batch", "ours ops/s", "MB/s", "raw ops/s", "MB/s", "ratio"
    );
    for (name, options, keep) in variants {
        for batch in BATCHES {
            let mut ours = Ours::new(&tmp.path().join(format!("{name}-{batch}")), options, keep);
            let slice = Duration::from_secs_f64(secs / f64::from(SLICES));
            let (mut o, mut od, mut r, mut rd) = (0, Duration::ZERO, 0, Duration::ZERO);
            for _ in 0..SLICES {
                let (n, d) = ours.run(batch, slice);
                o += n;
                od += d;
                let (n, d) = raw(&raw_file, batch, slice);
                r += n;
                rd += d;
            }
            let ours_rate = o as f64 / od.as_secs_f64();
            let raw_rate = r as f64 / rd.as_secs_f64();
            let mb = |rate: f64| rate * (PAYLOAD_BYTES + 32) as f64 / 1e6;
            println!(
                "{name:<12} {batch:>6} {ours_rate:>12.0} {:>9.1} {raw_rate:>12.0} {:>9.1} {:>7.2}",
                mb(ours_rate),
                mb(raw_rate),
                ours_rate / raw_rate
            );
        }
    }
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
