//! The example key-value service, as real processes on 127.0.0.1, spoken
//! to with the Redis protocol: a raw RESP client, then the stock
//! `redis-cli` (Debian's redis-tools; CI installs it). Hostile clients
//! (oversized commands) are refused while the others are served.

#[path = "runtime/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The kv example binary, which `cargo test` builds next to the tests.
fn kv_binary() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join("kv")
}

/// `n` distinct ports free at the time of asking: all are held until all
/// are chosen, so that the kernel cannot hand out one twice.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// Held by each test while its cluster runs: ports are chosen before the
/// processes bind them, and another test's cluster could take them between.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Cluster {
    _one_at_a_time: MutexGuard<'static, ()>,
    children: Vec<Child>,
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (i, child) in self.children.iter_mut().enumerate() {
            let _ = child.kill();
            let status = child.wait();
            // A failed test shows why a node was not there to answer.
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")));
                eprintln!("kv node {}: {status:?}\n{}", i + 1, log.unwrap_or_default());
            }
        }
    }
}

/// Starts `size` kv processes forming one group.
fn start_cluster(size: usize) -> Cluster {
    start_cluster_with(size, None)
}

/// [`start_cluster`], each process limited to `descriptors_max` open files.
fn start_cluster_with(size: usize, descriptors_max: Option<u64>) -> Cluster {
    start_cluster_args(size, descriptors_max, &[])
}

/// [`start_cluster_with`], each process given `extra` arguments too.
fn start_cluster_args(size: usize, descriptors_max: Option<u64>, extra: &[&str]) -> Cluster {
    // A test that failed while holding the lock poisons it; the others
    // still run.
    let one_at_a_time = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2 * size);
    let (raft, client) = ports.split_at(size);
    let peers: Vec<String> = (0..size)
        .map(|i| format!("{}=127.0.0.1:{}/127.0.0.1:{}", i + 1, raft[i], client[i]))
        .collect();
    let peers = peers.join(",");
    // Authenticated, as the README's quick start runs it.
    let [ca, cert, key] =
        pki::shared().write_server_files(dir.path(), "127.0.0.1".parse().unwrap());
    let children = (0..size)
        .map(|i| {
            let mut command = match descriptors_max {
                Some(max) => {
                    let mut prlimit = Command::new("prlimit");
                    prlimit
                        .arg(format!("--nofile={max}:{max}"))
                        .arg(kv_binary());
                    prlimit
                }
                None => Command::new(kv_binary()),
            };
            command
                .args(["--id", &(i + 1).to_string(), "--peers", &peers])
                .arg("--data-dir")
                .arg(dir.path().join(format!("n{i}")))
                .arg("--ca")
                .arg(&ca)
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("n{i}.log"))).unwrap())
                .spawn()
                .expect("kv example starts (built by cargo test)")
        })
        .collect();
    Cluster {
        _one_at_a_time: one_at_a_time,
        children,
        client_ports: client.to_vec(),
        dir,
    }
}

/// Sends one RESP command on a new connection and reads its reply.
fn command(port: u16, args: &[&str]) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    request(&mut BufReader::new(stream), args)
}

/// Sends one RESP command and reads one reply line (plus a bulk body).
fn request(reader: &mut BufReader<TcpStream>, args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
    }
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    if let Some(len) = line
        .strip_prefix('$')
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body).unwrap();
        return String::from_utf8_lossy(&body[..len]).to_string();
    }
    line.trim_end().to_string()
}

/// Whether the stock `redis-cli` is here; CI must have it.
fn redis_cli_installed() -> bool {
    if Command::new("redis-cli").arg("--version").output().is_ok() {
        return true;
    }
    let message =
        "redis-cli not installed (apt-get install -y redis-tools): stock-client part not run";
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("{message}");
    false
}

