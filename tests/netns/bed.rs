//! The test bed: one network namespace per server, each with a veth whose
//! other end is a port of one bridge that lives in a namespace of its own.
//! Nothing is created in the root namespace, so the bed's private addresses
//! (10.77.0.0/24) exist only inside it, and deleting the namespaces removes
//! every link, address and qdisc with them.
//!
//! ```text
//!  <prefix>-n0        <prefix>-n1        <prefix>-n2
//!  eth0 10.77.0.10    eth0 10.77.0.11    eth0 10.77.0.12
//!    │ (htb: drop class 1:20 = pfifo limit 0)  │
//!    p0 ──────────────  p1  ─────────────────  p2
//!                <prefix>-br: br0 10.77.0.254 (the test's clients)
//! ```
//!
//! Faults, all without netem (this kernel has none): a node isolated by
//! taking its bridge port down; directed drops by u32 filters on a node's
//! egress that classify packets into an htb class whose queue holds nothing
//! (no `gact`/`police` actions here either); a fractional, deterministic loss
//! by matching low bits of the IP id.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every namespace the bed creates starts with this.
const PREFIX: &str = "oarnet-";

/// Numbers this process's beds and probes apart: tests run in parallel.
static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A bed of `nodes` namespaces on one bridge; removed on drop.
pub struct Bed {
    /// `oarnet-<pid>-<serial>`: unique per bed, and names its owner.
    prefix: String,
    nodes: usize,
}

/// Runs `program args`, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why this machine cannot host a bed (not root, no `ip`, no netns), if so.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need CAP_SYS_ADMIN".into());
    }
    for tool in ["ip", "tc"] {
        if run(tool, &["-V"]).is_err() {
            return Some(format!("`{tool}` (iproute2) not found"));
        }
    }
    // A name of its own: two tests probing at once must not collide (one
    // would fail to create it and skip).
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let probe = format!("{PREFIX}{}-probe{serial}", std::process::id());
    if let Err(e) = run("ip", &["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let _ = run("ip", &["netns", "del", &probe]);
    None
}

/// Removes namespaces left by beds whose process is gone (a test killed
/// before its guards ran), with any process still inside them.
pub fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(owner) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        let alive = owner
            .parse::<u32>()
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            continue;
        }
        for pid in run("ip", &["netns", "pids", name])
            .unwrap_or_default()
            .lines()
        {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = run("ip", &["netns", "del", name]);
    }
}

/// Runs `f` on a thread that entered namespace `ns`. Sockets it creates stay
/// in `ns` after it returns, so the caller may keep using them.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(ns);
                f()
            })
            .join()
            .expect("netns thread")
    })
}

/// Moves the calling thread into namespace `ns` for good (the network
/// namespace is per thread): for threads made to live there.
pub fn enter_netns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a valid fd of a netns file; only this thread moves.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

impl Bed {
    /// Creates the namespaces, the bridge and one veth per node.
    pub fn new(nodes: usize) -> Result<Bed, String> {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let bed = Bed {
            prefix: format!("{PREFIX}{}-{serial}", std::process::id()),
            nodes,
        };
        // From here on, Drop removes whatever part was made.
        bed.build()?;
        Ok(bed)
    }

