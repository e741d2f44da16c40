//! The control socket, the client commands, the metrics endpoint and SIGHUP reload, against
//! real tundra processes in a two-node cluster. Needs root (runs for real in CI).
//!
//! Node 2 also owns 198.19.22.0/24 (a second local subnet, pod 198.19.22.1 on its lo); node
//! 1 does not route it until a test adds the route at run time.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const EXTRA_SUBNET: &str = "198.19.22.0/24";
const EXTRA_POD: &str = "198.19.22.1";
/// A bound on each wait for tundra over the control socket.
const WAIT: Duration = Duration::from_secs(20);

/// A raw protocol connection: one line out, one line back.
struct Ctl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Ctl {
    fn connect(path: &Path) -> Ctl {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        Ctl {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends `line` (plus a newline) and returns the parsed reply object.
    fn send(&mut self, line: &str) -> Value {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        self.reply()
    }

    fn reply(&mut self) -> Value {
        let mut reply = String::new();
        let n = self.reader.read_line(&mut reply).expect("a reply line");
        assert!(n > 0, "tundra closed the connection without a reply");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
    }

    /// The `result` of a request that must succeed.
    fn ok(&mut self, request: Value) -> Value {
        let reply = self.send(&request.to_string());
        assert_eq!(reply["ok"], json!(true), "{request} was refused: {reply}");
        reply["result"].clone()
    }

    /// The error line of a request that must be refused.
    fn refused(&mut self, line: &str) -> String {
        let reply = self.send(line);
        assert_eq!(reply["ok"], json!(false), "{line} was accepted: {reply}");
        let error = reply["error"].as_str().expect("an error string").to_owned();
        assert!(!error.is_empty() && !error.contains('\n'), "{error:?}");
        error
    }

    fn routes(&mut self) -> Value {
        self.ok(json!({"cmd": "routes.list"}))
    }
}

fn route(prefix: &str, peer: &str) -> Value {
    json!({"prefix": prefix, "peer": peer})
}

fn node2() -> String {
    format!("{}:{PORT}", underlay_v4(2))
}

/// The routes node 1 starts with: node 2's two subnets, sorted by prefix.
fn initial_routes() -> Value {
    json!([
        route(&subnet_v4(2), &node2()),
        route(&subnet_v6(2), &node2())
    ])
}

/// A two-node cluster, tundra on node 2 (and on node 1 if `start_node1`); node 2 also owns
/// [`EXTRA_SUBNET`] with [`EXTRA_POD`] on its lo.
fn cluster(start_node1: bool) -> Cluster {
    let mut c = Cluster::new(2);
    ip(&[
        "-n",
        &c.ns(2),
        "addr",
        "add",
        &format!("{EXTRA_POD}/32"),
        "dev",
        "lo",
    ]);
    c.start_tundra(2, &["--local-subnet", EXTRA_SUBNET]);
    if start_node1 {
        c.start_tundra(1, &[]);
    }
    c
}

/// A socket path `name` of this cluster: in its directory, or in the temporary directory
/// under the cluster's unique prefix if that would be too long for a Unix socket. Removed on
/// drop.
struct SockPath(PathBuf);

impl SockPath {
    fn new(c: &Cluster, name: &str) -> SockPath {
        let path = c.dir().join(name);
        if path.as_os_str().len() <= 100 {
            return SockPath(path);
        }
        SockPath(std::env::temp_dir().join(format!("{}-{name}", c.prefix())))
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn ping_extra(c: &Cluster) -> Ping {
    ping(
        &c.ns(1),
        &[
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            &pod_v4(1).to_string(),
            EXTRA_POD,
        ],
    )
}

#[test]
fn routes_over_the_socket() {
    let mut c = cluster(true);
    let path = c.control_path(1);
    let meta = fs::metadata(&path).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "{} is no socket",
        path.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} is not 0600",
        path.display()
    );

    let mut ctl = Ctl::connect(&path);
    let health = ctl.ok(json!({"cmd": "health"}));
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["routes"], 2, "{health}");
    assert!(
        health["version"].is_string() && health["io"].is_string(),
        "{health}"
    );
    assert_eq!(ctl.routes(), initial_routes());
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );
    assert!(
        !ping_extra(&c).all_ok(),
        "{EXTRA_SUBNET} reachable before it is routed"
    );

