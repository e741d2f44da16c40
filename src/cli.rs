//! The command line: `tundra run ...`, and the control socket's clients `tundra routes ...`
//! and `tundra stats`. `run`'s flags are taken as given (strings) and parsed and validated by
//! [`crate::config`], so that a bad flag and a bad config-file key get the same one-line error;
//! the clients' arguments are parsed by the same functions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{self, Flags};

const ABOUT: &str = "Userspace TUN/UDP overlay dataplane (flannel's UDP or VXLAN backend format)";

const LONG_ABOUT: &str = "\
Userspace TUN/UDP overlay dataplane.

tundra moves packets between a TUN device and a UDP socket: an IP packet routed into the TUN
device towards a peer's overlay subnet is sent as the payload of one UDP datagram to that
peer's underlay address, either unchanged (--encap udp, flannel's UDP backend format) or behind
a VXLAN and an Ethernet header (--encap vxlan, what Linux VXLAN devices and flannel's VXLAN
backend send and receive); datagrams received from peers are written back into the TUN device.";

const AFTER_HELP: &str = "\
Flags of `tundra run` (see `tundra run --help` for details):
  --tun NAME                  TUN device name [default: tundra0]
  --listen ADDR:PORT          underlay address and port to receive on [default: 0.0.0.0:8285,
                              0.0.0.0:8472 with --encap vxlan]
  --local-subnet CIDR         this node's overlay subnet (repeat for several; at least one)
  --peer CIDR=ADDR:PORT[,mac=MAC]
                              route a subnet to a peer node (repeat; port default 8285, 8472
                              with vxlan; mac=: the peer's VTEP MAC, required with vxlan)
  --encap udp|vxlan           encapsulation format [default: udp]
  --vni N                     VXLAN network identifier, vxlan only [default: 1]
  --vtep-mac MAC              this node's VTEP MAC, vxlan only [default: derived from the
                              local subnets (etcd: the public IP), the same on every start]
  --mtu N                     TUN MTU [default: underlay MTU - 28 (IPv4) or 48 (IPv6);
                              vxlan: - 50 or 70]
  --io auto|uring|poll        I/O engine [default: auto]
  --offload auto|on|off       TUN and UDP segmentation offloads [default: auto]
  --tun-queue-len N           TUN transmit queue length in packets [default: chosen by tundra]
  --socket-buffer BYTES       UDP send/receive buffer size, e.g. 4M [default: chosen by tundra]
  --priority LEVEL            datapath threads: high, realtime or normal [default: high]
  --cpus LIST                 CPUs of the datapath threads, e.g. 2 or 0,2-3 [default: any]
  --no-configure              do not set the TUN's MTU, addresses and routes
  --control PATH|none         control socket [default: /run/tundra/tundra.sock]
  --metrics [ADDR:]PORT       Prometheus metrics on http://ADDR:PORT/metrics [default: none]
  --config FILE               TOML file with the same settings; flags override it

A node of a flannel network (its subnet, wire format and routes come from etcd; no
--local-subnet, --peer, --encap or --vni then):
  --etcd-endpoints URL[,URL]  etcd client URLs, http:// or https://
  --public-ip ADDR            this node's IPv4 underlay address (required with etcd)
  --public-ipv6 ADDR          this node's IPv6 underlay address [default: none]
  --etcd-prefix PREFIX        the network's key prefix [default: /coreos.com/network]
  --subnet-file PATH          flannel's subnet file [default: /run/flannel/subnet.env]
  --etcd-cafile/--etcd-certfile/--etcd-keyfile PATH
                              etcd TLS: CA, client certificate and key [default: none]
  --etcd-start-timeout DURATION
                              how long the start waits for etcd [default: 60s]

Talking to a running tundra (over its control socket, see docs/control.md):
  tundra routes list|add|del  show or change the routes
  tundra stats [--json]       counters: totals, drops by reason, per peer

Examples:
  tundra run --local-subnet 10.1.0.0/16 --peer 10.2.0.0/16=192.0.2.2:8285
  tundra run --encap vxlan --local-subnet 10.1.0.0/16 \\
             --peer 10.2.0.0/16=192.0.2.2,mac=0a:58:c0:00:02:02
  tundra run --etcd-endpoints http://10.0.0.1:2379 --public-ip 192.0.2.1

Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 when setting up failed (etcd not
reached within --etcd-start-timeout included) or this node's etcd lease was lost, 2 for an
invalid flag or config file. Logging: RUST_LOG (default `info`), to stderr.";