/// Waits for a leader; returns the position of its client port.
fn wait_for_leader(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for (i, &port) in cluster.client_ports.iter().enumerate() {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && command(port, &["SET", "probe", "1"]) == "+OK"
            {
                return i;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no leader accepted a write within 20 s");
}

#[test]
fn three_kv_processes_serve_the_redis_protocol() {
    let cluster = start_cluster(3);
    let leader = wait_for_leader(&cluster);
    let port = cluster.client_ports[leader];
    assert_eq!(command(port, &["PING"]), "+PONG");
    assert_eq!(command(port, &["SET", "greeting", "hello"]), "+OK");
    assert_eq!(command(port, &["GET", "greeting"]), "hello");
    assert_eq!(command(port, &["INCR", "n"]), ":1");
    assert_eq!(command(port, &["INCR", "n"]), ":2");
    assert_eq!(command(port, &["DEL", "n", "missing"]), ":1");
    assert_eq!(command(port, &["GET", "missing"]), "$-1");
    assert!(command(port, &["NOPE"]).starts_with("-ERR unknown command"));
    // A follower redirects to the leader's client address.
    let follower = cluster.client_ports[(leader + 1) % 3];
    let moved = command(follower, &["GET", "greeting"]);
    assert_eq!(moved, format!("-MOVED 0 127.0.0.1:{port}"));

    // The stock client, following the redirection in cluster mode.
    if !redis_cli_installed() {
        return;
    }
    let run = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &follower.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run(&["set", "stock", "client"]), "OK");
    assert_eq!(run(&["get", "stock"]), "client");
    assert_eq!(
        run(&["mget", "stock", "greeting", "absent"]),
        "client\nhello"
    );
}

/// GET and MGET through each read policy, on the leader and (with
/// `--follower-reads`) on a follower, right after a write completed at the
/// leader: the follower's answer includes it. Through the log, reads stay
/// on the leader.
#[test]
fn reads_are_served_through_each_policy_and_on_followers() {
    for policy in ["read-index", "lease", "log"] {
        let cluster = start_cluster_args(3, None, &["--read-policy", policy, "--follower-reads"]);
        let leader = wait_for_leader(&cluster);
        let port = cluster.client_ports[leader];
        let follower = cluster.client_ports[(leader + 1) % 3];
        for i in 0..20 {
            let value = format!("v{i}");
            assert_eq!(command(port, &["SET", "k", &value]), "+OK");
            assert_eq!(
                command(port, &["GET", "k"]),
                value,
                "{policy} on the leader"
            );
            let on_follower = command(follower, &["GET", "k"]);
            if policy == "log" {
                assert_eq!(on_follower, format!("-MOVED 0 127.0.0.1:{port}"));
            } else {
                assert_eq!(on_follower, value, "{policy} on a follower");
            }
        }
        // MGET's reply is an array: its header line is what `command` reads.
        assert_eq!(command(port, &["MGET", "k", "absent"]), "*2", "{policy}");
        if policy != "log" {
            assert_eq!(
                command(follower, &["MGET", "k", "absent"]),
                "*2",
                "{policy}"
            );
        }
    }
}

/// A value over the 4 MiB cap on a whole command (and under the parser's
/// old 64 MiB cap on one bulk string, which let a 64 MiB SET through to stop
/// the leader's group at the Raft log's record bound).
const OVERSIZED_VALUE_BYTES: usize = 5 << 20;

#[test]
fn an_oversized_command_is_refused_and_closed_while_others_are_served() {
    let cluster = start_cluster(1);
    let port = cluster.client_ports[wait_for_leader(&cluster)];
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        BufReader::new(stream)
    };
    let mut other = connect();
    assert_eq!(request(&mut other, &["SET", "small", "1"]), "+OK");

    let mut oversized = connect();
    let mut set =
        format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${OVERSIZED_VALUE_BYTES}\r\n").into_bytes();
    set.resize(set.len() + OVERSIZED_VALUE_BYTES, b'v');
    set.extend_from_slice(b"\r\n");
    // The server may stop reading before the value is all sent.
    let _ = oversized.get_mut().write_all(&set);
    let mut reply = String::new();
    oversized.read_line(&mut reply).unwrap();
    assert_eq!(reply, "-ERR Protocol error: command too long\r\n");
    assert_eq!(
        oversized.read(&mut [0; 16]).unwrap(),
        0,
        "closed after the error"
    );

    assert_eq!(
        request(&mut other, &["GET", "small"]),
        "1",
        "others still served"
    );
    assert_eq!(
        request(&mut other, &["GET", "big"]),
        "$-1",
        "nothing stored"
    );
    assert_eq!(
        command(port, &["PING"]),
        "+PONG",
        "new clients still served"
    );

    // The attack as it was made: the stock client sending the value from stdin.
    if !redis_cli_installed() {
        return;
    }
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-x", "set", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // redis-cli may close its input early once the server answered.
    let _ = cli
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![b'v'; OVERSIZED_VALUE_BYTES]);
    let out = cli.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("ERR Protocol error: command too long"),
        "redis-cli printed {out:?}"
    );
    assert_eq!(command(port, &["GET", "small"]), "1", "still served");
}

/// CPU time (user + system) a process has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Finding 6 of the security review: strangers holding connections ran the
/// process out of file descriptors, the accept loop spun, the next segment
/// roll failed and the group stopped. With 256 descriptors, 600 held
/// connections to the Raft port now leave the server writing, its CPU idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_do_not_exhaust_the_descriptors_a_node_needs() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let cluster = start_cluster_with(1, Some(256));
    let leader = wait_for_leader(&cluster);
    let raft_port = {
        let log = std::fs::read_to_string(cluster.dir.path().join("n0.log")).unwrap();
        let at = log
            .find("raft on 127.0.0.1:")
            .expect("the node logs its address");
        let digits: String = log[at + 18..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u16>().unwrap()
    };
    let pid = cluster.children[0].id();
    let mut held = Vec::new();
    for source in 2..12u8 {
        for _ in 0..60 {
            if let Some(stream) = connect_from(source, raft_port).await {
                held.push(stream);
            }
        }
    }
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - before;
    // 100 ticks a second: a spinning accept loop burns ~200 here.
    assert!(
        spent < 60,
        "{spent} ticks of CPU in 2 s while connections are held"
    );
    for k in 0..20 {
        let key = format!("k{k}");
        assert_eq!(
            command(
                cluster.client_ports[leader],
                &["SET", &key, &"v".repeat(1000)]
            ),
            "+OK"
        );
    }
    drop(held);
    assert_eq!(
        command(cluster.client_ports[leader], &["GET", "k19"]),
        "v".repeat(1000)
    );
}

/// A TCP connection to 127.0.0.1:`port` from 127.0.0.`source`, if the
/// server accepts it.
async fn connect_from(source: u8, port: u16) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))
        .ok()?;
    let connect = socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    tokio::time::timeout(Duration::from_millis(500), connect)
        .await
        .ok()?
        .ok()
}
