//! The `tundra` binary's command line, without root: every invalid flag or config file must be
//! refused with exit status 2 and one line on stderr naming the bad value, before anything on
//! the system is touched; `--help` must document every flag.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const FLAGS: [&str; 25] = [
    "--tun",
    "--listen",
    "--local-subnet",
    "--peer",
    "--encap",
    "--vni",
    "--vtep-mac",
    "--mtu",
    "--io",
    "--offload",
    "--tun-queue-len",
    "--socket-buffer",
    "--no-configure",
    "--control",
    "--metrics",
    "--config",
    "--etcd-endpoints",
    "--etcd-prefix",
    "--public-ip",
    "--public-ipv6",
    "--subnet-file",
    "--etcd-cafile",
    "--etcd-certfile",
    "--etcd-keyfile",
    "--etcd-start-timeout",
];

/// A TUN name no other test (or test process) uses, so that its absence afterwards means
/// this run did not create it.
fn unique_tun() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("tdc{}x{n}", std::process::id() % 1_000_000)
}

fn tundra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tundra"))
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .expect("the tundra binary runs")
}

/// A scratch directory under the target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tundra run --tun <unique> ARGS` (without `--tun` if ARGS has one) and checks it was refused as a usage error: status 2,
/// nothing on stdout, exactly one `error: ...` line on stderr containing every part of
/// `expected`, and no TUN device created. Returns the line.
#[track_caller]
fn refused(args: &[&str], expected: &[&str]) -> String {
    let mut tun = unique_tun();
    let mut all = vec!["run"];
    match args.iter().position(|&a| a == "--tun") {
        Some(i) => tun = args.get(i + 1).unwrap_or(&"").to_string(),
        None => all.extend(["--tun", &tun]),
    }
    all.extend_from_slice(args);
    let out = tundra(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert!(
        out.stdout.is_empty(),
        "{args:?}: stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = stderr.strip_suffix('\n').unwrap_or(&stderr);
    assert!(!line.contains('\n'), "{args:?}: not one line: {stderr:?}");
    assert!(line.starts_with("error: "), "{args:?}: {line:?}");
    for part in expected {
        assert!(
            line.contains(part),
            "{args:?}: {line:?} does not contain {part:?}"
        );
    }
    assert!(
        !Path::new("/sys/class/net").join(&tun).exists(),
        "{args:?}: TUN device {tun} was created"
    );
    line.to_owned()
}

const LOCAL: [&str; 2] = ["--local-subnet", "10.1.0.0/16"];
const PEER: [&str; 2] = ["--peer", "10.2.0.0/16=192.0.2.2:8285"];

fn with_base<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = LOCAL.iter().chain(PEER.iter()).copied().collect();
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_cidrs() {
    let line = refused(
        &[
            "--local-subnet",
            "10.1.0.0/16",
            "--peer",
            "198.19.2.0/33=198.18.0.2:8285",
        ],
        &[],
    );
    assert!(
        line.starts_with("error: --peer 198.19.2.0/33=198.18.0.2:8285: invalid prefix length 33"),
        "{line}"
    );
    refused(
        &["--local-subnet", "10.1.0.1/16"],
        &["--local-subnet 10.1.0.1/16", "10.1.0.0/16?"],
    );
    refused(
        &["--local-subnet", "10.1.0.0"],
        &["--local-subnet 10.1.0.0:", "prefix length"],
    );
    refused(&["--local-subnet", "10.1.0.300/24"], &["10.1.0.300"]);
    refused(
        &with_base(&["--peer", "fd00::1/64=[fd18::2]"]),
        &["fd00::1/64", "fd00::/64?"],
    );
}

#[test]
fn bad_subnet_combinations() {
    refused(&[], &["no local subnet", "--local-subnet"]);
    refused(
        &[
            "--local-subnet",
            "10.1.0.0/16",
            "--local-subnet",
            "10.1.128.0/17",
        ],
        &[
            "--local-subnet 10.1.128.0/17",
            "overlaps local subnet 10.1.0.0/16",
        ],
    );
    refused(
        &with_base(&["--peer", "10.1.2.0/24=192.0.2.3"]),
        &[
            "--peer 10.1.2.0/24=192.0.2.3",
            "overlaps local subnet 10.1.0.0/16",
        ],
    );
    refused(
        &with_base(&["--peer", "10.2.0.0/16=192.0.2.3"]),
        &[
            "--peer 10.2.0.0/16=192.0.2.3",
            "already routed to 192.0.2.2:8285",
        ],
    );
}

#[test]
fn bad_peer_addresses() {
    refused(
        &with_base(&["--peer", "10.3.0.0/16"]),
        &["--peer 10.3.0.0/16:", "CIDR=ADDR"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=192.0.2.3:0"]),
        &["192.0.2.3:0", "port 0"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=0.0.0.0"]),
        &["10.3.0.0/16=0.0.0.0", "unspecified"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=224.0.0.5"]),
        &["224.0.0.5", "not a unicast"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=node3:8285"]),
        &["node3:8285", "invalid address"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=fd18::2"]),
        &["fd18::2", "brackets", "[fd18::2]"],
    );
    refused(
        &with_base(&["--peer", "10.3.0.0/16=192.0.2.3:99999"]),
        &["99999", "invalid port"],
    );
    refused(
        &with_base(&["--peer", "fd00:3::/64=[fd18::3]:8285"]),
        &["--peer fd00:3::/64=[fd18::3]:8285", "0.0.0.0:8285 is IPv4"],
    );
    refused(
        &with_base(&["--listen", "[fd18::1]:8285"]),
        &["--peer 10.2.0.0/16=192.0.2.2:8285", "is IPv6"],
    );
}

#[test]
fn bad_scalars() {
    refused(
        &with_base(&["--tun", "bad/name"]),
        &["--tun bad/name:", "'/'"],
    );
    refused(
        &with_base(&["--tun", "a-name-far-too-long"]),
        &["--tun a-name-far-too-long:", "15"],
    );
    refused(
        &with_base(&["--listen", "0.0.0.0:0"]),
        &["--listen 0.0.0.0:0:", "port 0"],
    );
    refused(&with_base(&["--listen", "nowhere"]), &["--listen nowhere:"]);
    refused(
        &with_base(&["--mtu", "100"]),
        &["--mtu 100:", "576..=65535"],
    );
    refused(&with_base(&["--mtu", "65536"]), &["--mtu 65536:"]);
    refused(&with_base(&["--mtu", "lots"]), &["--mtu lots:"]);
    refused(
        &with_base(&["--mtu", "1200", "--local-subnet", "fd00:1::/64"]),
        &["--mtu 1200:", "1280"],
    );
    refused(
        &with_base(&["--io", "fast"]),
        &["--io fast:", "auto, uring or poll"],
    );
    refused(
        &with_base(&["--offload", "yes"]),
        &["--offload yes:", "auto, on or off"],
    );
    refused(
        &with_base(&["--tun-queue-len", "0"]),
        &["--tun-queue-len 0:", "1..=100000"],
    );
    refused(
        &with_base(&["--socket-buffer", "4G"]),
        &["--socket-buffer 4G:", "suffix K or M"],
    );
    refused(
        &with_base(&["--socket-buffer", "1K"]),
        &["--socket-buffer 1K:", "64K..=1024M"],
    );
    refused(
        &with_base(&["--encap", "gre"]),
        &["--encap gre:", "supported: udp, vxlan"],
    );
}

const MAC2: &str = "0a:58:c6:13:02:00";

/// vxlan's settings: refused with udp, checked with vxlan; every vxlan peer needs its MAC.
#[test]
fn bad_vxlan_settings() {
    let line = refused(&with_base(&["--encap", "vxlan"]), &[]);
    assert_eq!(
        line,
        "error: --peer 10.2.0.0/16=192.0.2.2:8285: a vxlan peer needs its VTEP MAC, the MAC of its VXLAN device: append ,mac=MAC"
    );
    refused(
        &with_base(&["--vni", "5"]),
        &["--vni 5:", "applies to --encap vxlan only"],
    );
    refused(
        &with_base(&["--vtep-mac", "0a:58:c6:13:01:00"]),
        &[
            "--vtep-mac 0a:58:c6:13:01:00:",
            "applies to --encap vxlan only",
        ],
    );
    let udp_peer_mac = format!("10.3.0.0/16=192.0.2.3,mac={MAC2}");
    refused(
        &with_base(&["--peer", &udp_peer_mac]),
        &[&format!("--peer {udp_peer_mac}:"), "--encap vxlan only"],
    );
    let peer = format!("10.2.0.0/16=192.0.2.2,mac={MAC2}");
    let vx = |extra: &[&str]| {
        let mut args = vec!["--encap", "vxlan", "--local-subnet", "10.1.0.0/16"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let refused_vx = |extra: &[&str], expected: &[&str]| {
        let args = vx(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, expected)
    };
    refused_vx(
        &["--peer", &peer, "--vni", "16777216"],
        &["--vni 16777216:", "0..=16777215"],
    );
    refused_vx(
        &["--peer", &peer, "--vni", "x"],
        &["--vni x:", "invalid number"],
    );
    refused_vx(
        &["--peer", &peer, "--vtep-mac", "ff:ff:ff:ff:ff:ff"],
        &["--vtep-mac ff:ff:ff:ff:ff:ff:", "not a unicast MAC"],
    );
    refused_vx(
        &["--peer", "10.2.0.0/16=192.0.2.2,mac=02:00"],
        &[
            "--peer 10.2.0.0/16=192.0.2.2,mac=02:00:",
            "invalid MAC address",
        ],
    );
    refused_vx(
        &[
            "--peer",
            &peer,
            "--peer",
            "10.3.0.0/16=192.0.2.2,mac=0a:58:c6:13:03:00",
        ],
        &[
            "--peer 10.3.0.0/16=192.0.2.2,mac=0a:58:c6:13:03:00:",
            &format!("already has VTEP MAC {MAC2}"),
        ],
    );
    // The config file: the peer's line is named.
    let dir = TempDir::new();
    let path = dir.write(
        "vxlan.toml",
        &format!(
            "encap = \"vxlan\"\nlocal_subnets = [\"10.1.0.0/16\"]\npeers = [\n  \"{peer}\",\n  \"10.3.0.0/16=192.0.2.3\",\n]\n"
        ),
    );
    let p = path.to_str().unwrap();
    refused(
        &["--config", p],
        &[&format!(
            "config {p} line 5: peers 10.3.0.0/16=192.0.2.3: a vxlan peer needs its VTEP MAC"
        )],
    );
}

#[test]
fn clap_errors_are_one_line_too() {
    refused(&with_base(&["--peers", "x"]), &["--peers"]);
    refused(&["--local-subnet"], &["--local-subnet"]);
    refused(&with_base(&["--no-configure=yes"]), &["--no-configure"]);
}

#[test]
fn bad_config_files() {
    let dir = TempDir::new();
    let path = dir.write(
        "unknown.toml",
        "tun = \"t0\"\nlocal_subnets = [\"10.1.0.0/16\"]\nroutes = []\n",
    );
    let p = path.to_str().unwrap();
    refused(
        &["--config", p],
        &[&format!("config {p} line 3:"), "unknown field", "routes"],
    );

    let path = dir.write(
        "peer.toml",
        "local_subnets = [\"10.1.0.0/16\"]\npeers = [\n  \"10.2.0.0/16=192.0.2.2\",\n  \"198.19.2.0/33=198.18.0.2:8285\",\n]\n",
    );
    let p = path.to_str().unwrap();
    refused(
        &["--config", p],
        &[&format!(
            "config {p} line 4: peers 198.19.2.0/33=198.18.0.2:8285: invalid prefix length 33"
        )],
    );

    let path = dir.write(
        "syntax.toml",
        "local_subnets = [\"10.1.0.0/16\"\nmtu = 1400\n",
    );
    let p = path.to_str().unwrap();
    refused(&["--config", p], &[&format!("config {p} line ")]);

    let path = dir.write(
        "type.toml",
        "local_subnets = [\"10.1.0.0/16\"]\nmtu = \"1400\"\n",
    );
    let p = path.to_str().unwrap();
    refused(&["--config", p], &[&format!("config {p} line 2:"), "mtu"]);

    let missing = dir.0.join("missing.toml");
    let p = missing.to_str().unwrap();
    refused(&["--config", p], &[&format!("cannot read config {p}")]);

    // A flag replaces the file's bad peer list, so the first error is the file's MTU.
    let path = dir.write(
        "override.toml",
        "local_subnets = [\"10.1.0.0/16\"]\npeers = [\"not a peer\"]\nmtu = 10\n",
    );
    let p = path.to_str().unwrap();
    let line = refused(
        &["--config", p, "--peer", "10.2.0.0/16=192.0.2.2"],
        &[&format!("config {p} line 3: mtu 10:")],
    );
    assert!(!line.contains("not a peer"), "{line}");

    // Failing touched nothing: the directory holds just the files written here.
    assert_eq!(
        dir.entries(),
        [
            "override.toml",
            "peer.toml",
            "syntax.toml",
            "type.toml",
            "unknown.toml"
        ]
    );
}

#[test]
fn help_documents_every_flag() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["run", "-h"],
        &["help", "run"],
    ] {
        let out = tundra(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in FLAGS {
            assert!(
                help.contains(flag),
                "{args:?} does not mention {flag}:\n{help}"
            );
        }
        for default in ["tundra0", "0.0.0.0:8285", "auto"] {
            assert!(
                help.contains(default),
                "{args:?} does not mention default {default}"
            );
        }
    }
    let long = String::from_utf8(tundra(&["run", "--help"]).stdout).unwrap();
    for text in [
        "Example: --mtu 1400",
        "[2001:db8::2]",
        "local_subnets = ",
        "peers = ",
        "udp|vxlan",
        "0.0.0.0:8472",
        ",mac=0a:58:c0:00:02:02",
        "vtep_mac = ",
        "etcd_endpoints = ",
        "public_ip = ",
        "Default: /coreos.com/network",
        "Default: /run/flannel/subnet.env",
        "Default: 60s",
    ] {
        assert!(long.contains(text), "run --help does not mention {text}");
    }
}

/// A flannel node's flags: etcd, and our public IP.
const ETCD: [&str; 4] = [
    "--etcd-endpoints",
    "http://198.18.0.10:2379",
    "--public-ip",
    "198.18.0.1",
];

fn with_etcd<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = ETCD.to_vec();
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_etcd_settings() {
    // What the network config in etcd decides cannot be given too.
    refused(
        &with_etcd(&LOCAL),
        &["error: --local-subnet 10.1.0.0/16: not with --etcd-endpoints"],
    );
    refused(
        &with_etcd(&PEER),
        &["error: --peer 10.2.0.0/16=192.0.2.2:8285: not with --etcd-endpoints"],
    );
    refused(
        &with_etcd(&["--encap", "vxlan"]),
        &["error: --encap vxlan: not with --etcd-endpoints", "Backend"],
    );
    refused(
        &with_etcd(&["--vni", "2"]),
        &["error: --vni 2: not with --etcd-endpoints"],
    );
    // Our address.
    refused(
        &["--etcd-endpoints", "http://198.18.0.10:2379"],
        &["--etcd-endpoints needs --public-ip ADDR"],
    );
    let endpoint = &ETCD[..2];
    refused(
        &[endpoint, &["--public-ip", "localhost"]].concat(),
        &["--public-ip localhost:", "invalid IPv4 address"],
    );
    refused(
        &[endpoint, &["--public-ip", "0.0.0.0"]].concat(),
        &["--public-ip 0.0.0.0: 0.0.0.0 is not a node address"],
    );
    refused(
        &with_etcd(&["--public-ipv6", "198.18.0.1"]),
        &["--public-ipv6 198.18.0.1:", "invalid IPv6 address"],
    );
    // etcd.
    refused(
        &[
            "--etcd-endpoints",
            "198.18.0.10:2379",
            "--public-ip",
            "198.18.0.1",
        ],
        &["--etcd-endpoints 198.18.0.10:2379:", "http://HOST:PORT"],
    );
    refused(
        &with_etcd(&["--etcd-certfile", "/c.pem"]),
        &["--etcd-certfile /c.pem:", "--etcd-keyfile"],
    );
    refused(
        &with_etcd(&["--etcd-start-timeout", "forever"]),
        &["--etcd-start-timeout forever:", "invalid duration"],
    );
    refused(
        &with_etcd(&["--etcd-prefix", "coreos.com"]),
        &["--etcd-prefix coreos.com:", "starts with '/'"],
    );
    // etcd settings without etcd.
    refused(
        &with_base(&["--public-ip", "198.18.0.1"]),
        &["error: --public-ip 198.18.0.1: applies with --etcd-endpoints only"],
    );
    refused(
        &with_base(&["--subnet-file", "/tmp/x.env"]),
        &["error: --subnet-file /tmp/x.env: applies with --etcd-endpoints only"],
    );
    // The config file: the same, naming the line.
    let dir = TempDir::new();
    let file = dir.write(
        "etcd.toml",
        "etcd_endpoints = [\"http://198.18.0.10:2379\"]\npublic_ip = \"198.18.0.1\"\n\
         peers = [\"10.2.0.0/16=192.0.2.2\"]\n",
    );
    refused(
        &["--config", &file.to_string_lossy()],
        &["line 3: peers 10.2.0.0/16=192.0.2.2: not with --etcd-endpoints"],
    );
}

#[test]
fn bad_control_and_metrics() {
    refused(
        &with_base(&["--metrics", "localhost:9100"]),
        &["--metrics localhost:9100:", "PORT or ADDR:PORT"],
    );
    refused(&with_base(&["--metrics", "0"]), &["--metrics 0:", "port 0"]);
    refused(
        &with_base(&["--control", ""]),
        &["--control \"\":", "empty path"],
    );
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    refused(
        &with_base(&["--control", &long]),
        &["--control /tmp/xxx", "at most 107"],
    );
}

/// The client commands: bad arguments exit 2, an unreachable tundra exits 1 naming the path.
#[test]
fn client_commands() {
    for args in [
        &["routes", "add", "10.3.0.1/16", "192.0.2.3"][..],
        &["routes", "add", "10.3.0.0/16", "node3:8285"],
        &["routes", "add", "10.3.0.0/16", "192.0.2.3,mac=zz"],
        &["routes", "add", "10.3.0.0/16", "192.0.2.3,vni=2"],
        &["routes", "del", "10.3.0.0/33"],
        &["routes", "frob"],
        &["stats", "--yaml"],
    ] {
        let out = tundra(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    let out = tundra(&["routes", "add", "10.3.0.1/16", "192.0.2.3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 10.3.0.0/16?"));
    let dir = TempDir::new();
    let path = dir.0.join("nobody.sock");
    let path = path.to_str().unwrap();
    for args in [
        &["routes", "list", "--control", path][..],
        &["stats", "--control", path],
        &["routes", "del", "10.3.0.0/16", "--control", path],
    ] {
        let out = tundra(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach tundra") && stderr.contains(path),
            "{args:?}: {stderr}"
        );
    }
    for args in [
        &["routes", "--help"][..],
        &["stats", "--help"],
        &["routes", "add", "--help"],
    ] {
        let out = tundra(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("--control"), "{args:?}: {help}");
    }
}

#[test]
fn version() {
    let out = tundra(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("tundra "));
}
