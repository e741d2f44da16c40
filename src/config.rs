//! tundra's settings: from `tundra run` flags, a TOML file (`--config`), or both (flags win).
//! Validated completely before anything is configured.
//!
//! # The config file
//!
//! Every flag of `tundra run` has a key; all keys are optional and unknown keys are an error.
//! `peers` uses the flag's own `CIDR=ADDR[:PORT][,mac=MAC]` syntax, one string per prefix:
//!
//! ```toml
//! tun = "tundra0"                 # --tun
//! listen = "0.0.0.0:8285"         # --listen (port omitted: 8285, or 8472 with vxlan)
//! local_subnets = ["10.1.0.0/16"] # --local-subnet, repeated
//! peers = [                       # --peer, repeated
//!     "10.2.0.0/16=192.0.2.2:8285",
//!     "fd00:2::/64=[2001:db8::2]", # port omitted: 8285 (8472 with vxlan)
//! ]
//! encap = "udp"                   # --encap: udp or vxlan
//! # With encap = "vxlan" only (an error with udp):
//! # vni = 1                       # --vni (default 1)
//! # vtep_mac = "0a:58:c6:13:01:00" # --vtep-mac (omit: derived from local_subnets)
//! # and every peer carries its VTEP MAC: "10.2.0.0/16=192.0.2.2,mac=0a:58:c6:13:02:00"
//! mtu = 1472                      # --mtu (omit: the underlay MTU less the overhead)
//! io = "auto"                     # --io
//! offload = "auto"                # --offload
//! tun_queue_len = 1000            # --tun-queue-len (omit: tundra's default)
//! socket_buffer = "4M"            # --socket-buffer (or bytes: 4194304; omit: tundra's default)
//! priority = "high"               # --priority: high, realtime or normal
//! cpus = "2"                      # --cpus: the datapath threads' CPUs, e.g. "2" or "0,2-3"
//! configure = true                # false: --no-configure
//! control = "/run/tundra/tundra.sock" # --control ("none": no control socket)
//! metrics = "127.0.0.1:9100"      # --metrics (omit: no metrics endpoint)
//! ```
//!
//! A node of a flannel network takes its subnet, wire format and routes from etcd instead of
//! `local_subnets`, `peers`, `encap` and `vni` (which are then refused):
//!
//! ```toml
//! etcd_endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"] # --etcd-endpoints A,B
//! etcd_prefix = "/coreos.com/network" # --etcd-prefix
//! public_ip = "192.0.2.1"           # --public-ip (required with etcd)
//! public_ipv6 = "2001:db8::1"       # --public-ipv6 (a dual-stack vxlan network needs it)
//! subnet_file = "/run/flannel/subnet.env" # --subnet-file
//! etcd_cafile = "/etc/etcd/ca.pem"  # --etcd-cafile (and etcd_certfile, etcd_keyfile)
//! etcd_start_timeout = "60s"        # --etcd-start-timeout (or seconds: 60)
//! ```
//!
//! A flag given on the command line overrides the file's key; a repeated flag (`--peer`,
//! `--local-subnet`) replaces the file's whole list.
//!
//! # Validation
//!
//! [`Config::from_file_and_flags`] rejects, naming the offending value: malformed or
//! non-canonical CIDRs (host bits set), no local subnet, overlapping local subnets, peer
//! subnets that overlap a local subnet or are routed twice, an MTU outside 576..=65535 (1280
//! minimum when any subnet is IPv6), a TUN name the kernel would refuse, a peer address that is
//! not unicast or has port 0, a peer address family the listen socket cannot reach, a TUN queue
//! length outside 1..=100000 and a socket buffer size outside 64K..=1024M (1 GiB); with
//! `vxlan`, a VNI outside 0..=16777215, a VTEP MAC that is not unicast, a peer without its MAC,
//! two MACs for one peer, and two peers on one address with different ports; with `udp`, a VNI,
//! a VTEP MAC or a peer MAC (they apply to vxlan only). With etcd: an endpoint that is not an
//! `http://` or `https://` URL, no `--public-ip` (or one that is not a unicast IPv4 address),
//! a client certificate without its key (or the reverse), a start timeout that is not a
//! duration of at most 24 h, and any of `--local-subnet`, `--peer`, `--encap`, `--vni` (etcd
//! decides them); without etcd, any etcd setting.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use datapath::encap::{MAX_VNI, VXLAN_PORT};
use datapath::{Mac, Route};

use crate::lease;

/// Port of flannel's UDP backend, tundra's default with `--encap udp`.
pub const DEFAULT_PORT: u16 = 8285;

/// VNI with `--encap vxlan` when none is given (flannel's).
pub const DEFAULT_VNI: u32 = 1;

/// Default TUN device name.
pub const DEFAULT_TUN: &str = "tundra0";

/// Default path of the control socket of `tundra run` (and of the CLI's client commands).
pub const DEFAULT_CONTROL: &str = "/run/tundra/tundra.sock";

/// Longest Unix socket path the kernel accepts (`sun_path` less its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Default listen address with `--encap udp`: every IPv4 address, port [`DEFAULT_PORT`] (with
/// `vxlan`, port [`VXLAN_PORT`]: see [`Encap::default_port`]).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT);

/// Smallest MTU accepted (the IPv4 minimum datagram every host must accept).
pub const MIN_MTU: u16 = 576;

/// Smallest MTU accepted when any overlay subnet is IPv6 (the IPv6 minimum link MTU).
pub const MIN_MTU_IPV6: u16 = 1280;

/// Largest TUN transmit queue length accepted, in packets (the smallest is 1).
pub const MAX_TUN_QUEUE_LEN: u32 = 100_000;

/// Smallest UDP socket buffer size accepted, in bytes (64 KiB).
pub const MIN_SOCKET_BUFFER: usize = 64 << 10;

/// Largest UDP socket buffer size accepted, in bytes (1 GiB).
pub const MAX_SOCKET_BUFFER: usize = 1 << 30;

/// How long a start waits for etcd (unreachable, or without a network config) by default.
pub const DEFAULT_ETCD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `--etcd-start-timeout` accepted.
pub const MAX_ETCD_START_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Encapsulation format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// The UDP payload is the inner IP packet (flannel's udp backend).
    #[default]
    Udp,
    /// RFC 7348 VXLAN as Linux sends it (flannel's vxlan backend): a VXLAN header with a VNI
    /// and an Ethernet header between VTEP MACs in front of the inner packet.
    Vxlan,
}

impl Encap {
    /// The UDP port of the format, for the listen address and a peer given without a port:
    /// [`DEFAULT_PORT`] (8285) for `udp`, [`VXLAN_PORT`] (8472, Linux's and flannel's) for
    /// `vxlan`.
    pub fn default_port(self) -> u16 {
        match self {
            Encap::Udp => DEFAULT_PORT,
            Encap::Vxlan => VXLAN_PORT,
        }
    }
}

impl From<datapath::WireFormat> for Encap {
    fn from(format: datapath::WireFormat) -> Encap {
        match format {
            datapath::WireFormat::Udp => Encap::Udp,
            datapath::WireFormat::Vxlan => Encap::Vxlan,
        }
    }
}

impl FromStr for Encap {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        match s {
            "udp" => Ok(Encap::Udp),
            "vxlan" => Ok(Encap::Vxlan),
            _ => Err(Problem::UnknownEncap),
        }
    }
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encap::Udp => "udp",
            Encap::Vxlan => "vxlan",
        })
    }
}

/// Which I/O engine drives the hot loops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring when it can be set up, else `poll`.
    #[default]
    Auto,
    Uring,
    /// Readiness (mio/epoll) with sendmmsg/recvmmsg.
    Poll,
}

impl FromStr for IoMode {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "uring" => Ok(IoMode::Uring),
            "poll" => Ok(IoMode::Poll),
            _ => Err(Problem::UnknownIo),
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoMode::Auto => "auto",
            IoMode::Uring => "uring",
            IoMode::Poll => "poll",
        })
    }
}

/// Whether the TUN device and the UDP socket carry several packets per read, write or
/// datagram: virtio-net header TSO/USO on the TUN, UDP GSO/GRO on the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// Use whichever of those offloads the kernel grants (possibly none).
    #[default]
    Auto,
    /// Use them; fail to start, with an error saying so, if the kernel grants none.
    On,
    /// One packet per TUN read or write and per datagram (tundra's behaviour before offloads).
    Off,
}

impl FromStr for Offload {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        match s {
            "auto" => Ok(Offload::Auto),
            "on" => Ok(Offload::On),
            "off" => Ok(Offload::Off),
            _ => Err(Problem::UnknownOffload),
        }
    }
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Offload::Auto => "auto",
            Offload::On => "on",
            Offload::Off => "off",
        })
    }
}

/// How the datapath threads are scheduled against the applications whose packets they carry
/// (docs/decisions.md has the measurements).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// `SCHED_FIFO` at the lowest real-time priority, as the kernel's own datapath (softirq)
    /// runs ahead of every task: less latency under load, less throughput (smaller batches);
    /// [`Priority::High`] where that is not allowed. A thread in a flood of packets gives it
    /// up for nice 0, and larger batches, as it does [`Priority::High`].
    Realtime,
    /// A short scheduler slice and nice -10: ahead of the applications most of the time;
    /// a thread in a flood of packets gives it up for nice 0, and larger batches.
    #[default]
    High,
    /// The process's own scheduling.
    Normal,
}

impl FromStr for Priority {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        match s {
            "realtime" => Ok(Priority::Realtime),
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            _ => Err(Problem::UnknownPriority),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Realtime => "realtime",
            Priority::High => "high",
            Priority::Normal => "normal",
        })
    }
}

/// The highest CPU number a [`CpuList`] takes (the kernel's `CPU_SETSIZE` less one).
pub const MAX_CPU: usize = 1023;

/// A set of CPUs in the kernel's cpulist syntax (`2`, `0,2-3`: as `taskset -c` and cgroup
/// cpusets write them): sorted, without duplicates, never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// These CPUs; `None` if there are none.
    pub fn new(mut cpus: Vec<usize>) -> Option<CpuList> {
        cpus.sort_unstable();
        cpus.dedup();
        (!cpus.is_empty()).then_some(CpuList(cpus))
    }

    /// The CPU numbers, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }
}

impl FromStr for CpuList {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let number = |n: &str| -> Result<usize, Problem> {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Problem::InvalidCpuList);
            }
            match n.parse::<usize>() {
                Ok(cpu) if cpu <= MAX_CPU => Ok(cpu),
                Ok(cpu) => Err(Problem::CpuOutOfRange(cpu)),
                Err(_) => Err(Problem::CpuOutOfRange(usize::MAX)),
            }
        };
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(part)?, number(part)?),
            };
            if first > last {
                return Err(Problem::InvalidCpuList);
            }
            cpus.extend(first..=last);
        }
        CpuList::new(cpus).ok_or(Problem::InvalidCpuList)
    }
}

impl fmt::Display for CpuList {
    /// Ranges folded: `0,2-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_slice();
        let mut sep = "";
        while let Some(&first) = rest.first() {
            // The run of consecutive CPUs that starts here.
            let run = 1 + rest.windows(2).take_while(|w| w[1] == w[0] + 1).count();
            match rest[run - 1] {
                last if last == first => write!(f, "{sep}{first}")?,
                last => write!(f, "{sep}{first}-{last}")?,
            }
            rest = &rest[run..];
            sep = ",";
        }
        Ok(())
    }
}

/// A complete, validated configuration of one dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// TUN device name.
    pub tun: String,
    /// Local underlay address and port of the UDP socket.
    pub listen: SocketAddr,
    /// This node's overlay subnets (at least one).
    pub local_subnets: Vec<IpNet>,
    /// Peer subnets and the underlay address of the node owning each (and, with `vxlan`, its
    /// VTEP MAC).
    pub peers: Vec<datapath::Route>,
    pub encap: Encap,
    /// The VXLAN network identifier, at most [`MAX_VNI`] (`vxlan` only; [`DEFAULT_VNI`] with
    /// `udp`, where it is unused).
    pub vni: u32,
    /// Our VTEP MAC (`vxlan` only); `None`: [`default_vtep_mac`] of the local subnets.
    pub vtep_mac: Option<Mac>,
    /// MTU of the TUN device; `None`: the underlay MTU less the encapsulation overhead.
    pub mtu: Option<u16>,
    pub io: IoMode,
    pub offload: Offload,
    /// Transmit queue length of the TUN device in packets (`ip link set dev X txqueuelen N`);
    /// `None`: the dataplane's default.
    pub tun_queue_len: Option<u32>,
    /// Send and receive buffer size of the UDP socket in bytes; `None`: the dataplane's default.
    pub socket_buffer: Option<usize>,
    /// How the datapath threads are scheduled.
    pub priority: Priority,
    /// The CPUs the datapath threads may run on; `None`: wherever the scheduler puts them.
    pub cpus: Option<CpuList>,
    /// Whether tundra sets up the TUN's MTU, addresses and routes (`--no-configure`: false).
    pub configure: bool,
    /// Path of the control socket; `None`: no control socket.
    pub control: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint; `None`: none.
    pub metrics: Option<SocketAddr>,
    /// With `--etcd-endpoints`: this node is a flannel node, which takes its subnet, wire format
    /// and routes from etcd. `local_subnets` and `peers` are empty then, `encap`, `vni` and
    /// `listen` their defaults, all of them resolved at start from the lease and the network
    /// config (see `Dataplane::start`); `vtep_mac` is the one to publish, if given.
    pub etcd: Option<EtcdSettings>,
}

/// How a flannel node reaches etcd and who it is there (`--etcd-endpoints` and its companions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// etcd client URLs, `http://` or `https://`, tried in turn.
    pub endpoints: Vec<String>,
    /// The network's key prefix (default [`lease::DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Our IPv4 underlay address, published as `PublicIP`.
    pub public_ip: Ipv4Addr,
    /// Our IPv6 underlay address, published as `PublicIPv6` in a dual-stack network.
    pub public_ipv6: Option<Ipv6Addr>,
    /// flannel's subnet file, written at start and read back at the next (default
    /// [`lease::DEFAULT_SUBNET_FILE`]).
    pub subnet_file: PathBuf,
    /// TLS: the CA that signs etcd's certificate, our client certificate and its key.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How long the start waits for etcd (default [`DEFAULT_ETCD_START_TIMEOUT`]).
    pub start_timeout: Duration,
    /// `--listen` as given: the address, and the port if one was written (else the network
    /// backend's). `None`: the public IP (`[::]` in a dual-stack vxlan network) and the
    /// backend's port.
    pub listen: Option<(IpAddr, Option<u16>)>,
}

impl EtcdSettings {
    /// The lease source's settings: these, with our VTEP MAC if one was given (`--vtep-mac`),
    /// and the lease source's defaults for the rest.
    pub fn lease_config(&self, vtep_mac: Option<Mac>) -> lease::Config {
        let mut cfg = lease::Config::new(self.endpoints.clone(), self.public_ip);
        cfg.prefix = self.prefix.clone();
        cfg.public_ipv6 = self.public_ipv6;
        cfg.vtep_mac = vtep_mac;
        cfg.tls = lease::Tls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        };
        cfg.subnet_file = Some(self.subnet_file.clone());
        cfg.start_deadline = self.start_timeout;
        cfg
    }
}

