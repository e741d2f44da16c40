//! tundra's pure packet work.
//!
//! Everything a packet goes through between the TUN device and the UDP socket, and nothing that
//! touches the operating system: this crate opens no file descriptor, reads no clock (time is an
//! argument) and spawns no thread, so all of it is tested without root or a kernel.
//!
//! Layers, bottom to top:
//! - [`wire`]: a checked view of an inner IPv4/IPv6 packet, with in-place TTL rewriting;
//! - [`icmp`]: ICMP / ICMPv6 error generation (unreachable, time exceeded, too big);
//! - [`route`]: the longest-prefix-match route table and its lock-free publication;
//! - [`tunnel`]: the per-packet decisions of both directions (encapsulate, decapsulate);
//! - [`encap`]: the wire formats (`udp`, `vxlan`): the bytes in front of a packet and their checks;
//! - [`batch`]: an egress batch grouped into runs by peer;
//! - [`offload`]: TUN offloads: the virtio-net header, TSO/USO segmentation, TCP GRO merging;
//! - [`stats`]: drop reasons and counters; [`ratelimit`]: the token bucket behind ICMP and logs.
//!
//! The `udp` wire format is flannel's: the UDP payload is the inner IP packet and nothing else,
//! so encapsulation needs no header bytes and the kernel's UDP socket adds the outer headers.

#![forbid(unsafe_code)]

pub mod batch;
pub mod encap;
pub mod icmp;
pub mod offload;
pub mod ratelimit;
pub mod route;
pub mod stats;
pub mod tunnel;
pub mod wire;

#[cfg(test)]
mod testutil;

pub use encap::{Encap, Mac, WireFormat};
pub use route::{Peer, PeerId, Route, SharedTable, Table, TableError};
pub use stats::{Counters, DropReason, LocalCounters, PeerCounters, PeerTotals};
pub use tunnel::{decapsulate, Egress, Encapsulator, Ingress};