const RUN_AFTER_HELP: &str = "\
Config file (--config), TOML, every key optional, unknown keys are an error:
  tun = \"tundra0\"
  listen = \"0.0.0.0:8285\"
  local_subnets = [\"10.1.0.0/16\"]
  peers = [\"10.2.0.0/16=192.0.2.2:8285\", \"fd00:2::/64=[2001:db8::2]\"]
  encap = \"udp\"                      # or \"vxlan\"
  vni = 1                            # vxlan only
  vtep_mac = \"0a:58:c0:00:02:01\"     # vxlan only
  mtu = 1400
  io = \"auto\"
  offload = \"auto\"
  tun_queue_len = 1000
  socket_buffer = \"4M\"               # or bytes: 4194304
  priority = \"high\"
  cpus = \"2\"                         # or \"0,2-3\"
  configure = true
  control = \"/run/tundra/tundra.sock\"   # or \"none\"
  metrics = \"127.0.0.1:9100\"
  With encap = \"vxlan\", each peer carries its VTEP MAC:
  peers = [\"10.2.0.0/16=192.0.2.2,mac=0a:58:c0:00:02:02\"]   # port omitted: 8472
  A flannel node (instead of local_subnets, peers, encap and vni):
  etcd_endpoints = [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]
  public_ip = \"192.0.2.1\"
  public_ipv6 = \"2001:db8::1\"
  etcd_prefix = \"/coreos.com/network\"
  subnet_file = \"/run/flannel/subnet.env\"
  etcd_cafile = \"/etc/etcd/ca.pem\"
  etcd_certfile = \"/etc/etcd/client.pem\"
  etcd_keyfile = \"/etc/etcd/client-key.pem\"
  etcd_start_timeout = \"60s\"          # or seconds: 60

Examples:
  tundra run --tun tundra0 --listen 0.0.0.0:8285 --local-subnet 10.1.0.0/16 \\
             --peer 10.2.0.0/16=192.0.2.2:8285 --peer 10.3.0.0/16=192.0.2.3
  tundra run --encap vxlan --vni 1 --local-subnet 10.1.0.0/16 \\
             --peer 10.2.0.0/16=192.0.2.2,mac=0a:58:c0:00:02:02   # to port 8472
  With vxlan, a peer may be a Linux VXLAN device (as flannel's vxlan backend sets up):
  its MAC is `ip -br link show DEV`'s, and it must know ours (shown at start and by
  `tundra stats`) in its neighbour and FDB entries.
  tundra run --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 \\
             --etcd-cafile ca.pem --etcd-certfile client.pem --etcd-keyfile client-key.pem \\
             --public-ip 192.0.2.1 --tun flannel0
  As a flannel node, tundra takes a subnet lease in etcd (the same one again after a
  restart), gives the TUN its address, routes every other node's lease (flanneld's and
  tundra's alike) and follows them as they come and go, and writes the subnet file for
  flannel's CNI plugin. SIGTERM keeps the lease.";

/// `tundra`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "tundra",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size of `RunArgs` (all its flags as strings) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dataplane until SIGINT or SIGTERM
    ///
    /// Creates (or attaches to) the TUN device, gives it its MTU, this node's
    /// overlay address and a route to every peer subnet (unless --no-configure),
    /// binds the UDP socket and forwards packets both ways until SIGINT or
    /// SIGTERM, then removes what it set up.
    #[command(after_help = RUN_AFTER_HELP, verbatim_doc_comment)]
    Run(RunArgs),

    /// Show or change the routes of a running tundra
    ///
    /// Talks to a running `tundra run` over its control socket. Each change is
    /// one transaction: applied whole, or refused with nothing changed.
    /// Each subcommand takes --control PATH, the socket of the tundra to talk
    /// to (its `tundra run --control`) [default: /run/tundra/tundra.sock].
    /// Exit status: 0 on success, 1 if tundra cannot be reached or refused the
    /// change (its error is printed), 2 for invalid arguments.
    #[command(
        verbatim_doc_comment,
        subcommand_required = true,
        arg_required_else_help = true
    )]
    Routes(RoutesArgs),

    /// Show the counters of a running tundra
    ///
    /// Talks to a running `tundra run` over its control socket and prints its
    /// counters: totals, drops by reason (those that are not zero), and one
    /// line per peer; with --json, tundra's stats object as one line of JSON.
    /// Exit status: 0 on success, 1 if tundra cannot be reached, 2 for invalid
    /// arguments.
    #[command(verbatim_doc_comment)]
    Stats(StatsArgs),
}

