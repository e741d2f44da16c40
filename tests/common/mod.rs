//! Real-kernel test harness: a cluster of nodes, each a network namespace, on one machine.
//!
//! Follows `shared/TESTBED.md`:
//! - every namespace is created here, under a prefix unique to this process and cluster
//!   (`tdr<pid>x<k><rand>-n<i>`), so tests run in parallel and a crashed run never collides;
//! - [`Cluster`]'s `Drop` kills the tundra processes it started (by pid: SIGTERM, then SIGKILL
//!   after a bound) and deletes every namespace it made, on success, on panic and after a
//!   bounded wait failed (every wait here is bounded and panics with a clear message);
//! - addresses follow the plan: underlay 198.18.0.i/24 and fd18::i/64, overlay subnets
//!   198.19.i.0/24 and fd19:0:0:i::/64, pod addresses 198.19.i.1/32 and fd19:0:0:i::1/128 on lo.
//!
//! Topology: two nodes are joined by a veth pair; three or more through a bridge in a "switch"
//! namespace, which also takes extra bare hosts ([`Cluster::add_host`]).
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use serde::Deserialize;

pub mod etcd;

/// tundra's UDP port in every test (flannel's UDP backend port).
pub const PORT: u16 = 8285;
/// Name of the TUN device tundra creates in each node namespace.
pub const TUN: &str = "tdr0";
/// Name of the underlay device in each node namespace.
pub const UNDERLAY_DEV: &str = "eth0";

/// Bound on waiting for tundra to bring its TUN and routes up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on waiting for a tundra to exit after SIGTERM before it is SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for a `stats` line after SIGUSR1.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for overlay connectivity right after start (routes settle).
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any helper command (`ip`, `ping`, ...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The two I/O engines; every real-kernel test runs once with each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Uring,
    Poll,
}

impl Io {
    pub fn as_arg(self) -> &'static str {
        match self {
            Io::Uring => "uring",
            Io::Poll => "poll",
        }
    }
}

/// Generates `mod uring` and `mod poll`, each with one `#[test]` per listed function
/// `fn name(io: Io)` of the calling file: every test is written once, run per I/O mode.
#[macro_export]
macro_rules! per_io_mode {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name($crate::common::Io::Uring) } )*
        }
        mod poll {
            $( #[test] fn $name() { super::$name($crate::common::Io::Poll) } )*
        }
    };
}

/// Address family of the underlay tundra listens on and sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underlay {
    V4,
    V6,
}

/// The VXLAN parameters of a node (tundra with `--encap vxlan`, or a kernel VXLAN device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub port: u16,
}

impl Default for Vxlan {
    /// Flannel's: VNI 1, port 8472.
    fn default() -> Vxlan {
        Vxlan { vni: 1, port: 8472 }
    }
}

/// Node i's VTEP MAC, the same whether tundra or a kernel VXLAN device is the VTEP.
pub fn vtep_mac(i: u8) -> String {
    format!("0a:58:c6:13:{i:02x}:00")
}

// ---------------------------------------------------------------------------------------------
// The address plan.

pub fn underlay_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i)
}
pub fn underlay_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd18, 0, 0, 0, 0, 0, 0, i.into())
}
/// Node i's IPv4 overlay subnet, 198.19.i.0/24.
pub fn subnet_v4(i: u8) -> String {
    format!("198.19.{i}.0/24")
}
/// Node i's IPv6 overlay subnet, fd19:0:0:i::/64.
pub fn subnet_v6(i: u8) -> String {
    format!("fd19:0:0:{i:x}::/64")
}
/// The node's own overlay address (first address of its subnet, put on the TUN by tundra).
pub fn node_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, i, 0)
}
pub fn node_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd19, 0, 0, i.into(), 0, 0, 0, 0)
}
/// The "pod" address on node i's loopback.
pub fn pod_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, i, 1)
}
pub fn pod_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd19, 0, 0, i.into(), 0, 0, 0, 1)
}

// ---------------------------------------------------------------------------------------------
// Commands, bounded.

/// What a finished (or timed-out) command printed.
#[derive(Debug)]
pub struct CmdOutput {
    pub cmdline: String,
    /// `None`: killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    /// stdout and stderr together (ping prints its errors on either).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => writeln!(f, "$ {}  ({s})", self.cmdline)?,
            None => writeln!(f, "$ {}  (TIMED OUT, killed)", self.cmdline)?,
        }
        write!(
            f,
            "--- stdout:\n{}--- stderr:\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `program args...`, killing it if it runs longer than `timeout`.
pub fn run_cmd(program: &str, args: &[&str], timeout: Duration) -> CmdOutput {
    let cmdline = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for `{cmdline}`: {e}"),
        }
    };
    CmdOutput {
        cmdline,
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `ip args...` and panics (with its stderr) unless it succeeds. Returns stdout.
pub fn ip(args: &[&str]) -> String {
    let out = run_cmd("ip", args, CMD_TIMEOUT);
    assert!(out.success(), "command failed:\n{out}");
    out.stdout
}

/// Runs `program args...` inside namespace `ns` (through `ip netns exec`).
pub fn ns_cmd(ns: &str, program: &str, args: &[&str]) -> CmdOutput {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run_cmd("ip", &full, CMD_TIMEOUT)
}

/// Outcome of one `ping` run.
#[derive(Debug)]
pub struct Ping {
    pub out: CmdOutput,
    pub transmitted: u32,
    pub received: u32,
}

impl Ping {
    /// Every packet answered.
    pub fn all_ok(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
    /// Lines of the output that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.out
            .all()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `ping args...` in namespace `ns` and parses its summary line.
pub fn ping(ns: &str, args: &[&str]) -> Ping {
    let out = ns_cmd(ns, "ping", args);
    let text = out.stdout.clone();
    let (mut transmitted, mut received) = (0, 0);
    if let Some(line) = text.lines().find(|l| l.contains("packets transmitted")) {
        let mut words = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty());
        transmitted = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        // "N packets transmitted, M received, ..."
        let rest: Vec<&str> = words.collect();
        if let Some(pos) = rest.iter().position(|w| *w == "received") {
            received = rest.get(pos - 1).and_then(|w| w.parse().ok()).unwrap_or(0);
        }
    }
    Ping {
        out,
        transmitted,
        received,
    }
}

/// Repeats a one-packet ping until it is answered (routes and peers settle right after start).
/// Panics with the last ping's output after `timeout`.
pub fn wait_ping(ns: &str, src: &str, dst: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let p = ping(ns, &["-c", "1", "-W", "1", "-I", src, dst]);
        if p.all_ok() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "no overlay connectivity {src} -> {dst} in {ns} within {timeout:?}; last try:\n{}",
                p.out
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Running code inside a namespace.

fn enter_netns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns({path}): {e}"));
}

/// Runs `f` on a thread that has entered network namespace `ns`, and returns its result
/// (a panic in `f` is propagated). Sockets made by `f` stay in `ns` when used elsewhere.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        let handle = s.spawn(|| {
            enter_netns(ns);
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Like [`in_netns`], but runs in the background; join the handle for the result.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let ns = ns.to_owned();
    thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            enter_netns(&ns);
            f()
        })
        .expect("spawn thread")
}

