//! Scheduler settings of the datapath threads.

use std::io;
use std::time::Duration;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// `struct sched_attr` (include/uapi/linux/sched/types.h), up to the fields we set.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Gives the calling thread a short time slice and the weight of `nice`, keeping its
/// policy (SCHED_OTHER). Under EEVDF (Linux 6.6+; 6.12+ lets it preempt on wakeup) a short
/// slice means an early deadline: a thread that wakes for a packet runs soon instead of
/// waiting out another thread's slice; the weight keeps a busy datapath thread from being
/// pushed aside by the applications whose packets it carries, as the kernel's own datapath
/// (softirq) never is. A negative `nice` needs `CAP_SYS_NICE`.
///
/// # Errors
/// The `sched_setattr` error (no privilege, or a kernel without it).
pub fn set_priority(slice: Duration, nice: i32) -> io::Result<()> {
    set(SchedAttr {
        nice,
        runtime: slice.as_nanos() as u64,
        ..SchedAttr::default()
    })
}

/// Puts the calling thread in `SCHED_FIFO` at `priority` (1 is the lowest real-time
/// priority: above every ordinary task, below the kernel's interrupt threads). A waiting
/// packet then runs its thread at once, as the kernel's softirq would run it, instead of
/// waiting for the applications on the same CPU. The kernel keeps ordinary tasks from being
/// starved (`sched_rt_runtime_us`, and since 6.12 the fair server: 5% of each CPU). Needs
/// `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO`).
///
/// # Errors
/// The `sched_setattr` error (no privilege, or real-time scheduling not allowed here).
pub fn set_realtime(priority: u32) -> io::Result<()> {
    set(SchedAttr {
        policy: libc::SCHED_FIFO as u32,
        priority,
        ..SchedAttr::default()
    })
}

fn set(mut attr: SchedAttr) -> io::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid, initialised sched_attr of the size it declares, alive for
    // the call; pid 0 is the calling thread; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    super::cvt(rc).map(drop)
}

/// The CPUs the calling thread may run on (its affinity mask).
///
/// # Errors
/// The `sched_getaffinity` error.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Lets the calling thread run on `cpus` only.
///
/// # Errors
/// A CPU beyond the kernel's `CPU_SETSIZE`, or the `sched_setaffinity` error (none of the CPUs
/// online or allowed here).
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}