/// The control socket to talk to.
#[derive(Debug, Args)]
pub struct ControlArg {
    /// Control socket of the running tundra [default: /run/tundra/tundra.sock]
    ///
    /// The path given to `tundra run --control` (or its config file's
    /// `control` key).   Default: /run/tundra/tundra.sock
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_CONTROL, hide_default_value = true, verbatim_doc_comment)]
    pub control: PathBuf,
}

/// `tundra routes ...`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    pub command: RoutesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// List the routes: prefix, peer and (vxlan) its MAC, sorted by prefix
    List {
        #[command(flatten)]
        control: ControlArg,
    },
    /// Route a prefix to a peer (or move it to another peer)
    ///
    /// CIDR is a canonical prefix (host bits zero) that must not overlap a
    /// local subnet; ADDR:PORT the peer node's underlay address (IPv6 in
    /// brackets; the port may be left out: the running tundra's default, 8285
    /// with udp, 8472 with vxlan), followed with vxlan (only) by ,mac=MAC,
    /// the peer's VTEP MAC.
    /// Examples: tundra routes add 10.3.0.0/16 192.0.2.3:8285
    ///           tundra routes add 10.3.0.0/16 192.0.2.3,mac=0a:58:c0:00:02:03
    #[command(verbatim_doc_comment)]
    Add {
        /// Overlay prefix to route, e.g. 10.3.0.0/16
        #[arg(value_name = "CIDR", value_parser = parse_cidr_arg)]
        prefix: IpNet,
        /// Underlay address of the peer node, e.g. 192.0.2.3:8285 (vxlan: ,mac=MAC after it)
        #[arg(value_name = "ADDR:PORT[,mac=MAC]", value_parser = parse_peer_arg)]
        peer: config::PeerSpec,
        #[command(flatten)]
        control: ControlArg,
    },
    /// Remove the route to a prefix (an error if it is not routed)
    ///
    /// Example: tundra routes del 10.3.0.0/16
    #[command(verbatim_doc_comment)]
    Del {
        /// Routed prefix to remove, e.g. 10.3.0.0/16
        #[arg(value_name = "CIDR", value_parser = parse_cidr_arg)]
        prefix: IpNet,
        #[command(flatten)]
        control: ControlArg,
    },
}

/// `tundra stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print tundra's stats object as one line of JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub control: ControlArg,
}

fn parse_cidr_arg(s: &str) -> Result<IpNet, config::Problem> {
    config::parse_cidr(s)
}

fn parse_peer_arg(s: &str) -> Result<config::PeerSpec, config::Problem> {
    config::parse_peer_spec(s)
}

