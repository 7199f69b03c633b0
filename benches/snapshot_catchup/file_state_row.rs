//! The file-state row: a generated state of `OAR_BENCH_FILE_STATE_MB` MiB
//! of files (in a temporary directory, removed at the end, on a panic too),
//! each member in a process of its own (see `member_process`), so that the
//! leader's and the catching-up follower's peak RSS are their own.
//!
//! Steps: generate the blobs (fsynced, so that their write-back does not
//! land in the windows below); time the raw loopback copy of the same
//! bytes (`raw_copy`); start the members, elect, `fill` (each member links
//! every blob into its state); start the leader's clients and measure a
//! window; stop a follower's group; write 1000 more entries; save the
//! leader's snapshot by links; restart the follower's group and time until
//! it has loaded the snapshot and applied what the leader had applied by
//! then; check that its state equals the leader's. Then remove the
//! follower (its copy makes room on the disk), measure a window of the
//! leader's writes and a save that streams every blob, counting the
//! leader's writes during it. Peak RSS is the process's `VmHWM`, reset
//! through `/proc/PID/clear_refs` just before the saves (leader) and the
//! restart (follower), against its `VmRSS` at that moment. The goals are
//! printed with pass or fail, never asserted.
//!
//! In the temporary directory: `source/` (the blobs), `raw/` (the raw
//! copy, removed after it), `pki/`, and per member `member{id}/n{id}` (its
//! log and snapshots) and `member{id}/state` (its blob links).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::file_blobs::blob_name;
use super::member_process::{
    MEMBER_DIR_ENV, MEMBER_ID_ENV, PKI_DIR_ENV, SOURCE_DIR_ENV, pem_paths,
};
use super::{MIB, WRITES_WHILE_DOWN, pki, raw_copy};

/// MiB a generated blob file holds (the last one may hold less).
const FILE_MIB: u64 = 64;
/// The RSS goal: each node within this much of its RSS before.
const RSS_GROWTH_MAX: u64 = 256 * MIB as u64;
/// The copy-rate goal: this share of the raw loopback copy's rate.
const COPY_SHARE_MIN: f64 = 0.8;
/// The writes-during-save goal: this share of the baseline's writes/s.
const SAVE_WRITES_SHARE_MIN: f64 = 0.8;

/// Writes `mib` MiB of ChaCha8 bytes as blob files in `dir`, each fsynced;
/// returns their names.
fn generate(dir: &Path, mib: u64) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("source directory");
    let mut buf = vec![0u8; MIB];
    (0..mib.div_ceil(FILE_MIB))
        .map(|n| {
            let name = blob_name(n);
            let mut file = std::fs::File::create(dir.join(&name)).expect("blob file");
            let mut rng = ChaCha8Rng::seed_from_u64(n);
            for _ in 0..FILE_MIB.min(mib - n * FILE_MIB) {
                rng.fill_bytes(&mut buf);
                file.write_all(&buf).expect("blob write");
            }
            file.sync_all().expect("blob fsync");
            name
        })
        .collect()
}

/// A member process, killed when dropped.
struct MemberProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl MemberProcess {
    fn spawn(id: u64, dir: &Path, source: &Path, pki_dir: &Path) -> MemberProcess {
        let exe = std::env::current_exe().expect("the bench's executable");
        let mut child = Command::new(exe)
            .env(MEMBER_ID_ENV, id.to_string())
            .env(MEMBER_DIR_ENV, dir.join(format!("member{id}")))
            .env(SOURCE_DIR_ENV, source)
            .env(PKI_DIR_ENV, pki_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("member process");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the member's address");
        let addr = (line.trim().strip_prefix("addr "))
            .unwrap_or_else(|| panic!("member {id} said {line:?}"))
            .to_string();
        MemberProcess {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    /// Sends `command`; the member's answer.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("to the member");
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("from the member");
        assert!(n > 0, "the member exited on {command:?}");
        line.trim().to_string()
    }

    fn ask_u64(&mut self, command: &str) -> u64 {
        let answer = self.ask(command);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("{command}: {answer:?}"))
    }

    fn ask_f64(&mut self, command: &str) -> f64 {
        let answer = self.ask(command);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("{command}: {answer:?}"))
    }

