//! A dataplane that loses its TUN device stops, with an error that says so, instead of
//! spinning on a dead descriptor; `--priority` schedules the datapath threads as it says, and
//! a raised thread gives way in a flood; `--cpus` pins them.
//! Needs root (runs for real in CI).

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

per_io_mode!(
    deleted_tun_stops_tundra_with_an_error,
    raised_threads_give_way_in_a_flood
);

fn deleted_tun_stops_tundra_with_an_error(io: Io) {
    let mut c = Cluster::new(2);
    c.start_tundra(1, &["--io", io.as_arg()]);
    c.start_tundra(2, &["--io", io.as_arg()]);
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );

    ip(&["-n", &c.ns(1), "link", "del", "dev", TUN]);
    let status = c.wait_exit(1, Duration::from_secs(10));
    let stderr = c.stderr(1);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "tundra should exit 1 once its TUN is gone; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("egress thread failed: reading the TUN device"),
        "the error should say what failed; stderr:\n{stderr}"
    );
    // The other node is unaffected.
    let exits = {
        c.stop(1);
        c.stop(2)
    };
    assert_eq!(
        exits.status.and_then(|s| s.code()),
        Some(0),
        "node 2:\n{}",
        exits.stderr
    );
}

/// `--priority` and `--cpus` reach the datapath threads, and only them: `realtime` is
/// `SCHED_FIFO`, the default (`high`) is nice -10 under the ordinary policy, `--cpus 0` pins
/// them to CPU 0; both nodes carry traffic. A CPU this process may not use is refused at the
/// start, before anything is set up.
#[test]
fn priority_and_cpus_reach_the_datapath_threads() {
    let mut c = Cluster::new(2);
    c.start_tundra(1, &["--priority", "realtime", "--cpus", "0"]);
    c.start_tundra(2, &[]);
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );
    for (i, policy, nice) in [(1, SCHED_FIFO, 0), (2, SCHED_OTHER, -10)] {
        let threads = threads(c.pid(i));
        let of = |name: &str| threads.iter().find(|t| t.name == name);
        let process = &of("tundra").expect("the main thread").cpus;
        let cpus = if i == 1 { "0" } else { process.as_str() };
        for name in ["tundra-egress", "tundra-ingress"] {
            let got = of(name).map(|t| (t.policy, t.nice, t.cpus.as_str()));
            assert_eq!(
                got,
                Some((policy, nice, cpus)),
                "node {i} {name}: {threads:?}"
            );
        }
        let control = of("tundra-control").map(|t| (t.policy, t.cpus.as_str()));
        assert_eq!(
            control,
            Some((SCHED_OTHER, process.as_str())),
            "node {i}: {threads:?}"
        );
    }

    let out = ns_cmd(
        &c.ns(2),
        env!("CARGO_BIN_EXE_tundra"),
        &[
            "run",
            "--tun",
            "tcpus0",
            "--listen",
            "198.18.0.2:9999",
            "--local-subnet",
            "198.19.9.0/24",
            "--control",
            "none",
            "--cpus",
            "0,1023",
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("--cpus 0,1023: CPU 1023 is not one this process may run on"),
        "{out}"
    );
    let links = ip(&["-n", &c.ns(2), "-o", "link", "show"]);
    assert!(!links.contains("tcpus0"), "{links}");
}

/// Under a flood of small datagrams the threads that carry it give up their priority for
/// nice 0 (real-time on node 1, `high` on node 2), and take it back once it is over; the ping
/// after it is carried.
fn raised_threads_give_way_in_a_flood(io: Io) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(2);
    c.start_tundra(1, &["--io", io.as_arg(), "--priority", "realtime"]);
    c.start_tundra(2, &["--io", io.as_arg()]);
    c.wait_pods(1, 2);
    let (pid1, pid2) = (c.pid(1), c.pid(2));
    let sched = |pid: u32, name: &str| {
        let threads = threads(pid);
        threads
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.policy, t.nice))
    };
    const RAISED_1: (u32, i32) = (SCHED_FIFO, 0);
    const RAISED_2: (u32, i32) = (SCHED_OTHER, -10);
    const LOWERED: (u32, i32) = (SCHED_OTHER, 0);
    assert_eq!(sched(pid1, "tundra-egress"), Some(RAISED_1));
    assert_eq!(sched(pid2, "tundra-ingress"), Some(RAISED_2));

    let stop = Arc::new(AtomicBool::new(false));
    let flooding = stop.clone();
    let flood = spawn_in_netns(&c.ns(1), move || {
        let socket = UdpSocket::bind((pod_v4(1), 0)).expect("bind");
        let mut sent = 0u64;
        while !flooding.load(Ordering::Relaxed) {
            // A full TUN queue drops what does not fit; the sends go on.
            sent += u64::from(socket.send_to(&[0x5a; 64], (pod_v4(2), 9)).is_ok());
        }
        sent
    });
    let carriers = [(pid1, "tundra-egress"), (pid2, "tundra-ingress")];
    for (pid, name) in carriers {
        wait_until(&format!("{name} of {pid} at nice 0"), FLOOD_WAIT, || {
            sched(pid, name) == Some(LOWERED)
        });
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    assert!(sent > 0);

    for ((pid, name), raised) in carriers.into_iter().zip([RAISED_1, RAISED_2]) {
        wait_until(&format!("{name} of {pid} raised again"), FLOOD_WAIT, || {
            sched(pid, name) == Some(raised)
        });
    }
    // The thread that carried nothing of it (ICMP errors at most) kept its priority.
    assert_eq!(sched(pid1, "tundra-ingress"), Some(RAISED_1));
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );
}

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

/// How long a flood (or its end) may take to show in the threads' scheduling: the governor
/// decides every 10 ms (100 ms in a flood); this is for a slow, shared machine.
const FLOOD_WAIT: Duration = Duration::from_secs(20);

/// One thread of a process, from /proc.
#[derive(Debug)]
struct Thread {
    name: String,
    policy: u32,
    nice: i32,
    /// `Cpus_allowed_list`, as the kernel writes it.
    cpus: String,
}

/// Every thread of `pid`.
fn threads(pid: u32) -> Vec<Thread> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tundra's tasks");
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            // Fields after the command's closing parenthesis start at field 3 (state); nice is
            // field 19, policy field 41 (proc_pid_stat(5)).
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            Some(Thread {
                name: comm.trim().to_owned(),
                policy: rest.get(38)?.parse().ok()?,
                nice: rest.get(16)?.parse().ok()?,
                cpus: cpus.trim().to_owned(),
            })
        })
        .collect()
}
