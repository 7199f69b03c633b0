//! The kv example as real processes, one per namespace of a [`Bed`], and the
//! client moves the measurements need (find the leader, time a commit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::bed::Bed;
use super::resp::{Reply, call};

/// Port of the Raft transport on each node's address.
const RAFT_PORT: u16 = 7000;
/// Port of the Redis protocol on each node's address.
const CLIENT_PORT: u16 = 6379;

/// The kv example binary. `cargo test` builds it next to the test binaries;
/// a run of this test alone (`cargo test --test real_network`) does not, so
/// a binary older than the sources is rebuilt here first.
pub fn kv_binary() -> Result<PathBuf, String> {
    let mut dir = std::env::current_exe().map_err(|e| e.to_string())?;
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("examples").join("kv");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    if built.is_none_or(|built| built < newest_source()) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "kv", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()
            .map_err(|e| format!("cargo build --example kv: {e}"))?;
        if !status.success() || !binary.exists() {
            return Err(format!("cargo build --example kv did not make {binary:?}"));
        }
    }
    Ok(binary)
}

/// When the newest file the kv binary is built from changed.
fn newest_source() -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(modified);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = SystemTime::UNIX_EPOCH;
    for part in [
        "src",
        "examples/kv",
        "proto",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        walk(&root.join(part), &mut newest);
    }
    newest
}

/// Three (or more) kv servers in the bed's namespaces; killed on drop.
pub struct KvCluster<'bed> {
    bed: &'bed Bed,
    children: Vec<Child>,
    paused: Vec<bool>,
    dir: tempfile::TempDir,
}

impl<'bed> KvCluster<'bed> {
    /// Starts one server per node of `bed`; logs go to `<dir>/n<i>.log`.
    pub fn start(bed: &'bed Bed, binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers: Vec<String> = (0..bed.nodes())
            .map(|i| {
                let addr = bed.addr(i);
                format!("{}={addr}:{RAFT_PORT}/{addr}:{CLIENT_PORT}", i + 1)
            })
            .collect();
        let peers = peers.join(",");
        let mut cluster = KvCluster {
            bed,
            children: Vec::new(),
            paused: vec![false; bed.nodes()],
            dir,
        };
        for i in 0..bed.nodes() {
            let log = std::fs::File::create(cluster.dir.path().join(format!("n{i}.log")))
                .expect("log file");
            // Each server its own certificate for its own IP, as on
            // separate machines.
            let certs = cluster.dir.path().join(format!("certs{i}"));
            std::fs::create_dir_all(&certs).expect("certs dir");
            let [ca, cert, key] =
                crate::pki::shared().write_server_files(&certs, bed.addr(i).into());
            let mut command = bed.command(i, binary.to_str().expect("utf-8 path"));
            command
                .args(["--id", &(i + 1).to_string(), "--peers", &peers])
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("n{i}")))
                .arg("--ca")
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .stdout(Stdio::null())
                .stderr(log);
            // `ip netns exec` execs the server, so the child's pid is the
            // server's. A test killed outright takes its servers along.
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            cluster
                .children
                .push(command.spawn().expect("kv server starts"));
        }
        cluster
    }

    /// Node `i`'s Redis-protocol address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.bed.addr(i), CLIENT_PORT))
    }

    fn signal(&mut self, i: usize, signal: i32) {
        let pid = self.children[i].id() as i32;
        // SAFETY: kill has no memory preconditions; the child is not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        self.paused[i] = signal == libc::SIGSTOP;
    }

    /// Freezes node `i`'s process (SIGSTOP): its sockets stay open and its
    /// kernel still acknowledges, but nothing reads or answers.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Undoes [`KvCluster::pause`].
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    /// SETs `key` through node `i` once; `timeout` bounds connect and reply.
    pub fn set(&self, i: usize, key: &str, value: &str, timeout: Duration) -> Option<Reply> {
        let args: [&[u8]; 3] = [b"SET", key.as_bytes(), value.as_bytes()];
        call(&self.bed.bridge_ns(), self.client_addr(i), &args, timeout).ok()
    }

    /// Keeps SETting `key` until one commits, starting at node `first` and
    /// following redirections, skipping paused nodes. Returns the time it
    /// took and the node that answered, or `None` after `give_up`.
    pub fn first_commit(
        &self,
        first: usize,
        key: &str,
        give_up: Duration,
    ) -> Option<(Duration, usize)> {
        let start = Instant::now();
        let mut target = first;
        let mut attempt = 0u64;
        while start.elapsed() < give_up {
            attempt += 1;
            // A stuck attempt is abandoned after a second: a later one sent
            // to the same leader commits in the same round as it would.
            let reply = self.set(target, key, &attempt.to_string(), Duration::from_secs(1));
            match reply {
                Some(Reply::Simple(ok)) if ok == "OK" => return Some((start.elapsed(), target)),
                Some(Reply::Error(e)) if e.starts_with("MOVED") => {
                    let leader = e.rsplit(' ').next().and_then(|a| a.parse().ok());
                    match (0..self.paused.len()).find(|&i| Some(self.client_addr(i)) == leader) {
                        Some(i) if !self.paused[i] => target = i,
                        _ => target = self.next_running(target),
                    }
                }
                _ => {
                    target = self.next_running(target);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        None
    }

    fn next_running(&self, after: usize) -> usize {
        let n = self.paused.len();
        (1..=n)
            .map(|k| (after + k) % n)
            .find(|&i| !self.paused[i])
            .expect("a running node")
    }

    /// Waits for a leader that commits a write; returns it.
    pub fn wait_for_leader(&self, give_up: Duration) -> usize {
        let (_, leader) = self.first_commit(0, "warmup", give_up).unwrap_or_else(|| {
            panic!(
                "no leader within {give_up:?}; logs in {:?}",
                self.dir.path()
            )
        });
        leader
    }

    /// The tail of node `i`'s stderr.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for KvCluster<'_> {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