// ---------------------------------------------------------------------------------------------
// Stats.

/// tundra's drop counters, as printed in its `stats {json}` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Drops {
    pub unknown_peer: u64,
    pub malformed: u64,
    pub spoofed: u64,
    pub not_local: u64,
    pub no_route: u64,
    pub ttl_exceeded: u64,
    pub too_big: u64,
    #[serde(rename = "loop")]
    pub loop_: u64,
    pub send_error: u64,
    pub tun_write_error: u64,
    #[serde(default)]
    pub vxlan_truncated: u64,
    #[serde(default)]
    pub vxlan_flags: u64,
    #[serde(default)]
    pub vxlan_vni: u64,
    #[serde(default)]
    pub vxlan_mac: u64,
    #[serde(default)]
    pub vxlan_ethertype: u64,
}

impl Drops {
    pub fn as_map(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("unknown_peer", self.unknown_peer),
            ("malformed", self.malformed),
            ("spoofed", self.spoofed),
            ("not_local", self.not_local),
            ("no_route", self.no_route),
            ("ttl_exceeded", self.ttl_exceeded),
            ("too_big", self.too_big),
            ("loop", self.loop_),
            ("send_error", self.send_error),
            ("tun_write_error", self.tun_write_error),
            ("vxlan_truncated", self.vxlan_truncated),
            ("vxlan_flags", self.vxlan_flags),
            ("vxlan_vni", self.vxlan_vni),
            ("vxlan_mac", self.vxlan_mac),
            ("vxlan_ethertype", self.vxlan_ethertype),
        ])
    }
    /// The counters of the receive checks (unknown peer, malformed, spoofed, not local).
    pub fn receive_checks(&self) -> u64 {
        self.unknown_peer + self.malformed + self.spoofed + self.not_local
    }
}

/// One `stats {json}` line of tundra.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Stats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub icmp_sent: u64,
    pub drops: Drops,
}

impl Stats {
    /// `self - before`, counter by counter (counters only grow; saturating to be safe).
    pub fn since(&self, before: &Stats) -> Stats {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let (x, y) = (&self.drops, &before.drops);
        Stats {
            tx_packets: d(self.tx_packets, before.tx_packets),
            tx_bytes: d(self.tx_bytes, before.tx_bytes),
            rx_packets: d(self.rx_packets, before.rx_packets),
            rx_bytes: d(self.rx_bytes, before.rx_bytes),
            icmp_sent: d(self.icmp_sent, before.icmp_sent),
            drops: Drops {
                unknown_peer: d(x.unknown_peer, y.unknown_peer),
                malformed: d(x.malformed, y.malformed),
                spoofed: d(x.spoofed, y.spoofed),
                not_local: d(x.not_local, y.not_local),
                no_route: d(x.no_route, y.no_route),
                ttl_exceeded: d(x.ttl_exceeded, y.ttl_exceeded),
                too_big: d(x.too_big, y.too_big),
                loop_: d(x.loop_, y.loop_),
                send_error: d(x.send_error, y.send_error),
                tun_write_error: d(x.tun_write_error, y.tun_write_error),
                vxlan_truncated: d(x.vxlan_truncated, y.vxlan_truncated),
                vxlan_flags: d(x.vxlan_flags, y.vxlan_flags),
                vxlan_vni: d(x.vxlan_vni, y.vxlan_vni),
                vxlan_mac: d(x.vxlan_mac, y.vxlan_mac),
                vxlan_ethertype: d(x.vxlan_ethertype, y.vxlan_ethertype),
            },
        }
    }
}

