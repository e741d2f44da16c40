//! Faults under traffic, on both engines, against real tundra processes in a two-node cluster.
//! Needs root (runs for real in CI).
//!
//! - [`peer_killed_and_restarted`]: node 2's tundra SIGKILLed and started again under a TCP
//!   stream from node 1; the stream stalls, then resumes and ends byte-identical, and node 1's
//!   tundra notices nothing (same process, healthy, no error logged). Meanwhile two slow
//!   clients sit on node 1's control socket (one trickling a request a byte at a time, one
//!   never reading its replies) and other requests are still answered.
//! - [`underlay_link_and_mtu`]: node 1's underlay link taken down and up under a stream (it
//!   stalls, then resumes); then the underlay MTU lowered on both ends under the stream: tundra
//!   keeps its TUN MTU, the kernel refuses its UDP GSO sends (segments larger than the new
//!   MTU), tundra falls back to one datagram per segment (`gso_fallbacks`), the datagrams are
//!   fragmented, and the stream, and a full-size ping with DF set, still get through.
//! - [`sigterm_and_sigkill_under_load`]: with a full-speed stream each way, SIGTERM ends node
//!   1's tundra in under a second, status 0, its TUN (with its addresses and routes) and its
//!   control socket gone; started again, the streams resume. Then SIGKILL: the TUN goes with
//!   the process, the socket file stays behind, and tundra started again on the same socket
//!   path replaces it; the streams resume once more and both end byte-identical.
//!
//! Every stream holds [`heavy_lock`], so the tests of this file run one after the other.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

per_io_mode!(
    peer_killed_and_restarted,
    underlay_link_and_mtu,
    sigterm_and_sigkill_under_load
);

const MIB: u64 = 1 << 20;
/// The paced streams' rate: steady traffic that leaves the 2-core machine room to breathe.
const RATE: u64 = 40 * MIB;
/// A bound on each whole stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(180);
/// A bound on a stream's resuming after a fault is repaired (TCP's retransmission backoff
/// after a few seconds without ACKs is a few seconds more).
const RESUME: Duration = Duration::from_secs(60);
/// How long tundra may take to exit after SIGTERM, under load (the issue's bound).
const SIGTERM_EXIT: Duration = Duration::from_secs(1);

fn io_args(io: Io) -> [&'static str; 2] {
    ["--io", io.as_arg()]
}

fn pod(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(pod_v4(i)), port)
}

/// A stream from node `i`'s pod to node `j`'s (port `port`).
fn stream(c: &Cluster, i: u8, j: u8, port: u16, rate: Option<u64>) -> LiveStream {
    live_stream(
        &c.ns(i),
        pod(i, 0),
        &c.ns(j),
        pod(j, port),
        rate,
        STREAM_TIMEOUT,
    )
}

/// Asserts that `s` carries (almost) nothing for a second: the fault is real.
fn assert_stalled(s: &LiveStream, what: &str) {
    thread::sleep(Duration::from_millis(700));
    let before = s.received();
    thread::sleep(Duration::from_secs(1));
    let moved = s.received() - before;
    assert!(
        moved < MIB,
        "{what}: the stream still moved {moved} bytes in a second"
    );
}

/// One request on a fresh connection to the control socket at `path`; its `result`.
fn request(path: &Path, line: &str) -> Value {
    let stream =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .unwrap_or_else(|e| panic!("{line}: no reply: {e}"));
    let reply: Value =
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"));
    assert_eq!(reply["ok"], Value::Bool(true), "{line}: {reply}");
    reply["result"].clone()
}

/// Asserts that node `i`'s tundra is the process `pid` still, healthy, and logged no error.
fn assert_undisturbed(c: &mut Cluster, i: u8, pid: u32) {
    assert!(
        c.running(i),
        "tundra on node {i} exited; stderr:\n{}",
        c.stderr(i)
    );
    assert_eq!(c.pid(i), pid, "node {i}: another tundra");
    let health = request(&c.control_path(i), r#"{"cmd":"health"}"#);
    assert_eq!(health["status"], "ok", "node {i}: {health}");
    let log = c.stderr(i);
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "node {i} logged errors:\n{}",
        errors.join("\n")
    );
    assert_eq!(
        log.matches("dataplane running").count(),
        1,
        "node {i} started more than once:\n{log}"
    );
}

