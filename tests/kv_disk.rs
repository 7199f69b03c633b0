//! The example key-value service with `--store disk`, as real processes on
//! 127.0.0.1: a member killed and restarted resumes from its own files
//! (no snapshot loaded, no entry it held applied again) with its data, and
//! a member that fell behind the leader's compacted log catches up from a
//! snapshot of the leader's store (its segments).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kv example binary, which `cargo test` builds next to the tests.
fn kv_binary() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join("kv")
}

/// Three kv processes with `--store disk`, snapshotting every 20 entries
/// and keeping 5 entries of log behind a snapshot.
struct Cluster {
    children: Vec<Option<Child>>,
    peers: String,
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
    /// How many times each node was started (its log file's suffix).
    starts: Vec<usize>,
}

impl Cluster {
    fn start() -> Cluster {
        let held: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(held);
        let peers: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "{}=127.0.0.1:{}/127.0.0.1:{}",
                    i + 1,
                    ports[i],
                    ports[3 + i]
                )
            })
            .collect();
        let mut cluster = Cluster {
            children: vec![None, None, None],
            peers: peers.join(","),
            client_ports: ports[3..].to_vec(),
            dir: tempfile::tempdir().unwrap(),
            starts: vec![0; 3],
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.{}.log", self.starts[i]))
    }

    fn spawn(&mut self, i: usize) {
        self.starts[i] += 1;
        let child = Command::new(kv_binary())
            .args(["--id", &(i + 1).to_string(), "--peers", &self.peers])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("n{i}")))
            .args(["--insecure", "--store", "disk", "--follower-reads"])
            .args(["--snapshot-interval", "20", "--compaction-margin", "5"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log_path(i)).unwrap())
            .spawn()
            .expect("kv example starts (built by cargo test)");
        self.children[i] = Some(child);
    }

    /// Kills node `i` (SIGKILL: no shutdown path runs).
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// This run's stderr of node `i`.
    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
            if std::thread::panicking() {
                for start in 1..=self.starts[i] {
                    let path = self.dir.path().join(format!("n{i}.{start}.log"));
                    let log = std::fs::read_to_string(path).unwrap_or_default();
                    eprintln!("kv node {} (start {start}):\n{log}", i + 1);
                }
            }
        }
    }
}

/// Sends one RESP command on a new connection; returns its reply line (or
/// a bulk string's body). `None` if the node does not answer.
fn command(port: u16, args: &[&str]) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
    }
    reader.get_mut().write_all(request.as_bytes()).ok()?;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if let Some(len) = line
        .strip_prefix('$')
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body).ok()?;
        return Some(String::from_utf8_lossy(&body[..len]).to_string());
    }
    Some(line.trim_end().to_string())
}

/// Waits until `check` holds, for up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within 20 s: {what}");
}

/// The position of a node accepting writes.
fn leader(cluster: &Cluster, alive: &[usize]) -> usize {
    let mut found = None;
    eventually("a leader accepts a write", || {
        found = alive.iter().copied().find(|&i| {
            command(cluster.client_ports[i], &["SET", "probe", "1"]).as_deref() == Some("+OK")
        });
        found.is_some()
    });
    found.unwrap()
}

/// Writes `k{i}` = `v{i}` for each `i` in `range` at the leader.
fn write(cluster: &Cluster, leader: usize, range: std::ops::Range<u32>) {
    for i in range {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let reply = command(cluster.client_ports[leader], &["SET", &key, &value]);
        assert_eq!(reply.as_deref(), Some("+OK"), "SET {key}");
    }
}

/// Whether node `i` serves `k{n}` = `v{n}` for each `n` in `range`.
fn serves(cluster: &Cluster, i: usize, range: std::ops::Range<u32>) -> bool {
    range.into_iter().all(|n| {
        command(cluster.client_ports[i], &["GET", &format!("k{n}")]) == Some(format!("v{n}"))
    })
}

/// The number after `prefix` on the last line of `log` holding it (an
/// entry id prints as `term.index` or similar: the last number is taken).
fn index_after(log: &str, prefix: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(prefix))?;
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let digits: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    digits.get(1).or(digits.first()).copied()
}

fn store_dir(cluster: &Cluster, i: usize) -> PathBuf {
    cluster.dir.path().join(format!("n{i}")).join("group_1_kv")
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0)
}

#[test]
fn a_disk_store_resumes_from_its_files_and_a_lagging_member_installs_its_snapshot() {
    let mut cluster = Cluster::start();
    let lead = leader(&cluster, &[0, 1, 2]);
    write(&cluster, lead, 0..50);
    let follower = (lead + 1) % 3;
    eventually("the follower applied all", || {
        serves(&cluster, follower, 0..50)
    });
    assert!(
        segments(&store_dir(&cluster, follower)) > 1,
        "snapshots sealed segments"
    );

    // Killed and restarted: it resumes from its files.
    cluster.kill(follower);
    cluster.spawn(follower);
    eventually("the restarted store reports where it stands", || {
        cluster.log(follower).contains("applied through")
    });
    write(&cluster, lead, 50..55);
    eventually("the restarted follower serves old and new", || {
        serves(&cluster, follower, 0..55)
    });
    let log = cluster.log(follower);
    let resumed = index_after(&log, "applied through").expect("a durable point");
    let first = index_after(&log, "first apply since start: entry").expect("an apply");
    assert!(
        first > resumed,
        "nothing it held is applied again (resumed at {resumed}, first apply {first}):\n{log}"
    );
    assert!(
        !log.contains("loaded a snapshot"),
        "no snapshot loaded:\n{log}"
    );

    // A member down while the leader snapshots and compacts its log past
    // it catches up from the leader's snapshot, which replaces its store.
    let lagging = (lead + 2) % 3;
    cluster.kill(lagging);
    write(&cluster, lead, 55..120);
    cluster.spawn(lagging);
    eventually("the lagging member catches up", || {
        serves(&cluster, lagging, 0..120)
    });
    let log = cluster.log(lagging);
    assert!(
        log.contains("loaded a snapshot"),
        "it installed a snapshot:\n{log}"
    );
}