/// The `tundra run` flags as given, unparsed: `None` or empty when a flag is absent, so that
/// the config file's value applies. `cli::RunArgs` converts into this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub tun: Option<String>,
    pub listen: Option<String>,
    pub local_subnets: Vec<String>,
    pub peers: Vec<String>,
    pub encap: Option<String>,
    pub vni: Option<String>,
    pub vtep_mac: Option<String>,
    pub mtu: Option<String>,
    pub io: Option<String>,
    pub offload: Option<String>,
    pub tun_queue_len: Option<String>,
    pub socket_buffer: Option<String>,
    pub priority: Option<String>,
    pub cpus: Option<String>,
    pub no_configure: bool,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--control PATH` (`none`: no control socket).
    pub control: Option<String>,
    /// `--metrics [ADDR:]PORT`.
    pub metrics: Option<String>,
    /// `--etcd-endpoints URL[,URL...]`.
    pub etcd_endpoints: Option<String>,
    pub etcd_prefix: Option<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub subnet_file: Option<String>,
    pub etcd_cafile: Option<String>,
    pub etcd_certfile: Option<String>,
    pub etcd_keyfile: Option<String>,
    pub etcd_start_timeout: Option<String>,
}

/// Where a setting came from, to name it in an error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--peer`.
    Flag(&'static str),
    /// A key of the config file; `line` counts from 1.
    File {
        path: PathBuf,
        line: usize,
        key: &'static str,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::File { path, line, key } => {
                write!(f, "config {} line {line}: {key}", path.display())
            }
        }
    }
}

/// Why a configuration was rejected. Each displays as one line that names the offending value
/// and where it came from (flag, or config file and line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("config {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// One value is malformed or conflicts with another.
    #[error("{0}")]
    Invalid(Box<InvalidValue>),
    /// Neither `--local-subnet` nor `local_subnets` gave a subnet.
    #[error("no local subnet: give --local-subnet CIDR at least once (or local_subnets in the config file), or join a flannel network with --etcd-endpoints")]
    NoLocalSubnet,
    /// etcd without `--public-ip`.
    #[error("--etcd-endpoints needs --public-ip ADDR, this node's IPv4 address on the underlay, which the other nodes send to (or public_ip in the config file)")]
    NoPublicIp,
}

/// A rejected value, where it came from, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    pub origin: Origin,
    /// The value as given.
    pub value: String,
    pub problem: Problem,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.origin,
            Shown(&self.value),
            self.problem
        )
    }
}

/// What is wrong with one value. Returned alone by the `parse_*` functions, which do not know
/// where the value came from; [`ConfigError::Invalid`] adds that.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("missing prefix length (write CIDRs as ADDR/LEN, e.g. 10.1.0.0/16)")]
    MissingPrefixLength,
    #[error("invalid prefix length {len} (at most {max} for IPv{family})", family = if *.max == 32 { 4 } else { 6 })]
    InvalidPrefixLength { len: String, max: u8 },
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
    #[error("host bits are set (did you mean {0}?)")]
    HostBitsSet(IpNet),
    #[error("expected CIDR=ADDR[:PORT][,mac=MAC], e.g. 10.2.0.0/16=192.0.2.2:8285")]
    MissingEndpoint,
    #[error("invalid address {0:?} (expected IPv4 ADDR[:PORT] or [IPv6][:PORT]; host names are not resolved)")]
    InvalidAddress(String),
    #[error("IPv6 address needs brackets: [{0}] or [{0}]:PORT")]
    UnbracketedIpv6(Ipv6Addr),
    #[error("invalid port {0:?} (expected 1..=65535)")]
    InvalidPort(String),
    #[error("port 0 is not allowed")]
    PortZero,
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    #[error(
        "the unspecified address {0} cannot be a peer (give the peer node's underlay address)"
    )]
    Unspecified(IpAddr),
    #[error("invalid number (expected an MTU in bytes, e.g. 1400)")]
    InvalidNumber,
    #[error("MTU out of range (allowed {min}..=65535{why})", why = if *.min == MIN_MTU_IPV6 { ", 1280 minimum because an IPv6 subnet is configured" } else { "" })]
    MtuOutOfRange { min: u16 },
    #[error("invalid number (expected a queue length in packets, e.g. 1000)")]
    InvalidQueueLen,
    #[error("TUN queue length out of range (allowed 1..={MAX_TUN_QUEUE_LEN} packets)")]
    QueueLenOutOfRange,
    #[error("invalid size (expected bytes, or a number with suffix K or M, e.g. 4194304 or 4M)")]
    InvalidSize,
    #[error("socket buffer size out of range (allowed 64K..=1024M, i.e. {MIN_SOCKET_BUFFER}..={MAX_SOCKET_BUFFER} bytes)")]
    SocketBufferOutOfRange,
    #[error("TUN name must be 1 to 15 bytes long")]
    TunNameLength,
    #[error("TUN name must not contain {0:?}")]
    TunNameChar(char),
    #[error("TUN name must not be \".\" or \"..\"")]
    TunNameDots,
    #[error("unknown encapsulation (supported: udp, vxlan)")]
    UnknownEncap,
    #[error("invalid number (expected a VNI, e.g. 1)")]
    InvalidVni,
    #[error("VNI out of range (allowed 0..={MAX_VNI}, 24 bits)")]
    VniOutOfRange,
    #[error("invalid MAC address {0:?} (six hex byte pairs separated by colons, e.g. 0a:58:c6:13:01:00)")]
    InvalidMac(String),
    #[error("{0} is not a unicast MAC (the low bit of the first byte is the multicast bit; all zeros is no address)")]
    MacNotUnicast(Mac),
    #[error("applies to --encap vxlan only (the encapsulation is udp)")]
    VxlanOnly,
    #[error("a peer's VTEP MAC (mac=) applies to --encap vxlan only (the encapsulation is udp)")]
    PeerMacVxlanOnly,
    #[error("a vxlan peer needs its VTEP MAC, the MAC of its VXLAN device: append ,mac=MAC")]
    NoPeerMac,
    #[error("unknown peer option {0:?} (expected ,mac=MAC after the address)")]
    UnknownPeerOption(String),
    #[error("mac= is given twice")]
    PeerMacTwice,
    #[error(
        "peer {peer} already has VTEP MAC {mac} (every prefix of one peer takes the same MAC)"
    )]
    TwoMacs { peer: SocketAddr, mac: Mac },
    #[error("vxlan peer {other} has the same address (vxlan tells peers apart by address alone: give one port)")]
    SharedAddress { other: SocketAddr },
    #[error("unknown I/O engine (expected auto, uring or poll)")]
    UnknownIo,
    #[error("unknown offload setting (expected auto, on or off)")]
    UnknownOffload,
    #[error("unknown priority (expected realtime, high or normal)")]
    UnknownPriority,
    #[error(
        "invalid CPU list (expected CPU numbers and ranges separated by commas, e.g. 2 or 0,2-3)"
    )]
    InvalidCpuList,
    #[error("CPU {0} out of range (CPUs are numbered 0..={MAX_CPU})")]
    CpuOutOfRange(usize),
    #[error("overlaps local subnet {0}")]
    OverlapsLocal(IpNet),
    #[error("subnet {prefix} is already routed to {peer}")]
    Duplicate { prefix: IpNet, peer: SocketAddr },
    #[error("IPv6 peer address, but the listen address {0} is IPv4 (listen on [::]:PORT to reach both families)")]
    Ipv6PeerIpv4Listen(SocketAddr),
    #[error(
        "IPv4 peer address, but the listen address {0} is IPv6 (only [::] reaches both families)"
    )]
    Ipv4PeerIpv6Listen(SocketAddr),
    #[error("{0} is not a usable local address (multicast or broadcast)")]
    BadListen(IpAddr),
    #[error("empty path (give a socket path, or \"none\" for no control socket)")]
    EmptyPath,
    #[error("socket path is {0} bytes long (at most {MAX_SOCKET_PATH})")]
    SocketPathTooLong(usize),
    #[error("expected PORT or ADDR:PORT, e.g. 9100 or 127.0.0.1:9100 (IPv6 in brackets)")]
    InvalidMetrics,
    #[error("invalid etcd endpoint {0:?} (expected http://HOST:PORT or https://HOST:PORT; several separated by commas)")]
    InvalidEtcdEndpoint(String),
    #[error("applies with --etcd-endpoints only")]
    EtcdOnly,
    #[error("not with --etcd-endpoints: {0}")]
    DecidedByEtcd(&'static str),
    #[error("invalid IPv4 address (expected this node's IPv4 underlay address, e.g. 192.0.2.1)")]
    PublicIpNotV4,
    #[error("invalid IPv6 address (expected this node's IPv6 underlay address, e.g. 2001:db8::1)")]
    PublicIpNotV6,
    #[error("{0} is not a node address (unspecified, loopback, multicast or broadcast)")]
    NotNodeAddress(IpAddr),
    #[error("an etcd key prefix starts with '/' and has no whitespace, e.g. /coreos.com/network")]
    InvalidEtcdPrefix,
    #[error("empty path")]
    EmptyFilePath,
    #[error("a client certificate needs its key: give --etcd-keyfile too")]
    CertWithoutKey,
    #[error("a client key needs its certificate: give --etcd-certfile too")]
    KeyWithoutCert,
    #[error("invalid duration (expected a number with unit ms, s, m or h, e.g. 60s or 500ms; no unit: seconds)")]
    InvalidDuration,
    #[error("duration out of range (allowed 0s..=24h)")]
    DurationOutOfRange,
}

/// Displays a value as given, quoted when it would otherwise be invisible or ambiguous.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() || self.0.chars().any(|c| c.is_whitespace() || c.is_control()) {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(self.0)
        }
    }
}

/// The config file's keys. Each value keeps its position, for error messages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    tun: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    local_subnets: Option<Vec<Spanned<String>>>,
    peers: Option<Vec<Spanned<String>>>,
    encap: Option<Spanned<String>>,
    vni: Option<Spanned<i64>>,
    vtep_mac: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    io: Option<Spanned<String>>,
    offload: Option<Spanned<String>>,
    tun_queue_len: Option<Spanned<i64>>,
    socket_buffer: Option<Spanned<Text>>,
    priority: Option<Spanned<String>>,
    cpus: Option<Spanned<Text>>,
    configure: Option<bool>,
    control: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    etcd_endpoints: Option<Vec<Spanned<String>>>,
    etcd_prefix: Option<Spanned<String>>,
    public_ip: Option<Spanned<String>>,
    public_ipv6: Option<Spanned<String>>,
    subnet_file: Option<Spanned<String>>,
    etcd_cafile: Option<Spanned<String>>,
    etcd_certfile: Option<Spanned<String>>,
    etcd_keyfile: Option<Spanned<String>>,
    etcd_start_timeout: Option<Spanned<Text>>,
}

/// A size or a duration in the config file: an integer (bytes, seconds) or a string with the
/// flag's syntax (`"4M"`, `"60s"`), as text.
#[derive(Debug)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string, e.g. 4194304 or \"4M\", 60 or \"60s\"")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One raw setting and where it came from.
struct Raw {
    text: String,
    origin: Origin,
}

impl Raw {
    fn error(&self, problem: Problem) -> ConfigError {
        ConfigError::Invalid(Box::new(InvalidValue {
            origin: self.origin.clone(),
            value: self.text.clone(),
            problem,
        }))
    }

    fn parse<T>(&self, parse: impl FnOnce(&str) -> Result<T, Problem>) -> Result<T, ConfigError> {
        parse(&self.text).map_err(|p| self.error(p))
    }
}

/// The config file, parsed, with what it takes to name a position in it.
struct File<'a> {
    path: &'a Path,
    text: &'a str,
    keys: FileKeys,
}

