//! The kv example's client side (`examples/kv/listener.rs` and
//! `connection.rs`) in process, over loopback TCP, with a stand-in for the
//! store: accept errors are waited out, never fatal; the connection cap,
//! the idle timeout and the bound on pending replies hold.

#[allow(dead_code, reason = "the example uses what the tests do not")]
#[path = "../examples/kv/connection.rs"]
mod connection;
#[allow(dead_code, reason = "the example uses what the tests do not")]
#[path = "../examples/kv/listener.rs"]
mod listener;
#[allow(dead_code, reason = "the example uses what the tests do not")]
#[path = "../examples/kv/resp.rs"]
mod resp;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connection::{REPLIES_PENDING_BYTES_MAX, Service, serve_connection};
use listener::{AcceptBackoff, Acceptor, CLIENTS_MAX_REPLY, run_accept_loop};
use tokio::net::{TcpListener, TcpStream};

/// Answers every command with a simple string of `reply_bytes` bytes, and
/// records the most reply bytes ever pending when a command starts.
#[derive(Clone, Default)]
struct StandInService {
    /// The length of each reply's text.
    reply_bytes: usize,
    /// The most bytes found in `out` when a command started.
    pending_max: Arc<AtomicUsize>,
}

impl Service for StandInService {
    async fn execute(&self, _command: resp::Command, out: &mut Vec<u8>) {
        self.pending_max.fetch_max(out.len(), Ordering::Relaxed);
        out.push(b'+');
        out.resize(out.len() + self.reply_bytes.max(1), b'x');
        out.extend_from_slice(b"\r\n");
    }
}

/// Serves `service` on a fresh loopback port through the accept loop.
async fn start_server(
    clients_max: usize,
    service: StandInService,
    idle_timeout: Option<Duration>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(run_accept_loop(listener, clients_max, move |stream| {
        serve_connection(stream, service.clone(), idle_timeout)
    }));
    addr
}

/// A blocking client connection with a read timeout.
fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends PING; returns the first line of the reply, or the read's error.
fn ping(stream: &mut std::net::TcpStream) -> io::Result<String> {
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    read_until_end_or_line(stream)
}

/// Reads up to the first line feed or the end of input.
fn read_until_end_or_line(stream: &mut std::net::TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0];
    while stream.read(&mut byte)? == 1 {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[test]
fn accept_backoff_doubles_from_10_ms_to_1_s_and_resets_on_success() {
    let mut backoff = AcceptBackoff::new();
    let pauses: Vec<u64> = (0..9)
        .map(|_| backoff.on_failure().as_millis() as u64)
        .collect();
    assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    backoff.on_success();
    assert_eq!(backoff.on_failure(), Duration::from_millis(10));
}

/// A listener whose first `failures` accepts fail as a process out of file
/// descriptors sees it; records when each accept was asked for.
struct FailingAcceptor {
    listener: TcpListener,
    failures: usize,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Acceptor for FailingAcceptor {
    async fn accept(&mut self) -> io::Result<TcpStream> {
        self.calls.lock().unwrap().push(Instant::now());
        if self.failures > 0 {
            self.failures -= 1;
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        TcpListener::accept(&self.listener)
            .await
            .map(|(stream, _)| stream)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_are_waited_out_with_backoff_never_fatal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let acceptor = FailingAcceptor {
        listener,
        failures: 4,
        calls: calls.clone(),
    };
    let service = StandInService::default();
    tokio::spawn(run_accept_loop(acceptor, 8, move |stream| {
        serve_connection(stream, service.clone(), None)
    }));
    let reply = tokio::task::spawn_blocking(move || ping(&mut connect(addr)))
        .await
        .unwrap();
    assert_eq!(reply.unwrap(), "+x\r\n", "served after four failed accepts");
    let calls = calls.lock().unwrap().clone();
    assert!(calls.len() >= 5, "{} accepts", calls.len());
    for (i, pair) in calls.windows(2).take(4).enumerate() {
        let pause = pair[1] - pair[0];
        let least = AcceptBackoff::FIRST * (1 << i);
        assert!(pause >= least, "pause {i} was {pause:?}, under {least:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once_and_slots_come_back() {
    let addr = start_server(2, StandInService::default(), None).await;
    tokio::task::spawn_blocking(move || {
        let mut first = connect(addr);
        let mut second = connect(addr);
        assert_eq!(ping(&mut first).unwrap(), "+x\r\n");
        assert_eq!(ping(&mut second).unwrap(), "+x\r\n");
        let mut third = connect(addr);
        let refusal = read_until_end_or_line(&mut third).unwrap();
        assert_eq!(refusal.as_bytes(), CLIENTS_MAX_REPLY);
        assert_eq!(
            third.read(&mut [0; 16]).unwrap(),
            0,
            "closed after the refusal"
        );
        assert_eq!(
            ping(&mut second).unwrap(),
            "+x\r\n",
            "the others still served"
        );
        drop(first);
        // The slot comes back once the server sees the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut fourth = connect(addr);
            match ping(&mut fourth) {
                Ok(reply) if reply == "+x\r\n" => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("a freed slot was not reused: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_an_active_one_is_not() {
    let idle_timeout = Duration::from_millis(300);
    let addr = start_server(8, StandInService::default(), Some(idle_timeout)).await;
    tokio::task::spawn_blocking(move || {
        let mut idle = connect(addr);
        let mut active = connect(addr);
        let start = Instant::now();
        for _ in 0..6 {
            std::thread::sleep(idle_timeout / 3);
            assert_eq!(ping(&mut active).unwrap(), "+x\r\n");
        }
        assert_eq!(
            idle.read(&mut [0; 16]).unwrap(),
            0,
            "the idle one was closed"
        );
        assert!(start.elapsed() < Duration::from_secs(4));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_are_written_out_as_they_reach_the_bound() {
    let service = StandInService {
        reply_bytes: 1000,
        ..StandInService::default()
    };
    let pending_max = service.pending_max.clone();
    let addr = start_server(8, service, None).await;
    let commands = 2000;
    tokio::task::spawn_blocking(move || {
        let mut client = connect(addr);
        let pipeline = b"*1\r\n$4\r\nPING\r\n".repeat(commands);
        let mut writer = client.try_clone().unwrap();
        // Sent from another thread: the server stalls on replies unread.
        let sender = std::thread::spawn(move || writer.write_all(&pipeline).unwrap());
        let mut replies = vec![0; commands * 1003];
        client.read_exact(&mut replies).unwrap();
        sender.join().unwrap();
    })
    .await
    .unwrap();
    let pending_max = pending_max.load(Ordering::Relaxed);
    assert!(
        pending_max < REPLIES_PENDING_BYTES_MAX,
        "{pending_max} reply bytes were pending"
    );
}
