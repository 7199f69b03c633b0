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

/// Runs `job` off the runtime's workers, on a background thread at a lower
/// CPU priority (nice +10 on Linux), and returns its result; `Err` if it
/// panicked. For long background work (a snapshot save streaming
/// gigabytes): on a busy machine it then takes the cores the runtime's
/// workers leave, instead of an equal share of them, so writes go on at
/// their pace meanwhile. The threads are a process-wide pool of at most
/// [`BACKGROUND_THREADS_MAX`], kept at that priority for their whole life
/// (raising it back needs a privilege): a server of ten thousand groups
/// saving at once queues its saves instead of starting a thread for each.
/// Inline under madsim.
pub(crate) async fn run_in_background<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    #[cfg(not(madsim))]
    {
        let (done, result) = tokio::sync::oneshot::channel();
        background::submit(Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = done.send(outcome);
        }))?;
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

/// The most background threads a process runs (see [`run_in_background`]).
/// Saves beyond it wait for a thread; more than a few would only share the
/// same cores and disk.
#[cfg(not(madsim))]
pub(crate) const BACKGROUND_THREADS_MAX: usize = 8;

/// The background pool: threads started on demand while every started one
/// is busy, up to [`BACKGROUND_THREADS_MAX`], then reused.
#[cfg(not(madsim))]
mod background {
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex, OnceLock};

    use super::BACKGROUND_THREADS_MAX;

    type Job = Box<dyn FnOnce() + Send>;

    #[derive(Default)]
    struct Queue {
        jobs: VecDeque<Job>,
        threads: usize,
        idle: usize,
    }

    #[derive(Default)]
    struct Pool {
        queue: Mutex<Queue>,
        ready: Condvar,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(Pool::default)
    }

    /// Queues `job`, starting a thread if none is idle and the pool is not
    /// full. The queue holds at most one job per save in flight, and a
    /// group has one save in flight at a time.
    pub(super) fn submit(job: Job) -> Result<(), String> {
        let shared = pool();
        let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.jobs.push_back(job);
        if queue.idle >= queue.jobs.len() || queue.threads >= BACKGROUND_THREADS_MAX {
            shared.ready.notify_one();
            return Ok(());
        }
        std::thread::Builder::new()
            .name("oar-background".into())
            .spawn(|| work(pool()))
            .map_err(|e| format!("starting a background thread failed: {e}"))?;
        queue.threads += 1;
        Ok(())
    }

    fn work(pool: &Pool) {
        super::lower_this_threads_priority();
        let mut queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match queue.jobs.pop_front() {
                Some(job) => {
                    drop(queue);
                    // `run_in_background` catches the job's panics.
                    job();
                    queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
                }
                None => {
                    queue.idle += 1;
                    queue = pool.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                    queue.idle -= 1;
                }
            }
        }
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

/// Starts `job` off the runtime's workers at once (as
/// [`run_blocking_unwinding`], whose job starts only when first polled) and
/// returns its result's future: the caller goes on meanwhile (a copier
/// receives its next chunk while this one is written). A panic in `job`
/// resumes when the future is awaited. Inline under madsim.
pub(crate) fn start_blocking_unwinding<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> impl std::future::Future<Output = R> + Send + 'static {
    #[cfg(not(madsim))]
    {
        let handle = tokio::task::spawn_blocking(job);
        async move {
            match handle.await {
                Ok(result) => result,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => panic!("blocking storage call cancelled: {e}"),
                },
            }
        }
    }
    #[cfg(madsim)]
    {
        std::future::ready(job())
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

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// Many saves at once share the pool's threads instead of starting one
    /// thread each; every job still runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_jobs_beyond_the_pool_wait_for_its_threads() {
        let jobs = 4 * BACKGROUND_THREADS_MAX;
        let runs = (0..jobs).map(|_| {
            run_in_background(|| {
                // Long enough that the jobs overlap and the pool fills.
                std::thread::sleep(std::time::Duration::from_millis(5));
                std::thread::current().id()
            })
        });
        let threads: std::collections::BTreeSet<String> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .map(|r| format!("{:?}", r.expect("ran")))
            .collect();
        assert!(!threads.is_empty());
        assert!(
            threads.len() <= BACKGROUND_THREADS_MAX,
            "{} threads for {jobs} jobs",
            threads.len()
        );
    }
}