impl File<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    fn raw(&self, key: &'static str, value: &Spanned<String>) -> Raw {
        self.raw_text(key, value.get_ref().clone(), value.span().start)
    }

    /// A key's value that is not a string, as text (`offset`: where it starts in the file).
    fn raw_text(&self, key: &'static str, text: String, offset: usize) -> Raw {
        Raw {
            text,
            origin: Origin::File {
                path: self.path.to_owned(),
                line: self.line(offset),
                key,
            },
        }
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Builds the configuration from `tundra run`'s flags, reading the `--config` file if one
    /// is given. The only I/O is reading that file; see [`Config::from_file_and_flags`].
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read, otherwise as `from_file_and_flags`.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        match &flags.config {
            None => Config::from_file_and_flags(None, flags),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::from_file_and_flags(Some((path, &text)), flags)
            }
        }
    }

    /// Builds and validates the configuration from a config file's `(path, contents)` (the path
    /// only names it in errors) and the flags, which override the file. Pure: touches nothing.
    ///
    /// # Errors
    /// The first problem found, naming the offending value and its flag or file line.
    pub fn from_file_and_flags(
        file: Option<(&Path, &str)>,
        flags: &Flags,
    ) -> Result<Config, ConfigError> {
        let file = match file {
            None => None,
            Some((path, text)) => {
                let keys =
                    toml::from_str::<FileKeys>(text).map_err(|e| toml_error(path, text, &e))?;
                Some(File { path, text, keys })
            }
        };
        let keys = file.as_ref().map(|f| &f.keys);

        // Chooses the flag if given, else the file's key, else nothing (the default applies).
        let pick = |flag: &Option<String>,
                    name: &'static str,
                    key: &'static str,
                    value: Option<&Spanned<String>>| {
            match (flag, &file, value) {
                (Some(text), _, _) => Some(Raw {
                    text: text.clone(),
                    origin: Origin::Flag(name),
                }),
                (None, Some(file), Some(value)) => Some(file.raw(key, value)),
                _ => None,
            }
        };
        let pick_list = |flags: &[String],
                         name: &'static str,
                         key: &'static str,
                         values: Option<&Vec<Spanned<String>>>| {
            match (&file, values) {
                (Some(file), Some(values)) if flags.is_empty() => {
                    values.iter().map(|v| file.raw(key, v)).collect()
                }
                _ => flags
                    .iter()
                    .map(|text| Raw {
                        text: text.clone(),
                        origin: Origin::Flag(name),
                    })
                    .collect::<Vec<_>>(),
            }
        };

        // Chooses the flag if given, else the file's non-string key as text, else nothing.
        let pick_text = |flag: &Option<String>,
                         name: &'static str,
                         key: &'static str,
                         value: Option<(String, usize)>| {
            match (flag, &file, value) {
                (Some(text), _, _) => Some(Raw {
                    text: text.clone(),
                    origin: Origin::Flag(name),
                }),
                (None, Some(file), Some((text, offset))) => Some(file.raw_text(key, text, offset)),
                _ => None,
            }
        };

        // First: with etcd, the network config there decides the subnet, the format and the
        // routes; without, the format decides default ports and which other settings apply.
        let etcd_raw = match (
            &flags.etcd_endpoints,
            &file,
            keys.and_then(|k| k.etcd_endpoints.as_ref()),
        ) {
            (Some(text), _, _) => vec![Raw {
                text: text.clone(),
                origin: Origin::Flag("--etcd-endpoints"),
            }],
            (None, Some(file), Some(values)) => values
                .iter()
                .map(|v| file.raw("etcd_endpoints", v))
                .collect(),
            _ => Vec::new(),
        };
        let with_etcd = !etcd_raw.is_empty();
        let decided = |raw: Option<Raw>, why: &'static str| match raw {
            Some(raw) if with_etcd => Err(raw.error(Problem::DecidedByEtcd(why))),
            other => Ok(other),
        };
        const FORMAT: &str =
            "the network config in etcd (its Backend) decides the wire format, its port and VNI";

        let encap = match decided(
            pick(
                &flags.encap,
                "--encap",
                "encap",
                keys.and_then(|k| k.encap.as_ref()),
            ),
            FORMAT,
        )? {
            Some(raw) => raw.parse(str::parse)?,
            None => Encap::default(),
        };
        let vni = match decided(
            pick_text(
                &flags.vni,
                "--vni",
                "vni",
                keys.and_then(|k| k.vni.as_ref())
                    .map(|v| (v.get_ref().to_string(), v.span().start)),
            ),
            FORMAT,
        )? {
            Some(raw) if encap != Encap::Vxlan => return Err(raw.error(Problem::VxlanOnly)),
            Some(raw) => raw.parse(parse_vni)?,
            None => DEFAULT_VNI,
        };
        // With etcd, whether the network runs vxlan is known at start only (which refuses a
        // VTEP MAC in a udp network).
        let vtep_mac = match pick(
            &flags.vtep_mac,
            "--vtep-mac",
            "vtep_mac",
            keys.and_then(|k| k.vtep_mac.as_ref()),
        ) {
            Some(raw) if encap != Encap::Vxlan && !with_etcd => {
                return Err(raw.error(Problem::VxlanOnly))
            }
            Some(raw) => Some(raw.parse(parse_mac)?),
            None => None,
        };

        let tun = match pick(
            &flags.tun,
            "--tun",
            "tun",
            keys.and_then(|k| k.tun.as_ref()),
        ) {
            Some(raw) => {
                raw.parse(check_tun_name)?;
                raw.text
            }
            None => DEFAULT_TUN.to_owned(),
        };

        let listen_raw = pick(
            &flags.listen,
            "--listen",
            "listen",
            keys.and_then(|k| k.listen.as_ref()),
        );
        let (listen, etcd_listen) = match listen_raw {
            Some(raw) if with_etcd => (DEFAULT_LISTEN, Some(raw.parse(parse_listen_spec)?)),
            Some(raw) => (raw.parse(|s| parse_listen(s, encap.default_port()))?, None),
            None => (
                SocketAddr::new(DEFAULT_LISTEN.ip(), encap.default_port()),
                None,
            ),
        };

        let local_raw = pick_list(
            &flags.local_subnets,
            "--local-subnet",
            "local_subnets",
            keys.and_then(|k| k.local_subnets.as_ref()),
        );
        if let (true, Some(raw)) = (with_etcd, local_raw.first()) {
            return Err(raw.error(Problem::DecidedByEtcd(
                "this node's subnet is its lease in etcd (a previous one is asked for again through --subnet-file)",
            )));
        }
        let mut local_subnets: Vec<IpNet> = Vec::with_capacity(local_raw.len());
        for raw in &local_raw {
            let net = raw.parse(parse_cidr)?;
            if let Some(other) = local_subnets.iter().find(|other| overlaps(net, **other)) {
                return Err(raw.error(Problem::OverlapsLocal(*other)));
            }
            local_subnets.push(net);
        }
        if local_subnets.is_empty() && !with_etcd {
            return Err(ConfigError::NoLocalSubnet);
        }

        let peer_raw = pick_list(
            &flags.peers,
            "--peer",
            "peers",
            keys.and_then(|k| k.peers.as_ref()),
        );
        if let (true, Some(raw)) = (with_etcd, peer_raw.first()) {
            return Err(raw.error(Problem::DecidedByEtcd(
                "the routes are the other nodes' leases in etcd",
            )));
        }
        let mut peers: Vec<Route> = Vec::with_capacity(peer_raw.len());
        let mut routed: HashMap<IpNet, SocketAddr> = HashMap::with_capacity(peer_raw.len());
        // Each peer's MAC, and (vxlan) the peer on each underlay IP: what a table checks across
        // routes, checked here to name the flag or line.
        let mut macs: HashMap<SocketAddr, Option<Mac>> = HashMap::new();
        let mut on_ip: HashMap<IpAddr, SocketAddr> = HashMap::new();
        for raw in &peer_raw {
            let route = raw.parse(|s| parse_peer(s, encap))?;
            if let Some(local) = local_subnets.iter().find(|l| overlaps(route.prefix, **l)) {
                return Err(raw.error(Problem::OverlapsLocal(*local)));
            }
            if let Some(&peer) = routed.get(&route.prefix) {
                return Err(raw.error(Problem::Duplicate {
                    prefix: route.prefix,
                    peer,
                }));
            }
            check_family(route.peer, listen).map_err(|p| raw.error(p))?;
            let addr = datapath::route::canonical_addr(route.peer);
            match macs.get(&addr) {
                Some(&Some(mac)) if route.mac != Some(mac) => {
                    return Err(raw.error(Problem::TwoMacs { peer: addr, mac }))
                }
                _ => {}
            }
            if encap == Encap::Vxlan {
                match on_ip.get(&addr.ip()) {
                    Some(&other) if other != addr => {
                        return Err(raw.error(Problem::SharedAddress { other }))
                    }
                    _ => {}
                }
                on_ip.insert(addr.ip(), addr);
            }
            macs.insert(addr, route.mac);
            routed.insert(route.prefix, route.peer);
            peers.push(route);
        }

        let io = match pick(&flags.io, "--io", "io", keys.and_then(|k| k.io.as_ref())) {
            Some(raw) => raw.parse(str::parse)?,
            None => IoMode::default(),
        };

        let any_ipv6 = local_subnets
            .iter()
            .chain(peers.iter().map(|r| &r.prefix))
            .any(|n| matches!(n, IpNet::V6(_)));
        let min_mtu = if any_ipv6 { MIN_MTU_IPV6 } else { MIN_MTU };
        let mtu = match pick_text(
            &flags.mtu,
            "--mtu",
            "mtu",
            keys.and_then(|k| k.mtu.as_ref())
                .map(|v| (v.get_ref().to_string(), v.span().start)),
        ) {
            Some(raw) => Some(raw.parse(|s| parse_mtu(s, min_mtu))?),
            None => None,
        };

        let offload = match pick(
            &flags.offload,
            "--offload",
            "offload",
            keys.and_then(|k| k.offload.as_ref()),
        ) {
            Some(raw) => raw.parse(str::parse)?,
            None => Offload::default(),
        };
        let tun_queue_len = match pick_text(
            &flags.tun_queue_len,
            "--tun-queue-len",
            "tun_queue_len",
            keys.and_then(|k| k.tun_queue_len.as_ref())
                .map(|v| (v.get_ref().to_string(), v.span().start)),
        ) {
            Some(raw) => Some(raw.parse(parse_tun_queue_len)?),
            None => None,
        };
        let socket_buffer = match pick_text(
            &flags.socket_buffer,
            "--socket-buffer",
            "socket_buffer",
            keys.and_then(|k| k.socket_buffer.as_ref())
                .map(|v| (v.get_ref().0.clone(), v.span().start)),
        ) {
            Some(raw) => Some(raw.parse(parse_socket_buffer)?),
            None => None,
        };
        let priority = match pick(
            &flags.priority,
            "--priority",
            "priority",
            keys.and_then(|k| k.priority.as_ref()),
        ) {
            Some(raw) => raw.parse(str::parse)?,
            None => Priority::default(),
        };
        let cpus = match pick_text(
            &flags.cpus,
            "--cpus",
            "cpus",
            keys.and_then(|k| k.cpus.as_ref())
                .map(|v| (v.get_ref().0.clone(), v.span().start)),
        ) {
            Some(raw) => Some(raw.parse(str::parse)?),
            None => None,
        };

        let configure = !flags.no_configure && keys.and_then(|k| k.configure).unwrap_or(true);

        let control = match pick(
            &flags.control,
            "--control",
            "control",
            keys.and_then(|k| k.control.as_ref()),
        ) {
            Some(raw) => raw.parse(parse_control)?,
            None => Some(PathBuf::from(DEFAULT_CONTROL)),
        };
        let metrics = match pick(
            &flags.metrics,
            "--metrics",
            "metrics",
            keys.and_then(|k| k.metrics.as_ref()),
        ) {
            Some(raw) => Some(raw.parse(parse_metrics)?),
            None => None,
        };

        // The etcd settings: all of them only with etcd.
        let etcd_only = |raw: Option<Raw>| match raw {
            Some(raw) if !with_etcd => Err(raw.error(Problem::EtcdOnly)),
            other => Ok(other),
        };
        let prefix = etcd_only(pick(
            &flags.etcd_prefix,
            "--etcd-prefix",
            "etcd_prefix",
            keys.and_then(|k| k.etcd_prefix.as_ref()),
        ))?;
        let public_ip = etcd_only(pick(
            &flags.public_ip,
            "--public-ip",
            "public_ip",
            keys.and_then(|k| k.public_ip.as_ref()),
        ))?;
        let public_ipv6 = etcd_only(pick(
            &flags.public_ipv6,
            "--public-ipv6",
            "public_ipv6",
            keys.and_then(|k| k.public_ipv6.as_ref()),
        ))?;
        let subnet_file = etcd_only(pick(
            &flags.subnet_file,
            "--subnet-file",
            "subnet_file",
            keys.and_then(|k| k.subnet_file.as_ref()),
        ))?;
        let ca_file = etcd_only(pick(
            &flags.etcd_cafile,
            "--etcd-cafile",
            "etcd_cafile",
            keys.and_then(|k| k.etcd_cafile.as_ref()),
        ))?;
        let cert_file = etcd_only(pick(
            &flags.etcd_certfile,
            "--etcd-certfile",
            "etcd_certfile",
            keys.and_then(|k| k.etcd_certfile.as_ref()),
        ))?;
        let key_file = etcd_only(pick(
            &flags.etcd_keyfile,
            "--etcd-keyfile",
            "etcd_keyfile",
            keys.and_then(|k| k.etcd_keyfile.as_ref()),
        ))?;
        let start_timeout = etcd_only(pick_text(
            &flags.etcd_start_timeout,
            "--etcd-start-timeout",
            "etcd_start_timeout",
            keys.and_then(|k| k.etcd_start_timeout.as_ref())
                .map(|v| (v.get_ref().0.clone(), v.span().start)),
        ))?;

        let etcd = if with_etcd {
            let mut endpoints = Vec::new();
            for raw in &etcd_raw {
                endpoints.extend(raw.parse(parse_etcd_endpoints)?);
            }
            let path = |raw: Option<&Raw>| raw.map(|r| r.parse(parse_file_path)).transpose();
            match (&cert_file, &key_file) {
                (Some(raw), None) => return Err(raw.error(Problem::CertWithoutKey)),
                (None, Some(raw)) => return Err(raw.error(Problem::KeyWithoutCert)),
                _ => {}
            }
            Some(EtcdSettings {
                endpoints,
                prefix: match prefix {
                    Some(raw) => raw.parse(parse_etcd_prefix)?,
                    None => lease::DEFAULT_PREFIX.to_owned(),
                },
                public_ip: match public_ip {
                    Some(raw) => raw.parse(parse_public_ip)?,
                    None => return Err(ConfigError::NoPublicIp),
                },
                public_ipv6: public_ipv6
                    .map(|r| r.parse(parse_public_ipv6))
                    .transpose()?,
                subnet_file: path(subnet_file.as_ref())?
                    .unwrap_or_else(|| PathBuf::from(lease::DEFAULT_SUBNET_FILE)),
                ca_file: path(ca_file.as_ref())?,
                cert_file: path(cert_file.as_ref())?,
                key_file: path(key_file.as_ref())?,
                start_timeout: match start_timeout {
                    Some(raw) => raw.parse(parse_duration)?,
                    None => DEFAULT_ETCD_START_TIMEOUT,
                },
                listen: etcd_listen,
            })
        } else {
            None
        };

        Ok(Config {
            tun,
            listen,
            local_subnets,
            peers,
            encap,
            vni,
            vtep_mac,
            mtu,
            io,
            offload,
            tun_queue_len,
            socket_buffer,
            priority,
            cpus,
            configure,
            control,
            metrics,
            etcd,
        })
    }
}

impl Config {
    /// The wire format with its parameters, as the datapath uses it: the VNI and our VTEP MAC
    /// (the given one, else [`default_vtep_mac`]) with `vxlan`.
    pub fn wire_encap(&self) -> datapath::Encap {
        match self.encap {
            Encap::Udp => datapath::Encap::Udp,
            Encap::Vxlan => datapath::Encap::Vxlan {
                vni: self.vni,
                mac: self
                    .vtep_mac
                    .unwrap_or_else(|| default_vtep_mac(&self.local_subnets)),
            },
        }
    }
}

/// One line for a TOML error: position, message, and the offending line of the file.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let line = e.span().map(|span| line_of(text, span.start));
    let message = match line.and_then(|l| text.lines().nth(l - 1)).map(str::trim) {
        Some(source) if !source.is_empty() && !message.contains(source) => {
            format!("{message} (in `{source}`)")
        }
        _ => message,
    };
    ConfigError::File {
        path: path.to_owned(),
        line,
        message,
    }
}

/// `true` when the two prefixes share an address (one contains the other).
fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// Parses a canonical CIDR, `ADDR/LEN` with no host bits set.
///
/// # Errors
/// Missing or out-of-range prefix length, invalid address, host bits set (the problem names
/// the canonical prefix that was probably meant).
pub fn parse_cidr(s: &str) -> Result<IpNet, Problem> {
    let (addr, len) = s.split_once('/').ok_or(Problem::MissingPrefixLength)?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| Problem::InvalidIp(addr.to_owned()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let invalid_len = || Problem::InvalidPrefixLength {
        len: len.to_owned(),
        max,
    };
    // u8::from_str accepts a leading '+'; a prefix length is digits only.
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_len());
    }
    let len: u8 = len.parse().map_err(|_| invalid_len())?;
    let net = IpNet::new(addr, len).map_err(|_| invalid_len())?;
    if net.trunc() != net {
        return Err(Problem::HostBitsSet(net.trunc()));
    }
    Ok(net)
}

/// Parses an underlay address `ADDR[:PORT]`: IPv4 as `192.0.2.1:8285`, IPv6 in brackets as
/// `[2001:db8::1]:8285`. A missing port is `default_port`. Port 0 is returned as given.
///
/// # Errors
/// Invalid address or port; an IPv6 address without brackets.
pub fn parse_endpoint(s: &str, default_port: u16) -> Result<SocketAddr, Problem> {
    let (ip, port) = split_endpoint(s)?;
    Ok(SocketAddr::new(ip, port.unwrap_or(default_port)))
}

