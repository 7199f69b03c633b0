//! The file-state row's yardstick: the same files copied disk to disk over
//! plain TCP on 127.0.0.1 by two threads, 1 MiB at a time, each file
//! fsynced at its end as the copier does; no TLS, no checksums, no
//! requests.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::MIB;

/// Copies `files` (in `from`) into `to` over loopback TCP; returns the
/// bytes copied and how long the copy took, from the connection to the
/// last file's fsync.
pub(crate) fn copy(from: &Path, files: &[String], to: &Path) -> (u64, Duration) {
    std::fs::create_dir_all(to).expect("raw copy directory");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sources: Vec<PathBuf> = files.iter().map(|f| from.join(f)).collect();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut stream = BufWriter::with_capacity(MIB, TcpStream::connect(addr).expect("connect"));
        let mut buf = vec![0; MIB];
        for path in sources {
            let mut file = std::fs::File::open(&path).expect("source file");
            let len = file.metadata().expect("metadata").len();
            stream.write_all(&len.to_be_bytes()).expect("send");
            loop {
                let n = file.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).expect("send");
            }
        }
        stream.flush().expect("send");
    });
    let (socket, _) = listener.accept().expect("accept");
    let mut stream = BufReader::with_capacity(MIB, socket);
    let mut buf = vec![0; MIB];
    let mut total = 0;
    for name in files {
        let mut len = [0; 8];
        stream.read_exact(&mut len).expect("receive");
        let len = u64::from_be_bytes(len);
        let file = std::fs::File::create(to.join(name)).expect("target file");
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(MIB as u64) as usize;
            stream.read_exact(&mut buf[..n]).expect("receive");
            file.write_all_at(&buf[..n], offset).expect("write");
            offset += n as u64;
        }
        file.sync_all().expect("fsync");
        total += len;
    }
    let elapsed = start.elapsed();
    sender.join().expect("sender");
    (total, elapsed)
}
