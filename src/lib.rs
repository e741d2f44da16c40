//! tundra: a userspace TUN/UDP encapsulation dataplane for overlay networks.
//!
//! Layers, top to bottom:
//! - [`config`]: the settings, from command-line flags or a TOML file, validated in full;
//! - [`dataplane`]: starts the datapath threads and stops them (and, as a flannel node, follows
//!   the leases of [`lease`]);
//! - [`lease`]: node subnets from flannel's etcd leases;
//! - `io`: the hot loops, one per direction, over io_uring or (fallback) readiness + mmsg;
//! - [`tun`]: the TUN device and the offloads the kernel granted it;
//! - [`netdev`]: the TUN device's MTU, addresses and routes, over netlink;
//! - `sys`: every `unsafe` block of the crate (io_uring submissions, mmsg, socket options);
//! - the pure packet work lives in the `datapath` crate.

pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
mod io;
pub mod lease;
pub mod netdev;
mod sys;
pub mod tun;

pub use control::{Applied, ControlError, Controller, LeaseInfo, RouteOp, RouteTxn, Stats};
pub use datapath;
pub use datapath::{Mac, Route};
pub use dataplane::{Builder, Dataplane, Error};