    // A route added over the socket carries traffic to the new prefix.
    let applied = ctl.ok(json!({"cmd": "routes.add", "prefix": EXTRA_SUBNET, "peer": node2()}));
    assert_eq!(applied["added"], 1, "{applied}");
    assert_eq!(applied["routes"], 3, "{applied}");
    let mut expected = vec![
        route(EXTRA_SUBNET, &node2()),
        route(&subnet_v4(2), &node2()),
        route(&subnet_v6(2), &node2()),
    ];
    expected.sort_by_key(|r| {
        r["prefix"]
            .as_str()
            .unwrap()
            .parse::<ipnet::IpNet>()
            .unwrap()
    });
    assert_eq!(ctl.routes(), json!(expected));
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        EXTRA_POD,
        CONVERGE_TIMEOUT,
    );
    let peers = ctl.ok(json!({"cmd": "peers"}));
    assert_eq!(peers[0]["addr"], node2(), "{peers}");
    assert_eq!(peers[0]["prefixes"].as_array().unwrap().len(), 3, "{peers}");
    assert!(peers[0]["tx_packets"].as_u64().unwrap() > 0, "{peers}");
    let stats = ctl.ok(json!({"cmd": "stats"}));
    assert!(stats["tx_packets"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["drops"].is_object(), "{stats}");

    // Removing it stops the traffic again.
    let applied = ctl.ok(json!({"cmd": "routes.del", "prefix": EXTRA_SUBNET}));
    assert_eq!(applied["removed"], 1, "{applied}");
    assert_eq!(ctl.routes(), initial_routes());
    assert!(
        !ping_extra(&c).all_ok(),
        "{EXTRA_SUBNET} reachable after its route went"
    );

    // routes.apply: one transaction.
    let applied = ctl.ok(json!({"cmd": "routes.apply",
        "del": [subnet_v6(2)],
        "add": [route(EXTRA_SUBNET, &node2())]}));
    assert_eq!(
        (applied["added"].clone(), applied["removed"].clone()),
        (json!(1), json!(1))
    );
    ctl.ok(json!({"cmd": "routes.apply", "replace": initial_routes()}));
    assert_eq!(ctl.routes(), initial_routes());
    let version = ctl.ok(json!({"cmd": "health"}))["table_version"].clone();

    // Bad requests: an error line each, nothing changes, the connection stays usable.
    let bad: &[(&str, &[&str])] = &[
        ("{\"cmd\":", &["malformed JSON"]),
        ("not json", &["malformed JSON"]),
        ("{\"cmd\":\"routes.frob\"}", &["unknown command routes.frob"]),
        ("{}", &["missing \"cmd\""]),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.22.1/24\",\"peer\":\"198.18.0.2:8285\"}",
            &["prefix 198.19.22.1/24", "did you mean 198.19.22.0/24?"],
        ),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.22.0/33\",\"peer\":\"198.18.0.2:8285\"}",
            &["prefix 198.19.22.0/33", "invalid prefix length 33"],
        ),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.22.0/24\",\"peer\":\"198.18.0.2.7:8285\"}",
            &["peer 198.18.0.2.7:8285", "invalid address"],
        ),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.22.0/24\",\"peer\":\"[fd18::2]:8285\"}",
            &["peer [fd18::2]:8285", "listen address 0.0.0.0:8285 is IPv4"],
        ),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.1.128/25\",\"peer\":\"198.18.0.2:8285\"}",
            &["198.19.1.128/25", "overlaps local subnet 198.19.1.0/24"],
        ),
        (
            "{\"cmd\":\"routes.add\",\"prefix\":\"198.19.22.0/24\"}",
            &["missing \"peer\""],
        ),
        (
            "{\"cmd\":\"routes.del\",\"prefix\":\"198.19.99.0/24\"}",
            &["198.19.99.0/24 is not routed"],
        ),
        (
            // One bad change refuses the whole transaction.
            "{\"cmd\":\"routes.apply\",\"add\":[{\"prefix\":\"198.19.22.0/24\",\"peer\":\"198.18.0.2:8285\"}],\"del\":[\"198.19.99.0/24\"]}",
            &["198.19.99.0/24 is not routed"],
        ),
        ("", &["malformed JSON"]),
    ];
    for (line, parts) in bad {
        let error = ctl.refused(line);
        for part in *parts {
            assert!(error.contains(part), "{line}: {error:?} lacks {part:?}");
        }
    }
    assert_eq!(ctl.routes(), initial_routes());
    assert_eq!(ctl.ok(json!({"cmd": "health"}))["table_version"], version);

    // An oversized line: an error reply, then the connection is closed.
    let mut big = Ctl::connect(&path);
    let line = format!("{{\"cmd\":\"health\",\"x\":\"{}\"}}", "y".repeat(1 << 20));
    // tundra may close before reading it all: a failed write is fine, the reply is not.
    let _ = big.writer.write_all(line.as_bytes());
    let _ = big.writer.write_all(b"\n");
    let reply = big.reply();
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("longer than 1048576"),
        "{reply}"
    );
    let mut rest = String::new();
    assert_eq!(
        big.reader.read_to_string(&mut rest).unwrap_or(0),
        0,
        "{rest}"
    );
    assert_eq!(ctl.routes(), initial_routes());

    // A second tundra on the same control socket is refused, and the first keeps it.
    let out = ns_cmd(
        &c.ns(2),
        env!("CARGO_BIN_EXE_tundra"),
        &[
            "run",
            "--tun",
            "tdrx",
            "--listen",
            "0.0.0.0:8999",
            "--local-subnet",
            "198.19.30.0/24",
            "--control",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("another tundra is running with control socket")
            && out.stderr.contains(path.to_str().unwrap()),
        "{out}"
    );
    assert_eq!(ctl.routes(), initial_routes());

    // At most 16 connections at once: the others get an error line.
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for _ in 0..20 {
        let mut extra = Ctl::connect(&path);
        let _ = extra.writer.write_all(b"{\"cmd\":\"health\"}\n");
        let reply = extra.reply();
        if reply["ok"] == json!(true) {
            accepted.push(extra);
        } else {
            let error = reply["error"].as_str().unwrap();
            assert!(error.contains("too many control connections"), "{reply}");
            refused += 1;
        }
    }
    // `ctl` is one of the 16 (the oversized line's may linger a moment).
    assert!(
        accepted.len() <= 15 && refused >= 5,
        "{} accepted",
        accepted.len()
    );
    drop(accepted);
    wait_until("a free connection slot", WAIT, || {
        let mut again = Ctl::connect(&path);
        let _ = again.writer.write_all(b"{\"cmd\":\"health\"}\n");
        again.reply()["ok"] == json!(true)
    });

    // Shutdown does not wait for idle clients.
    let exit = c.stop(1);
    assert_eq!(
        exit.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        exit.stderr
    );
    assert!(!path.exists(), "{} left behind at shutdown", path.display());
    let mut rest = String::new();
    assert_eq!(ctl.reader.read_to_string(&mut rest).unwrap_or(0), 0);
    c.shutdown();
}

