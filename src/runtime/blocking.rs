//! Where the runtime runs blocking storage work (fsync, snapshot files).
//!
//! In production, on tokio's blocking pool, so that a slow disk never
//! stalls a runtime worker that other groups and the transport need.
//! Under madsim, which has no threads, inline: the simulated disk answers at
//! once and the schedule stays deterministic.

/// Runs `job` off the runtime's workers and returns its result; `Err` if it
/// panicked.
pub(crate) async fn run_blocking<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| format!("blocking storage call failed: {e}"))
    }
    #[cfg(madsim)]
    {
        Ok(job())
    }
}

/// Runs `job` off the runtime's workers, on a thread of its own at a lower
/// CPU priority (nice +10 on Linux), and returns its result; `Err` if it
/// panicked. For long background work (a snapshot save streaming
/// gigabytes): on a busy machine it then takes the cores the runtime's
/// workers leave, instead of an equal share of them, so writes go on at
/// their pace meanwhile. A thread of its own, so that the lowered priority
/// ends with it (raising it back needs a privilege). Inline under madsim.
pub(crate) async fn run_in_background<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    #[cfg(not(madsim))]
    {
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("oar-background".into())
            .spawn(move || {
                lower_this_threads_priority();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                let _ = done.send(outcome);
            })
            .map_err(|e| format!("starting a background thread failed: {e}"))?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err("background job panicked".into()),
            Err(_) => Err("background thread ended without an answer".into()),
        }
    }
    #[cfg(madsim)]
    {
        Ok(job())
    }
}

/// Raises the calling thread's nice value by 10; best effort (a failure
/// leaves the priority as it was). On Linux the nice value is per thread.
#[cfg(not(madsim))]
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call; `who == 0` is the calling thread.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Runs `job` off the runtime's workers and returns its result; a panic in
/// `job` resumes in the caller, as if `job` had run inline.
pub(crate) async fn run_blocking_unwinding<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> R {
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(job).await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a runtime shutting down cancels a blocking task.
                Err(e) => panic!("blocking storage call cancelled: {e}"),
            },
        }
    }
    #[cfg(madsim)]
    {
        job()
    }
}

/// Runs a state machine callback that may block (see
/// `StateMachine::may_block`) in place on this task. On tokio's
/// multi-thread runtime the worker first hands its other queued tasks to
/// another thread (`block_in_place`): without that, a task parked in this
/// worker's LIFO slot waits out the whole callback (seen: a route lookup
/// held 20 s behind a gated apply). Inline when `may_block` is false, on a
/// current-thread runtime (which cannot hand off), and under madsim (no
/// threads).
pub(crate) fn state_machine_call<R>(may_block: bool, call: impl FnOnce() -> R) -> R {
    #[cfg(not(madsim))]
    if may_block {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let multi_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(call);
        }
    }
    #[cfg(madsim)]
    let _ = may_block;
    call()
}