/// Two clients that misbehave on a control socket until dropped: one sends spaces (a request
/// line never ended) a byte at a time, one sends `stats` requests and never reads a reply.
struct SlowClients {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl SlowClients {
    fn start(path: &Path) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let (stop, path) = (stop.clone(), path.to_owned());
            thread::spawn(move || {
                let Ok(mut s) = UnixStream::connect(&path) else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) && s.write_all(b" ").is_ok() {
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let deaf = {
            let (stop, path) = (stop.clone(), path.to_owned());
            thread::spawn(move || {
                let Ok(mut s) = UnixStream::connect(&path) else {
                    return;
                };
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                // About 1 MB of replies: more than the socket buffers hold.
                for _ in 0..1500 {
                    if stop.load(Ordering::Relaxed)
                        || s.write_all(b"{\"cmd\":\"stats\"}\n").is_err()
                    {
                        break;
                    }
                }
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        SlowClients {
            stop,
            threads: vec![trickle, deaf],
        }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn peer_killed_and_restarted(io: Io) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(2);
    c.start_tundra(1, &io_args(io));
    c.start_tundra(2, &io_args(io));
    c.wait_pods(1, 2);
    let pid1 = c.pid(1);
    let mut s = stream(&c, 1, 2, 5001, Some(RATE));
    s.wait_progress(4 * MIB, RESUME);

    let slow = SlowClients::start(&c.control_path(1));
    let (status, _) = c
        .signal_and_wait(2, libc::SIGKILL, Duration::from_secs(10))
        .expect("SIGKILL ends tundra");
    assert_eq!(status.code(), None, "killed by a signal: {status}");
    assert_stalled(&s, "node 2's tundra killed");
    // Node 1 answers on its control socket, slow clients or not.
    let asked = Instant::now();
    assert_eq!(
        request(&c.control_path(1), r#"{"cmd":"health"}"#)["status"],
        "ok"
    );
    let stats = c.stats_json(1);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "requests took {:?} beside the slow clients",
        asked.elapsed()
    );
    assert_eq!(
        stats["peers"][0]["addr"],
        format!("{}:{PORT}", underlay_v4(2))
    );

    c.start_tundra(2, &io_args(io));
    let resumed = s.wait_progress(8 * MIB, RESUME);
    drop(slow);
    let t = s
        .finish()
        .unwrap_or_else(|e| panic!("the stream through the restart: {e}"));
    eprintln!(
        "[{}] {io:?}: {} MiB through node 2's restart, resumed {resumed:.1?} after it",
        c.prefix(),
        t.bytes / MIB
    );
    assert_undisturbed(&mut c, 1, pid1);
    c.shutdown();
}

/// The underlay MTU [`underlay_link_and_mtu`] lowers to: below tundra's 1500-byte datagrams,
/// at IPv6's minimum (so the underlay keeps its IPv6 addresses).
const LOW_MTU: &str = "1280";

fn underlay_link_and_mtu(io: Io) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(2);
    c.start_tundra(1, &io_args(io));
    c.start_tundra(2, &io_args(io));
    c.wait_pods(1, 2);
    let (pid1, pid2) = (c.pid(1), c.pid(2));
    let mut s = stream(&c, 1, 2, 5001, Some(RATE));
    s.wait_progress(4 * MIB, RESUME);

    // Link down and up: sends fail meanwhile, counted as drops (send_error), nothing more.
    let send_errors = |c: &mut Cluster| c.stats_json(1)["drops"]["send_error"].as_u64();
    let failed_before = send_errors(&mut c);
    ip(&["-n", &c.ns(1), "link", "set", UNDERLAY_DEV, "down"]);
    assert_stalled(&s, "underlay link down");
    ip(&["-n", &c.ns(1), "link", "set", UNDERLAY_DEV, "up"]);
    let resumed = s.wait_progress(8 * MIB, RESUME);
    assert!(
        send_errors(&mut c) > failed_before,
        "sends through a link that is down should be counted as send_error drops"
    );

    // The MTU lowered on both ends (one end alone would drop the other's large frames).
    let tun_mtu = link_mtu(&c.ns(1), TUN);
    let before = c.stats_json(1);
    for i in [1, 2] {
        ip(&["-n", &c.ns(i), "link", "set", UNDERLAY_DEV, "mtu", LOW_MTU]);
    }
    s.wait_progress(16 * MIB, RESUME);
    // A ping as large as the TUN takes, DF set: its datagram is fragmented on the underlay.
    let size = (tun_mtu - 28).to_string();
    let big = ping(
        &c.ns(1),
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &size,
            "-I",
            &pod_v4(1).to_string(),
            &pod_v4(2).to_string(),
        ],
    );
    assert!(
        big.all_ok(),
        "{size}-byte DF ping over a {LOW_MTU}-byte underlay: {big:?}"
    );
    let after = c.stats_json(1);
    let fallbacks = |v: &Value| v["gso_fallbacks"].as_u64().expect("gso_fallbacks");
    let offload = &after["offload"];
    if offload["udp_gso"] == Value::Bool(true) && offload["tun_tso"] == Value::Bool(true) {
        assert!(
            fallbacks(&after) > fallbacks(&before),
            "GSO sends larger than the new MTU should fall back: before {before}, after {after}"
        );
    }
    assert_eq!(after["drops"]["too_big"], 0, "{after}");
    assert_eq!(link_mtu(&c.ns(1), TUN), tun_mtu, "the TUN MTU changed");

    let t = s
        .finish()
        .unwrap_or_else(|e| panic!("the stream through the link faults: {e}"));
    eprintln!(
        "[{}] {io:?}: {} MiB; resumed {resumed:.1?} after the link came up; gso_fallbacks {} -> {}",
        c.prefix(),
        t.bytes / MIB,
        fallbacks(&before),
        fallbacks(&after)
    );
    // Both tundras carried on (warnings, such as the GSO fallback's, are fine; errors not).
    assert_undisturbed(&mut c, 1, pid1);
    assert_undisturbed(&mut c, 2, pid2);
    c.shutdown();
}

/// Node `i`'s links, addresses and routes (every table), one per line, sorted: what tundra
/// must leave as it found it.
fn net_state(c: &Cluster, i: u8) -> Vec<String> {
    let ns = c.ns(i);
    let mut lines = Vec::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["-4", "route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
    ] {
        let mut full = vec!["-n", ns.as_str()];
        full.extend(args);
        for line in ip(&full).lines() {
            // Link lines carry counters and states that change with traffic: the name will do.
            let line = if args[1] == "link" {
                line.split(':').take(2).collect::<Vec<_>>().join(":")
            } else {
                line.to_owned()
            };
            // The underlay's link-local address finishes its DAD whenever it does.
            if !(line.contains("fe80:") && line.contains(UNDERLAY_DEV)) {
                lines.push(line);
            }
        }
    }
    lines.sort();
    lines
}

/// The lines of `now` that `before` has not: what tundra left behind.
fn left_behind(before: &[String], now: &[String]) -> Vec<String> {
    now.iter()
        .filter(|l| !before.contains(l))
        .cloned()
        .collect()
}

fn sigterm_and_sigkill_under_load(io: Io) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(2);
    let pristine = net_state(&c, 1);
    c.start_tundra(1, &io_args(io));
    c.start_tundra(2, &io_args(io));
    c.wait_pods(1, 2);
    // Full load: a stream each way, as fast as they go.
    let mut out = stream(&c, 1, 2, 5001, None);
    let mut back = stream(&c, 2, 1, 5002, None);
    out.wait_progress(16 * MIB, RESUME);
    back.wait_progress(16 * MIB, RESUME);

    // SIGTERM: a clean exit, quickly, leaving nothing behind.
    let control = c.control_path(1);
    let (status, took) = c
        .signal_and_wait(1, libc::SIGTERM, Duration::from_secs(10))
        .expect("tundra exits within 10 s of SIGTERM");
    let log = c.stderr(1);
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{log}");
    assert!(
        took < SIGTERM_EXIT,
        "tundra took {took:?} to exit after SIGTERM under load; stderr:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("stats {")),
        "no final stats line:\n{log}"
    );
    assert_eq!(
        left_behind(&pristine, &net_state(&c, 1)),
        Vec::<String>::new(),
        "left behind after SIGTERM"
    );
    assert!(!control.exists(), "{} left behind", control.display());

    // Started again: the streams resume.
    c.start_tundra(1, &io_args(io));
    out.wait_progress(8 * MIB, RESUME);
    back.wait_progress(8 * MIB, RESUME);

    // SIGKILL: the TUN goes with the process (nobody holds it), the socket file stays.
    let control: PathBuf = c.control_path(1);
    c.signal_and_wait(1, libc::SIGKILL, Duration::from_secs(10))
        .expect("SIGKILL ends tundra");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = left_behind(&pristine, &net_state(&c, 1));
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind 10 s after SIGKILL: {left:#?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        control.exists(),
        "a SIGKILLed tundra cannot remove {}",
        control.display()
    );
    // Started again on the same socket path: the stale socket file is replaced.
    let mut args = io_args(io).to_vec();
    args.extend(["--control", control.to_str().expect("a UTF-8 path")]);
    c.start_tundra(1, &args);
    let log = c.stderr(1);
    assert!(
        log.contains("replacing stale control socket"),
        "stderr of the restart:\n{log}"
    );
    assert_eq!(request(&control, r#"{"cmd":"health"}"#)["status"], "ok");
    let resumed = [
        out.wait_progress(8 * MIB, RESUME),
        back.wait_progress(8 * MIB, RESUME),
    ];

    let (out, back) = (out.finish(), back.finish());
    let out = out.unwrap_or_else(|e| panic!("node 1 -> node 2: {e}"));
    let back = back.unwrap_or_else(|e| panic!("node 2 -> node 1: {e}"));
    eprintln!(
        "[{}] {io:?}: SIGTERM exit in {took:.1?}; {} + {} MiB through two restarts, resumed {resumed:.1?} after the second",
        c.prefix(),
        out.bytes / MIB,
        back.bytes / MIB
    );
    c.shutdown();
}
