//! The command line: `tundra run ...`. Flags are taken as given (strings) and parsed and
//! validated by [`crate::config`], so that a bad flag and a bad config-file key get the same
//! one-line error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Flags;

const ABOUT: &str = "Userspace TUN/UDP overlay dataplane (flannel's UDP backend format)";

const LONG_ABOUT: &str = "\
Userspace TUN/UDP overlay dataplane.

tundra moves packets between a TUN device and a UDP socket: an IP packet routed into the TUN
device towards a peer's overlay subnet is sent, unchanged, as the payload of one UDP datagram
to that peer's underlay address (flannel's UDP backend format); datagrams received from peers
are written back into the TUN device.";

const AFTER_HELP: &str = "\
Flags of `tundra run` (see `tundra run --help` for details):
  --tun NAME                  TUN device name [default: tundra0]
  --listen ADDR:PORT          underlay address and port to receive on [default: 0.0.0.0:8285]
  --local-subnet CIDR         this node's overlay subnet (repeat for several; at least one)
  --peer CIDR=ADDR:PORT       route a subnet to a peer node (repeat; port default 8285)
  --encap udp                 encapsulation format [default: udp]
  --mtu N                     TUN MTU [default: underlay MTU - 28 (IPv4) or 48 (IPv6)]
  --io auto|uring|poll        I/O engine [default: auto]
  --no-configure              do not set the TUN's MTU, addresses and routes
  --config FILE               TOML file with the same settings; flags override it

Example:
  tundra run --local-subnet 10.1.0.0/16 --peer 10.2.0.0/16=192.0.2.2:8285

Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 when setting up failed, 2 for an
invalid flag or config file. Logging: RUST_LOG (default `info`), to stderr.";

const RUN_AFTER_HELP: &str = "\
Config file (--config), TOML, every key optional, unknown keys are an error:
  tun = \"tundra0\"
  listen = \"0.0.0.0:8285\"
  local_subnets = [\"10.1.0.0/16\"]
  peers = [\"10.2.0.0/16=192.0.2.2:8285\", \"fd00:2::/64=[2001:db8::2]\"]
  encap = \"udp\"
  mtu = 1400
  io = \"auto\"
  configure = true

Example:
  tundra run --tun tundra0 --listen 0.0.0.0:8285 --local-subnet 10.1.0.0/16 \\
             --peer 10.2.0.0/16=192.0.2.2:8285 --peer 10.3.0.0/16=192.0.2.3";

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

    /// Underlay address and port to receive on [default: 0.0.0.0:8285]
    ///
    /// Local address and UDP port of the socket that sends to and receives
    /// from peers. IPv6 in brackets; the port may be omitted (8285).
    /// [::] also reaches IPv4 peers (dual-stack).
    /// Default: 0.0.0.0:8285 (flannel's UDP port).   Example: --listen [::]:8285
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
    /// address). IPv6 addresses in brackets; the port may be omitted (8285).
    /// Several prefixes to one peer are several --peer flags. A prefix may be
    /// routed only once and must not overlap a local subnet.
    /// No default.   Examples: --peer 10.2.0.0/16=192.0.2.2:8285
    ///                         --peer fd00:2::/64=[2001:db8::2]
    #[arg(long = "peer", value_name = "CIDR=ADDR:PORT", verbatim_doc_comment)]
    pub peers: Vec<String>,

    /// Encapsulation format [default: udp]
    ///
    /// udp: the UDP payload is the inner IP packet and nothing else (flannel's
    /// UDP backend format; 28 bytes of overhead over IPv4, 48 over IPv6).
    /// Default: udp.   Example: --encap udp
    #[arg(long, value_name = "udp", verbatim_doc_comment)]
    pub encap: Option<String>,

    /// MTU of the TUN device [default: underlay MTU - overhead]
    ///
    /// 576 to 65535, at least 1280 when any subnet is IPv6.
    /// Default: the MTU of the underlay interface that reaches the peers, less
    /// 28 (IPv4 underlay) or 48 (IPv6 underlay), so that encapsulated packets
    /// are not fragmented.   Example: --mtu 1400
    #[arg(long, value_name = "N", verbatim_doc_comment)]
    pub mtu: Option<String>,

    /// I/O engine: auto, uring or poll [default: auto]
    ///
    /// uring: io_uring; poll: epoll readiness with recvmmsg/sendmmsg;
    /// auto: io_uring when the kernel allows it, else poll.
    /// Default: auto.   Example: --io poll
    #[arg(long, value_name = "auto|uring|poll", verbatim_doc_comment)]
    pub io: Option<String>,

    /// Do not configure the TUN device's MTU, addresses and routes
    ///
    /// Use the TUN device as it is, leaving its MTU, addresses, routes and
    /// link state to someone else (e.g. a CNI plugin).
    /// Default: tundra configures them, and undoes that on exit.
    /// Example: --no-configure
    #[arg(long, verbatim_doc_comment)]
    pub no_configure: bool,

    /// Read settings from a TOML file; flags override it
    ///
    /// Keys: tun, listen, local_subnets (array), peers (array of
    /// "CIDR=ADDR:PORT" strings), encap, mtu, io, configure (bool); see the
    /// example below. A flag given on the command line overrides the file's
    /// key; a repeated flag replaces the file's whole list.
    /// No default.   Example: --config /etc/tundra.toml
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,
}

impl From<RunArgs> for Flags {
    fn from(args: RunArgs) -> Flags {
        Flags {
            tun: args.tun,
            listen: args.listen,
            local_subnets: args.local_subnets,
            peers: args.peers,
            encap: args.encap,
            mtu: args.mtu,
            io: args.io,
            no_configure: args.no_configure,
            config: args.config,
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
        let Command::Run(args) = cli.command;
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
}