/// The flags of `tundra run`. An absent flag takes the config file's value, else the default.
///
/// The doc comments are the help text, kept verbatim (clap does not wrap without its
/// `wrap_help` feature): first paragraph for `-h`, all of it for `--help`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TUN device name [default: tundra0]
    ///
    /// Name of the TUN device to create, or to attach to if it exists:
    /// 1 to 15 characters, no '/', ':', '%' or whitespace.
    /// Default: tundra0.   Example: --tun flannel0
    #[arg(long, value_name = "NAME", verbatim_doc_comment)]
    pub tun: Option<String>,

    /// Underlay address and port to receive on [default: 0.0.0.0:8285; vxlan: 0.0.0.0:8472]
    ///
    /// Local address and UDP port of the socket that sends to and receives
    /// from peers. IPv6 in brackets; the port may be omitted (8285; 8472
    /// with --encap vxlan). [::] also reaches IPv4 peers (dual-stack).
    /// Default: 0.0.0.0:8285 (flannel's UDP port); with --encap vxlan
    /// 0.0.0.0:8472 (Linux's and flannel's VXLAN port; IANA's 4789 is
    /// --listen 0.0.0.0:4789). With --etcd-endpoints: --public-ip ([::] in a
    /// dual-stack vxlan network) and the network's port (its Backend.Port).
    /// Example: --listen [::]:8285
    #[arg(long, value_name = "ADDR:PORT", verbatim_doc_comment)]
    pub listen: Option<String>,

    /// This node's overlay subnet (repeatable; at least one)
    ///
    /// An overlay subnet that lives on this node: packets to it arriving from
    /// peers are delivered into the TUN device, which gets its first address.
    /// Canonical CIDR (host bits zero); local subnets must not overlap.
    /// Repeat for several; IPv4 and IPv6 may mix.
    /// No default: at least one is required.   Example: --local-subnet 10.1.0.0/16
    #[arg(long = "local-subnet", value_name = "CIDR", verbatim_doc_comment)]
    pub local_subnets: Vec<String>,

    /// Route an overlay subnet to a peer node (repeatable)
    ///
    /// Packets to CIDR are sent to the peer node at ADDR:PORT (its --listen
    /// address). IPv6 addresses in brackets; the port may be omitted (8285;
    /// 8472 with --encap vxlan). With --encap vxlan (only), ,mac=MAC gives the
    /// peer's VTEP MAC, which every vxlan peer needs (a Linux VXLAN device's
    /// own MAC; another tundra's --vtep-mac, shown at its start).
    /// Several prefixes to one peer are several --peer flags (with one MAC).
    /// A prefix may be routed only once and must not overlap a local subnet.
    /// No default.   Examples: --peer 10.2.0.0/16=192.0.2.2:8285
    ///                         --peer fd00:2::/64=[2001:db8::2]
    ///                         --peer 10.2.0.0/16=192.0.2.2,mac=0a:58:c0:00:02:02
    #[arg(
        long = "peer",
        value_name = "CIDR=ADDR:PORT[,mac=MAC]",
        verbatim_doc_comment
    )]
    pub peers: Vec<String>,

    /// Encapsulation format: udp or vxlan [default: udp]
    ///
    /// udp: the UDP payload is the inner IP packet and nothing else (flannel's
    /// UDP backend format; 28 bytes of overhead over IPv4, 48 over IPv6).
    /// vxlan: RFC 7348 VXLAN as Linux sends it, so tundra and kernel VXLAN
    /// devices (flannel's vxlan backend) reach each other: a VXLAN header
    /// (--vni) and an Ethernet header from our VTEP MAC (--vtep-mac) to the
    /// peer's (,mac= in --peer) in front of the inner packet; 50 bytes of
    /// overhead over IPv4, 70 over IPv6; default port 8472.
    /// Default: udp.   Example: --encap vxlan
    #[arg(long, value_name = "udp|vxlan", verbatim_doc_comment)]
    pub encap: Option<String>,

    /// VXLAN network identifier, with --encap vxlan only [default: 1]
    ///
    /// 0 to 16777215 (24 bits); every node of the overlay uses the same VNI
    /// (a Linux VXLAN device's `id`). An error with --encap udp.
    /// Default: 1 (flannel's).   Example: --vni 4096
    #[arg(long, value_name = "N", verbatim_doc_comment)]
    pub vni: Option<String>,

    /// This node's VTEP MAC, with --encap vxlan only [default: derived]
    ///
    /// The MAC our VXLAN frames come from, and the one peers must send to
    /// (their ,mac= for this node): a unicast MAC, aa:bb:cc:dd:ee:ff.
    /// An error with --encap udp. With --etcd-endpoints: the VtepMAC of our
    /// lease (a vxlan network only).
    /// Default: a locally administered MAC derived from the local subnets (with
    /// etcd: from --public-ip), the same on every start (shown in the startup
    /// log, `tundra stats` and health).   Example: --vtep-mac 0a:58:c0:00:02:01
    #[arg(long, value_name = "MAC", verbatim_doc_comment)]
    pub vtep_mac: Option<String>,

    /// MTU of the TUN device [default: underlay MTU - overhead]
    ///
    /// 576 to 65535, at least 1280 when any subnet is IPv6.
    /// Default: the MTU of the underlay interface that reaches the peers, less
    /// 28 (IPv4 underlay) or 48 (IPv6 underlay), with --encap vxlan 50 or 70,
    /// so that encapsulated packets are not fragmented.   Example: --mtu 1400
    #[arg(long, value_name = "N", verbatim_doc_comment)]
    pub mtu: Option<String>,

    /// I/O engine: auto, uring or poll [default: auto]
    ///
    /// uring: io_uring; poll: epoll readiness with recvmmsg/sendmmsg;
    /// auto: io_uring when the kernel allows it, else poll.
    /// Default: auto.   Example: --io poll
    #[arg(long, value_name = "auto|uring|poll", verbatim_doc_comment)]
    pub io: Option<String>,

    /// TUN and UDP offloads: auto, on or off [default: auto]
    ///
    /// Several packets per TUN read/write and per UDP send/receive: virtio-net
    /// header TSO/USO on the TUN device, UDP GSO/GRO on the socket.
    /// auto: use the offloads the kernel grants; on: refuse to start if it
    /// grants none; off: one packet per TUN read/write and per datagram.
    /// Default: auto.   Example: --offload off
    #[arg(long, value_name = "auto|on|off", verbatim_doc_comment)]
    pub offload: Option<String>,

    /// TUN transmit queue length in packets [default: chosen by tundra]
    ///
    /// 1 to 100000 packets: what `ip link set dev NAME txqueuelen N` sets.
    /// Default: chosen by tundra.   Example: --tun-queue-len 1000
    #[arg(long, value_name = "N", verbatim_doc_comment)]
    pub tun_queue_len: Option<String>,

    /// UDP socket send and receive buffer size [default: chosen by tundra]
    ///
    /// Bytes, or KiB or MiB with the suffix K or M (4M = 4194304 bytes);
    /// 64K to 1024M (1 GiB). The kernel may cap it (net.core.rmem_max and
    /// wmem_max) unless tundra runs as root.
    /// Default: chosen by tundra.   Example: --socket-buffer 4M
    #[arg(long, value_name = "BYTES", verbatim_doc_comment)]
    pub socket_buffer: Option<String>,

    /// Scheduling of the datapath threads: high, realtime or normal [default: high]
    ///
    /// high: a short scheduler slice and nice -10; realtime: SCHED_FIFO at
    /// priority 1, so a packet's thread runs as soon as the packet is there,
    /// the way the kernel's own datapath (softirq) runs ahead of every task:
    /// often (not always) less ping latency under load, for about a fifth less
    /// TCP throughput (high where it is not allowed). Either is given up for
    /// nice 0 by a thread moving more than 50,000 packets a second, whose
    /// batches then grow. normal: the process's own scheduling.
    /// Default: high.   Example: --priority realtime
    #[arg(long, value_name = "LEVEL", verbatim_doc_comment)]
    pub priority: Option<String>,

    /// CPUs the datapath threads run on, e.g. 2 or 0,2-3 [default: any]
    ///
    /// Pins the egress and ingress threads (sched_setaffinity) to these CPUs,
    /// in the cpulist syntax of taskset -c. A CPU of their own, away from the
    /// pods, is what a userspace dataplane wants: every hand-over between
    /// threads on different CPUs is a wakeup across CPUs, slow in a VM
    /// (docs/decisions.md). Each CPU must be one this process may use.
    /// Default: any CPU, as the scheduler decides.   Example: --cpus 2
    #[arg(long, value_name = "LIST", verbatim_doc_comment)]
    pub cpus: Option<String>,

    /// Do not configure the TUN device's MTU, addresses and routes
    ///
    /// Use the TUN device as it is, leaving its MTU, addresses, routes and
    /// link state to someone else (e.g. a CNI plugin).
    /// Default: tundra configures them, and undoes that on exit.
    /// Example: --no-configure
    #[arg(long, verbatim_doc_comment)]
    pub no_configure: bool,

    /// Control socket path, or "none" [default: /run/tundra/tundra.sock]
    ///
    /// Unix socket (mode 0600, root only) on which `tundra routes ...`,
    /// `tundra stats` and other programs query and change the running tundra
    /// (line-delimited JSON, see docs/control.md). Its directory is created if
    /// missing; a stale socket is replaced; tundra refuses to start if another
    /// tundra answers on it. "none": no control socket.
    /// Default: /run/tundra/tundra.sock.   Example: --control /run/tundra/n1.sock
    #[arg(long, value_name = "PATH|none", verbatim_doc_comment)]
    pub control: Option<String>,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics [default: none]
    ///
    /// PORT alone listens on 127.0.0.1; any other address must be given
    /// explicitly (and is logged as exposed). IPv6 in brackets.
    /// No default (no metrics endpoint).   Examples: --metrics 9100
    ///                                               --metrics [::1]:9100
    #[arg(long, value_name = "[ADDR:]PORT", verbatim_doc_comment)]
    pub metrics: Option<String>,

    /// Read settings from a TOML file; flags override it
    ///
    /// Keys: tun, listen, local_subnets (array), peers (array of
    /// "CIDR=ADDR:PORT[,mac=MAC]" strings), encap, vni, vtep_mac, mtu, io,
    /// offload, tun_queue_len, socket_buffer, priority, cpus, configure (bool), control,
    /// metrics, etcd_endpoints (array), etcd_prefix, public_ip, public_ipv6,
    /// subnet_file, etcd_cafile, etcd_certfile, etcd_keyfile,
    /// etcd_start_timeout; see the example below. A flag given on the command
    /// line overrides the file's key; a repeated flag replaces the file's whole list.
    /// No default.   Example: --config /etc/tundra.toml
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

    /// Join a flannel network through etcd at these URLs [default: none]
    ///
    /// etcd client URLs, http:// or https://, separated by commas (tried in
    /// turn). The network config at PREFIX/config (flannel's JSON) decides
    /// the subnet size, the wire format (udp or vxlan), its port and VNI: no
    /// --local-subnet, --peer, --encap or --vni then. tundra takes a subnet
    /// lease as flanneld does (the one with our --public-ip, else the subnet
    /// of --subnet-file, else a free one), gives the TUN its address, routes
    /// every other node's lease and follows them, renews its own and writes
    /// the subnet file. SIGTERM keeps the lease; losing it to another node
    /// stops tundra with exit status 1. Needs --public-ip.
    /// No default.   Example: --etcd-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379
    #[arg(long, value_name = "URL[,URL...]", verbatim_doc_comment)]
    pub etcd_endpoints: Option<String>,

    /// The flannel network's etcd key prefix [default: /coreos.com/network]
    ///
    /// The network config is PREFIX/config, the leases PREFIX/subnets/...
    /// (flanneld's --etcd-prefix). With --etcd-endpoints only.
    /// Default: /coreos.com/network.   Example: --etcd-prefix /tundra.io/network
    #[arg(long, value_name = "PREFIX", verbatim_doc_comment)]
    pub etcd_prefix: Option<String>,

    /// This node's IPv4 underlay address (with --etcd-endpoints: required)
    ///
    /// Published in our lease as PublicIP: the other nodes send to it. Also
    /// the listen address unless --listen says otherwise (then with the
    /// network's port when --listen has none).
    /// No default.   Example: --public-ip 192.0.2.1
    #[arg(long, value_name = "ADDR", verbatim_doc_comment)]
    pub public_ip: Option<String>,

    /// This node's IPv6 underlay address [default: none]
    ///
    /// Published as PublicIPv6 in a dual-stack network (EnableIPv6). A
    /// dual-stack vxlan network needs it: flanneld nodes reach our IPv6
    /// subnet there (tundra then listens on [::]). With --etcd-endpoints only.
    /// No default.   Example: --public-ipv6 2001:db8::1
    #[arg(long, value_name = "ADDR", verbatim_doc_comment)]
    pub public_ipv6: Option<String>,

    /// flannel's subnet file [default: /run/flannel/subnet.env]
    ///
    /// Written at start as flanneld writes it, for flannel's CNI plugin:
    /// FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU (the TUN's MTU),
    /// FLANNEL_IPMASQ=false (and the IPv6 pair in a dual-stack network).
    /// Read back at the next start to ask for the same subnet if our lease
    /// is gone. With --etcd-endpoints only.
    /// Default: /run/flannel/subnet.env.   Example: --subnet-file /run/tundra/subnet.env
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    pub subnet_file: Option<String>,

    /// CA certificates (PEM) that sign etcd's server certificate [default: the web roots]
    ///
    /// For https:// endpoints (flanneld's --etcd-cafile). With --etcd-endpoints only.
    /// Default: the public web roots.   Example: --etcd-cafile /etc/etcd/ca.pem
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    pub etcd_cafile: Option<String>,

    /// Client certificate (PEM) for etcd's --client-cert-auth [default: none]
    ///
    /// Needs --etcd-keyfile (flanneld's --etcd-certfile). With --etcd-endpoints only.
    /// No default.   Example: --etcd-certfile /etc/etcd/client.pem
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    pub etcd_certfile: Option<String>,

    /// The client certificate's private key (PEM) [default: none]
    ///
    /// Needs --etcd-certfile (flanneld's --etcd-keyfile). With --etcd-endpoints only.
    /// No default.   Example: --etcd-keyfile /etc/etcd/client-key.pem
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    pub etcd_keyfile: Option<String>,

    /// How long the start waits for etcd [default: 60s]
    ///
    /// While etcd is unreachable, or has no network config yet, tundra logs
    /// why and tries again with backoff; after this long it gives up with
    /// exit status 1, before anything on the system was touched. A number with
    /// unit ms, s, m or h (no unit: seconds), at most 24h. With --etcd-endpoints only.
    /// Default: 60s.   Example: --etcd-start-timeout 5m
    #[arg(long, value_name = "DURATION", verbatim_doc_comment)]
    pub etcd_start_timeout: Option<String>,
}