/// [`parse_endpoint`] without the default: the port if one is written.
fn split_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), Problem> {
    let invalid = || Problem::InvalidAddress(s.to_owned());
    let (ip, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(invalid)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        (IpAddr::V6(ip), port)
    } else if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Err(Problem::UnbracketedIpv6(ip));
    } else {
        let (ip, port) = match s.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (s, None),
        };
        (
            IpAddr::V4(ip.parse::<Ipv4Addr>().map_err(|_| invalid())?),
            port,
        )
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| Problem::InvalidPort(p.to_owned()))?)
        }
        Some(p) => return Err(Problem::InvalidPort(p.to_owned())),
    };
    Ok((ip, port))
}

/// Parses the listen address, `ADDR[:PORT]` (port default `default_port`, the format's: see
/// [`Encap::default_port`]). The address may be unspecified (`0.0.0.0`, `[::]`: every local
/// address) but not multicast or broadcast.
///
/// # Errors
/// As [`parse_endpoint`]; port 0 (peers must know the port); a multicast or broadcast address.
pub fn parse_listen(s: &str, default_port: u16) -> Result<SocketAddr, Problem> {
    let (ip, port) = parse_listen_spec(s)?;
    Ok(SocketAddr::new(ip, port.unwrap_or(default_port)))
}

/// Parses the listen address as [`parse_listen`] does, without a default: the port if one is
/// written (a flannel node's default is its network's port, known at start only).
///
/// # Errors
/// As [`parse_listen`].
pub fn parse_listen_spec(s: &str) -> Result<(IpAddr, Option<u16>), Problem> {
    let (ip, port) = split_endpoint(s)?;
    if port == Some(0) {
        return Err(Problem::PortZero);
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(Problem::BadListen(ip));
    }
    Ok((ip, port))
}

/// Parses `--etcd-endpoints`: one or more `http://` or `https://` URLs separated by commas,
/// as flanneld's flag takes them (blanks around each are ignored; a trailing `/` is dropped).
///
/// # Errors
/// An empty item, another scheme, no host, or a path, query or blank inside a URL.
pub fn parse_etcd_endpoints(s: &str) -> Result<Vec<String>, Problem> {
    s.split(',')
        .map(|item| {
            let url = item.trim().trim_end_matches('/');
            let bad = || Problem::InvalidEtcdEndpoint(item.trim().to_owned());
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or_else(bad)?;
            if rest.is_empty()
                || rest
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@'))
            {
                return Err(bad());
            }
            Ok(url.to_owned())
        })
        .collect()
}

/// Parses an etcd key prefix: starts with `/`, no whitespace (`/coreos.com/network`).
///
/// # Errors
/// [`Problem::InvalidEtcdPrefix`].
pub fn parse_etcd_prefix(s: &str) -> Result<String, Problem> {
    if !s.starts_with('/') || s.chars().any(char::is_whitespace) {
        return Err(Problem::InvalidEtcdPrefix);
    }
    Ok(s.to_owned())
}

/// Parses `--public-ip`: this node's IPv4 underlay address, unicast.
///
/// # Errors
/// Not an IPv4 address; unspecified, loopback, multicast or broadcast.
pub fn parse_public_ip(s: &str) -> Result<Ipv4Addr, Problem> {
    let ip: Ipv4Addr = s.parse().map_err(|_| Problem::PublicIpNotV4)?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(Problem::NotNodeAddress(ip.into()));
    }
    Ok(ip)
}

/// Parses `--public-ipv6`: this node's IPv6 underlay address (no brackets), unicast.
///
/// # Errors
/// Not an IPv6 address; unspecified, loopback or multicast.
pub fn parse_public_ipv6(s: &str) -> Result<Ipv6Addr, Problem> {
    let ip: Ipv6Addr = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| Problem::PublicIpNotV6)?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(Problem::NotNodeAddress(ip.into()));
    }
    Ok(ip)
}

/// A file path setting: anything but empty (whether it can be read is found at start).
///
/// # Errors
/// [`Problem::EmptyFilePath`].
pub fn parse_file_path(s: &str) -> Result<PathBuf, Problem> {
    if s.is_empty() {
        return Err(Problem::EmptyFilePath);
    }
    Ok(PathBuf::from(s))
}

/// Parses a duration: a whole number with unit `ms`, `s`, `m` or `h`, or without a unit
/// (seconds), at most [`MAX_ETCD_START_TIMEOUT`].
///
/// # Errors
/// Not of that form, or too long.
pub fn parse_duration(s: &str) -> Result<Duration, Problem> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ if number.is_empty() && unit.starts_with('-') => return Err(Problem::DurationOutOfRange),
        _ => return Err(Problem::InvalidDuration),
    };
    if number.is_empty() {
        return Err(Problem::InvalidDuration);
    }
    // Only digits: parsing fails on overflow alone, which is out of range too.
    let ms = number
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .saturating_mul(unit_ms);
    let d = Duration::from_millis(ms);
    if d > MAX_ETCD_START_TIMEOUT {
        return Err(Problem::DurationOutOfRange);
    }
    Ok(d)
}

/// A peer node as written after `CIDR=`: `ADDR[:PORT][,mac=MAC]`. The port may be left out,
/// and then depends on the format ([`Encap::default_port`]), which is why the CLI's client
/// (`tundra routes add`) sends it to the running tundra as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    /// Unicast, never unspecified; IPv4-mapped IPv6 is IPv4.
    pub ip: IpAddr,
    /// Never 0; `None`: the format's default port.
    pub port: Option<u16>,
    /// The peer's VTEP MAC (vxlan), unicast.
    pub mac: Option<Mac>,
}

impl PeerSpec {
    /// The peer's underlay address: its port, else `default_port`.
    pub fn addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(default_port))
    }

    /// The route to `prefix` through this peer, for `encap`: the port defaults to the format's;
    /// the MAC must be given with `vxlan` and must not be with `udp`.
    ///
    /// # Errors
    /// [`Problem::NoPeerMac`], [`Problem::PeerMacVxlanOnly`].
    pub fn route(&self, prefix: IpNet, encap: Encap) -> Result<Route, Problem> {
        check_peer_mac(self.mac, encap)?;
        Ok(Route {
            prefix,
            peer: self.addr(encap.default_port()),
            mac: self.mac,
        })
    }

    /// `ADDR[:PORT]` alone, as the control protocol's `"peer"` (IPv6 in brackets).
    pub fn endpoint(&self) -> String {
        match (self.ip, self.port) {
            (IpAddr::V4(ip), None) => ip.to_string(),
            (IpAddr::V6(ip), None) => format!("[{ip}]"),
            (ip, Some(port)) => SocketAddr::new(ip, port).to_string(),
        }
    }
}

impl FromStr for PeerSpec {
    type Err = Problem;

    /// As [`parse_peer_spec`].
    fn from_str(s: &str) -> Result<PeerSpec, Problem> {
        parse_peer_spec(s)
    }
}

impl fmt::Display for PeerSpec {
    /// `ADDR[:PORT][,mac=MAC]`, as [`parse_peer_spec`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint())?;
        match self.mac {
            Some(mac) => write!(f, ",mac={mac}"),
            None => Ok(()),
        }
    }
}

/// Checks a peer's MAC against the format: `vxlan` needs one, `udp` takes none.
///
/// # Errors
/// [`Problem::NoPeerMac`], [`Problem::PeerMacVxlanOnly`].
pub fn check_peer_mac(mac: Option<Mac>, encap: Encap) -> Result<(), Problem> {
    match (encap, mac) {
        (Encap::Vxlan, None) => Err(Problem::NoPeerMac),
        (Encap::Udp, Some(_)) => Err(Problem::PeerMacVxlanOnly),
        _ => Ok(()),
    }
}

/// Parses a `--peer` value, `CIDR=ADDR[:PORT][,mac=MAC]`: a canonical overlay prefix, the
/// underlay address of the node that owns it (port default: the format's, see
/// [`Encap::default_port`]) and, with `vxlan` (only), the MAC of its VTEP. An IPv4-mapped IPv6
/// address is returned as IPv4.
///
/// # Errors
/// No `=`; as [`parse_cidr`] and [`parse_peer_spec`]; a MAC missing with `vxlan` or given with
/// `udp`.
pub fn parse_peer(s: &str, encap: Encap) -> Result<Route, Problem> {
    let (prefix, peer) = s.split_once('=').ok_or(Problem::MissingEndpoint)?;
    let prefix = parse_cidr(prefix.trim())?;
    parse_peer_spec(peer)?.route(prefix, encap)
}

/// Parses a peer node as written after `CIDR=` in [`parse_peer`]: `ADDR[:PORT][,mac=MAC]`.
///
/// # Errors
/// As [`parse_peer_endpoint`] and [`parse_mac`]; an option other than `mac=`, or `mac=` twice.
pub fn parse_peer_spec(s: &str) -> Result<PeerSpec, Problem> {
    let mut parts = s.split(',');
    let endpoint = parts.next().unwrap_or_default();
    let mut peer = parse_peer_endpoint(endpoint.trim())?;
    for option in parts {
        match option.trim().split_once('=') {
            Some(("mac", _)) if peer.mac.is_some() => return Err(Problem::PeerMacTwice),
            Some(("mac", mac)) => peer.mac = Some(parse_mac(mac.trim())?),
            _ => return Err(Problem::UnknownPeerOption(option.trim().to_owned())),
        }
    }
    Ok(peer)
}

/// Parses a peer node's underlay address, `ADDR[:PORT]` (the port may be left out). An
/// IPv4-mapped IPv6 address is returned as IPv4.
///
/// # Errors
/// As [`parse_endpoint`]; an address that is unspecified, multicast or broadcast; port 0.
pub fn parse_peer_endpoint(s: &str) -> Result<PeerSpec, Problem> {
    let (ip, port) = split_endpoint(s)?;
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        return Err(Problem::Unspecified(ip));
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(Problem::NotUnicast(ip));
    }
    if port == Some(0) {
        return Err(Problem::PortZero);
    }
    Ok(PeerSpec {
        ip,
        port,
        mac: None,
    })
}

/// Parses a VTEP MAC, `aa:bb:cc:dd:ee:ff` (`-` separators and upper case accepted), and checks
/// it is unicast.
///
/// # Errors
/// Not a MAC; a multicast (broadcast included) or all-zero MAC.
pub fn parse_mac(s: &str) -> Result<Mac, Problem> {
    let mac: Mac = s.parse().map_err(|_| Problem::InvalidMac(s.to_owned()))?;
    if !mac.is_unicast() {
        return Err(Problem::MacNotUnicast(mac));
    }
    Ok(mac)
}

/// Parses a VXLAN network identifier, `0..=`[`MAX_VNI`].
///
/// # Errors
/// Not a number, or out of range.
pub fn parse_vni(s: &str) -> Result<u32, Problem> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::InvalidVni);
    }
    match s.parse::<i64>().map(u32::try_from) {
        Ok(Ok(vni)) if vni <= MAX_VNI => Ok(vni),
        _ => Err(Problem::VniOutOfRange),
    }
}

/// The VTEP MAC used when none is given: derived from the local subnets (their text joined by
/// `,`), so a node gets the same MAC on every start, unlike a kernel VXLAN device's random one.
pub fn default_vtep_mac(local_subnets: &[IpNet]) -> Mac {
    let seed: Vec<String> = local_subnets.iter().map(ToString::to_string).collect();
    Mac::derived(seed.join(",").as_bytes())
}

/// Parses the control socket setting: a path, or `none` for no control socket.
///
/// # Errors
/// An empty path, or one longer than a Unix socket address holds.
pub fn parse_control(s: &str) -> Result<Option<PathBuf>, Problem> {
    if s == "none" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err(Problem::EmptyPath);
    }
    if s.len() > MAX_SOCKET_PATH {
        return Err(Problem::SocketPathTooLong(s.len()));
    }
    Ok(Some(PathBuf::from(s)))
}

/// Parses the metrics endpoint: `PORT` alone (on 127.0.0.1) or `ADDR:PORT` (IPv6 in brackets).
///
/// # Errors
/// Anything else, or port 0.
pub fn parse_metrics(s: &str) -> Result<SocketAddr, Problem> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u16>() {
            Ok(0) => Err(Problem::PortZero),
            Ok(port) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            Err(_) => Err(Problem::InvalidPort(s.to_owned())),
        };
    }
    let addr = match parse_endpoint(s, 0) {
        Ok(addr) => addr,
        Err(Problem::InvalidPort(p)) => return Err(Problem::InvalidPort(p)),
        Err(_) => return Err(Problem::InvalidMetrics),
    };
    if addr.port() == 0 {
        return Err(Problem::InvalidMetrics);
    }
    Ok(addr)
}

/// Checks that a socket bound to `listen` can send to `peer`: same family, or an IPv4 peer
/// with a dual-stack `[::]` listen address.
///
/// # Errors
/// The family mismatch, naming the listen address.
pub fn check_family(peer: SocketAddr, listen: SocketAddr) -> Result<(), Problem> {
    match (peer, listen) {
        (SocketAddr::V6(_), SocketAddr::V4(_)) => Err(Problem::Ipv6PeerIpv4Listen(listen)),
        (SocketAddr::V4(_), SocketAddr::V6(l)) if !l.ip().is_unspecified() => {
            Err(Problem::Ipv4PeerIpv6Listen(listen))
        }
        _ => Ok(()),
    }
}

/// Checks a TUN device name as the kernel would: 1 to 15 bytes, not `.` or `..`, no `/`, `:`
/// or whitespace; also no `%` (a kernel-chosen name, which tundra could not configure).
///
/// # Errors
/// The rule broken.
pub fn check_tun_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.len() > 15 {
        return Err(Problem::TunNameLength);
    }
    if name == "." || name == ".." {
        return Err(Problem::TunNameDots);
    }
    match name
        .chars()
        .find(|&c| matches!(c, '/' | ':' | '%') || c.is_whitespace())
    {
        Some(c) => Err(Problem::TunNameChar(c)),
        None => Ok(()),
    }
}

/// Parses an MTU in bytes and checks it lies in `min..=65535`.
///
/// # Errors
/// Not a number, or out of range.
pub fn parse_mtu(s: &str, min: u16) -> Result<u16, Problem> {
    let mtu: i64 = s.parse().map_err(|_| Problem::InvalidNumber)?;
    match u16::try_from(mtu) {
        Ok(mtu) if mtu >= min => Ok(mtu),
        _ => Err(Problem::MtuOutOfRange { min }),
    }
}

/// Parses a TUN transmit queue length in packets and checks it lies in
/// `1..=`[`MAX_TUN_QUEUE_LEN`].
///
/// # Errors
/// Not a number, or out of range.
pub fn parse_tun_queue_len(s: &str) -> Result<u32, Problem> {
    let len: i64 = s.parse().map_err(|_| Problem::InvalidQueueLen)?;
    match u32::try_from(len) {
        Ok(len) if (1..=MAX_TUN_QUEUE_LEN).contains(&len) => Ok(len),
        _ => Err(Problem::QueueLenOutOfRange),
    }
}

