//! Where io_uring cannot be set up, `--io auto` falls back to the readiness engine and traffic
//! flows; `--io uring` refuses to start with an error that says why. io_uring is blocked the way
//! container runtimes' default seccomp profiles block it: `io_uring_setup` fails with EPERM.
//! Needs root (runs for real in CI).

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use common::*;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Runs `f` on a new thread whose seccomp filter makes `io_uring_setup` fail with EPERM. The
/// filter stays with that thread and is inherited by every process it spawns (across fork and
/// exec), so a tundra started from `f` cannot set up io_uring; the rest of the test process is
/// not affected.
fn without_io_uring<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a seccomp target");
            let rules = BTreeMap::from([(libc::SYS_io_uring_setup, vec![])]);
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
            .expect("seccomp filter");
            let program: BpfProgram = filter.try_into().expect("BPF program");
            seccompiler::apply_filter(&program).expect("install seccomp filter");
            f()
        })
        .join()
        .expect("filtered thread panicked")
    })
}

#[test]
fn auto_falls_back_to_poll_and_forwards() {
    let mut c = Cluster::new(2);
    without_io_uring(|| c.start_tundra(1, &["--io", "auto"]));
    c.start_tundra(2, &["--io", "auto"]);
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );
    let p = ping(
        &c.ns(2),
        &[
            "-c",
            "3",
            "-W",
            "2",
            "-I",
            &pod_v6(2).to_string(),
            &pod_v6(1).to_string(),
        ],
    );
    assert!(
        p.all_ok(),
        "IPv6 ping through the fallback node failed:\n{}",
        p.out
    );

    let log1 = c.stderr(1);
    assert!(
        log1.contains("io_uring is not available") && log1.contains("readiness fallback"),
        "node 1 should say it fell back; stderr:\n{log1}"
    );
    assert!(
        log1.contains("io=poll"),
        "node 1 should run the poll engine; stderr:\n{log1}"
    );
    let log2 = c.stderr(2);
    assert!(
        log2.contains("io=uring"),
        "node 2 (unfiltered) should run io_uring; stderr:\n{log2}"
    );
    let stats = c.stats(1);
    assert!(
        stats.tx_packets >= 3 && stats.rx_packets >= 3,
        "node 1 forwarded nothing: {stats:?}"
    );
    c.shutdown();
}

#[test]
fn forced_uring_refuses_to_start_where_it_is_blocked() {
    let c = Cluster::new(2);
    let ns = c.ns(1);
    let tundra = env!("CARGO_BIN_EXE_tundra");
    let subnet = subnet_v4(1);
    let peer = format!("{}={}:{PORT}", subnet_v4(2), underlay_v4(2));
    let out = without_io_uring(|| {
        ns_cmd(
            &ns,
            tundra,
            &[
                "run",
                "--tun",
                TUN,
                "--local-subnet",
                &subnet,
                "--peer",
                &peer,
                "--io",
                "uring",
            ],
        )
    });
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "expected exit 1:\n{out}"
    );
    assert!(
        out.stderr.contains("io_uring cannot be set up"),
        "unclear error:\n{out}"
    );
    let link = run_cmd(
        "ip",
        &["-n", &ns, "link", "show", "dev", TUN],
        Duration::from_secs(10),
    );
    assert!(
        !link.success(),
        "a refused start must leave no TUN behind:\n{link}"
    );
    c.shutdown();
}
