//! A dataplane that loses its TUN device stops, with an error that says so, instead of
//! spinning on a dead descriptor. Needs root (runs for real in CI).

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