/// All `stats {json}` lines in a tundra stderr log, parsed, oldest first. A last line without
/// its newline is still being written and is left out. Panics on a complete `stats ` line
/// whose JSON does not match the documented shape.
pub fn parse_stats_lines(log: &str) -> Vec<Stats> {
    let complete = &log[..log.rfind('\n').map_or(0, |at| at + 1)];
    complete
        .lines()
        .filter_map(|l| l.strip_prefix("stats "))
        .map(|json| {
            serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("bad stats line `stats {json}`: {e}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Serialising heavy tests.

static HEAVY: Mutex<()> = Mutex::new(());

/// Held by tests that push a lot of data, so that they do not run alongside each other
/// on a 2-core machine. A poisoned lock (a failed heavy test) is taken all the same.
pub fn heavy_lock() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The cluster.

/// A tundra process started by the harness.
struct Tundra {
    node: u8,
    child: Child,
    stderr_path: PathBuf,
    /// Its control socket (unique per run: tundras in other namespaces share the filesystem).
    control: PathBuf,
    exited: Option<ExitStatus>,
}

/// How a tundra ended: see [`Cluster::stop`].
#[derive(Debug)]
pub struct Exit {
    pub node: u8,
    /// `None`: did not exit within [`STOP_TIMEOUT`] of SIGTERM and was SIGKILLed.
    pub status: Option<ExitStatus>,
    /// The stats line printed at shutdown, after SIGTERM (`None`: none was).
    pub final_stats: Option<Stats>,
    pub stderr: String,
}

/// Network namespaces wired as an underlay network, with tundra processes on some nodes.
pub struct Cluster {
    prefix: String,
    /// Node indices 1..=n: the nodes that are tundra peers of each other.
    n: u8,
    /// Bare hosts on the switch: on the underlay, peers of nobody.
    hosts: Vec<u8>,
    switch: Option<String>,
    /// Every namespace created, in order (deleted in reverse).
    namespaces: Vec<String>,
    tundras: Vec<Tundra>,
    log_dir: PathBuf,
}

fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(k);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("tdr{}x{k}{:04x}", std::process::id(), h.finish() & 0xffff)
}

impl Cluster {
    /// Creates `n` (>= 2) node namespaces on one underlay: a veth pair for two nodes, a bridge
    /// in a switch namespace for more. Each node has lo up with its pod addresses and `eth0`
    /// with 198.18.0.i/24 and fd18::i/64 (no DAD, usable at once).
    pub fn new(n: u8) -> Cluster {
        assert!((2..=200).contains(&n), "a cluster has 2..=200 nodes");
        let prefix = unique_prefix();
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&prefix);
        fs::create_dir_all(&log_dir).expect("create log dir");
        // Built up step by step inside the guard, so a failure half-way still cleans up.
        let mut c = Cluster {
            prefix,
            n,
            hosts: Vec::new(),
            switch: None,
            namespaces: Vec::new(),
            tundras: Vec::new(),
            log_dir,
        };
        for i in 1..=n {
            let ns = c.ns(i);
            c.add_namespace(&ns);
        }
        if n == 2 {
            ip(&[
                "-n",
                &c.ns(1),
                "link",
                "add",
                UNDERLAY_DEV,
                "type",
                "veth",
                "peer",
                "name",
                UNDERLAY_DEV,
                "netns",
                &c.ns(2),
            ]);
        } else {
            let sw = format!("{}-sw", c.prefix);
            c.add_namespace(&sw);
            ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", "br0", "up"]);
            c.switch = Some(sw);
            for i in 1..=n {
                c.plug(i, &c.ns(i));
            }
        }
        for i in 1..=n {
            c.configure_host(i, &c.ns(i));
        }
        c
    }

    /// Adds a bare host namespace `<prefix>-h<i>` on the switch with underlay addresses
    /// 198.18.0.i and fd18::i; no node has it as a peer. Needs a cluster of 3+ nodes.
    /// Returns the namespace name.
    pub fn add_host(&mut self, i: u8) -> String {
        assert!(
            self.switch.is_some(),
            "extra hosts need the bridge (a cluster of 3+ nodes)"
        );
        assert!(
            i > self.n && !self.hosts.contains(&i),
            "host index {i} is taken"
        );
        let ns = format!("{}-h{i}", self.prefix);
        self.add_namespace(&ns);
        self.hosts.push(i);
        self.plug(i, &ns);
        self.configure_host(i, &ns);
        ns
    }

    fn add_namespace(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        // The kernel sends IPv6 router solicitations out of every new device, the TUN too;
        // tundra rightly drops them (no route), but they would land at random in the windows
        // where tests count drops exactly. Nothing here needs router discovery.
        for key in [
            "net.ipv6.conf.all.router_solicitations",
            "net.ipv6.conf.default.router_solicitations",
        ] {
            let out = ns_cmd(ns, "sysctl", &["-qw", &format!("{key}=0")]);
            assert!(out.success(), "command failed:\n{out}");
        }
    }

    /// Veth from the switch's bridge to `eth0` in `ns`.
    fn plug(&self, i: u8, ns: &str) {
        let sw = self.switch.as_deref().expect("switch exists");
        let port = format!("p{i}");
        ip(&[
            "-n",
            sw,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_DEV,
            "netns",
            ns,
        ]);
        ip(&["-n", sw, "link", "set", &port, "master", "br0"]);
        ip(&["-n", sw, "link", "set", &port, "up"]);
    }

    fn configure_host(&self, i: u8, ns: &str) {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", underlay_v4(i)),
            "dev",
            UNDERLAY_DEV,
        ]);
        ip(&[
            "-n",
            ns,
            "-6",
            "addr",
            "add",
            &format!("{}/64", underlay_v6(i)),
            "dev",
            UNDERLAY_DEV,
            "nodad",
        ]);
        ip(&["-n", ns, "link", "set", UNDERLAY_DEV, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/32", pod_v4(i)),
            "dev",
            "lo",
        ]);
        ip(&[
            "-n",
            ns,
            "-6",
            "addr",
            "add",
            &format!("{}/128", pod_v6(i)),
            "dev",
            "lo",
        ]);
    }

    /// Namespace name of node `i`.
    pub fn ns(&self, i: u8) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Waits until node `i`'s pod reaches node `j`'s over IPv4 and over IPv6.
    pub fn wait_pods(&self, i: u8, j: u8) {
        for (src, dst) in [
            (pod_v4(i).to_string(), pod_v4(j).to_string()),
            (pod_v6(i).to_string(), pod_v6(j).to_string()),
        ] {
            wait_ping(&self.ns(i), &src, &dst, CONVERGE_TIMEOUT);
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Starts tundra on node `i` over the IPv4 underlay; see [`Cluster::start_tundra_with`].
    pub fn start_tundra(&mut self, i: u8, extra: &[&str]) {
        self.start_tundra_with(i, Underlay::V4, extra)
    }

    /// Starts `tundra run` in node `i`'s namespace: TUN [`TUN`], listening on port [`PORT`]
    /// of the given underlay family, local subnets 198.19.i.0/24 and fd19:0:0:i::/64, and
    /// both subnets of every other node 1..=n as peers, its control socket in the log directory
    /// (see [`Cluster::control_path`]) unless `extra` has `--control`. `extra` is appended
    /// (`--io`, `--mtu`). Returns once the TUN is up with its addresses and a route for every peer subnet;
    /// panics (with tundra's stderr) if tundra exits or that takes longer than [`START_TIMEOUT`].
    pub fn start_tundra_with(&mut self, i: u8, underlay: Underlay, extra: &[&str]) {
        self.start(i, underlay, None, extra)
    }

    /// As [`Cluster::start_tundra_with`] in vxlan mode: tundra is node `i`'s VTEP with MAC
    /// [`vtep_mac`]`(i)`, and every other node `j` a peer at `vx.port` with MAC `vtep_mac(j)`,
    /// whether tundra or [`Cluster::kernel_vxlan`] runs there.
    pub fn start_tundra_vxlan(&mut self, i: u8, underlay: Underlay, vx: Vxlan, extra: &[&str]) {
        self.start(i, underlay, Some(vx), extra)
    }

    fn start(&mut self, i: u8, underlay: Underlay, vxlan: Option<Vxlan>, extra: &[&str]) {
        assert!((1..=self.n).contains(&i), "node {i} is not in the cluster");
        assert!(
            self.tundras
                .iter()
                .all(|t| t.node != i || t.exited.is_some()),
            "tundra already runs on node {i}"
        );
        let ns = self.ns(i);
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            ns.clone(),
            env!("CARGO_BIN_EXE_tundra").into(),
        ];
        args.extend(["run", "--tun", TUN].map(String::from));
        let port = vxlan.map_or(PORT, |vx| vx.port);
        args.push("--listen".into());
        args.push(match underlay {
            Underlay::V4 => format!("0.0.0.0:{port}"),
            Underlay::V6 => format!("[::]:{port}"),
        });
        if let Some(vx) = vxlan {
            args.extend(["--encap".into(), "vxlan".into(), "--vni".into()]);
            args.push(vx.vni.to_string());
            args.extend(["--vtep-mac".into(), vtep_mac(i)]);
        }
        for s in [subnet_v4(i), subnet_v6(i)] {
            args.push("--local-subnet".into());
            args.push(s);
        }
        for j in (1..=self.n).filter(|&j| j != i) {
            let mut addr = match underlay {
                Underlay::V4 => format!("{}:{port}", underlay_v4(j)),
                Underlay::V6 => format!("[{}]:{port}", underlay_v6(j)),
            };
            if vxlan.is_some() {
                addr = format!("{addr},mac={}", vtep_mac(j));
            }
            for s in [subnet_v4(j), subnet_v6(j)] {
                args.push("--peer".into());
                args.push(format!("{s}={addr}"));
            }
        }
        let run = self.tundras.iter().filter(|t| t.node == i).count();
        let control = match extra.iter().position(|&a| a == "--control") {
            Some(at) => PathBuf::from(extra.get(at + 1).copied().unwrap_or("")),
            None => {
                let mut path = self.log_dir.join(format!("node{i}.{run}.sock"));
                // A Unix socket path has at most 107 bytes; a deep checkout may exceed it.
                if path.as_os_str().len() > 100 {
                    path = std::env::temp_dir().join(format!("{}-n{i}.{run}.sock", self.prefix));
                }
                args.push("--control".into());
                args.push(path.to_string_lossy().into_owned());
                path
            }
        };
        args.extend(extra.iter().map(|s| s.to_string()));

        let stderr_path = self.log_dir.join(format!("node{i}.{run}.stderr"));
        let stdout_path = self.log_dir.join(format!("node{i}.{run}.stdout"));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn tundra: {e}"));
        eprintln!(
            "[{}] node {i}: started tundra pid {}: ip {}",
            self.prefix,
            child.id(),
            args.join(" ")
        );
        self.tundras.push(Tundra {
            node: i,
            child,
            stderr_path,
            control,
            exited: None,
        });
        self.wait_configured(i);
    }

    /// Makes node `i` a kernel VXLAN node the way flannel's vxlan backend sets one up (see
    /// TESTBED.md), for IPv4 and IPv6 inner traffic over the `underlay` family: device `vx0`
    /// with MAC [`vtep_mac`]`(i)`, `nolearning`; per other node `j` a permanent neighbour for
    /// its subnets' first addresses, an FDB entry to its underlay address, onlink routes.
    pub fn kernel_vxlan(&mut self, i: u8, underlay: Underlay, vx: Vxlan) {
        let ns = self.ns(i);
        let local = match underlay {
            Underlay::V4 => underlay_v4(i).to_string(),
            Underlay::V6 => underlay_v6(i).to_string(),
        };
        let (vni, port, mac) = (vx.vni.to_string(), vx.port.to_string(), vtep_mac(i));
        #[rustfmt::skip]
        ip(&["-n", &ns, "link", "add", "vx0", "address", &mac, "type", "vxlan", "id", &vni,
            "dstport", &port, "local", &local, "dev", UNDERLAY_DEV, "nolearning"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/32", node_v4(i)),
            "dev",
            "vx0",
        ]);
        #[rustfmt::skip]
        ip(&["-n", &ns, "-6", "addr", "add", &format!("{}/128", node_v6(i)), "dev", "vx0", "nodad"]);
        ip(&["-n", &ns, "link", "set", "vx0", "up"]);
        // A checksum left to the "hardware" is never filled in over a veth pair: kernel
        // VXLAN would send inner segments whose checksum holds only the pseudo-header sum. A
        // kernel receiver does not look (the skb says partial); a userspace VTEP cannot know,
        // and its TUN drops them as corrupt. So, as flannel deployments do on `flannel.1`
        // (flannel issue 1279), the inner checksums are computed in software.
        let out = ns_cmd(&ns, "ethtool", &["-K", "vx0", "tx", "off"]);
        assert!(out.success(), "ethtool -K vx0 tx off failed:\n{out}");
        for j in (1..=self.n).filter(|&j| j != i) {
            let (mac, dst) = match underlay {
                Underlay::V4 => (vtep_mac(j), underlay_v4(j).to_string()),
                Underlay::V6 => (vtep_mac(j), underlay_v6(j).to_string()),
            };
            for (via, net) in [
                (node_v4(j).to_string(), subnet_v4(j)),
                (node_v6(j).to_string(), subnet_v6(j)),
            ] {
                #[rustfmt::skip]
                ip(&["-n", &ns, "neigh", "add", &via, "lladdr", &mac, "dev", "vx0", "nud", "permanent"]);
                ip(&[
                    "-n", &ns, "route", "add", &net, "via", &via, "dev", "vx0", "onlink",
                ]);
            }
            let out = run_cmd(
                "bridge",
                &["-n", &ns, "fdb", "append", &mac, "dev", "vx0", "dst", &dst],
                CMD_TIMEOUT,
            );
            assert!(out.success(), "bridge fdb append failed:\n{out}");
        }
    }

    fn tundra_mut(&mut self, i: u8) -> &mut Tundra {
        self.tundras
            .iter_mut()
            .rev()
            .find(|t| t.node == i)
            .unwrap_or_else(|| panic!("no tundra was started on node {i}"))
    }

    /// The control socket path of node `i`'s newest tundra.
    pub fn control_path(&self, i: u8) -> PathBuf {
        self.tundras
            .iter()
            .rev()
            .find(|t| t.node == i)
            .map(|t| t.control.clone())
            .unwrap_or_else(|| panic!("no tundra was started on node {i}"))
    }

    /// A scratch directory of this cluster (its logs and control sockets are there too),
    /// under the target directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// The stderr log of node `i`'s newest tundra, so far.
    pub fn stderr(&self, i: u8) -> String {
        self.tundras
            .iter()
            .rev()
            .find(|t| t.node == i)
            .map(|t| fs::read_to_string(&t.stderr_path).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Panics with the log if node `i`'s tundra has exited.
    fn assert_running(&mut self, i: u8, what: &str) {
        let t = self.tundra_mut(i);
        if let Ok(Some(status)) = t.child.try_wait() {
            t.exited = Some(status);
            let log = fs::read_to_string(&t.stderr_path).unwrap_or_default();
            panic!("tundra on node {i} exited ({status}) while {what}; stderr:\n{log}");
        }
    }

    fn wait_configured(&mut self, i: u8) {
        let ns = self.ns(i);
        let peers: Vec<u8> = (1..=self.n).filter(|&j| j != i).collect();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut missing;
        loop {
            self.assert_running(i, "starting");
            missing = configured_missing(&ns, &peers);
            if missing.is_none() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "tundra on node {i} did not configure {TUN} within {START_TIMEOUT:?}: {}\nstderr:\n{}",
            missing.unwrap_or_default(),
            self.stderr(i)
        );
    }

    /// Sends SIGUSR1 to node `i`'s tundra and returns the `stats` line it prints.
    pub fn stats(&mut self, i: u8) -> Stats {
        self.assert_running(i, "asking for stats");
        let before = parse_stats_lines(&self.stderr(i)).len();
        let pid = self.tundra_mut(i).child.id();
        signal(pid, "USR1");
        let deadline = Instant::now() + STATS_TIMEOUT;
        loop {
            let lines = parse_stats_lines(&self.stderr(i));
            if lines.len() > before {
                return *lines.last().expect("non-empty");
            }
            self.assert_running(i, "asked for stats");
            if Instant::now() >= deadline {
                panic!("tundra on node {i} printed no `stats {{...}}` line within {STATS_TIMEOUT:?} of SIGUSR1; stderr:\n{}", self.stderr(i));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Node `i`'s `tundra stats --json` (over its control socket), parsed; panics with the
    /// client's output if it fails or prints something other than one JSON object.
    pub fn stats_json(&mut self, i: u8) -> serde_json::Value {
        self.assert_running(i, "asking for stats --json");
        let control = self.control_path(i);
        let out = run_cmd(
            env!("CARGO_BIN_EXE_tundra"),
            &["stats", "--json", "--control", &control.to_string_lossy()],
            CMD_TIMEOUT,
        );
        assert!(out.success(), "node {i}: stats --json failed:\n{out}");
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!("node {i}: stats --json printed no JSON object ({e}):\n{out}")
        })
    }

    /// Polls node `i`'s stats until `cond` holds and returns them; panics with the last
    /// stats after `timeout`. (Counters are folded in batches, so they may lag a little.)
    pub fn wait_stats(
        &mut self,
        i: u8,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Stats) -> bool,
    ) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats(i);
            if cond(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "node {i}: timed out after {timeout:?} waiting for stats: {what}; last: {s:?}"
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i`'s tundra exits on its own; `None` if it still runs after
    /// `timeout` (it is left running, for `stop` or the drop to end).
    pub fn wait_exit(&mut self, i: u8, timeout: Duration) -> Option<ExitStatus> {
        let t = self.tundra_mut(i);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = t.exited {
                return Some(status);
            }
            if let Ok(Some(status)) = t.child.try_wait() {
                t.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERMs node `i`'s tundra and waits for it (SIGKILL after [`STOP_TIMEOUT`]).
    pub fn stop(&mut self, i: u8) -> Exit {
        let t = self.tundra_mut(i);
        let running = t.exited.is_none();
        let earlier =
            parse_stats_lines(&fs::read_to_string(&t.stderr_path).unwrap_or_default()).len();
        let status = stop_child(t);
        let stderr = fs::read_to_string(&t.stderr_path).unwrap_or_default();
        let lines = parse_stats_lines(&stderr);
        // Only a line printed after SIGTERM is the shutdown line.
        let final_stats = if running && lines.len() > earlier {
            lines.last().copied()
        } else {
            None
        };
        Exit {
            node: i,
            status,
            final_stats,
            stderr,
        }
    }

    /// Stops every running tundra and checks that each exited 0 after SIGTERM, printed its
    /// final stats line, and removed its TUN (and so its routes). Then the namespaces go.
    pub fn shutdown(mut self) -> Vec<Exit> {
        let nodes: Vec<u8> = self
            .tundras
            .iter()
            .filter(|t| t.exited.is_none())
            .map(|t| t.node)
            .collect();
        let exits: Vec<Exit> = nodes.iter().map(|&i| self.stop(i)).collect();
        for e in &exits {
            let i = e.node;
            assert!(
                e.status.is_some_and(|s| s.code() == Some(0)),
                "tundra on node {i} should exit 0 after SIGTERM, got {:?}; stderr:\n{}",
                e.status,
                e.stderr
            );
            assert!(
                e.final_stats.is_some(),
                "tundra on node {i} printed no stats line at shutdown; stderr:\n{}",
                e.stderr
            );
            let link = run_cmd(
                "ip",
                &["-n", &self.ns(i), "link", "show", "dev", TUN],
                CMD_TIMEOUT,
            );
            assert!(
                !link.success(),
                "node {i}: {TUN} still exists after tundra exited:\n{link}"
            );
        }
        exits
    }
}

/// What is still missing of tundra's configuration in `ns`, or `None` when all is there:
/// the TUN up, its two addresses, and a route through it for both subnets of every peer.
fn configured_missing(ns: &str, peers: &[u8]) -> Option<String> {
    let link = run_cmd(
        "ip",
        &["-n", ns, "-o", "link", "show", "dev", TUN],
        CMD_TIMEOUT,
    );
    if !link.success() {
        return Some(format!("no device {TUN}"));
    }
    let flags = link
        .stdout
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or("");
    if !flags.split(',').any(|f| f == "UP") {
        return Some(format!("{TUN} not up: {}", link.stdout.trim()));
    }
    let addrs = run_cmd(
        "ip",
        &["-n", ns, "-o", "addr", "show", "dev", TUN],
        CMD_TIMEOUT,
    )
    .stdout;
    if addrs.contains("tentative") {
        return Some(format!("tentative address on {TUN}: {addrs}"));
    }
    let routes4 = run_cmd(
        "ip",
        &["-n", ns, "-4", "route", "show", "dev", TUN],
        CMD_TIMEOUT,
    )
    .stdout;
    let routes6 = run_cmd(
        "ip",
        &["-n", ns, "-6", "route", "show", "dev", TUN],
        CMD_TIMEOUT,
    )
    .stdout;
    for &j in peers {
        for (cidr, routes) in [(subnet_v4(j), &routes4), (subnet_v6(j), &routes6)] {
            if !routes
                .lines()
                .any(|l| l.split_whitespace().next() == Some(cidr.as_str()))
            {
                return Some(format!(
                    "no route {cidr} dev {TUN}; routes:\n{routes4}{routes6}"
                ));
            }
        }
    }
    None
}

/// Sends signal `sig` ("TERM", "USR1") to `pid` with kill(1). Failure only means it exited.
fn signal(pid: u32, sig: &str) {
    let _ = run_cmd("kill", &["-s", sig, &pid.to_string()], CMD_TIMEOUT);
}

/// SIGTERM, bounded wait, SIGKILL. `None` if it had to be killed.
fn stop_child(t: &mut Tundra) -> Option<ExitStatus> {
    if let Some(status) = t.exited {
        return Some(status);
    }
    if let Ok(Some(status)) = t.child.try_wait() {
        t.exited = Some(status);
        return Some(status);
    }
    signal(t.child.id(), "TERM");
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = t.child.try_wait() {
            t.exited = Some(status);
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "tundra on node {} ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL",
        t.node
    );
    let _ = t.child.kill();
    t.exited = t.child.wait().ok();
    None
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for t in &mut self.tundras {
            let status = stop_child(t);
            // A control socket outside the log directory is ours only under our prefix.
            let ours = t
                .control
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&self.prefix));
            if ours && !t.control.starts_with(&self.log_dir) {
                let _ = fs::remove_file(&t.control);
            }
            if panicking || status.is_none() {
                let log = fs::read_to_string(&t.stderr_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "[{}] node {} tundra exit {status:?}; stderr ({}), last lines:\n{}",
                    self.prefix,
                    t.node,
                    t.stderr_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        for ns in self.namespaces.iter().rev() {
            let out = run_cmd("ip", &["netns", "del", ns], CMD_TIMEOUT);
            if !out.success() {
                eprintln!("[{}] cleanup failed:\n{out}", self.prefix);
            }
        }
        let left = run_cmd("ip", &["netns", "list"], CMD_TIMEOUT).stdout;
        if left.contains(&self.prefix) {
            eprintln!("[{}] namespaces left behind:\n{left}", self.prefix);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Device counters.

/// RX and TX packet counters of `dev` in `ns` (`ip -s -j link`): (rx_packets, tx_packets).
pub fn link_packets(ns: &str, dev: &str) -> (u64, u64) {
    let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j output: {e}: {out}"));
    let s = &v[0]["stats64"];
    let get = |dir: &str| {
        s[dir]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no {dir} packets in {out}"))
    };
    (get("rx"), get("tx"))
}

/// MTU of `dev` in `ns`.
pub fn link_mtu(ns: &str, dev: &str) -> u64 {
    let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j output: {e}: {out}"));
    v[0]["mtu"]
        .as_u64()
        .unwrap_or_else(|| panic!("no mtu in {out}"))
}

// ---------------------------------------------------------------------------------------------
// Test data.

/// A deterministic pseudo-random byte stream (xorshift64*), the same on both ends.
pub struct Stream(u64);

impl Stream {
    pub fn new() -> Stream {
        Stream(0x9e37_79b9_7f4a_7c15)
    }
    /// Fills `buf` (a multiple of 8 bytes) with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_exact_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            chunk.copy_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }
}

/// The receiving end of a [`Stream`]: every byte is compared with the expected stream as it
/// arrives, and hashed (SipHash-1-3 with fixed keys, as the sender hashes what it sends).
pub struct StreamCheck {
    expected: Stream,
    want: Vec<u8>,
    at: usize,
    hash: std::collections::hash_map::DefaultHasher,
    /// Bytes checked so far.
    pub bytes: u64,
}

impl StreamCheck {
    pub fn new() -> StreamCheck {
        let want = vec![0u8; 1 << 16];
        StreamCheck {
            expected: Stream::new(),
            // Nothing of `want` is left: the first check fills it.
            at: want.len(),
            want,
            hash: std::collections::hash_map::DefaultHasher::new(),
            bytes: 0,
        }
    }

    /// Checks the next bytes of the stream.
    ///
    /// # Errors
    /// The offset in the stream of the first byte that differs from the expected one.
    pub fn check(&mut self, got: &[u8]) -> Result<(), String> {
        use std::hash::Hasher as _;
        self.hash.write(got);
        let mut k = 0;
        while k < got.len() {
            if self.at == self.want.len() {
                self.expected.fill(&mut self.want);
                self.at = 0;
            }
            let m = (got.len() - k).min(self.want.len() - self.at);
            let (have, want) = (&got[k..k + m], &self.want[self.at..self.at + m]);
            if let Some(off) = have.iter().zip(want).position(|(a, b)| a != b) {
                return Err(format!(
                    "received stream differs from the sent one at byte offset {}",
                    self.bytes + (k + off) as u64
                ));
            }
            k += m;
            self.at += m;
        }
        self.bytes += got.len() as u64;
        Ok(())
    }

    /// The hash of every byte checked.
    pub fn hash(&self) -> u64 {
        use std::hash::Hasher as _;
        self.hash.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// A TCP transfer between two namespaces, compared byte for byte.

/// What one [`tcp_transfer`] moved.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// Throughput in Mbit/s (for information: it drifts a lot on a shared machine).
    pub fn mbit_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// A sender in `src_ns`, bound to `src` (port 0: any), streams `bytes` of [`Stream`] over one
/// TCP connection to a receiver listening on `dst` in `dst_ns`, then shuts down its side. The
/// receiver compares every byte with the expected stream and both ends hash what they moved.
/// Bounded by `timeout` in all (each blocking call waits at most 5 s at a time).
///
/// # Errors
/// Says where it went wrong: a byte count short of `bytes` at the deadline, an I/O error, the
/// first offset where the received stream differs, or differing hashes.
pub fn tcp_transfer(
    src_ns: &str,
    src: std::net::SocketAddr,
    dst_ns: &str,
    dst: std::net::SocketAddr,
    bytes: u64,
    timeout: Duration,
) -> Result<Transfer, String> {
    use std::hash::Hasher as _;
    use std::io::{ErrorKind, Write as _};
    use std::net::{Shutdown, TcpListener, TcpStream};

    use socket2::{Domain, Protocol, Socket, Type};

    // SipHash-1-3 with fixed keys: split-invariant, the same on both ends.
    let hasher = std::collections::hash_map::DefaultHasher::new;
    let transient = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
        )
    };

    let listener = in_netns(dst_ns, || TcpListener::bind(dst))
        .map_err(|e| format!("bind receiver {dst} in {dst_ns}: {e}"))?;
    let sock = in_netns(src_ns, || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(src), Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&src.into())?;
        Ok(s)
    })
    .map_err(|e| format!("sender socket on {src} in {src_ns}: {e}"))?;
    let start = Instant::now();
    let deadline = start + timeout;

    let receiver = thread::spawn(move || -> Result<(u64, u64), String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if transient(&e) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(format!("receiver: accept: {e}")),
            }
        };
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut check = StreamCheck::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = check.bytes;
            if Instant::now() > deadline {
                return Err(format!(
                    "receiver: only {n} of {bytes} bytes within {timeout:?}"
                ));
            }
            let got = match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(format!("receiver: read after {n} bytes: {e}")),
            };
            check.check(&buf[..got])?;
        }
        Ok((check.bytes, check.hash()))
    });

    let sender = thread::spawn(move || -> Result<(u64, u64), String> {
        sock.connect_timeout(&dst.into(), Duration::from_secs(20))
            .map_err(|e| format!("connect {dst}: {e}"))?;
        let mut conn: TcpStream = sock.into();
        conn.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let (mut h, mut n) = (hasher(), 0u64);
        let mut stream = Stream::new();
        let mut buf = vec![0u8; 1 << 16];
        while n < bytes {
            stream.fill(&mut buf);
            let chunk = &buf[..(bytes - n).min(buf.len() as u64) as usize];
            let mut off = 0;
            while off < chunk.len() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "sender: only {n} of {bytes} bytes within {timeout:?}"
                    ));
                }
                match conn.write(&chunk[off..]) {
                    Ok(w) => off += w,
                    Err(e) if transient(&e) => {}
                    Err(e) => return Err(format!("sender: write after {n} bytes: {e}")),
                }
            }
            h.write(chunk);
            n += chunk.len() as u64;
        }
        conn.flush().map_err(|e| e.to_string())?;
        conn.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok((n, h.finish()))
    });

    let sent = sender
        .join()
        .map_err(|_| "sender thread panicked".to_owned())?;
    let received = receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_owned())?;
    let elapsed = start.elapsed();
    let (sent_n, sent_h) = sent?;
    let (recv_n, recv_h) = received?;
    if sent_n != bytes || recv_n != sent_n {
        return Err(format!(
            "sent {sent_n} bytes, received {recv_n}, of {bytes}"
        ));
    }
    if recv_h != sent_h {
        return Err("hash of the received stream differs from the sent one".to_owned());
    }
    Ok(Transfer {
        bytes: recv_n,
        elapsed,
    })
}

// ---------------------------------------------------------------------------------------------
// Faults: signals to a tundra, and a TCP stream that runs through a fault until told to end.

impl Cluster {
    /// The pid of node `i`'s newest tundra (`ip netns exec` execs it: the child is tundra).
    pub fn pid(&mut self, i: u8) -> u32 {
        self.tundra_mut(i).child.id()
    }

    /// Whether node `i`'s newest tundra still runs.
    pub fn running(&mut self, i: u8) -> bool {
        let t = self.tundra_mut(i);
        if t.exited.is_some() {
            return false;
        }
        match t.child.try_wait() {
            Ok(Some(status)) => {
                t.exited = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`, ...) to node `i`'s newest tundra and
    /// waits up to `timeout` for it to exit. Returns its status and the time from the signal to
    /// its exit (polled every 2 ms), or `None` if it still runs (it is left running).
    pub fn signal_and_wait(
        &mut self,
        i: u8,
        signal: i32,
        timeout: Duration,
    ) -> Option<(ExitStatus, Duration)> {
        let t = self.tundra_mut(i);
        assert!(t.exited.is_none(), "tundra on node {i} has exited already");
        let pid = i32::try_from(t.child.id()).expect("a pid fits in pid_t");
        let sent = Instant::now();
        // SAFETY: kill(2) reads no memory of ours; the pid is our unreaped child's, so it
        // cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
        while sent.elapsed() < timeout {
            if let Ok(Some(status)) = t.child.try_wait() {
                let took = sent.elapsed();
                t.exited = Some(status);
                return Some((status, took));
            }
            thread::sleep(Duration::from_millis(2));
        }
        None
    }
}

/// A TCP connection from `src` in one namespace to `dst` in another that carries [`Stream`]
/// bytes until [`LiveStream::finish`], for holding traffic through a fault. The receiver
/// compares every byte with the expected stream as it arrives; [`LiveStream::received`]
/// counts them. Every blocking call waits at most 1 s at a time, and the whole stream is
/// bounded by the `timeout` given to [`live_stream`].
pub struct LiveStream {
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
    finish: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sender: Option<thread::JoinHandle<Result<(u64, u64), String>>>,
    receiver: Option<thread::JoinHandle<Result<(u64, u64), String>>>,
    start: Instant,
}

/// Starts a [`LiveStream`] from `src` (port 0: any) in `src_ns` to a receiver listening on
/// `dst` in `dst_ns`; the sender writes at most `rate` bytes per second if given, else as
/// fast as it can. Panics if the sockets cannot be set up.
pub fn live_stream(
    src_ns: &str,
    src: std::net::SocketAddr,
    dst_ns: &str,
    dst: std::net::SocketAddr,
    rate: Option<u64>,
    timeout: Duration,
) -> LiveStream {
    use std::hash::Hasher as _;
    use std::io::{ErrorKind, Write as _};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    use socket2::{Domain, Protocol, Socket, Type};

    let hasher = std::collections::hash_map::DefaultHasher::new;
    let transient = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
        )
    };
    let listener = in_netns(dst_ns, || TcpListener::bind(dst))
        .unwrap_or_else(|e| panic!("bind receiver {dst} in {dst_ns}: {e}"));
    let sock = in_netns(src_ns, || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(src), Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&src.into())?;
        Ok(s)
    })
    .unwrap_or_else(|e| panic!("sender socket on {src} in {src_ns}: {e}"));
    let start = Instant::now();
    let deadline = start + timeout;
    let received = Arc::new(AtomicU64::new(0));
    let finish = Arc::new(AtomicBool::new(false));

    let counter = received.clone();
    let receiver = thread::spawn(move || -> Result<(u64, u64), String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if transient(&e) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(format!("receiver: accept: {e}")),
            }
        };
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let mut check = StreamCheck::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = check.bytes;
            if Instant::now() > deadline {
                return Err(format!(
                    "receiver: no end of stream within {timeout:?} ({n} bytes)"
                ));
            }
            let got = match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(format!("receiver: read after {n} bytes: {e}")),
            };
            check.check(&buf[..got])?;
            counter.store(check.bytes, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((check.bytes, check.hash()))
    });

    let stop = finish.clone();
    let sender = thread::spawn(move || -> Result<(u64, u64), String> {
        sock.connect_timeout(&dst.into(), Duration::from_secs(20))
            .map_err(|e| format!("connect {dst}: {e}"))?;
        let mut conn: TcpStream = sock.into();
        conn.set_write_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let (mut h, mut n) = (hasher(), 0u64);
        let mut stream = Stream::new();
        let mut buf = vec![0u8; 1 << 16];
        let began = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(n as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    thread::sleep(wait.min(Duration::from_millis(100)));
                    continue;
                }
            }
            stream.fill(&mut buf);
            let mut off = 0;
            while off < buf.len() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "sender: still sending after {timeout:?} ({n} bytes)"
                    ));
                }
                match conn.write(&buf[off..]) {
                    Ok(w) => off += w,
                    Err(e) if transient(&e) => {}
                    Err(e) => return Err(format!("sender: write after {n} bytes: {e}")),
                }
            }
            h.write(&buf);
            n += buf.len() as u64;
        }
        conn.flush().map_err(|e| e.to_string())?;
        conn.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok((n, h.finish()))
    });

    LiveStream {
        received,
        finish,
        sender: Some(sender),
        receiver: Some(receiver),
        start,
    }
}

