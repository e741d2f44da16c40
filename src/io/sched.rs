//! How the datapath threads are scheduled against the applications whose packets they
//! carry ([`Priority`]), and how a raised thread gives way in a flood.

use std::time::Duration;

use super::Ctx;
use crate::config::Priority;
use crate::sys;

/// [`Priority::High`]: a short scheduler slice, so that a thread woken by a packet runs soon
/// instead of waiting out another thread's slice, and the weight of nice -10, so that a busy
/// datapath thread is not pushed aside by the applications whose packets it carries, as the
/// kernel's own datapath (softirq) never is (see `sys::sched::set_priority`).
const HIGH_SLICE: Duration = Duration::from_micros(100);
const HIGH_NICE: i32 = -10;
/// [`Priority::Realtime`]: the lowest `SCHED_FIFO` priority, below the kernel's interrupt
/// threads (50) and anything an operator ranks above a dataplane.
const RT_PRIORITY: u32 = 1;
/// Above this many packets a second (TUN reads or UDP datagrams, a super-packet or a GRO
/// train counting as one), a thread is in a flood (see [`Sched`]); below half of it, it is
/// not any more.
const FLOOD_PPS: u64 = 50_000;
/// The windows the rate is measured over: a thread gives way within 10 ms of a flood's
/// start, and takes its priority back after a whole 100 ms below half the rate, so that a
/// few milliseconds without a CPU (two CPUs, four busy threads) do not end a flood early.
const CALM_WINDOW_NS: u64 = 10_000_000;
const FLOOD_WINDOW_NS: u64 = 100_000_000;

/// A datapath thread's scheduling.
///
/// A raised thread ([`Priority::High`] or [`Priority::Realtime`]) runs as soon as a packet
/// wakes it: what keeps a ping or a TCP stream's ACKs from waiting behind the applications.
/// In a flood of small packets the same promptness costs throughput: the thread preempts the
/// application that feeds it at every packet or two (a UDP flood of 64-byte datagrams at
/// `high`: 22,000 to 47,000 wakeups a second for 105,000 to 122,000 packets), where a thread
/// that waits its turn finds dozens of packets queued and moves them with one system call; a
/// real-time one also starves everything else on its CPU. So, as a NIC's adaptive interrupt
/// moderation does (the kernel's `net_dim`), a thread moving more than [`FLOOD_PPS`] packets
/// a second drops to nice 0 and the default slice until the rate falls below half of that.
/// A TCP stream between offloading nodes is a few thousand super-packets a second.
pub(super) struct Sched {
    name: &'static str,
    /// What the thread runs at outside a flood: [`Priority::Normal`] is not governed.
    raised: Priority,
    flood: Flood,
}

impl Sched {
    /// Schedules the calling thread as `ctx.priority` asks, or as close to it as allowed, on
    /// `ctx.cpus`.
    pub(super) fn start(name: &'static str, ctx: &Ctx) -> Sched {
        if let Some(cpus) = &ctx.cpus {
            // The start checked that the process may use them; a CPU taken offline since
            // leaves the thread where it was, which is worth a warning, not a stop.
            if let Err(e) = sys::sched::set_affinity(cpus.cpus()) {
                tracing::warn!("{name} thread: cannot run on CPUs {cpus} only: {e}");
            }
        }
        let mut raised = ctx.priority;
        if raised == Priority::Realtime {
            if let Err(e) = raise(raised) {
                tracing::info!("{name} thread: no real-time priority ({e}); using high");
                raised = Priority::High;
            }
        }
        if raised == Priority::High {
            if let Err(e) = raise(raised) {
                tracing::debug!("{name} thread: no scheduler priority: {e}");
                raised = Priority::Normal;
            }
        }
        Sched {
            name,
            raised,
            flood: Flood::new(ctx.now_ns()),
        }
    }