/// Parses a socket buffer size: bytes (`4194304`), or KiB or MiB with the suffix `K` or `M`
/// (`4096K`, `4M`), and checks it lies in [`MIN_SOCKET_BUFFER`]`..=`[`MAX_SOCKET_BUFFER`].
///
/// # Errors
/// Not a number with an optional `K` or `M`, or out of range (negative numbers too).
pub fn parse_socket_buffer(s: &str) -> Result<usize, Problem> {
    let (number, unit) = if let Some(n) = s.strip_suffix('K') {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix('M') {
        (n, 1 << 20)
    } else {
        (s, 1)
    };
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if !digits(number) {
        return Err(match number.strip_prefix('-') {
            Some(n) if digits(n) => Problem::SocketBufferOutOfRange,
            _ => Problem::InvalidSize,
        });
    }
    // Only digits: parsing fails on overflow alone, which is out of range too.
    let bytes = number
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .saturating_mul(unit);
    match usize::try_from(bytes) {
        Ok(bytes) if (MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER).contains(&bytes) => Ok(bytes),
        _ => Err(Problem::SocketBufferOutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn flags(local: &[&str], peers: &[&str]) -> Flags {
        Flags {
            local_subnets: local.iter().map(|s| s.to_string()).collect(),
            peers: peers.iter().map(|s| s.to_string()).collect(),
            ..Flags::default()
        }
    }

    /// The error message for `flags` (no file); panics if they are accepted.
    fn flag_error(flags: &Flags) -> String {
        match Config::from_file_and_flags(None, flags) {
            Ok(c) => panic!("accepted {flags:?} as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn file_error(text: &str, flags: &Flags) -> String {
        match Config::from_file_and_flags(Some((Path::new("/etc/tundra.toml"), text)), flags) {
            Ok(c) => panic!("accepted {text:?} as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[track_caller]
    fn assert_contains(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(
                message.contains(part),
                "{message:?} does not contain {part:?}"
            );
        }
        assert!(!message.contains('\n'), "{message:?} is not one line");
    }

    #[test]
    fn cidr_good() {
        assert_eq!(parse_cidr("10.1.0.0/16"), Ok(net("10.1.0.0/16")));
        assert_eq!(parse_cidr("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_cidr("10.1.2.3/32"), Ok(net("10.1.2.3/32")));
        assert_eq!(parse_cidr("fd00:1::/64"), Ok(net("fd00:1::/64")));
        assert_eq!(parse_cidr("fd00::1/128"), Ok(net("fd00::1/128")));
    }

    #[test]
    fn cidr_bad() {
        assert_eq!(parse_cidr("10.1.0.0"), Err(Problem::MissingPrefixLength));
        assert_eq!(
            parse_cidr("198.19.2.0/33"),
            Err(Problem::InvalidPrefixLength {
                len: "33".into(),
                max: 32
            })
        );
        assert_eq!(
            parse_cidr("fd00::/129"),
            Err(Problem::InvalidPrefixLength {
                len: "129".into(),
                max: 128
            })
        );
        for len in ["", "+8", "x", "-1", "300"] {
            assert!(
                matches!(
                    parse_cidr(&format!("10.0.0.0/{len}")),
                    Err(Problem::InvalidPrefixLength { .. })
                ),
                "{len}"
            );
        }
        assert_eq!(
            parse_cidr("10.1.0.1/16"),
            Err(Problem::HostBitsSet(net("10.1.0.0/16")))
        );
        assert_eq!(
            parse_cidr("fd00::1/64"),
            Err(Problem::HostBitsSet(net("fd00::/64")))
        );
        assert_eq!(
            parse_cidr("10.1.0/16"),
            Err(Problem::InvalidIp("10.1.0".into()))
        );
        assert_eq!(
            parse_cidr("host/16"),
            Err(Problem::InvalidIp("host".into()))
        );
        assert_eq!(
            Problem::InvalidPrefixLength {
                len: "33".into(),
                max: 32
            }
            .to_string(),
            "invalid prefix length 33 (at most 32 for IPv4)"
        );
        assert_eq!(
            Problem::HostBitsSet(net("10.1.0.0/16")).to_string(),
            "host bits are set (did you mean 10.1.0.0/16?)"
        );
    }

    #[test]
    fn endpoint_good() {
        let ep = |s| parse_endpoint(s, DEFAULT_PORT);
        assert_eq!(ep("192.0.2.1:9000"), Ok("192.0.2.1:9000".parse().unwrap()));
        assert_eq!(ep("192.0.2.1"), Ok("192.0.2.1:8285".parse().unwrap()));
        assert_eq!(ep("[fd18::2]:8285"), Ok("[fd18::2]:8285".parse().unwrap()));
        assert_eq!(ep("[fd18::2]"), Ok("[fd18::2]:8285".parse().unwrap()));
        assert_eq!(ep("[::]:1"), Ok("[::]:1".parse().unwrap()));
    }

    #[test]
    fn endpoint_bad() {
        let ep = |s| parse_endpoint(s, DEFAULT_PORT);
        assert_eq!(
            ep("fd18::2"),
            Err(Problem::UnbracketedIpv6("fd18::2".parse().unwrap()))
        );
        assert_eq!(ep("192.0.2.1:"), Err(Problem::InvalidPort("".into())));
        assert_eq!(
            ep("192.0.2.1:70000"),
            Err(Problem::InvalidPort("70000".into()))
        );
        assert_eq!(ep("192.0.2.1:+1"), Err(Problem::InvalidPort("+1".into())));
        assert_eq!(ep("[fd18::2]:x"), Err(Problem::InvalidPort("x".into())));
        for s in [
            "",
            "node1:8285",
            "[fd18::2",
            "[fd18::2]8285",
            "[10.0.0.1]:1",
            "1.2.3:4",
        ] {
            assert_eq!(ep(s), Err(Problem::InvalidAddress(s.into())), "{s}");
        }
    }

    #[test]
    fn peer_good() {
        let route = |p: &str, a: &str| Route {
            prefix: net(p),
            peer: a.parse().unwrap(),
            mac: None,
        };
        assert_eq!(
            parse_peer("10.2.0.0/16=192.0.2.2:9000", Encap::Udp),
            Ok(route("10.2.0.0/16", "192.0.2.2:9000"))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=192.0.2.2", Encap::Udp),
            Ok(route("10.2.0.0/16", "192.0.2.2:8285"))
        );
        assert_eq!(
            parse_peer("fd00:2::/64=[fd18::2]", Encap::Udp),
            Ok(route("fd00:2::/64", "[fd18::2]:8285"))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=[::ffff:192.0.2.2]:1", Encap::Udp),
            Ok(route("10.2.0.0/16", "192.0.2.2:1"))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=127.0.0.1", Encap::Udp),
            Ok(route("10.2.0.0/16", "127.0.0.1:8285"))
        );
    }

    #[test]
    fn peer_bad() {
        assert_eq!(
            parse_peer("10.2.0.0/16", Encap::Udp),
            Err(Problem::MissingEndpoint)
        );
        assert_eq!(
            parse_peer("198.19.2.0/33=198.18.0.2:8285", Encap::Udp),
            Err(Problem::InvalidPrefixLength {
                len: "33".into(),
                max: 32
            })
        );
        assert_eq!(
            parse_peer("10.2.0.1/16=192.0.2.2", Encap::Udp),
            Err(Problem::HostBitsSet(net("10.2.0.0/16")))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=192.0.2.2:0", Encap::Udp),
            Err(Problem::PortZero)
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=0.0.0.0", Encap::Udp),
            Err(Problem::Unspecified("0.0.0.0".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=[::]", Encap::Udp),
            Err(Problem::Unspecified("::".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=224.0.0.1", Encap::Udp),
            Err(Problem::NotUnicast("224.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=255.255.255.255", Encap::Udp),
            Err(Problem::NotUnicast("255.255.255.255".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=[ff02::1]", Encap::Udp),
            Err(Problem::NotUnicast("ff02::1".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.2.0.0/16=fd18::2", Encap::Udp),
            Err(Problem::UnbracketedIpv6("fd18::2".parse().unwrap()))
        );
    }

    #[test]
    fn listen() {
        assert_eq!(parse_listen("0.0.0.0", DEFAULT_PORT), Ok(DEFAULT_LISTEN));
        assert_eq!(
            parse_listen("[::]:9000", DEFAULT_PORT),
            Ok("[::]:9000".parse().unwrap())
        );
        assert_eq!(
            parse_listen("0.0.0.0:0", DEFAULT_PORT),
            Err(Problem::PortZero)
        );
        assert_eq!(
            parse_listen("239.1.1.1:8285", DEFAULT_PORT),
            Err(Problem::BadListen("239.1.1.1".parse().unwrap()))
        );
    }

    #[test]
    fn tun_names() {
        for good in ["tundra0", "t", "a23456789012345", "tun-0_x.y"] {
            assert_eq!(check_tun_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_tun_name(""), Err(Problem::TunNameLength));
        assert_eq!(
            check_tun_name("a234567890123456"),
            Err(Problem::TunNameLength)
        );
        assert_eq!(check_tun_name(".."), Err(Problem::TunNameDots));
        assert_eq!(check_tun_name("a/b"), Err(Problem::TunNameChar('/')));
        assert_eq!(check_tun_name("a b"), Err(Problem::TunNameChar(' ')));
        assert_eq!(check_tun_name("a:1"), Err(Problem::TunNameChar(':')));
        assert_eq!(check_tun_name("tun%d"), Err(Problem::TunNameChar('%')));
    }

    #[test]
    fn mtu() {
        assert_eq!(parse_mtu("576", MIN_MTU), Ok(576));
        assert_eq!(parse_mtu("65535", MIN_MTU), Ok(65535));
        assert_eq!(
            parse_mtu("575", MIN_MTU),
            Err(Problem::MtuOutOfRange { min: MIN_MTU })
        );
        assert_eq!(
            parse_mtu("65536", MIN_MTU),
            Err(Problem::MtuOutOfRange { min: MIN_MTU })
        );
        assert_eq!(
            parse_mtu("-1", MIN_MTU),
            Err(Problem::MtuOutOfRange { min: MIN_MTU })
        );
        assert_eq!(
            parse_mtu("1279", MIN_MTU_IPV6),
            Err(Problem::MtuOutOfRange { min: MIN_MTU_IPV6 })
        );
        assert_eq!(parse_mtu("15OO", MIN_MTU), Err(Problem::InvalidNumber));
    }

    #[test]
    fn offload() {
        for o in [Offload::Auto, Offload::On, Offload::Off] {
            assert_eq!(o.to_string().parse(), Ok(o));
        }
        assert_eq!("ON".parse::<Offload>(), Err(Problem::UnknownOffload));
        assert_eq!("".parse::<Offload>(), Err(Problem::UnknownOffload));
    }

    #[test]
    fn tun_queue_len() {
        assert_eq!(parse_tun_queue_len("1"), Ok(1));
        assert_eq!(parse_tun_queue_len("100000"), Ok(100_000));
        for bad in ["0", "100001", "-1", "4294967296"] {
            assert_eq!(
                parse_tun_queue_len(bad),
                Err(Problem::QueueLenOutOfRange),
                "{bad}"
            );
        }
        for bad in ["", "1k", "1.5", "ten"] {
            assert_eq!(
                parse_tun_queue_len(bad),
                Err(Problem::InvalidQueueLen),
                "{bad}"
            );
        }
    }

    #[test]
    fn socket_buffer() {
        assert_eq!(parse_socket_buffer("65536"), Ok(MIN_SOCKET_BUFFER));
        assert_eq!(parse_socket_buffer("64K"), Ok(MIN_SOCKET_BUFFER));
        assert_eq!(parse_socket_buffer("4M"), Ok(4_194_304));
        assert_eq!(parse_socket_buffer("4096K"), Ok(4_194_304));
        assert_eq!(parse_socket_buffer("1024M"), Ok(MAX_SOCKET_BUFFER));
        assert_eq!(parse_socket_buffer("1073741824"), Ok(MAX_SOCKET_BUFFER));
        for bad in [
            "65535",
            "63K",
            "0",
            "0M",
            "1025M",
            "1073741825",
            "-1",
            "-4M",
            "99999999999999999999999M",
        ] {
            assert_eq!(
                parse_socket_buffer(bad),
                Err(Problem::SocketBufferOutOfRange),
                "{bad}"
            );
        }
        for bad in [
            "", "K", "4m", "4k", "4MiB", "1G", "+4M", "4 M", "4.5M", "M4",
        ] {
            assert_eq!(parse_socket_buffer(bad), Err(Problem::InvalidSize), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let config = Config::from_file_and_flags(None, &flags(&["10.1.0.0/16"], &[])).unwrap();
        assert_eq!(
            config,
            Config {
                tun: "tundra0".into(),
                listen: DEFAULT_LISTEN,
                local_subnets: vec![net("10.1.0.0/16")],
                peers: vec![],
                encap: Encap::Udp,
                vni: DEFAULT_VNI,
                vtep_mac: None,
                mtu: None,
                io: IoMode::Auto,
                offload: Offload::Auto,
                tun_queue_len: None,
                socket_buffer: None,
                priority: Priority::High,
                cpus: None,
                configure: true,
                control: Some(PathBuf::from(DEFAULT_CONTROL)),
                metrics: None,
                etcd: None,
            }
        );
    }

    #[test]
    fn all_flags() {
        let flags = Flags {
            tun: Some("ov0".into()),
            listen: Some("[::]:9000".into()),
            local_subnets: vec!["10.1.0.0/16".into(), "fd00:1::/64".into()],
            peers: vec![
                "10.2.0.0/16=192.0.2.2".into(),
                "10.3.0.0/16=192.0.2.2".into(),
                "fd00:2::/64=[2001:db8::2]:9000".into(),
                "10.128.0.0/9=192.0.2.9".into(),
            ],
            encap: Some("udp".into()),
            vni: None,
            vtep_mac: None,
            mtu: Some("1400".into()),
            io: Some("poll".into()),
            offload: Some("off".into()),
            tun_queue_len: Some("1000".into()),
            socket_buffer: Some("4M".into()),
            priority: Some("normal".into()),
            cpus: Some("1".into()),
            no_configure: true,
            config: None,
            control: Some("/tmp/t.sock".into()),
            metrics: Some("9100".into()),
            etcd_endpoints: None,
            etcd_prefix: None,
            public_ip: None,
            public_ipv6: None,
            subnet_file: None,
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            etcd_start_timeout: None,
        };
        let config = Config::from_file_and_flags(None, &flags).unwrap();
        assert_eq!(config.tun, "ov0");
        assert_eq!(config.listen, "[::]:9000".parse().unwrap());
        assert_eq!(
            config.local_subnets,
            vec![net("10.1.0.0/16"), net("fd00:1::/64")]
        );
        assert_eq!(config.peers.len(), 4);
        assert_eq!(config.peers[2].peer, "[2001:db8::2]:9000".parse().unwrap());
        assert_eq!(config.mtu, Some(1400));
        assert_eq!(config.io, IoMode::Poll);
        assert_eq!(config.offload, Offload::Off);
        assert_eq!(config.tun_queue_len, Some(1000));
        assert_eq!(config.socket_buffer, Some(4 << 20));
        assert_eq!(config.priority, Priority::Normal);
        assert_eq!(config.cpus, Some("1".parse().unwrap()));
        assert!(!config.configure);
        assert_eq!(config.control, Some(PathBuf::from("/tmp/t.sock")));
        assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    }

    #[test]
    fn cpu_lists() {
        let cpus = |s: &str| s.parse::<CpuList>().map(|c| c.cpus().to_vec());
        assert_eq!(cpus("2"), Ok(vec![2]));
        assert_eq!(cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(cpus("3,1-2,2"), Ok(vec![1, 2, 3]));
        assert_eq!(cpus("1023"), Ok(vec![MAX_CPU]));
        assert_eq!(cpus("1024"), Err(Problem::CpuOutOfRange(1024)));
        assert_eq!(
            cpus("99999999999999999999999"),
            Err(Problem::CpuOutOfRange(usize::MAX))
        );
        for bad in ["", ",", "1,", "a", "-1", "1-", "3-1", "1 ,2", "0x1", "+1"] {
            assert_eq!(cpus(bad), Err(Problem::InvalidCpuList), "{bad:?}");
        }
        for (list, shown) in [("2", "2"), ("3,0,2", "0,2-3"), ("0-2,4,6-7", "0-2,4,6-7")] {
            assert_eq!(list.parse::<CpuList>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn control_and_metrics() {
        assert_eq!(parse_control("none"), Ok(None));
        assert_eq!(parse_control("/x/y.sock"), Ok(Some("/x/y.sock".into())));
        assert_eq!(parse_control(""), Err(Problem::EmptyPath));
        let long = format!("/{}", "a".repeat(MAX_SOCKET_PATH));
        assert_eq!(
            parse_control(&long),
            Err(Problem::SocketPathTooLong(MAX_SOCKET_PATH + 1))
        );
        assert_eq!(parse_metrics("9100"), Ok("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            parse_metrics("0.0.0.0:80"),
            Ok("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            parse_metrics("[::1]:9100"),
            Ok("[::1]:9100".parse().unwrap())
        );
        assert_eq!(parse_metrics("0"), Err(Problem::PortZero));
        assert_eq!(
            parse_metrics("70000"),
            Err(Problem::InvalidPort("70000".into()))
        );
        assert_eq!(parse_metrics("127.0.0.1"), Err(Problem::InvalidMetrics));
        assert_eq!(
            parse_metrics("localhost:9100"),
            Err(Problem::InvalidMetrics)
        );
        assert_eq!(parse_metrics(""), Err(Problem::InvalidMetrics));
        assert_eq!(
            parse_metrics("1.2.3.4:x"),
            Err(Problem::InvalidPort("x".into()))
        );
        assert_contains(
            &flag_error(&Flags {
                metrics: Some("host:1".into()),
                ..flags(&["10.1.0.0/16"], &[])
            }),
            &["--metrics host:1:", "PORT or ADDR:PORT"],
        );
        assert_contains(
            &flag_error(&Flags {
                control: Some(String::new()),
                ..flags(&["10.1.0.0/16"], &[])
            }),
            &["--control \"\":", "empty path"],
        );
        let text =
            "local_subnets = [\"10.1.0.0/16\"]\ncontrol = \"none\"\nmetrics = \"[::]:9100\"\n";
        let config =
            Config::from_file_and_flags(Some((Path::new("t.toml"), text)), &Flags::default())
                .unwrap();
        assert_eq!(config.control, None);
        assert_eq!(config.metrics, Some("[::]:9100".parse().unwrap()));
        assert_contains(
            &file_error("metrics = \"x\"\n", &flags_with_local(&["10.1.0.0/16"])),
            &["line 1: metrics x:"],
        );
    }

    #[test]
    fn flag_errors() {
        let base = |f: fn(&mut Flags)| {
            let mut flags = flags(&["10.1.0.0/16"], &["10.2.0.0/16=192.0.2.2"]);
            f(&mut flags);
            flag_error(&flags)
        };
        assert_eq!(
            flag_error(&flags(&["10.1.0.0/16"], &["198.19.2.0/33=198.18.0.2:8285"])),
            "--peer 198.19.2.0/33=198.18.0.2:8285: invalid prefix length 33 (at most 32 for IPv4)"
        );
        assert_contains(
            &flag_error(&flags(&[], &[])),
            &["no local subnet", "--local-subnet"],
        );
        assert_contains(
            &flag_error(&flags(&["10.1.0.1/16"], &[])),
            &["--local-subnet 10.1.0.1/16:", "did you mean 10.1.0.0/16?"],
        );
        assert_contains(
            &flag_error(&flags(&["10.1.0.0/16", "10.1.2.0/24"], &[])),
            &[
                "--local-subnet 10.1.2.0/24:",
                "overlaps local subnet 10.1.0.0/16",
            ],
        );
        assert_contains(
            &flag_error(&flags(&["10.1.0.0/16"], &["10.1.5.0/24=192.0.2.2"])),
            &[
                "--peer 10.1.5.0/24=192.0.2.2:",
                "overlaps local subnet 10.1.0.0/16",
            ],
        );
        assert_contains(
            &flag_error(&flags(
                &["10.1.0.0/16"],
                &["10.2.0.0/16=192.0.2.2", "10.2.0.0/16=192.0.2.3"],
            )),
            &[
                "--peer 10.2.0.0/16=192.0.2.3:",
                "already routed to 192.0.2.2:8285",
            ],
        );
        assert_contains(
            &flag_error(&flags(&["10.1.0.0/16"], &["fd00:2::/64=[fd18::2]"])),
            &[
                "--peer fd00:2::/64=[fd18::2]:",
                "listen address 0.0.0.0:8285 is IPv4",
            ],
        );
        assert_contains(
            &base(|f| f.listen = Some("[fd18::1]:8285".into())),
            &["--peer 10.2.0.0/16=192.0.2.2:", "[fd18::1]:8285 is IPv6"],
        );
        assert_contains(
            &base(|f| f.tun = Some("a/b".into())),
            &["--tun a/b:", "'/'"],
        );
        assert_contains(
            &base(|f| f.tun = Some(String::new())),
            &["--tun \"\":", "1 to 15"],
        );
        assert_contains(
            &base(|f| f.tun = Some("averyveryverylongname".into())),
            &["--tun averyveryverylongname:", "1 to 15"],
        );
        assert_contains(
            &base(|f| f.listen = Some("0.0.0.0:0".into())),
            &["--listen 0.0.0.0:0:", "port 0"],
        );
        assert_contains(
            &base(|f| f.encap = Some("gre".into())),
            &["--encap gre:", "supported: udp, vxlan"],
        );
        assert_contains(
            &base(|f| f.io = Some("epoll".into())),
            &["--io epoll:", "auto, uring or poll"],
        );
        assert_contains(
            &base(|f| f.offload = Some("yes".into())),
            &["--offload yes:", "auto, on or off"],
        );
        assert_contains(
            &base(|f| f.priority = Some("rt".into())),
            &["--priority rt:", "realtime, high or normal"],
        );
        assert_contains(
            &base(|f| f.cpus = Some("1-".into())),
            &["--cpus 1-:", "e.g. 2 or 0,2-3"],
        );
        assert_contains(
            &base(|f| f.cpus = Some("4096".into())),
            &["--cpus 4096:", "CPU 4096 out of range"],
        );
        assert_contains(
            &base(|f| f.tun_queue_len = Some("0".into())),
            &["--tun-queue-len 0:", "1..=100000"],
        );
        assert_contains(
            &base(|f| f.tun_queue_len = Some("lots".into())),
            &["--tun-queue-len lots:", "invalid number"],
        );
        assert_contains(
            &base(|f| f.socket_buffer = Some("32K".into())),
            &["--socket-buffer 32K:", "64K..=1024M"],
        );
        assert_contains(
            &base(|f| f.socket_buffer = Some("4G".into())),
            &["--socket-buffer 4G:", "suffix K or M"],
        );
        assert_contains(
            &base(|f| f.mtu = Some("100".into())),
            &["--mtu 100:", "576..=65535"],
        );
        assert_contains(
            &base(|f| f.mtu = Some("70000".into())),
            &["--mtu 70000:", "576..=65535"],
        );
        assert_contains(
            &base(|f| f.mtu = Some("big".into())),
            &["--mtu big:", "invalid number"],
        );
        assert_contains(
            &base(|f| {
                f.mtu = Some("1000".into());
                f.local_subnets.push("fd00:1::/64".into());
            }),
            &["--mtu 1000:", "1280..=65535", "IPv6"],
        );
        // The IPv6 subnet may be a peer's.
        assert_contains(
            &base(|f| {
                f.mtu = Some("1000".into());
                f.listen = Some("[::]".into());
                f.peers.push("fd00:2::/64=[fd18::2]".into());
            }),
            &["--mtu 1000:", "1280"],
        );
    }

    #[test]
    fn same_peer_many_prefixes_and_nested_routes() {
        let config = Config::from_file_and_flags(
            None,
            &flags(
                &["10.1.0.0/24"],
                &[
                    "10.2.0.0/16=192.0.2.2",
                    "10.2.1.0/24=192.0.2.3",
                    "10.3.0.0/16=192.0.2.2",
                ],
            ),
        )
        .unwrap();
        assert_eq!(config.peers.len(), 3);
        // An IPv4 peer with a dual-stack listen address.
        let mut f = flags(&["10.1.0.0/24"], &["10.2.0.0/16=192.0.2.2"]);
        f.listen = Some("[::]:8285".into());
        assert!(Config::from_file_and_flags(None, &f).is_ok());
        // A peer prefix containing the local subnet overlaps it too.
        assert_contains(
            &flag_error(&flags(&["10.1.0.0/24"], &["10.0.0.0/8=192.0.2.2"])),
            &[
                "--peer 10.0.0.0/8=192.0.2.2:",
                "overlaps local subnet 10.1.0.0/24",
            ],
        );
    }

    const FILE: &str = r#"
tun = "ov1"
listen = "[::]:9000"
local_subnets = ["10.1.0.0/16", "fd00:1::/64"]
peers = [
    "10.2.0.0/16=192.0.2.2",
    "fd00:2::/64=[2001:db8::2]:9000",
]
encap = "udp"
mtu = 1400
io = "uring"
offload = "on"
tun_queue_len = 500
socket_buffer = 1048576
priority = "realtime"
cpus = "3,0,2"
configure = false
"#;

    #[test]
    fn file_good() {
        let config =
            Config::from_file_and_flags(Some((Path::new("t.toml"), FILE)), &Flags::default())
                .unwrap();
        assert_eq!(
            config,
            Config {
                tun: "ov1".into(),
                listen: "[::]:9000".parse().unwrap(),
                local_subnets: vec![net("10.1.0.0/16"), net("fd00:1::/64")],
                peers: vec![
                    Route {
                        prefix: net("10.2.0.0/16"),
                        peer: "192.0.2.2:8285".parse().unwrap(),
                        mac: None,
                    },
                    Route {
                        prefix: net("fd00:2::/64"),
                        peer: "[2001:db8::2]:9000".parse().unwrap(),
                        mac: None,
                    },
                ],
                encap: Encap::Udp,
                vni: DEFAULT_VNI,
                vtep_mac: None,
                mtu: Some(1400),
                io: IoMode::Uring,
                offload: Offload::On,
                tun_queue_len: Some(500),
                socket_buffer: Some(1 << 20),
                priority: Priority::Realtime,
                cpus: Some("0,2-3".parse().unwrap()),
                configure: false,
                control: Some(PathBuf::from(DEFAULT_CONTROL)),
                metrics: None,
                etcd: None,
            }
        );
        // An empty file is all defaults, and still needs a local subnet.
        assert_contains(&file_error("", &Flags::default()), &["no local subnet"]);
    }

    #[test]
    fn flags_override_file() {
        let flags = Flags {
            tun: Some("ov2".into()),
            local_subnets: vec!["10.9.0.0/16".into()],
            peers: vec!["10.8.0.0/16=192.0.2.8".into()],
            mtu: Some("1300".into()),
            io: Some("poll".into()),
            offload: Some("off".into()),
            tun_queue_len: Some("2000".into()),
            socket_buffer: Some("512K".into()),
            ..Flags::default()
        };
        let config =
            Config::from_file_and_flags(Some((Path::new("t.toml"), FILE)), &flags).unwrap();
        assert_eq!(config.tun, "ov2");
        assert_eq!(config.listen, "[::]:9000".parse().unwrap());
        assert_eq!(config.local_subnets, vec![net("10.9.0.0/16")]);
        assert_eq!(
            config.peers,
            vec![parse_peer("10.8.0.0/16=192.0.2.8", Encap::Udp).unwrap()]
        );
        assert_eq!(config.mtu, Some(1300));
        assert_eq!(config.io, IoMode::Poll);
        assert_eq!(config.offload, Offload::Off);
        assert_eq!(config.tun_queue_len, Some(2000));
        assert_eq!(config.socket_buffer, Some(512 << 10));
        assert!(!config.configure);
        // A flag replaces a bad file value without looking at it.
        let text = "local_subnets = [\"10.1.0.1/16\"]\n";
        let flags = flags_with_local(&["10.1.0.0/16"]);
        assert!(Config::from_file_and_flags(Some((Path::new("t.toml"), text)), &flags).is_ok());
    }

    fn flags_with_local(local: &[&str]) -> Flags {
        flags(local, &[])
    }

    #[test]
    fn file_errors() {
        let none = Flags::default();
        let local = flags_with_local(&["10.1.0.0/16"]);
        assert_eq!(
            file_error("local_subnets = [\"10.1.0.0/16\"]\npeers = [\n  \"198.19.2.0/33=198.18.0.2:8285\",\n]\n", &none),
            "config /etc/tundra.toml line 3: peers 198.19.2.0/33=198.18.0.2:8285: invalid prefix length 33 (at most 32 for IPv4)"
        );
        assert_contains(
            &file_error("\nlocal_subnets = [\"10.1.0.1/16\"]\n", &none),
            &[
                "config /etc/tundra.toml line 2: local_subnets 10.1.0.1/16:",
                "10.1.0.0/16?",
            ],
        );
        assert_contains(
            &file_error("tun = \"x\"\nbogus = 1\n", &local),
            &["config /etc/tundra.toml line 2:", "unknown field", "bogus"],
        );
        assert_contains(
            &file_error("mtu = \"1400\"\n", &local),
            &["config /etc/tundra.toml line 1:", "mtu = \"1400\""],
        );
        assert_contains(
            &file_error("mtu = 100\n", &local),
            &["line 1: mtu 100:", "576..=65535"],
        );
        assert_contains(
            &file_error("tun = [\n", &local),
            &["config /etc/tundra.toml line "],
        );
        assert_contains(
            &file_error("io = \"fast\"\n", &local),
            &["line 1: io fast:", "auto, uring or poll"],
        );
        assert_contains(
            &file_error("offload = \"maybe\"\n", &local),
            &["line 1: offload maybe:", "auto, on or off"],
        );
        assert_contains(
            &file_error("\ntun_queue_len = 100001\n", &local),
            &["line 2: tun_queue_len 100001:", "1..=100000"],
        );
        assert_contains(
            &file_error("tun_queue_len = \"1000\"\n", &local),
            &["config /etc/tundra.toml line 1:", "tun_queue_len"],
        );
        assert_contains(
            &file_error("socket_buffer = 1024\n", &local),
            &["line 1: socket_buffer 1024:", "64K..=1024M"],
        );
        assert_contains(
            &file_error("socket_buffer = \"2G\"\n", &local),
            &["line 1: socket_buffer 2G:", "suffix K or M"],
        );
        assert_contains(
            &file_error("socket_buffer = true\n", &local),
            &["config /etc/tundra.toml line 1:", "socket_buffer", "4M"],
        );
        assert_contains(
            &file_error("encap = \"gre\"\n", &local),
            &["line 1: encap gre:"],
        );
        assert_contains(
            &file_error("listen = \"host:1\"\n", &local),
            &["line 1: listen host:1:"],
        );
        assert_contains(
            &file_error("tun = \"a b\"\n", &local),
            &["line 1: tun \"a b\":"],
        );
        assert_contains(
            &file_error("configure = \"no\"\n", &local),
            &["line 1:", "configure"],
        );
        assert_contains(
            &file_error("peers = \"10.2.0.0/16=192.0.2.2\"\n", &local),
            &["line 1:"],
        );
    }

    const MAC2: &str = "0a:58:c6:13:02:00";
    const MAC3: &str = "0a:58:c6:13:03:00";

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    fn vxlan(local: &[&str], peers: &[&str]) -> Flags {
        Flags {
            encap: Some("vxlan".into()),
            ..flags(local, peers)
        }
    }

    #[test]
    fn encap_names_and_ports() {
        for e in [Encap::Udp, Encap::Vxlan] {
            assert_eq!(e.to_string().parse(), Ok(e));
            assert_eq!(
                Encap::from(match e {
                    Encap::Udp => datapath::WireFormat::Udp,
                    Encap::Vxlan => datapath::WireFormat::Vxlan,
                }),
                e
            );
        }
        assert_eq!("VXLAN".parse::<Encap>(), Err(Problem::UnknownEncap));
        assert_eq!(Encap::Udp.default_port(), 8285);
        assert_eq!(Encap::Vxlan.default_port(), 8472);
    }

    #[test]
    fn peer_specs() {
        let spec = |s: &str| parse_peer_spec(s).unwrap();
        let p = spec("192.0.2.2");
        assert_eq!(
            (p.ip, p.port, p.mac),
            ("192.0.2.2".parse().unwrap(), None, None)
        );
        assert_eq!(p.addr(VXLAN_PORT), "192.0.2.2:8472".parse().unwrap());
        let p = spec(" [fd18::2]:4789 , mac=0A-58-C6-13-02-00 ");
        assert_eq!(p.port, Some(4789));
        assert_eq!(p.mac, Some(mac(MAC2)));
        // Display is what parse reads, canonical.
        assert_eq!(p.to_string(), format!("[fd18::2]:4789,mac={MAC2}"));
        assert_eq!(p.endpoint(), "[fd18::2]:4789");
        for text in [
            "192.0.2.2",
            "192.0.2.2:1",
            "[fd18::2]",
            "[fd18::2]:9,mac=0a:58:c6:13:02:00",
        ] {
            assert_eq!(spec(text).to_string(), text);
            assert_eq!(text.parse::<PeerSpec>(), Ok(spec(text)));
        }
        assert_eq!(spec("[::ffff:192.0.2.2]").to_string(), "192.0.2.2");
        assert_eq!(
            parse_peer_spec("192.0.2.2,mac="),
            Err(Problem::InvalidMac(String::new()))
        );
        assert_eq!(
            parse_peer_spec("192.0.2.2,mac=0a:58:c6:13:02"),
            Err(Problem::InvalidMac("0a:58:c6:13:02".into()))
        );
        assert_eq!(
            parse_peer_spec("192.0.2.2,mac=01:00:5e:00:00:01"),
            Err(Problem::MacNotUnicast(mac("01:00:5e:00:00:01")))
        );
        assert_eq!(
            parse_peer_spec(&format!("192.0.2.2,mac={MAC2},mac={MAC2}")),
            Err(Problem::PeerMacTwice)
        );
        assert_eq!(
            parse_peer_spec("192.0.2.2,vni=2"),
            Err(Problem::UnknownPeerOption("vni=2".into()))
        );
        assert_eq!(
            parse_peer_spec("192.0.2.2,"),
            Err(Problem::UnknownPeerOption(String::new()))
        );
        assert_eq!(parse_peer_spec("192.0.2.2:0"), Err(Problem::PortZero));
        assert_eq!(
            parse_peer_spec("0.0.0.0,mac=0a:58:c6:13:02:00"),
            Err(Problem::Unspecified("0.0.0.0".parse().unwrap()))
        );
        // The JSON "peer" takes the address alone.
        assert_eq!(
            parse_peer_endpoint(&format!("192.0.2.2,mac={MAC2}")),
            Err(Problem::InvalidAddress(format!("192.0.2.2,mac={MAC2}")))
        );
    }

    #[test]
    fn peer_per_format() {
        let vx = |s: &str| parse_peer(s, Encap::Vxlan);
        assert_eq!(
            vx(&format!("10.2.0.0/16=192.0.2.2,mac={MAC2}")),
            Ok(Route {
                prefix: net("10.2.0.0/16"),
                peer: "192.0.2.2:8472".parse().unwrap(),
                mac: Some(mac(MAC2)),
            })
        );
        assert_eq!(
            vx(&format!("10.2.0.0/16=192.0.2.2:4789,mac={MAC2}")).map(|r| r.peer),
            Ok("192.0.2.2:4789".parse().unwrap())
        );
        assert_eq!(vx("10.2.0.0/16=192.0.2.2"), Err(Problem::NoPeerMac));
        assert_eq!(
            parse_peer(&format!("10.2.0.0/16=192.0.2.2,mac={MAC2}"), Encap::Udp),
            Err(Problem::PeerMacVxlanOnly)
        );
        assert_eq!(check_peer_mac(None, Encap::Udp), Ok(()));
        assert_eq!(check_peer_mac(Some(mac(MAC2)), Encap::Vxlan), Ok(()));
    }

    #[test]
    fn macs_and_vnis() {
        assert_eq!(parse_mac(MAC2), Ok(mac(MAC2)));
        assert_eq!(parse_mac("0A:58:C6:13:02:00"), Ok(mac(MAC2)));
        for bad in [
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "33:33:00:00:00:01",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(Problem::MacNotUnicast(mac(bad))),
                "{bad}"
            );
        }
        for bad in [
            "",
            "0a:58:c6:13:02",
            "0a:58:c6:13:02:00:01",
            "0a58.c613.0200",
            "g0:58:c6:13:02:00",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(Problem::InvalidMac(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_vni("0"), Ok(0));
        assert_eq!(parse_vni("1"), Ok(1));
        assert_eq!(parse_vni("16777215"), Ok(MAX_VNI));
        for bad in ["16777216", "-1", "99999999999999999999"] {
            assert_eq!(parse_vni(bad), Err(Problem::VniOutOfRange), "{bad}");
        }
        for bad in ["", "x", "+1", "1.0", "0x10", "-"] {
            assert_eq!(parse_vni(bad), Err(Problem::InvalidVni), "{bad}");
        }
    }

    #[test]
    fn vxlan_defaults() {
        let peer = format!("10.2.0.0/16=192.0.2.2,mac={MAC2}");
        let config = Config::from_file_and_flags(None, &vxlan(&["10.1.0.0/16"], &[&peer])).unwrap();
        assert_eq!(config.encap, Encap::Vxlan);
        assert_eq!(config.listen, "0.0.0.0:8472".parse().unwrap());
        assert_eq!(config.peers[0].peer, "192.0.2.2:8472".parse().unwrap());
        assert_eq!(config.vni, 1);
        assert_eq!(config.vtep_mac, None);
        // The default MAC: derived from the local subnets, the same on every start.
        let derived = Mac::derived(b"10.1.0.0/16");
        assert!(derived.is_unicast());
        assert_eq!(default_vtep_mac(&config.local_subnets), derived);
        assert_eq!(
            config.wire_encap(),
            datapath::Encap::Vxlan {
                vni: 1,
                mac: derived
            }
        );
        let two = vxlan(&["10.1.0.0/16", "fd00:1::/64"], &[]);
        let config = Config::from_file_and_flags(None, &two).unwrap();
        assert_eq!(
            config.wire_encap(),
            datapath::Encap::Vxlan {
                vni: 1,
                mac: Mac::derived(b"10.1.0.0/16,fd00:1::/64")
            }
        );
        // udp: no VNI or MAC on the wire; a listen address without a port gets the format's.
        let config = Config::from_file_and_flags(None, &flags(&["10.1.0.0/16"], &[])).unwrap();
        assert_eq!(config.wire_encap(), datapath::Encap::Udp);
        let mut f = vxlan(&["10.1.0.0/16"], &[]);
        f.listen = Some("[::]".into());
        let config = Config::from_file_and_flags(None, &f).unwrap();
        assert_eq!(config.listen, "[::]:8472".parse().unwrap());
    }

    #[test]
    fn vxlan_flags() {
        let f = Flags {
            vni: Some("4096".into()),
            vtep_mac: Some("0A-58-C6-13-01-00".into()),
            listen: Some("[::]:4789".into()),
            ..vxlan(
                &["10.1.0.0/16"],
                &[
                    &format!("10.2.0.0/16=192.0.2.2:4789,mac={MAC2}"),
                    &format!("fd00:2::/64=[fd18::2]:4789,mac={MAC2}"),
                    &format!("10.3.0.0/16=[::ffff:192.0.2.3]:4789,mac={MAC3}"),
                    // Another prefix of the same peer, spelled IPv4-mapped: the same MAC.
                    &format!("10.4.0.0/16=[::ffff:192.0.2.3]:4789,mac={MAC3}"),
                ],
            )
        };
        let config = Config::from_file_and_flags(None, &f).unwrap();
        assert_eq!(config.vni, 4096);
        assert_eq!(config.vtep_mac, Some(mac("0a:58:c6:13:01:00")));
        assert_eq!(config.listen, "[::]:4789".parse().unwrap());
        assert_eq!(config.peers.len(), 4);
        assert_eq!(config.peers[2].peer, "192.0.2.3:4789".parse().unwrap());
        assert_eq!(config.peers[2].mac, Some(mac(MAC3)));
        assert_eq!(
            config.wire_encap(),
            datapath::Encap::Vxlan {
                vni: 4096,
                mac: mac("0a:58:c6:13:01:00")
            }
        );
        // The table the dataplane builds from it accepts it.
        datapath::Table::build(
            datapath::WireFormat::Vxlan,
            &config.local_subnets,
            &config.peers,
            None,
        )
        .unwrap();
        // VNI 0 is a VNI.
        let f = Flags {
            vni: Some("0".into()),
            ..vxlan(&["10.1.0.0/16"], &[])
        };
        assert_eq!(Config::from_file_and_flags(None, &f).unwrap().vni, 0);
    }

    #[test]
    fn vxlan_file() {
        let text = format!(
            "encap = \"vxlan\"\nvni = 7\nvtep_mac = \"0a:58:c6:13:01:00\"\nlocal_subnets = [\"10.1.0.0/16\"]\npeers = [\"10.2.0.0/16=192.0.2.2,mac={MAC2}\"]\n"
        );
        let config =
            Config::from_file_and_flags(Some((Path::new("t.toml"), &text)), &Flags::default())
                .unwrap();
        assert_eq!(
            config,
            Config {
                tun: DEFAULT_TUN.into(),
                listen: "0.0.0.0:8472".parse().unwrap(),
                local_subnets: vec![net("10.1.0.0/16")],
                peers: vec![Route {
                    prefix: net("10.2.0.0/16"),
                    peer: "192.0.2.2:8472".parse().unwrap(),
                    mac: Some(mac(MAC2)),
                }],
                encap: Encap::Vxlan,
                vni: 7,
                vtep_mac: Some(mac("0a:58:c6:13:01:00")),
                mtu: None,
                io: IoMode::Auto,
                offload: Offload::Auto,
                tun_queue_len: None,
                socket_buffer: None,
                priority: Priority::High,
                cpus: None,
                configure: true,
                control: Some(PathBuf::from(DEFAULT_CONTROL)),
                metrics: None,
                etcd: None,
            }
        );
        // Flags override the file's keys.
        let f = Flags {
            vni: Some("8".into()),
            vtep_mac: Some("0a:58:c6:13:01:01".into()),
            ..Flags::default()
        };
        let config = Config::from_file_and_flags(Some((Path::new("t.toml"), &text)), &f).unwrap();
        assert_eq!(config.vni, 8);
        assert_eq!(config.vtep_mac, Some(mac("0a:58:c6:13:01:01")));
        // --encap udp over the file's vxlan: its vni is refused, naming its line.
        let f = Flags {
            encap: Some("udp".into()),
            ..Flags::default()
        };
        assert_eq!(
            file_error(&text, &f),
            "config /etc/tundra.toml line 2: vni 7: applies to --encap vxlan only (the encapsulation is udp)"
        );
    }

    #[test]
    fn vxlan_errors() {
        let local = ["10.1.0.0/16"];
        let peer2 = format!("10.2.0.0/16=192.0.2.2,mac={MAC2}");
        // Settings that only vxlan has.
        let f = Flags {
            vni: Some("5".into()),
            ..flags(&local, &[])
        };
        assert_eq!(
            flag_error(&f),
            "--vni 5: applies to --encap vxlan only (the encapsulation is udp)"
        );
        let f = Flags {
            vtep_mac: Some("0a:58:c6:13:01:00".into()),
            ..flags(&local, &[])
        };
        assert_contains(
            &flag_error(&f),
            &["--vtep-mac 0a:58:c6:13:01:00:", "--encap vxlan only"],
        );
        assert_eq!(
            flag_error(&flags(&local, &[&peer2])),
            format!("--peer {peer2}: a peer's VTEP MAC (mac=) applies to --encap vxlan only (the encapsulation is udp)")
        );
        // Values.
        let with = |g: fn(&mut Flags)| {
            let mut f = vxlan(&local, &[]);
            g(&mut f);
            flag_error(&f)
        };
        assert_eq!(
            with(|f| f.vni = Some("16777216".into())),
            "--vni 16777216: VNI out of range (allowed 0..=16777215, 24 bits)"
        );
        assert_contains(
            &with(|f| f.vni = Some("one".into())),
            &["--vni one:", "invalid number"],
        );
        assert_contains(
            &with(|f| f.vtep_mac = Some("ff:ff:ff:ff:ff:ff".into())),
            &["--vtep-mac ff:ff:ff:ff:ff:ff:", "not a unicast MAC"],
        );
        assert_contains(
            &with(|f| f.vtep_mac = Some("0a:58".into())),
            &["--vtep-mac 0a:58:", "invalid MAC address"],
        );
        // Peers: the MAC is required, unicast, one per peer; one peer per address.
        assert_eq!(
            flag_error(&vxlan(&local, &["10.2.0.0/16=192.0.2.2"])),
            "--peer 10.2.0.0/16=192.0.2.2: a vxlan peer needs its VTEP MAC, the MAC of its VXLAN device: append ,mac=MAC"
        );
        assert_contains(
            &flag_error(&vxlan(
                &local,
                &["10.2.0.0/16=192.0.2.2,mac=01:00:5e:00:00:01"],
            )),
            &[
                "--peer 10.2.0.0/16=192.0.2.2,mac=01:00:5e:00:00:01:",
                "01:00:5e:00:00:01 is not a unicast MAC",
            ],
        );
        assert_contains(
            &flag_error(&vxlan(&local, &["10.2.0.0/16=192.0.2.2,mac=nope"])),
            &[
                "--peer 10.2.0.0/16=192.0.2.2,mac=nope:",
                "invalid MAC address \"nope\"",
            ],
        );
        assert_contains(
            &flag_error(&vxlan(&local, &["10.2.0.0/16=192.0.2.2,vni=2"])),
            &[
                "--peer 10.2.0.0/16=192.0.2.2,vni=2:",
                "unknown peer option \"vni=2\"",
            ],
        );
        let other_mac = format!("10.3.0.0/16=192.0.2.2,mac={MAC3}");
        assert_eq!(
            flag_error(&vxlan(&local, &[&peer2, &other_mac])),
            format!("--peer {other_mac}: peer 192.0.2.2:8472 already has VTEP MAC {MAC2} (every prefix of one peer takes the same MAC)")
        );
        let other_port = format!("10.3.0.0/16=192.0.2.2:4789,mac={MAC2}");
        assert_eq!(
            flag_error(&vxlan(&local, &[&peer2, &other_port])),
            format!("--peer {other_port}: vxlan peer 192.0.2.2:8472 has the same address (vxlan tells peers apart by address alone: give one port)")
        );
        // In udp, two ports on one address are two peers.
        assert!(Config::from_file_and_flags(
            None,
            &flags(
                &local,
                &["10.2.0.0/16=192.0.2.2", "10.3.0.0/16=192.0.2.2:9000"]
            )
        )
        .is_ok());
        // The config file: the same messages, naming the line.
        let vx = vxlan(&local, &[]);
        assert_eq!(
            file_error("peers = [\n  \"10.2.0.0/16=192.0.2.2\",\n]\n", &vx),
            "config /etc/tundra.toml line 2: peers 10.2.0.0/16=192.0.2.2: a vxlan peer needs its VTEP MAC, the MAC of its VXLAN device: append ,mac=MAC"
        );
        assert_contains(
            &file_error("\nvni = -3\n", &vx),
            &[
                "config /etc/tundra.toml line 2: vni -3:",
                "VNI out of range",
            ],
        );
        assert_contains(
            &file_error("vni = \"1\"\n", &vx),
            &["config /etc/tundra.toml line 1:", "vni"],
        );
        assert_contains(
            &file_error("vtep_mac = 5\n", &vx),
            &["config /etc/tundra.toml line 1:", "vtep_mac"],
        );
        assert_contains(
            &file_error("vtep_mac = \"00:00:00:00:00:00\"\n", &vx),
            &["line 1: vtep_mac 00:00:00:00:00:00:", "not a unicast MAC"],
        );
        assert_contains(
            &file_error(
                "encap = \"udp\"\nvtep_mac = \"0a:58:c6:13:01:00\"\n",
                &flags_with_local(&local),
            ),
            &["line 2: vtep_mac 0a:58:c6:13:01:00:", "--encap vxlan only"],
        );
        assert_contains(
            &file_error("encap = \"geneve\"\n", &flags_with_local(&local)),
            &["line 1: encap geneve:", "supported: udp, vxlan"],
        );
    }

    /// A flannel node's flags: etcd at one endpoint, public IP 192.0.2.1.
    fn etcd() -> Flags {
        Flags {
            etcd_endpoints: Some("http://10.0.0.1:2379".into()),
            public_ip: Some("192.0.2.1".into()),
            ..Flags::default()
        }
    }

    #[test]
    fn etcd_defaults_and_flags() {
        let config = Config::from_file_and_flags(None, &etcd()).unwrap();
        assert_eq!(
            config.etcd,
            Some(EtcdSettings {
                endpoints: vec!["http://10.0.0.1:2379".into()],
                prefix: "/coreos.com/network".into(),
                public_ip: "192.0.2.1".parse().unwrap(),
                public_ipv6: None,
                subnet_file: PathBuf::from("/run/flannel/subnet.env"),
                ca_file: None,
                cert_file: None,
                key_file: None,
                start_timeout: Duration::from_secs(60),
                listen: None,
            })
        );
        // No local subnet or peer: they come from etcd.
        assert!(config.local_subnets.is_empty() && config.peers.is_empty());
        let f = Flags {
            etcd_endpoints: Some(" https://10.0.0.1:2379/, https://[fd00::1]:2379 ".into()),
            etcd_prefix: Some("/tundra.io/network".into()),
            public_ipv6: Some("2001:db8::1".into()),
            subnet_file: Some("/tmp/s.env".into()),
            etcd_cafile: Some("/ca.pem".into()),
            etcd_certfile: Some("/c.pem".into()),
            etcd_keyfile: Some("/k.pem".into()),
            etcd_start_timeout: Some("500ms".into()),
            listen: Some("[::]".into()),
            vtep_mac: Some("0a:58:c6:13:01:00".into()),
            mtu: Some("1400".into()),
            ..etcd()
        };
        let config = Config::from_file_and_flags(None, &f).unwrap();
        let e = config.etcd.clone().unwrap();
        assert_eq!(
            e.endpoints,
            ["https://10.0.0.1:2379", "https://[fd00::1]:2379"]
        );
        assert_eq!(e.prefix, "/tundra.io/network");
        assert_eq!(e.public_ipv6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(e.subnet_file, PathBuf::from("/tmp/s.env"));
        assert_eq!(e.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            (e.cert_file.clone(), e.key_file.clone()),
            (Some(PathBuf::from("/c.pem")), Some(PathBuf::from("/k.pem")))
        );
        assert_eq!(e.start_timeout, Duration::from_millis(500));
        // The port is the network's, known at start.
        assert_eq!(e.listen, Some(("::".parse().unwrap(), None)));
        assert_eq!(config.vtep_mac, Some(mac("0a:58:c6:13:01:00")));
        assert_eq!(config.mtu, Some(1400));
        // The lease source's settings.
        let lease = e.lease_config(config.vtep_mac);
        assert_eq!(lease.endpoints, e.endpoints);
        assert_eq!(lease.prefix, "/tundra.io/network");
        assert_eq!(lease.public_ip, "192.0.2.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(lease.vtep_mac, config.vtep_mac);
        assert_eq!(lease.subnet_file, Some(PathBuf::from("/tmp/s.env")));
        assert_eq!(lease.start_deadline, Duration::from_millis(500));
        assert_eq!(lease.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        let f = Flags {
            listen: Some("198.18.0.1:9000".into()),
            ..etcd()
        };
        let listen = Config::from_file_and_flags(None, &f)
            .unwrap()
            .etcd
            .unwrap()
            .listen;
        assert_eq!(listen, Some(("198.18.0.1".parse().unwrap(), Some(9000))));
    }

    #[test]
    fn etcd_file() {
        let text = "etcd_endpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n\
                    public_ip = \"192.0.2.1\"\netcd_start_timeout = 90\n\
                    subnet_file = \"/run/tundra/subnet.env\"\n";
        let config =
            Config::from_file_and_flags(Some((Path::new("t.toml"), text)), &Flags::default())
                .unwrap();
        let e = config.etcd.unwrap();
        assert_eq!(
            e.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(e.start_timeout, Duration::from_secs(90));
        assert_eq!(e.subnet_file, PathBuf::from("/run/tundra/subnet.env"));
        // A flag overrides the file's key.
        let f = Flags {
            etcd_start_timeout: Some("2m".into()),
            public_ip: Some("192.0.2.9".into()),
            ..Flags::default()
        };
        let e = Config::from_file_and_flags(Some((Path::new("t.toml"), text)), &f)
            .unwrap()
            .etcd
            .unwrap();
        assert_eq!(e.start_timeout, Duration::from_secs(120));
        assert_eq!(e.public_ip, "192.0.2.9".parse::<Ipv4Addr>().unwrap());
        // Errors name the line.
        assert_contains(
            &file_error(
                "etcd_endpoints = [\n  \"http://10.0.0.1:2379\",\n  \"10.0.0.2:2379\",\n]\npublic_ip = \"192.0.2.1\"\n",
                &Flags::default(),
            ),
            &[
                "config /etc/tundra.toml line 3: etcd_endpoints 10.0.0.2:2379:",
                "invalid etcd endpoint",
            ],
        );
        assert_contains(
            &file_error(
                "etcd_endpoints = [\"http://10.0.0.1:2379\"]\npublic_ip = \"192.0.2.1\"\nlocal_subnets = [\"10.1.0.0/16\"]\n",
                &Flags::default(),
            ),
            &[
                "config /etc/tundra.toml line 3: local_subnets 10.1.0.0/16:",
                "not with --etcd-endpoints",
            ],
        );
        assert_contains(
            &file_error(
                "public_ip = \"192.0.2.1\"\n",
                &flags_with_local(&["10.1.0.0/16"]),
            ),
            &[
                "config /etc/tundra.toml line 1: public_ip 192.0.2.1:",
                "applies with --etcd-endpoints only",
            ],
        );
        assert_contains(
            &file_error("etcd_start_timeout = \"soon\"\n", &etcd()),
            &["line 1: etcd_start_timeout soon:", "invalid duration"],
        );
        assert_contains(
            &file_error(
                "etcd_endpoints = \"http://10.0.0.1:2379\"\n",
                &Flags::default(),
            ),
            &["config /etc/tundra.toml line 1", "etcd_endpoints"],
        );
    }

    #[test]
    fn etcd_errors() {
        let with = |g: fn(&mut Flags)| {
            let mut f = etcd();
            g(&mut f);
            flag_error(&f)
        };
        // What etcd decides.
        assert_contains(
            &with(|f| f.local_subnets = vec!["10.1.0.0/16".into()]),
            &[
                "--local-subnet 10.1.0.0/16: not with --etcd-endpoints:",
                "its lease in etcd",
            ],
        );
        assert_contains(
            &with(|f| f.peers = vec!["10.2.0.0/16=192.0.2.2".into()]),
            &[
                "--peer 10.2.0.0/16=192.0.2.2: not with --etcd-endpoints:",
                "leases in etcd",
            ],
        );
        assert_contains(
            &with(|f| f.encap = Some("vxlan".into())),
            &["--encap vxlan: not with --etcd-endpoints:", "Backend"],
        );
        assert_contains(
            &with(|f| f.vni = Some("1".into())),
            &["--vni 1: not with --etcd-endpoints:", "VNI"],
        );
        // The public IP.
        assert_eq!(
            with(|f| f.public_ip = None),
            ConfigError::NoPublicIp.to_string()
        );
        assert_contains(
            &with(|f| f.public_ip = Some("fd18::1".into())),
            &["--public-ip fd18::1:", "invalid IPv4 address"],
        );
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            let f = Flags {
                public_ip: Some(bad.into()),
                ..etcd()
            };
            assert_contains(
                &flag_error(&f),
                &[&format!("--public-ip {bad}: {bad} is not a node address")],
            );
        }
        assert_contains(
            &with(|f| f.public_ipv6 = Some("198.18.0.1".into())),
            &["--public-ipv6 198.18.0.1:", "invalid IPv6 address"],
        );
        assert_contains(
            &with(|f| f.public_ipv6 = Some("::".into())),
            &["--public-ipv6 :::", "not a node address"],
        );
        // Endpoints.
        for bad in [
            "",
            "10.0.0.1:2379",
            "unix:///run/etcd.sock",
            "http://",
            "http://10.0.0.1:2379/v3",
            "http://10.0.0.1:2379,",
            "http://a b",
        ] {
            let f = Flags {
                etcd_endpoints: Some(bad.into()),
                ..etcd()
            };
            let e = flag_error(&f);
            assert_contains(&e, &["--etcd-endpoints", "invalid etcd endpoint"]);
        }
        // Paths, TLS pairs, prefix, timeout.
        assert_contains(
            &with(|f| f.etcd_certfile = Some("/c.pem".into())),
            &["--etcd-certfile /c.pem:", "give --etcd-keyfile too"],
        );
        assert_contains(
            &with(|f| f.etcd_keyfile = Some("/k.pem".into())),
            &["--etcd-keyfile /k.pem:", "give --etcd-certfile too"],
        );
        assert_contains(
            &with(|f| f.subnet_file = Some(String::new())),
            &["--subnet-file \"\": empty path"],
        );
        assert_contains(
            &with(|f| f.etcd_prefix = Some("coreos.com/network".into())),
            &["--etcd-prefix coreos.com/network:", "starts with '/'"],
        );
        assert_contains(
            &with(|f| f.etcd_start_timeout = Some("25h".into())),
            &["--etcd-start-timeout 25h:", "out of range"],
        );
        assert_contains(
            &with(|f| f.listen = Some("198.18.0.1:0".into())),
            &["--listen 198.18.0.1:0:", "port 0"],
        );
        // etcd settings without etcd.
        let local = flags_with_local(&["10.1.0.0/16"]);
        for (f, name) in [
            (
                Flags {
                    public_ip: Some("192.0.2.1".into()),
                    ..local.clone()
                },
                "--public-ip 192.0.2.1",
            ),
            (
                Flags {
                    etcd_prefix: Some("/x".into()),
                    ..local.clone()
                },
                "--etcd-prefix /x",
            ),
            (
                Flags {
                    subnet_file: Some("/s.env".into()),
                    ..local.clone()
                },
                "--subnet-file /s.env",
            ),
            (
                Flags {
                    etcd_cafile: Some("/ca.pem".into()),
                    ..local.clone()
                },
                "--etcd-cafile /ca.pem",
            ),
            (
                Flags {
                    etcd_start_timeout: Some("1s".into()),
                    ..local.clone()
                },
                "--etcd-start-timeout 1s",
            ),
        ] {
            assert_eq!(
                flag_error(&f),
                format!("{name}: applies with --etcd-endpoints only")
            );
        }
        // Without etcd and without a subnet, the message says both ways.
        assert_contains(
            &flag_error(&Flags::default()),
            &["--local-subnet", "--etcd-endpoints"],
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(MAX_ETCD_START_TIMEOUT));
        for bad in ["", "s", "1.5s", "1 s", "1d", "+1s", "x"] {
            assert_eq!(parse_duration(bad), Err(Problem::InvalidDuration), "{bad}");
        }
        for bad in ["-1s", "86401", "99999999999999999999h"] {
            assert_eq!(
                parse_duration(bad),
                Err(Problem::DurationOutOfRange),
                "{bad}"
            );
        }
    }

    #[test]
    fn read_error_names_the_file() {
        let flags = Flags {
            config: Some("/nonexistent/tundra.toml".into()),
            ..Flags::default()
        };
        let e = Config::load(&flags).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert_eq!(e.to_string(), "cannot read config /nonexistent/tundra.toml");
    }
}