    /// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let line = (status.lines())
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        let kib: u64 = line.trim().trim_end_matches(" kB").parse().expect("kB");
        kib * 1024
    }

    /// Nanoseconds its threads have run and have waited to run, summed
    /// (`/proc/PID/task/*/schedstat`).
    fn cpu_ns(&self) -> CpuTime {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).expect("tasks");
        let mut total = CpuTime::default();
        for task in tasks.flatten() {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let mut fields = stat
                .split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0));
            total.running += fields.next().unwrap_or(0);
            total.waiting += fields.next().unwrap_or(0);
        }
        total
    }

    /// Resets `VmHWM` to the current RSS; its RSS now.
    fn reset_peak(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting the peak RSS");
        self.status_bytes("VmRSS")
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's threads' time running and waiting to run, summed.
#[derive(Clone, Copy, Default)]
struct CpuTime {
    running: u64,
    waiting: u64,
}

/// Over a window: cores the process used, and threads waiting for a core
/// on average (a high wait says the machine's cores were taken).
#[derive(Clone, Copy)]
struct CpuUse {
    cores: f64,
    waiting: f64,
}

impl CpuUse {
    fn since(member: &MemberProcess, (start, at): (CpuTime, Instant)) -> CpuUse {
        let now = member.cpu_ns();
        let window = at.elapsed().as_nanos() as f64;
        CpuUse {
            cores: (now.running - start.running) as f64 / window,
            waiting: (now.waiting - start.waiting) as f64 / window,
        }
    }
}

/// `perf record -g` of these processes while it lives, into
/// `$OAR_BENCH_PERF_DIR/NAME.data`, if that variable is set: the profile
/// of one phase of the row.
struct Profile(Option<Child>);

impl Profile {
    fn start(name: &str, members: &[&MemberProcess]) -> Profile {
        let Ok(dir) = std::env::var("OAR_BENCH_PERF_DIR") else {
            return Profile(None);
        };
        let pids: Vec<String> = members.iter().map(|m| m.child.id().to_string()).collect();
        let output = Path::new(&dir).join(format!("{name}.data"));
        let perf = Command::new("perf")
            .args(["record", "-g", "-q", "-p", &pids.join(","), "-o"])
            .arg(output)
            .stdout(Stdio::null())
            .spawn()
            .expect("perf");
        Profile(Some(perf))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(perf) = &mut self.0 {
            // SIGINT: perf writes its data out and exits.
            // SAFETY: a plain system call on a child of this process.
            unsafe { libc::kill(perf.id() as libc::pid_t, libc::SIGINT) };
            let _ = perf.wait();
        }
    }
}

/// What the row measured.
pub(crate) struct FileRow {
    state_bytes: u64,
    raw_bytes_per_sec: f64,
    /// The leader's save by links, before the catch-up.
    link_save: Duration,
    catch_up: Duration,
    copy_bytes_per_sec: Option<f64>,
    /// (before, peak) RSS of the leader (from before its save through the
    /// catch-up) and of the follower (from before its restart).
    leader_rss: (u64, u64),
    follower_rss: (u64, u64),
    /// The leader's streamed save, after the catch-up.
    stream_save: Duration,
    /// (before, peak) RSS of the leader over the streamed save.
    stream_save_rss: (u64, u64),
    writes_before_save: f64,
    writes_during_save: f64,
    /// The leader's CPU in the window before the save and during it.
    cpu_before_save: CpuUse,
    cpu_during_save: CpuUse,
    client_errors: u64,
}

/// A save on `member` (`link` or `stream`); its size and duration.
fn save(member: &mut MemberProcess, how: &str) -> (u64, Duration) {
    let saved = member.ask(&format!("snapshot {how}"));
    let (bytes, secs) = saved.split_once(' ').expect("BYTES SECS");
    let secs = Duration::from_secs_f64(secs.parse().expect("secs"));
    (bytes.parse().expect("bytes"), secs)
}

/// Starts the leader's clients and measures a window; their writes/s
/// and the leader's CPU.
fn start_clients(leader: &mut MemberProcess, clients: usize) -> (f64, CpuUse) {
    leader.ask(&format!("clients {clients}"));
    // The window starts with every client's pipeline full.
    std::thread::sleep(Duration::from_millis(300));
    leader.ask("mark");
    let cpu = (leader.cpu_ns(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let rate = leader.ask_f64("rate");
    (rate, CpuUse::since(leader, cpu))
}

/// Asks each member whom it follows until all agree; returns the
/// leader's position.
fn wait_for_leader(members: &mut [MemberProcess]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<u64> = members.iter_mut().map(|m| m.ask_u64("leader")).collect();
        if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) {
            return leaders[0] as usize - 1;
        }
        assert!(
            Instant::now() < deadline,
            "no leader agreed on: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until `member` has applied `index`.
fn wait_applied(member: &mut MemberProcess, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while member.ask_u64("applied") < index {
        assert!(Instant::now() < deadline, "{index} not applied in 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the row with `mib` MiB of state and `clients` clients. Disk at
/// its fullest holds the state twice (the blobs and the follower's copy,
/// or the blobs and the streamed save), plus the log.
pub(crate) fn run(mib: u64, clients: usize) -> FileRow {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source");
    let names = generate(&source, mib);
    let raw_dir = dir.path().join("raw");
    let (state_bytes, raw) = raw_copy::copy(&source, &names, &raw_dir);
    std::fs::remove_dir_all(&raw_dir).expect("removing the raw copy");
    let raw_bytes_per_sec = state_bytes as f64 / raw.as_secs_f64();

    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).expect("pki dir");
    let written = pki::shared().write_server_files(&pki_dir, [127, 0, 0, 1].into());
    assert_eq!(written, pem_paths(&pki_dir));
    let mut members: Vec<MemberProcess> = (1..=3)
        .map(|id| MemberProcess::spawn(id, dir.path(), &source, &pki_dir))
        .collect();
    let peers: Vec<String> = (members.iter().enumerate())
        .map(|(i, m)| format!("{}={}", i + 1, m.addr))
        .collect();
    for member in &mut members {
        assert_eq!(member.ask(&format!("start {}", peers.join(","))), "ok");
    }
    let (leader, lag) = {
        let l = wait_for_leader(&mut members);
        (l, (l + 1) % 3)
    };
    assert_eq!(members[leader].ask(&format!("fill {}", names.len())), "ok");
    let filled = members[leader].ask_u64("applied");
    members.iter_mut().for_each(|m| wait_applied(m, filled));
    start_clients(&mut members[leader], clients);

    // The catch-up, through a snapshot saved by links.
    members[lag].ask("stop");
    let stopped_at = members[leader].ask_u64("applied");
    wait_applied(&mut members[leader], stopped_at + WRITES_WHILE_DOWN);
    let leader_before = members[leader].reset_peak();
    let (snapshot_bytes, link_save) = save(&mut members[leader], "link");
    let follower_before = members[lag].reset_peak();
    let served_before = members[leader].ask_u64("served");
    let profile = Profile::start("catch-up", &[&members[leader], &members[lag]]);
    let start = Instant::now();
    members[lag].ask("restart");
    let (catch_up, copy_bytes_per_sec) = wait_caught_up(
        &mut members,
        (leader, lag),
        snapshot_bytes,
        served_before,
        start,
    );
    drop(profile);
    let leader_rss = (leader_before, members[leader].status_bytes("VmHWM"));
    let follower_rss = (follower_before, members[lag].status_bytes("VmHWM"));
    let mut client_errors = members[leader].ask_u64("stop-clients");
    // The follower's state equals the leader's, through the snapshot.
    let last = members[leader].ask_u64("applied");
    wait_applied(&mut members[lag], last);
    assert!(
        members[lag].ask_u64("loaded") > stopped_at,
        "no snapshot covering the gap"
    );
    assert_eq!(members[lag].ask("digest"), members[leader].ask("digest"));

    // The writes during a streamed save, against a window just before it
    // in the same configuration; the follower's copy goes first, to make
    // room on the disk for the save.
    members[lag].ask("stop");
    std::fs::remove_dir_all(dir.path().join(format!("member{}", lag + 1))).expect("removing");
    let (writes_before_save, cpu_before_save) = start_clients(&mut members[leader], clients);
    let before = members[leader].reset_peak();
    members[leader].ask("mark");
    let cpu = (members[leader].cpu_ns(), Instant::now());
    let profile = Profile::start("streamed-save", &[&members[leader]]);
    let (_, stream_save) = save(&mut members[leader], "stream");
    drop(profile);
    let writes_during_save = members[leader].ask_f64("rate");
    let cpu_during_save = CpuUse::since(&members[leader], cpu);
    let stream_save_rss = (before, members[leader].status_bytes("VmHWM"));
    client_errors += members[leader].ask_u64("stop-clients");
    FileRow {
        state_bytes,
        raw_bytes_per_sec,
        link_save,
        catch_up,
        copy_bytes_per_sec,
        leader_rss,
        follower_rss,
        stream_save,
        stream_save_rss,
        writes_before_save,
        writes_during_save,
        cpu_before_save,
        cpu_during_save,
        client_errors,
    }
}

/// Polls until the restarted follower has loaded a snapshot and applied
/// what the leader had applied when the load was seen; the catch-up time
/// and the rate the leader's server served the snapshot at (between the
/// first poll that saw bytes served and the one that saw all of them).
fn wait_caught_up(
    members: &mut [MemberProcess],
    (leader, lag): (usize, usize),
    snapshot_bytes: u64,
    served_before: u64,
    start: Instant,
) -> (Duration, Option<f64>) {
    let (mut first, mut last, mut target) = (None, None, None);
    loop {
        let sent = members[leader].ask_u64("served") - served_before;
        let now = Instant::now();
        if sent > 0 && first.is_none() {
            first = Some((now, sent));
        }
        if sent >= snapshot_bytes && last.is_none() {
            last = Some(now);
        }
        if target.is_none() && members[lag].ask_u64("loaded") > 0 {
            target = Some(members[leader].ask_u64("applied"));
        }
        if target.is_some_and(|t| members[lag].ask_u64("applied") >= t) {
            let rate = first
                .zip(last)
                .filter(|((at, _), end)| end > at)
                .map(|((at, sent), end)| (snapshot_bytes - sent) as f64 / (end - at).as_secs_f64());
            return (start.elapsed(), rate);
        }
        let limit = Duration::from_secs(600);
        assert!(
            start.elapsed() < limit,
            "no catch-up in {limit:?}: {sent} bytes served"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pass` or `FAIL`.
fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}

/// Prints the row as a table and its goals with pass or fail.
pub(crate) fn print(row: &FileRow, clients: usize) {
    let mb = |bytes: f64| bytes / MIB as f64;
    let state = mb(row.state_bytes as f64);
    println!(
        "\noar snapshot catch-up, file state: {state:.0} MiB of blob files, members in separate \
         processes, {clients} closed-loop clients on the leader\n"
    );
    println!(
        "| state MB | link save s | catch-up s | copy MB/s | raw loopback MB/s | copy/raw \
         | leader RSS MB before | peak | follower RSS MB before | peak | streamed save s \
         | leader writes/s before the save | during | during/before |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let copy = row
        .copy_bytes_per_sec
        .map_or("-".into(), |r| format!("{:.1}", mb(r)));
    let copy_share = row.copy_bytes_per_sec.map(|r| r / row.raw_bytes_per_sec);
    let share = copy_share.map_or("-".into(), |s| format!("{s:.2}"));
    let rss =
        |(before, peak): (u64, u64)| format!("{:.0} | {:.0}", mb(before as f64), mb(peak as f64));
    let save_share = row.writes_during_save / row.writes_before_save;
    println!(
        "| {state:.0} | {:.2} | {:.2} | {copy} | {:.1} | {share} | {} | {} | {:.2} | {:.0} | {:.0} \
         | {save_share:.2} |",
        row.link_save.as_secs_f64(),
        row.catch_up.as_secs_f64(),
        mb(row.raw_bytes_per_sec),
        rss(row.leader_rss),
        rss(row.follower_rss),
        row.stream_save.as_secs_f64(),
        row.writes_before_save,
        row.writes_during_save,
    );
    let grown = |(before, peak): (u64, u64)| peak.saturating_sub(before);
    println!();
    for (who, pair) in [
        ("leader (save by links, serving)", row.leader_rss),
        ("follower (copy, load)", row.follower_rss),
        ("leader (streamed save)", row.stream_save_rss),
    ] {
        println!(
            "goal: {who}: peak RSS within 256 MiB of before: +{:.0} MiB: {}",
            mb(grown(pair) as f64),
            verdict(grown(pair) <= RSS_GROWTH_MAX)
        );
    }
    println!(
        "goal: copy rate >= 80% of the raw loopback copy: {}: {}",
        copy_share.map_or("unmeasured".into(), |s| format!("{:.0}%", s * 100.0)),
        verdict(copy_share.is_some_and(|s| s >= COPY_SHARE_MIN))
    );
    println!(
        "goal: leader writes/s during the streamed save >= 80% of before: {:.0}%: {}",
        save_share * 100.0,
        verdict(save_share >= SAVE_WRITES_SHARE_MIN)
    );
    let (before, during) = (row.cpu_before_save, row.cpu_during_save);
    println!(
        "leader CPU before the save: {:.2} cores, {:.2} threads waiting for one; during it: \
         {:.2} cores, {:.2} waiting",
        before.cores, before.waiting, during.cores, during.waiting
    );
    if row.client_errors > 0 {
        println!(
            "note: {} client writes failed (leadership changed?)",
            row.client_errors
        );
    }
}