/// A stale socket file (nobody answers) is replaced; the client commands work against the
/// socket; the metrics endpoint serves the counters.
#[test]
fn cli_and_metrics() {
    let mut c = Cluster::new(2);
    let stale_path = SockPath::new(&c, "stale.sock");
    let stale = stale_path.0.clone();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let stale_arg = stale.to_str().unwrap().to_owned();
    ip(&[
        "-n",
        &c.ns(2),
        "addr",
        "add",
        &format!("{EXTRA_POD}/32"),
        "dev",
        "lo",
    ]);
    c.start_tundra(
        2,
        &[
            "--local-subnet",
            EXTRA_SUBNET,
            "--metrics",
            &format!("{}:9100", underlay_v4(2)),
        ],
    );
    c.start_tundra(1, &["--control", &stale_arg, "--metrics", "9100"]);
    assert!(
        c.stderr(2).contains("is exposed beyond this host"),
        "no warning for a non-loopback metrics address:\n{}",
        c.stderr(2)
    );
    let path = c.control_path(1);
    assert_eq!(path, stale);
    assert!(fs::metadata(&path).unwrap().file_type().is_socket());
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        &pod_v4(2).to_string(),
        CONVERGE_TIMEOUT,
    );

    let tundra = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control", &stale_arg]);
        run_cmd(env!("CARGO_BIN_EXE_tundra"), &all, CMD_TIMEOUT)
    };
    let out = tundra(&["routes", "list"]);
    assert!(out.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("PREFIX") && lines[0].ends_with("PEER"),
        "{out}"
    );
    let row = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(row(lines[1]), [subnet_v4(2), node2()], "{out}");
    assert_eq!(row(lines[2]), [subnet_v6(2), node2()], "{out}");

    let out = tundra(&["routes", "add", EXTRA_SUBNET, &node2()]);
    assert!(out.success(), "{out}");
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        EXTRA_POD,
        CONVERGE_TIMEOUT,
    );
    let out = tundra(&["routes", "list"]);
    assert_eq!(out.stdout.lines().count(), 4, "{out}");
    let out = tundra(&["routes", "del", EXTRA_SUBNET]);
    assert!(out.success(), "{out}");
    let out = tundra(&["routes", "del", EXTRA_SUBNET]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        format!("error: routes.del: {EXTRA_SUBNET} is not routed"),
        "{out}"
    );
    let out = tundra(&["routes", "add", "198.19.1.0/24", &node2()]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(out.stderr.contains("overlaps local subnet"), "{out}");

    let out = tundra(&["stats", "--json"]);
    assert!(out.success(), "{out}");
    let stats: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let tx = stats["tx_packets"].as_u64().unwrap();
    assert!(
        tx > 0 && stats["rx_packets"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert!(stats["drops"]["no_route"].is_u64(), "{stats}");
    assert_eq!(stats["peers"][0]["addr"], node2(), "{stats}");
    let out = tundra(&["stats"]);
    assert!(out.success(), "{out}");
    for part in ["tx ", "rx ", "drops:", &format!("peer {}:", node2())] {
        assert!(out.stdout.contains(part), "no {part:?} in:\n{out}");
    }

    // Metrics: node 1 on its own loopback, node 2 on its underlay address (reached from 1).
    let (status, body) = in_netns(&c.ns(1), || http_get("127.0.0.1:9100", "/metrics"));
    assert_eq!(status, 200, "{body}");
    let sample = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
            .parse()
            .unwrap()
    };
    assert_eq!(sample("tundra_up"), 1);
    assert!(sample("tundra_tx_packets_total") >= tx);
    assert!(sample("tundra_rx_packets_total") > 0);
    sample("tundra_tx_bytes_total");
    sample("tundra_icmp_sent_total");
    sample("tundra_drops_total{reason=\"no_route\"}");
    assert_eq!(sample("tundra_routes"), 2);
    assert!(
        sample(&format!(
            "tundra_peer_tx_packets_total{{peer=\"{}\"}}",
            node2()
        )) > 0
    );
    assert!(sample("tundra_table_version") >= 3);
    assert!(body.contains("# TYPE tundra_drops_total counter"), "{body}");
    let (status, _) = in_netns(&c.ns(1), || http_get("127.0.0.1:9100", "/"));
    assert_eq!(status, 404);
    let (status, body) = in_netns(&c.ns(1), || {
        http_get(&format!("{}:9100", underlay_v4(2)), "/metrics")
    });
    assert_eq!(status, 200, "{body}");
    assert!(body.lines().any(|l| l == "tundra_routes 2"), "{body}");

    c.shutdown();
    assert!(!stale.exists(), "control socket left behind");
}

/// `GET path` over HTTP/1.0 from the current namespace: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// A tundra process started by hand (for `--config` alone); killed on drop, by pid.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn config_text(control: &Path, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "tun = \"{TUN}\"\nlisten = \"0.0.0.0:{PORT}\"\nlocal_subnets = [\"{}\", \"{}\"]\n\
         peers = [{}]\ncontrol = \"{}\"\n",
        subnet_v4(1),
        subnet_v6(1),
        peers.join(", "),
        control.display()
    )
}