    fn build(&self) -> Result<(), String> {
        let br = self.bridge_ns();
        run("ip", &["netns", "add", &br])?;
        self.ip(&br, &["link", "set", "lo", "up"])?;
        self.ip(&br, &["link", "add", "br0", "type", "bridge"])?;
        self.ip(&br, &["addr", "add", "10.77.0.254/24", "dev", "br0"])?;
        self.ip(&br, &["link", "set", "br0", "up"])?;
        for i in 0..self.nodes {
            let ns = self.node_ns(i);
            let port = format!("p{i}");
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name",
                    &port, "netns", &br,
                ],
            )?;
            self.ip(&br, &["link", "set", &port, "master", "br0", "up"])?;
            self.ip(&ns, &["link", "set", "lo", "up"])?;
            let addr = format!("{}/24", self.addr(i));
            self.ip(&ns, &["addr", "add", &addr, "dev", "eth0"])?;
            self.ip(&ns, &["link", "set", "eth0", "up"])?;
            // Class 1:10 passes (the default); 1:20 drops everything, its
            // queue being zero packets long. Filters pick what goes to 1:20.
            self.tc(
                &ns,
                &[
                    "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10",
                ],
            )?;
            for class in ["1:10", "1:20"] {
                self.tc(
                    &ns,
                    &[
                        "class", "add", "dev", "eth0", "parent", "1:", "classid", class, "htb",
                        "rate", "10gbit", "quantum", "60000",
                    ],
                )?;
            }
            self.tc(
                &ns,
                &[
                    "qdisc", "add", "dev", "eth0", "parent", "1:20", "handle", "20:", "pfifo",
                    "limit", "0",
                ],
            )?;
        }
        Ok(())
    }

    fn ip(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        run("ip", &[&["-n", ns], args].concat())
    }

    fn tc(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        run("tc", &[&["-n", ns], args].concat())
    }

    /// The namespace of node `i`.
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// The bridge's namespace, where the test's clients live (10.77.0.254).
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 10 + i as u8)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// A command that runs `program` inside node `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.node_ns(i), program]);
        command
    }

    /// Cuts node `i` off: its bridge port goes down (its own link loses
    /// carrier, as when a cable is pulled or a switch port dies).
    pub fn isolate(&self, i: usize) {
        let port = format!("p{i}");
        self.ip(&self.bridge_ns(), &["link", "set", &port, "down"])
            .expect("port down");
    }

    /// Undoes [`Bed::isolate`].
    pub fn rejoin(&self, i: usize) {
        let port = format!("p{i}");
        self.ip(&self.bridge_ns(), &["link", "set", &port, "up"])
            .expect("port up");
    }

    /// Drops every IP packet from node `from` to node `to`, silently (ARP
    /// still passes, as with a firewall rule or a one-way route failure).
    pub fn block(&self, from: usize, to: usize) {
        self.drop_matching(from, to, &[]);
    }

    /// Drops about one in `2^bits` packets from `from` to `to`: those whose
    /// IP id has its low `bits` bits zero (Linux numbers the packets of a
    /// connection consecutively, so this is deterministic, evenly spread
    /// loss: no random drop exists here without netem or gact).
    pub fn lossy(&self, from: usize, to: usize, bits: u32) {
        assert!((1..16).contains(&bits));
        let mask = format!("{:#06x}", (1u32 << bits) - 1);
        self.drop_matching(from, to, &["match", "u16", "0", &mask, "at", "4"]);
    }

    fn drop_matching(&self, from: usize, to: usize, extra: &[&str]) {
        let dst = format!("{}/32", self.addr(to));
        let args = [
            &[
                "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
                "u32", "match", "ip", "dst", &dst,
            ],
            extra,
            &["flowid", "1:20"],
        ]
        .concat();
        self.tc(&self.node_ns(from), &args).expect("drop filter");
    }

    /// Splits the nodes into `side` and the rest, both ways.
    pub fn partition(&self, side: &[usize]) {
        for a in side {
            for b in (0..self.nodes).filter(|b| !side.contains(b)) {
                self.block(*a, b);
                self.block(b, *a);
            }
        }
    }

    /// Removes every drop and brings every port up.
    pub fn heal(&self) {
        for i in 0..self.nodes {
            let _ = self.tc(
                &self.node_ns(i),
                &["filter", "del", "dev", "eth0", "parent", "1:"],
            );
            self.rejoin(i);
        }
    }

    /// Packets node `i` dropped by filter (the drop class's counter).
    pub fn dropped(&self, i: usize) -> u64 {
        let stats = self
            .tc(
                &self.node_ns(i),
                &["-s", "qdisc", "show", "dev", "eth0", "parent", "1:20"],
            )
            .unwrap_or_default();
        stats
            .split("dropped ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `ss -tino` in node `i`'s namespace: each TCP connection's retransmit
    /// timer, backoff count and RTO.
    pub fn sockets(&self, i: usize) -> String {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.node_ns(i),
                "ss",
                "-tino",
                "state",
                "established",
            ],
        )
        .unwrap_or_else(|e| e)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Links, addresses and qdiscs go with their namespaces; processes
        // inside belong to whoever started them and are stopped first.
        for i in 0..self.nodes {
            let _ = run("ip", &["netns", "del", &self.node_ns(i)]);
        }
        let _ = run("ip", &["netns", "del", &self.bridge_ns()]);
    }
}