impl LiveStream {
    /// Bytes received (and found identical to those sent) so far.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `more` bytes have arrived beyond those received when called; returns how
    /// long that took. Panics with the reason if the stream ends (an error on either side), or
    /// after `timeout` saying what was missing.
    pub fn wait_progress(&mut self, more: u64, timeout: Duration) -> Duration {
        let from = self.received();
        let start = Instant::now();
        loop {
            let got = self.received() - from;
            if got >= more {
                return start.elapsed();
            }
            let ended = [&self.sender, &self.receiver]
                .iter()
                .any(|h| h.as_ref().is_some_and(|h| h.is_finished()));
            if ended {
                let sender = self.sender.take().map(|h| h.join());
                let receiver = self.receiver.take().map(|h| h.join());
                panic!(
                    "the stream ended after {got} of {more} more bytes: sender {sender:?}, receiver {receiver:?}"
                );
            }
            if start.elapsed() >= timeout {
                panic!(
                    "the stream carried {got} of {more} more bytes within {timeout:?} (total {})",
                    self.received()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells the sender to end the stream, waits for the receiver to read it all, and
    /// compares both ends: the bytes moved, if every byte sent arrived, in order, identical.
    ///
    /// # Errors
    /// Where it went wrong: an I/O error, a byte count or hash that differs, the first
    /// offset where the received stream differs.
    pub fn finish(mut self) -> Result<Transfer, String> {
        self.finish
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = self
            .sender
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| "sender thread panicked".to_owned())?;
        let received = self
            .receiver
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| "receiver thread panicked".to_owned())?;
        let (sent_n, sent_h) = sent?;
        let (recv_n, recv_h) = received?;
        if recv_n != sent_n {
            return Err(format!("sent {sent_n} bytes, received {recv_n}"));
        }
        if recv_h != sent_h {
            return Err("hash of the received stream differs from the sent one".to_owned());
        }
        Ok(Transfer {
            bytes: recv_n,
            elapsed: self.start.elapsed(),
        })
    }
}

impl Drop for LiveStream {
    /// An unfinished stream (a test that panicked) is told to end; its threads end by
    /// themselves within its timeout.
    fn drop(&mut self) {
        self.finish
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
