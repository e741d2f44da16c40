//! A dataplane that loses its TUN device stops, with an error that says so, instead of
//! spinning on a dead descriptor; `--priority` schedules the datapath threads as it says.
//! Needs root (runs for real in CI).

mod common;

use std::time::Duration;

use common::*;

per_io_mode!(deleted_tun_stops_tundra_with_an_error);

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

/// `--priority` reaches the datapath threads, and only them: `realtime` is `SCHED_FIFO`, the
/// default (`high`) is nice -10 under the ordinary policy; both carry traffic.
#[test]
fn priority_sets_the_datapath_threads_scheduling() {
    let mut c = Cluster::new(2);
    c.start_tundra(1, &["--priority", "realtime"]);
    c.start_tundra(2, &[]);
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );
    const SCHED_OTHER: u32 = 0;
    const SCHED_FIFO: u32 = 1;
    for (i, policy, nice) in [(1, SCHED_FIFO, 0), (2, SCHED_OTHER, -10)] {
        let threads = scheduling(c.pid(i));
        for name in ["tundra-egress", "tundra-ingress"] {
            let got = threads.iter().find(|t| t.0 == name).map(|t| (t.1, t.2));
            assert_eq!(got, Some((policy, nice)), "node {i} {name}: {threads:?}");
        }
        let control = threads.iter().find(|t| t.0 == "tundra-control");
        assert_eq!(
            control.map(|t| t.1),
            Some(SCHED_OTHER),
            "node {i}: {threads:?}"
        );
    }
}

/// (thread name, policy, nice) of every thread of `pid`, from /proc.
fn scheduling(pid: u32) -> Vec<(String, u32, i32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tundra's tasks");
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the command's closing parenthesis start at field 3 (state); nice is
            // field 19, policy field 41 (proc_pid_stat(5)).
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some((
                comm.trim().to_owned(),
                rest.get(38)?.parse().ok()?,
                rest.get(16)?.parse().ok()?,
            ))
        })
        .collect()
}