    /// Counts a round's `packets` (at `now`, ns): entering or leaving a flood lowers or
    /// raises the thread, one system call each way.
    pub(super) fn tick(&mut self, now: u64, packets: usize) {
        if self.raised == Priority::Normal {
            return;
        }
        let Some(flood) = self.flood.count(now, packets as u64) else {
            return;
        };
        let (name, raised) = (self.name, self.raised);
        let set = if flood {
            tracing::debug!("{name} thread: in a flood, at nice 0");
            sys::sched::set_priority(Duration::ZERO, 0)
        } else {
            tracing::debug!("{name} thread: flood over, back at {raised} priority");
            raise(raised)
        };
        if let Err(e) = set {
            // Nothing to govern any more; the thread keeps whatever it had.
            tracing::debug!("{name} thread: scheduler priority: {e}");
            self.raised = Priority::Normal;
        }
    }
}

/// Puts the calling thread at `priority`, [`Priority::Realtime`] or [`Priority::High`].
fn raise(priority: Priority) -> std::io::Result<()> {
    if priority == Priority::Realtime {
        sys::sched::set_realtime(RT_PRIORITY)
    } else {
        sys::sched::set_priority(HIGH_SLICE, HIGH_NICE)
    }
}

/// Whether a thread is in a flood, from the packets it moves.
struct Flood {
    on: bool,
    /// Packets in the current window, and when it began.
    packets: u64,
    since: u64,
}

impl Flood {
    fn new(now: u64) -> Self {
        Flood {
            on: false,
            packets: 0,
            since: now,
        }
    }

    /// Counts `packets`; at the end of a window, returns whether the thread is in a flood
    /// now, if that changed.
    fn count(&mut self, now: u64, packets: u64) -> Option<bool> {
        self.packets += packets;
        let elapsed = now.saturating_sub(self.since);
        let window = if self.on {
            FLOOD_WINDOW_NS
        } else {
            CALM_WINDOW_NS
        };
        if elapsed < window {
            return None;
        }
        let pps = self.packets * 1_000_000_000 / elapsed;
        (self.packets, self.since) = (0, now);
        let on = if self.on {
            pps >= FLOOD_PPS / 2
        } else {
            pps > FLOOD_PPS
        };
        (on != self.on).then(|| {
            self.on = on;
            on
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds `pps` packets a second in 1 ms rounds from `from` ms for `ms`; returns the changes.
    fn feed(flood: &mut Flood, from: u64, ms: u64, pps: u64) -> Vec<(u64, bool)> {
        (1..=ms)
            .filter_map(|i| {
                let now = (from + i) * MS;
                flood.count(now, pps / 1000).map(|on| (now, on))
            })
            .collect()
    }

    #[test]
    fn a_flood_starts_within_one_short_window_and_ends_after_a_long_calm_one() {
        let mut flood = Flood::new(0);
        assert_eq!(
            feed(&mut flood, 0, 50, 20_000),
            vec![],
            "a TCP stream's rate"
        );
        assert_eq!(feed(&mut flood, 50, 50, 120_000), vec![(60 * MS, true)]);
        // A dip to 30,000 (a thread without a CPU for a while) does not end it.
        assert_eq!(feed(&mut flood, 100, 300, 30_000), vec![]);
        // Below half the threshold for a whole long window does.
        let calm = feed(&mut flood, 400, 300, 10_000);
        assert_eq!(calm.len(), 1);
        assert!(!calm[0].1 && calm[0].0 <= 600 * MS, "{calm:?}");
    }

    #[test]
    fn sparse_rounds_count_over_the_time_they_took() {
        let mut flood = Flood::new(0);
        // One round of 600 packets after 11 ms: 54,500 a second.
        assert_eq!(flood.count(11 * MS, 600), Some(true));
        // A clock that does not move (or goes back) changes nothing.
        assert_eq!(flood.count(11 * MS, 1_000_000), None);
        assert_eq!(flood.count(5 * MS, 0), None);
    }
}
