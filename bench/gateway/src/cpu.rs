//! The calling thread's CPU: its own clock, its preemptions, and pinning it to one core.

use std::time::Duration;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

/// CPU time (user + system) this thread has used: the cost of the work, not of waiting or of
/// other processes on the core. Nanosecond resolution, unlike the 10 ms ticks of `/proc`.
pub fn thread_cpu() -> Duration {
    // Linux always has the per-thread clock (since 2.6.12); failing here means no measurement.
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Times this thread was preempted (getrusage's involuntary context switches): the other processes
/// on its core, i.e. the noise in its wall-clock times.
pub fn preemptions() -> i64 {
    getrusage(UsageWho::RUSAGE_THREAD)
        .map(|u| u.involuntary_context_switches())
        .unwrap_or(0)
}

/// The CPUs this thread may run on.
pub fn allowed() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Keep this thread on `cpu` only. Other processes may still run there: pinning makes the thread's
/// cache and the core it is measured on fixed, not the core exclusive.
pub fn pin(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}