/// SIGHUP applies the edited config file's routes; an invalid file is refused and the running
/// routes stay.
#[test]
fn sighup_reload() {
    let c = cluster(false);
    let control_path = SockPath::new(&c, "reload.sock");
    let control: PathBuf = control_path.0.clone();
    let config = c.dir().join("node1.toml");
    let mut peers = vec![
        format!("{}={}", subnet_v4(2), node2()),
        format!("{}={}", subnet_v6(2), node2()),
    ];
    fs::write(&config, config_text(&control, &peers)).unwrap();
    let log = c.dir().join("reload.stderr");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.ns(1),
            env!("CARGO_BIN_EXE_tundra"),
            "run",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let pid = proc.0.id().to_string();
    let log_text = || fs::read_to_string(&log).unwrap_or_default();

    let deadline = Instant::now() + WAIT;
    while UnixStream::connect(&control).is_err() {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("tundra exited ({status}):\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "no control socket:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut ctl = Ctl::connect(&control);
    assert_eq!(ctl.routes(), initial_routes());

    peers.push(format!("{EXTRA_SUBNET}={}", node2()));
    fs::write(&config, config_text(&control, &peers)).unwrap();
    assert!(run_cmd("kill", &["-HUP", &pid], CMD_TIMEOUT).success());
    let deadline = Instant::now() + WAIT;
    while ctl.routes().as_array().unwrap().len() != 3 {
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let routed = ctl.routes();
    assert!(
        routed
            .as_array()
            .unwrap()
            .contains(&route(EXTRA_SUBNET, &node2())),
        "{routed}"
    );
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        EXTRA_POD,
        CONVERGE_TIMEOUT,
    );

    // An invalid file: refused, logged, the running routes unchanged.
    fs::write(
        &config,
        config_text(&control, &["198.19.2.1/24=198.18.0.2:8285".to_owned()]),
    )
    .unwrap();
    assert!(run_cmd("kill", &["-HUP", &pid], CMD_TIMEOUT).success());
    let deadline = Instant::now() + WAIT;
    while !log_text().contains("reload refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(log_text().contains("198.19.2.1/24"), "{}", log_text());
    assert_eq!(ctl.routes(), routed);
    wait_ping(
        &c.ns(1),
        &pod_v4(1).to_string(),
        EXTRA_POD,
        CONVERGE_TIMEOUT,
    );
    drop(ctl);

    assert!(run_cmd("kill", &["-TERM", &pid], CMD_TIMEOUT).success());
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = proc.0.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", log_text());
    assert!(!control.exists(), "control socket left behind");
    drop(proc);
    c.shutdown();
}

/// With `--encap vxlan` (from a config file): routes carry the peer's MAC, a peer without a
/// port gets 8472, a route without a MAC is refused naming its peer, and stats, health, the
/// client commands and the startup log show the format, the VNI and our VTEP MAC.
#[test]
fn vxlan_over_the_socket() {
    const MAC2: &str = "0a:58:c6:13:02:00";
    let c = Cluster::new(2);
    let control_path = SockPath::new(&c, "vxlan.sock");
    let control: PathBuf = control_path.0.clone();
    let config = c.dir().join("vxlan.toml");
    fs::write(
        &config,
        format!(
            "tun = \"{TUN}\"\nencap = \"vxlan\"\nvni = 5\nlocal_subnets = [\"{}\", \"{}\"]\n\
             peers = [\"{}={},mac={MAC2}\"]\ncontrol = \"{}\"\n",
            subnet_v4(1),
            subnet_v6(1),
            subnet_v4(2),
            underlay_v4(2),
            control.display()
        ),
    )
    .unwrap();
    let log = c.dir().join("vxlan.stderr");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.ns(1),
            env!("CARGO_BIN_EXE_tundra"),
            "run",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    while UnixStream::connect(&control).is_err() {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("tundra exited ({status}):\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "no control socket:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }

    let ours = tundra::config::default_vtep_mac(&[
        subnet_v4(1).parse().unwrap(),
        subnet_v6(1).parse().unwrap(),
    ])
    .to_string();
    let running = log_text();
    assert!(
        running.contains(&format!("encap=vxlan vni=5 vtep_mac={ours}")),
        "{running}"
    );
    let node2 = format!("{}:8472", underlay_v4(2));
    let mut ctl = Ctl::connect(&control);
    assert_eq!(
        ctl.routes(),
        json!([{"prefix": subnet_v4(2), "peer": node2, "mac": MAC2}])
    );
    let encap = json!({"format": "vxlan", "vni": 5, "vtep_mac": ours, "port": 8472});
    assert_eq!(ctl.ok(json!({"cmd": "health"}))["encap"], encap);
    assert_eq!(ctl.ok(json!({"cmd": "stats"}))["encap"], encap);
    assert_eq!(ctl.ok(json!({"cmd": "peers"}))[0]["mac"], MAC2);
    let e = ctl.refused(&format!(
        r#"{{"cmd":"routes.add","prefix":"{}","peer":"{}"}}"#,
        subnet_v6(2),
        underlay_v4(2)
    ));
    assert!(
        e.starts_with(&format!(
            "routes.add: peer {node2}: a vxlan peer needs its VTEP MAC"
        )),
        "{e}"
    );
    let added = ctl.ok(json!({
        "cmd": "routes.add", "prefix": subnet_v6(2), "peer": underlay_v4(2).to_string(), "mac": MAC2,
    }));
    assert_eq!(added["added"], 1);

    // The client commands: the peer as after `--peer CIDR=`, the port left to tundra.
    let tundra = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control", control.to_str().unwrap()]);
        run_cmd(env!("CARGO_BIN_EXE_tundra"), &all, CMD_TIMEOUT)
    };
    let peer = format!("{},mac={MAC2}", underlay_v4(2));
    let out = tundra(&["routes", "add", EXTRA_SUBNET, &peer]);
    assert!(out.success(), "{out}");
    let out = tundra(&[
        "routes",
        "add",
        "198.19.23.0/24",
        &underlay_v4(2).to_string(),
    ]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("peer {node2}: a vxlan peer needs its VTEP MAC")),
        "{out}"
    );
    let out = tundra(&["routes", "list"]);
    assert!(out.success(), "{out}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["PREFIX", "PEER", "MAC"], "{out}");
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows[1..].iter().all(|r| r[1..] == [node2.as_str(), MAC2]),
        "{out}"
    );
    let out = tundra(&["stats"]);
    assert!(out.success(), "{out}");
    for part in [
        format!("encap vxlan, vni 5, vtep mac {ours}, port 8472"),
        format!("peer {node2} (mac {MAC2}):"),
    ] {
        assert!(out.stdout.contains(&part), "no {part:?} in:\n{out}");
    }
    drop(ctl);

    let pid = proc.0.id().to_string();
    assert!(run_cmd("kill", &["-TERM", &pid], CMD_TIMEOUT).success());
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = proc.0.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", log_text());
    drop(proc);
    c.shutdown();
}