impl From<RunArgs> for Flags {
    fn from(args: RunArgs) -> Flags {
        Flags {
            tun: args.tun,
            listen: args.listen,
            local_subnets: args.local_subnets,
            peers: args.peers,
            encap: args.encap,
            vni: args.vni,
            vtep_mac: args.vtep_mac,
            mtu: args.mtu,
            io: args.io,
            offload: args.offload,
            tun_queue_len: args.tun_queue_len,
            socket_buffer: args.socket_buffer,
            priority: args.priority,
            cpus: args.cpus,
            no_configure: args.no_configure,
            config: args.config,
            control: args.control,
            metrics: args.metrics,
            etcd_endpoints: args.etcd_endpoints,
            etcd_prefix: args.etcd_prefix,
            public_ip: args.public_ip,
            public_ipv6: args.public_ipv6,
            subnet_file: args.subnet_file,
            etcd_cafile: args.etcd_cafile,
            etcd_certfile: args.etcd_certfile,
            etcd_keyfile: args.etcd_keyfile,
            etcd_start_timeout: args.etcd_start_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_repeated_flags() {
        let cli = Cli::try_parse_from([
            "tundra",
            "run",
            "--tun",
            "t0",
            "--local-subnet",
            "10.1.0.0/16",
            "--local-subnet",
            "fd00:1::/64",
            "--peer",
            "10.2.0.0/16=192.0.2.2",
            "--peer",
            "10.3.0.0/16=192.0.2.3:9000",
            "--no-configure",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let flags = Flags::from(args);
        assert_eq!(flags.tun.as_deref(), Some("t0"));
        assert_eq!(flags.local_subnets, ["10.1.0.0/16", "fd00:1::/64"]);
        assert_eq!(
            flags.peers,
            ["10.2.0.0/16=192.0.2.2", "10.3.0.0/16=192.0.2.3:9000"]
        );
        assert!(flags.no_configure);
        assert_eq!(flags.listen, None);
    }

    #[test]
    fn client_commands() {
        let cli =
            Cli::try_parse_from(["tundra", "routes", "add", "10.3.0.0/16", "192.0.2.3"]).unwrap();
        let Command::Routes(RoutesArgs {
            command:
                RoutesCommand::Add {
                    prefix,
                    peer,
                    control,
                },
        }) = cli.command
        else {
            panic!("not routes add");
        };
        assert_eq!(prefix, "10.3.0.0/16".parse::<IpNet>().unwrap());
        // The port is left to the running tundra's format.
        assert_eq!(peer.to_string(), "192.0.2.3");
        assert_eq!(
            peer.addr(config::DEFAULT_PORT),
            "192.0.2.3:8285".parse().unwrap()
        );
        let cli = Cli::try_parse_from([
            "tundra",
            "routes",
            "add",
            "10.3.0.0/16",
            "[fd18::3]:4789,mac=0a:58:c0:00:02:03",
        ])
        .unwrap();
        let Command::Routes(RoutesArgs {
            command: RoutesCommand::Add { peer, .. },
        }) = cli.command
        else {
            panic!("not routes add");
        };
        assert_eq!(peer.to_string(), "[fd18::3]:4789,mac=0a:58:c0:00:02:03");
        let e = Cli::try_parse_from(["tundra", "routes", "add", "10.3.0.0/16", "192.0.2.3,mac=x"])
            .unwrap_err();
        assert!(e.to_string().contains("invalid MAC address \"x\""), "{e}");
        assert_eq!(control.control, PathBuf::from(config::DEFAULT_CONTROL));
        let e = Cli::try_parse_from(["tundra", "routes", "del", "10.3.0.1/16"]).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.3.0.0/16?"), "{e}");
        let cli =
            Cli::try_parse_from(["tundra", "stats", "--json", "--control", "/x.sock"]).unwrap();
        let Command::Stats(args) = cli.command else {
            panic!("not stats");
        };
        assert!(args.json);
        assert_eq!(args.control.control, PathBuf::from("/x.sock"));
    }
}
