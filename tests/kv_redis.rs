//! The example key-value service, as three real processes on 127.0.0.1,
//! spoken to with the Redis protocol: a raw RESP client, then the stock
//! `redis-cli` (Debian's redis-tools; CI installs it).

#[path = "runtime/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let raft: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}/127.0.0.1:{}", i + 1, raft[i], client[i]))
        .collect();
    let peers = peers.join(",");
    // Authenticated, as the README's quick start runs it.
    let [ca, cert, key] =
        pki::shared().write_server_files(dir.path(), "127.0.0.1".parse().unwrap());
    let children = (0..3)
        .map(|i| {
            Command::new(kv_binary())
                .args(["--id", &(i + 1).to_string(), "--peers", &peers])
                .arg("--data-dir")
                .arg(dir.path().join(format!("n{i}")))
                .arg("--ca")
                .arg(&ca)
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kv example starts (built by cargo test)")
        })
        .collect();
    Cluster {
        children,
        client_ports: client,
        _dir: dir,
    }
}

/// Sends one RESP command and reads one reply line (plus a bulk body).
fn command(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
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
    let cluster = start_cluster();
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
    let redis_cli = Command::new("redis-cli").arg("--version").output();
    if redis_cli.is_err() {
        let message =
            "redis-cli not installed (apt-get install -y redis-tools): stock-client part not run";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("{message}");
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
