//! How long a TCP connection may go without progress before the kernel
//! drops it. Without this, a partition's dead path is retried with
//! exponential backoff for many minutes, and a healed cluster waits for the
//! kernel's next retransmission (measured on the real-network bed: 25 s to
//! the first commit after a 30 s partition, 48 s after 60 s).

use std::time::Duration;

use tokio::net::TcpStream;

/// Has the kernel drop `stream` once it makes no progress for `stall`: sent
/// data unacknowledged (`TCP_USER_TIMEOUT`) or, when idle, keepalive probes
/// unanswered. Otherwise a dead path is retried with exponential backoff for
/// many minutes. Best effort: an option the system refuses is skipped.
#[cfg(all(not(madsim), target_os = "linux"))]
pub(crate) fn watch_progress(stream: &TcpStream, stall: Duration) {
    use std::os::fd::AsRawFd;
    let millis = libc::c_int::try_from(stall.as_millis()).unwrap_or(libc::c_int::MAX);
    let secs = libc::c_int::try_from(stall.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    let settings = [
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 1),
    ];
    for (level, name, value) in settings {
        // SAFETY: a valid socket descriptor, and a pointer to a c_int with
        // its size, as these options expect.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, name, "socket option refused");
        }
    }
}

/// The simulator's streams have no socket options (and hold data through a
/// partition, delivering it at the heal); elsewhere only `write_timeout`
/// bounds a stall.
#[cfg(not(all(not(madsim), target_os = "linux")))]
pub(crate) fn watch_progress(_stream: &TcpStream, _stall: Duration) {}
