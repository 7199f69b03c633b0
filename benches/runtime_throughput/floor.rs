//! The physical floor of one replicated write on this machine, measured in
//! the same run as the tcp+disk rows: one 4 KiB `write` + `fdatasync` and
//! one loopback TCP round trip (p50 of each). A single client's write can
//! not beat their sum (the leader's sync overlaps the followers', and one
//! round trip reaches them).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// p50 of 4 KiB positional writes at one offset, each followed by
/// `fdatasync`, in a preallocated file under `dir`.
pub(crate) fn fdatasync_p50(dir: &std::path::Path, samples: usize) -> Duration {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("floor"))
        .expect("floor file");
    let block = [0x5a_u8; 4096];
    file.write_all_at(&block, 0).expect("write");
    file.sync_all().expect("sync");
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all_at(&block, 0).expect("write");
        file.sync_data().expect("fdatasync");
        times.push(start.elapsed());
    }
    p50(times)
}

/// p50 of 4 KiB writes each appended to a file that grows with them, each
/// followed by `fdatasync`: what a log pays per batch when its segment is
/// not preallocated (every sync also commits the new blocks and size).
pub(crate) fn growing_fdatasync_p50(dir: &std::path::Path, samples: usize) -> Duration {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("floor-growing"))
        .expect("floor file");
    file.sync_all().expect("sync");
    let block = [0x5a_u8; 4096];
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        file.write_all_at(&block, i as u64 * 4096).expect("write");
        file.sync_data().expect("fdatasync");
        times.push(start.elapsed());
    }
    p50(times)
}

/// p50 of a 16-byte ping-pong over loopback TCP (no delay on both ends).
pub(crate) fn loopback_rtt_p50(samples: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = [0_u8; 16];
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = [0_u8; 16];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        stream.write_all(&buf).expect("ping");
        stream.read_exact(&mut buf).expect("pong");
        times.push(start.elapsed());
    }
    drop(stream);
    echo.join().expect("echo thread");
    p50(times)
}

fn p50(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
