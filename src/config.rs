//! tundra's settings: from `tundra run` flags, a TOML file (`--config`), or both (flags win).
//! Validated completely before anything is configured.

use std::net::SocketAddr;

use ipnet::IpNet;

/// Port of flannel's UDP backend, tundra's default.
pub const DEFAULT_PORT: u16 = 8285;

/// Encapsulation format. `udp`: the UDP payload is the inner IP packet (flannel's format).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    #[default]
    Udp,
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

/// A complete, validated configuration of one dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// TUN device name.
    pub tun: String,
    /// Local underlay address and port of the UDP socket.
    pub listen: SocketAddr,
    /// This node's overlay subnets (at least one).
    pub local_subnets: Vec<IpNet>,
    /// Peer subnets and the underlay address of the node owning each.
    pub peers: Vec<datapath::Route>,
    pub encap: Encap,
    /// MTU of the TUN device; `None`: the underlay MTU less the encapsulation overhead.
    pub mtu: Option<u16>,
    pub io: IoMode,
    /// Whether tundra sets up the TUN's MTU, addresses and routes (`--no-configure`: false).
    pub configure: bool,
}
