//! The TUN device's kernel configuration (MTU, queue length, link up, addresses, routes), over
//! netlink.
//!
//! [`configure`] gives the device ([`crate::tun::Tun`]) its MTU, brings it
//! up, adds the node's overlay addresses and a route to each peer subnet, and returns a
//! [`NetConfig`] that records exactly what it changed, so that [`NetConfig::remove`] undoes
//! exactly that and nothing else. [`NetConfig::add_route`] and [`NetConfig::del_route`] change
//! the peer routes while the dataplane runs.
//!
//! Netlink is spoken synchronously (netlink-packet-route messages over a netlink-sys socket):
//! this is control-plane work, done at start, at stop and when the peers change, never on the
//! hot path. See `docs/decisions.md` for why these crates.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::sys::sockopt;
use crate::tun::Tun;

/// The smallest MTU IPv4 allows (RFC 791); the kernel refuses less.
const MIN_MTU_V4: u16 = 68;
/// The smallest MTU IPv6 allows (RFC 8200); below it the kernel disables IPv6 on the device.
const MIN_MTU_V6: u16 = 1280;

/// Errors of opening and configuring the TUN device. Each message names the device and the
/// operation (and prefix or address) that failed, and ends with the kernel's reason.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// The TUN device could not be created or attached to.
    #[error("cannot open TUN device {name:?}: {error}")]
    Open { name: String, error: io::Error },
    /// The MTU is too small for the device or for one of the families of its subnets.
    #[error("MTU {mtu} of {device} is too small: {family} needs at least {minimum}")]
    MtuTooSmall {
        device: String,
        mtu: u16,
        family: &'static str,
        minimum: u16,
    },
    /// No netlink socket, or a reply from the kernel that could not be read.
    #[error("netlink, while configuring {device}: {error}")]
    Netlink { device: String, error: io::Error },
    /// The link could not be found, or its MTU or admin state could not be changed.
    #[error("cannot {op} {device}: {error}")]
    Link {
        device: String,
        op: LinkOp,
        error: io::Error,
    },
    /// An address could not be added or removed.
    #[error("cannot {change} address {address} on {device}: {error}")]
    Address {
        device: String,
        change: Change,
        address: IpNet,
        error: io::Error,
    },
    /// A route could not be added or removed.
    #[error("cannot {change} route {prefix} through {device}: {error}")]
    Route {
        device: String,
        change: Change,
        prefix: IpNet,
        error: io::Error,
    },
    /// A sysctl could not be read or written.
    #[error("cannot set {path}: {error}", path = .path.display())]
    Sysctl { path: PathBuf, error: io::Error },
}

/// What was being done to a link when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOp {
    /// Finding the link's index, MTU and state.
    Lookup,
    /// Setting the MTU.
    SetMtu(u32),
    /// Setting the transmit queue length (packets).
    SetQueueLen(u32),
    /// Setting the largest GSO packet the stack builds for the device (bytes).
    SetGsoMaxSize(u32),
    /// Bringing the link up (`true`) or down.
    SetUp(bool),
}

impl fmt::Display for LinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkOp::Lookup => f.write_str("find link"),
            LinkOp::SetMtu(mtu) => write!(f, "set MTU {mtu} on"),
            LinkOp::SetQueueLen(len) => write!(f, "set queue length {len} on"),
            LinkOp::SetGsoMaxSize(size) => write!(f, "set GSO maximum size {size} on"),
            LinkOp::SetUp(true) => f.write_str("bring up"),
            LinkOp::SetUp(false) => f.write_str("bring down"),
        }
    }
}

/// Whether something was being added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Add => "add",
            Change::Remove => "remove",
        })
    }
}

/// What [`configure`] changed in the kernel, so that [`NetConfig::remove`] can undo exactly
/// that. Dropping it leaves the configuration in place (a TUN device that [`Tun::open`]
/// created takes its addresses and routes with it when it is closed).
#[must_use = "dropping a NetConfig leaves the configuration in place; call remove() to undo it"]
pub struct NetConfig {
    netlink: Netlink,
    device: String,
    index: u32,
    /// The MTU and admin state before `configure` changed them.
    link_before: Option<LinkState>,
    /// The value of `accept_local` before `configure` set it.
    accept_local_before: Option<String>,
    /// The value of the IPv6 `addr_gen_mode` before `configure` set it (only on a device that
    /// was down, so its link-local address had not been generated yet).
    addr_gen_mode_before: Option<String>,
    /// The addresses that `configure` added (not those that were already there), in order.
    addresses: Vec<IpAddr>,
    /// The routes added, in order, with their preferred source.
    /// Prefix to preferred source; a map, as a cluster may route 100k node subnets.
    routes: HashMap<IpNet, Option<IpAddr>>,
    src_v4: Option<Ipv4Addr>,
    src_v6: Option<Ipv6Addr>,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("device", &self.device)
            .field("index", &self.index)
            .field("addresses", &self.addresses)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// Configures the TUN device for the overlay, in this order:
/// 1. sets its MTU to `mtu` (and its transmit queue length to `queue_len`, and the largest
///    GSO packet the stack builds for it to `gso_max_size`, if given) and brings it up;
/// 2. enables `net.ipv4.conf.<name>.accept_local`: tundra writes ICMP errors into the TUN
///    with the node's own overlay address as source, and without it the kernel drops them as
///    martians (IPv6 has no such check and needs nothing);
/// 3. adds the first address of each of `local_subnets` as a /32 (IPv6: /128);
/// 4. adds a route to each of `peer_subnets` through the TUN (host bits are cleared), with
///    the first local address of the same family, if any, as preferred source.
///
/// An address that is already on the device is accepted as it is and left there by
/// [`NetConfig::remove`]; a route that already exists is an error.
///
/// # Errors
///
/// The first step that failed. Everything done before it has been undone by then: the device
/// is never left half-configured. [`NetdevError::MtuTooSmall`] (before anything is changed)
/// if `mtu` is below 68, or below 1280 while there is an IPv6 subnet.
pub fn configure(
    tun: &Tun,
    mtu: u16,
    queue_len: Option<u32>,
    gso_max_size: Option<u32>,
    local_subnets: &[IpNet],
    peer_subnets: &[IpNet],
) -> Result<NetConfig, NetdevError> {
    let device = tun.name().to_owned();
    let has_v6 = local_subnets
        .iter()
        .chain(peer_subnets)
        .any(|n| matches!(n, IpNet::V6(_)));
    for (family, minimum, needed) in [("IPv4", MIN_MTU_V4, true), ("IPv6", MIN_MTU_V6, has_v6)] {
        if needed && mtu < minimum {
            return Err(NetdevError::MtuTooSmall {
                device,
                mtu,
                family,
                minimum,
            });
        }
    }
    let mut netlink = Netlink::open().map_err(|error| NetdevError::Netlink {
        device: device.clone(),
        error,
    })?;
    let link = netlink.link(&device).map_err(|error| NetdevError::Link {
        device: device.clone(),
        op: LinkOp::Lookup,
        error,
    })?;
    let addresses: Vec<IpAddr> = local_subnets.iter().map(IpNet::network).collect();
    let mut config = NetConfig {
        netlink,
        device,
        index: link.index,
        link_before: None,
        accept_local_before: None,
        addr_gen_mode_before: None,
        addresses: Vec::new(),
        routes: HashMap::new(),
        src_v4: addresses.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        }),
        src_v6: addresses.iter().find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        }),
    };
    match config.apply(
        link,
        u32::from(mtu),
        queue_len,
        gso_max_size,
        &addresses,
        peer_subnets,
    ) {
        Ok(()) => Ok(config),
        Err(error) => {
            if let Err(undo) = config.undo() {
                tracing::warn!(%undo, "could not undo a partial configuration");
            }
            Err(error)
        }
    }
}

impl NetConfig {
    /// The name of the configured device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The routes currently added through the device, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.routes.keys().copied()
    }

    /// Adds a route to `prefix` (host bits cleared) through the device, with the first local
    /// address of its family as preferred source. Adding a route that this `NetConfig` already
    /// added does nothing.
    ///
    /// # Errors
    ///
    /// [`NetdevError::Route`], e.g. `EEXIST` if a route to that prefix already exists in the
    /// main table (through any device).
    pub fn add_route(&mut self, prefix: IpNet) -> Result<(), NetdevError> {
        let prefix = prefix.trunc();
        if self.routes.contains_key(&prefix) {
            return Ok(());
        }
        let src = match prefix {
            IpNet::V4(_) => self.src_v4.map(IpAddr::V4),
            IpNet::V6(_) => self.src_v6.map(IpAddr::V6),
        };
        let message = route_message(self.index, prefix, src);
        self.netlink
            .request(
                RouteNetlinkMessage::NewRoute(message),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map_err(|error| self.route_error(Change::Add, prefix, error))?;
        self.routes.insert(prefix, src);
        Ok(())
    }

    /// Removes the route to `prefix` (host bits cleared) that this `NetConfig` added. A route
    /// it did not add is left alone, and removing one that is already gone (with its device,
    /// say) succeeds.
    ///
    /// # Errors
    ///
    /// [`NetdevError::Route`] if the kernel refused; the route stays recorded, so a later
    /// [`remove`](Self::remove) tries again.
    pub fn del_route(&mut self, prefix: IpNet) -> Result<(), NetdevError> {
        let prefix = prefix.trunc();
        let Some(&src) = self.routes.get(&prefix) else {
            return Ok(());
        };
        self.delete_route(prefix, src)?;
        self.routes.remove(&prefix);
        Ok(())
    }

    /// Removes the routes and addresses that [`configure`] and [`add_route`](Self::add_route)
    /// added, and puts `accept_local`, the MTU and the admin state back as they were. What is
    /// already gone (the device itself, say) counts as removed.
    ///
    /// # Errors
    ///
    /// The first failure; every step is tried even after one failed.
    pub fn remove(mut self) -> Result<(), NetdevError> {
        self.undo()
    }

    fn apply(
        &mut self,
        link: LinkState,
        mtu: u32,
        queue_len: Option<u32>,
        gso_max_size: Option<u32>,
        addresses: &[IpAddr],
        peer_subnets: &[IpNet],
    ) -> Result<(), NetdevError> {
        let was_up = link.up;
        self.link_before = Some(link);
        self.set_link(LinkOp::SetMtu(mtu))?;
        if let Some(len) = queue_len {
            self.set_link(LinkOp::SetQueueLen(len))?;
        }
        if let Some(size) = gso_max_size {
            self.set_link(LinkOp::SetGsoMaxSize(size))?;
        }
        if !was_up {
            // No IPv6 link-local address: a tunnel needs none, and without one the kernel sends
            // no router solicitations or MLD reports into the TUN, which tundra could only drop.
            let path = addr_gen_mode_path(&self.device);
            if let Ok(before) = fs::read_to_string(&path) {
                fs::write(&path, "1").map_err(|error| NetdevError::Sysctl { path, error })?;
                self.addr_gen_mode_before = Some(before.trim().to_owned());
            }
        }
        self.set_link(LinkOp::SetUp(true))?;

        let path = accept_local_path(&self.device);
        let sysctl_error = |error| NetdevError::Sysctl {
            path: path.clone(),
            error,
        };
        let before = fs::read_to_string(&path).map_err(sysctl_error)?;
        self.accept_local_before = Some(before.trim().to_owned());
        fs::write(&path, "1").map_err(sysctl_error)?;

        for &address in addresses {
            let message = address_message(self.index, address);
            match self.netlink.request(
                RouteNetlinkMessage::NewAddress(message),
                NLM_F_CREATE | NLM_F_EXCL,
            ) {
                Ok(_) => self.addresses.push(address),
                Err(error) if error.raw_os_error() == Some(libc::EEXIST) => {
                    tracing::debug!(%address, device = %self.device, "address already present");
                }
                Err(error) => return Err(self.address_error(Change::Add, address, error)),
            }
        }
        for address in self.addresses.clone() {
            self.wait_until_local(address);
        }

        for &prefix in peer_subnets {
            self.add_route(prefix)?;
        }
        Ok(())
    }

    /// Waits, a second at most, until the kernel takes packets to `address` as local. The
    /// local route of an IPv6 address is added by a kernel work item a little after the
    /// address itself, and until then a packet to it arriving through the TUN is dropped
    /// (`Ip6InAddrErrors`); IPv4 addresses are ready at once.
    fn wait_until_local(&mut self, address: IpAddr) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.netlink.route_type(address) {
                Ok(RouteType::Local) => return,
                _ if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                result => {
                    tracing::warn!(%address, device = %self.device, ?result, "address not yet local");
                    return;
                }
            }
        }
    }

    /// Undoes everything recorded, newest first; keeps going after a failure and returns the
    /// first one.
    fn undo(&mut self) -> Result<(), NetdevError> {
        let mut first = None;
        let mut note = |result: Result<(), NetdevError>| {
            if let Err(error) = result {
                tracing::warn!(%error, "cleanup step failed");
                first.get_or_insert(error);
            }
        };
        for (prefix, src) in std::mem::take(&mut self.routes) {
            note(self.delete_route(prefix, src));
        }
        while let Some(address) = self.addresses.pop() {
            let message = address_message(self.index, address);
            let result = self
                .netlink
                .request(RouteNetlinkMessage::DelAddress(message), 0)
                .map(drop);
            note(match result {
                Err(e) if already_gone(&e) || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    Ok(())
                }
                r => r.map_err(|error| self.address_error(Change::Remove, address, error)),
            });
        }
        if let Some(before) = self.accept_local_before.take() {
            let path = accept_local_path(&self.device);
            note(match fs::write(&path, before) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r.map_err(|error| NetdevError::Sysctl { path, error }),
            });
        }
        if let Some(before) = self.addr_gen_mode_before.take() {
            let path = addr_gen_mode_path(&self.device);
            note(match fs::write(&path, before) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r.map_err(|error| NetdevError::Sysctl { path, error }),
            });
        }
        if let Some(before) = self.link_before.take() {
            // Down first, then the MTU: the reverse order of `apply`.
            let ops = [
                LinkOp::SetUp(before.up),
                LinkOp::SetMtu(before.mtu),
                LinkOp::SetQueueLen(before.queue_len),
                LinkOp::SetGsoMaxSize(before.gso_max_size),
            ];
            for op in ops {
                note(match self.set_link(op) {
                    Err(NetdevError::Link { error, .. }) if already_gone(&error) => Ok(()),
                    r => r,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn set_link(&mut self, op: LinkOp) -> Result<(), NetdevError> {
        let mut message = LinkMessage::default();
        message.header.index = self.index;
        match op {
            LinkOp::Lookup => unreachable!("set_link is only called to change the link"),
            LinkOp::SetMtu(mtu) => message.attributes.push(LinkAttribute::Mtu(mtu)),
            LinkOp::SetQueueLen(len) => message.attributes.push(LinkAttribute::TxQueueLen(len)),
            LinkOp::SetGsoMaxSize(size) => message.attributes.push(LinkAttribute::GsoMaxSize(size)),
            LinkOp::SetUp(up) => {
                message.header.change_mask = LinkFlags::Up;
                if up {
                    message.header.flags = LinkFlags::Up;
                }
            }
        }
        self.netlink
            .request(RouteNetlinkMessage::SetLink(message), 0)
            .map(drop)
            .map_err(|error| NetdevError::Link {
                device: self.device.clone(),
                op,
                error,
            })
    }

    fn delete_route(&mut self, prefix: IpNet, src: Option<IpAddr>) -> Result<(), NetdevError> {
        let message = route_message(self.index, prefix, src);
        match self
            .netlink
            .request(RouteNetlinkMessage::DelRoute(message), 0)
        {
            Ok(_) => Ok(()),
            Err(e) if already_gone(&e) || e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(error) => Err(self.route_error(Change::Remove, prefix, error)),
        }
    }

    fn route_error(&self, change: Change, prefix: IpNet, error: io::Error) -> NetdevError {
        NetdevError::Route {
            device: self.device.clone(),
            change,
            prefix,
            error,
        }
    }

    fn address_error(&self, change: Change, address: IpAddr, error: io::Error) -> NetdevError {
        NetdevError::Address {
            device: self.device.clone(),
            change,
            address: IpNet::from(address),
            error,
        }
    }
}

/// The MTU of the underlay path towards `peer`: the MTU of the device of the route to it (or
/// less, if the kernel learned a smaller path MTU), read with `IP_MTU` / `IPV6_MTU` from a
/// throwaway UDP socket connected to `peer`. Nothing is sent.
///
/// # Errors
///
/// No route to `peer` (`ENETUNREACH`), or the socket calls failed; callers fall back to 1500.
pub fn underlay_mtu(peer: SocketAddr) -> io::Result<u32> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(peer)?;
    sockopt::path_mtu(socket.as_fd(), peer.is_ipv6())
}

/// Whether a failed removal means that the thing is gone already, with its device.
fn already_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENODEV | libc::ENXIO))
}

fn addr_gen_mode_path(device: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv6/conf/{device}/addr_gen_mode"))
}

fn accept_local_path(device: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{device}/accept_local"))
}

fn address_message(index: u32, address: IpAddr) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(address);
    message.header.prefix_len = host_prefix_len(address);
    message.header.index = index;
    message.header.scope = AddressScope::Universe;
    message.attributes = vec![
        AddressAttribute::Local(address),
        AddressAttribute::Address(address),
    ];
    if address.is_ipv6() {
        // A TUN device does no duplicate address detection, but say so explicitly: a
        // tentative address could not be a route's preferred source.
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    message
}

fn route_message(index: u32, prefix: IpNet, src: Option<IpAddr>) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = family(prefix.addr());
    message.header.destination_prefix_length = prefix.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Static;
    // What `ip route add PREFIX dev DEV` does: link scope for IPv4, universe for IPv6 (which
    // has no route scopes).
    message.header.scope = match prefix {
        IpNet::V4(_) => RouteScope::Link,
        IpNet::V6(_) => RouteScope::Universe,
    };
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(RouteAttribute::Destination(route_address(prefix.addr())));
    message.attributes.push(RouteAttribute::Oif(index));
    if let Some(src) = src {
        message
            .attributes
            .push(RouteAttribute::PrefSource(route_address(src)));
    }
    message
}

fn route_address(address: IpAddr) -> RouteAddress {
    match address {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn host_prefix_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A link's index, MTU and admin state.
#[derive(Debug, Clone, Copy)]
struct LinkState {
    index: u32,
    mtu: u32,
    queue_len: u32,
    gso_max_size: u32,
    up: bool,
}

/// A synchronous rtnetlink socket: one request at a time, each acknowledged.
struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Sends `message` with `NLM_F_REQUEST | NLM_F_ACK | flags` and returns the kernel's
    /// replies: the dumped objects for a dump, the object for a plain get, none for a change.
    ///
    /// # Errors
    ///
    /// The kernel's error (`EEXIST`, `ESRCH`, ...) as an `io::Error` with its OS code, or an
    /// `InvalidData` error if a reply could not be parsed.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                // Messages in one datagram are 4-byte aligned.
                let length = (reply.header.length as usize).div_ceil(4) * 4;
                rest = rest.get(length..).unwrap_or_default();
                if reply.header.sequence_number != self.sequence {
                    continue; // a late answer to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(_) => Err(error.to_io()),
                        };
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-done.code));
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    _ => {}
                }
            }
        }
    }

    /// The type of the route the kernel would use towards `address` (`Local` once it is one of
    /// this host's addresses).
    fn route_type(&mut self, address: IpAddr) -> io::Result<RouteType> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(address);
        message.header.destination_prefix_length = host_prefix_len(address);
        message
            .attributes
            .push(RouteAttribute::Destination(route_address(address)));
        let replies = self.request(RouteNetlinkMessage::GetRoute(message), 0)?;
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(route) => Some(route.header.kind),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no route in the reply"))
    }

    /// The index, MTU and admin state of the link `name`.
    fn link(&mut self, name: &str) -> io::Result<LinkState> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        let replies = self.request(RouteNetlinkMessage::GetLink(message), 0)?;
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(LinkState {
                    index: link.header.index,
                    up: link.header.flags.contains(LinkFlags::Up),
                    mtu: link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::Mtu(mtu) => Some(*mtu),
                        _ => None,
                    })?,
                    queue_len: link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::TxQueueLen(len) => Some(*len),
                        _ => None,
                    })?,
                    gso_max_size: link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::GsoMaxSize(size) => Some(*size),
                        _ => None,
                    })?,
                }),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no link in the reply"))
    }
}

#[cfg(test)]
mod tests {
    //! These tests need root. Each runs on a thread of its own that first moves into a fresh
    //! private network namespace (`unshare(CLONE_NEWNET)` affects only the calling thread), so
    //! the TUN device, its addresses and routes vanish with the thread whatever happens.

    use std::io::ErrorKind;
    use std::net::UdpSocket;
    use std::thread;
    use std::time::Duration;

    use etherparse::PacketBuilder;
    use netlink_packet_core::NLM_F_DUMP;
    use nix::sched::{unshare, CloneFlags};

    use super::*;
    use crate::sys::mmsg;

    const NAME: &str = "tdtest0";

    /// Runs `test` on a new thread in a new, private network namespace.
    fn in_private_netns(test: impl FnOnce() + Send + 'static) {
        let thread = thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET): these tests need root");
            test();
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("a valid prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a valid address")
    }

    fn local_subnets() -> Vec<IpNet> {
        vec![net("198.19.1.0/24"), net("fd19:0:0:1::/64")]
    }

    fn peer_subnets() -> Vec<IpNet> {
        vec![net("198.19.2.0/24"), net("fd19:0:0:2::/64")]
    }

    /// The device as the kernel reports it over netlink.
    #[derive(Debug)]
    struct Observed {
        mtu: u32,
        up: bool,
        /// Addresses on the device, but for the IPv6 link-local one the kernel adds itself.
        addresses: Vec<IpNet>,
        /// Main-table routes through the device, with their preferred source, but for those
        /// the kernel adds itself for addresses (fe80::/64, and a /128 for each IPv6 address).
        routes: Vec<(IpNet, Option<IpAddr>)>,
        accept_local: String,
    }

    fn observe(name: &str) -> Observed {
        let mut netlink = Netlink::open().expect("netlink socket");
        let link = netlink.link(name).expect("the device exists");
        let addresses = netlink
            .request(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
            )
            .expect("address dump")
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == link.index => {
                    let address = a.attributes.iter().find_map(|attribute| match attribute {
                        AddressAttribute::Local(address) => Some(*address),
                        _ => None,
                    });
                    let address = address.or_else(|| {
                        a.attributes.iter().find_map(|attribute| match attribute {
                            AddressAttribute::Address(address) => Some(*address),
                            _ => None,
                        })
                    })?;
                    Some(IpNet::new(address, a.header.prefix_len).expect("valid length"))
                }
                _ => None,
            })
            .filter(|a| !net("fe80::/10").contains(a))
            .collect();
        let routes = netlink
            .request(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                NLM_F_DUMP,
            )
            .expect("route dump")
            .into_iter()
            .filter_map(|reply| {
                let RouteNetlinkMessage::NewRoute(r) = reply else {
                    return None;
                };
                let mut destination = None;
                let mut source = None;
                let mut oif = None;
                for attribute in &r.attributes {
                    match attribute {
                        RouteAttribute::Destination(a) => destination = address_of(a),
                        RouteAttribute::PrefSource(a) => source = address_of(a),
                        RouteAttribute::Oif(index) => oif = Some(*index),
                        _ => {}
                    }
                }
                let prefix =
                    IpNet::new(destination?, r.header.destination_prefix_length).expect("valid");
                (r.header.table == RouteHeader::RT_TABLE_MAIN
                    && r.header.protocol != RouteProtocol::Kernel
                    && oif == Some(link.index))
                .then_some((prefix, source))
            })
            .collect();
        let accept_local = fs::read_to_string(accept_local_path(name))
            .expect("accept_local sysctl")
            .trim()
            .to_owned();
        Observed {
            mtu: link.mtu,
            up: link.up,
            addresses,
            routes,
            accept_local,
        }
    }

    fn address_of(address: &RouteAddress) -> Option<IpAddr> {
        match address {
            RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
            RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        }
    }

    /// Brings `name` up from outside of `configure`, as a device someone else set up would be.
    fn bring_up(name: &str) -> Netlink {
        let mut netlink = Netlink::open().expect("netlink socket");
        let index = netlink.link(name).expect("the device exists").index;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        netlink
            .request(RouteNetlinkMessage::SetLink(message), 0)
            .expect("link up");
        netlink
    }

    #[test]
    fn configure_then_remove_leaves_the_device_as_it_was() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            assert_eq!(tun.name(), NAME);
            // Up beforehand, so that removal is seen to remove each address and route itself
            // rather than leaving it to the kernel's flush on link down.
            bring_up(NAME);
            let before = observe(NAME);
            assert_eq!((before.mtu, before.up), (1500, true), "{before:?}");
            assert!(
                before.addresses.is_empty() && before.routes.is_empty(),
                "{before:?}"
            );
            assert_eq!(before.accept_local, "0");

            let config = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            let seen = observe(NAME);
            assert_eq!((seen.mtu, seen.up), (1400, true), "{seen:?}");
            assert_eq!(
                seen.addresses,
                [net("198.19.1.0/32"), net("fd19:0:0:1::/128")]
            );
            assert_eq!(
                seen.routes,
                [
                    (net("198.19.2.0/24"), Some(ip("198.19.1.0"))),
                    (net("fd19:0:0:2::/64"), Some(ip("fd19:0:0:1::"))),
                ]
            );
            assert_eq!(seen.accept_local, "1");

            config.remove().expect("remove");
            let after = observe(NAME);
            assert_eq!((after.mtu, after.up), (1500, true), "{after:?}");
            assert!(after.addresses.is_empty(), "{after:?}");
            assert!(after.routes.is_empty(), "{after:?}");
            assert_eq!(after.accept_local, "0");
        });
    }

    #[test]
    fn remove_puts_a_down_device_down_again() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            assert!(!observe(NAME).up, "a new TUN device starts down");
            let config = configure(
                &tun,
                9000,
                None,
                None,
                &[net("198.19.1.0/24")],
                &[net("198.19.0.0/16")],
            )
            .expect("configure");
            let seen = observe(NAME);
            assert_eq!((seen.mtu, seen.up), (9000, true), "{seen:?}");
            assert_eq!(
                seen.routes,
                [(net("198.19.0.0/16"), Some(ip("198.19.1.0")))]
            );
            config.remove().expect("remove");
            let after = observe(NAME);
            assert_eq!((after.mtu, after.up), (1500, false), "{after:?}");
            assert!(
                after.addresses.is_empty() && after.routes.is_empty(),
                "{after:?}"
            );
        });
    }

    #[test]
    fn routes_change_at_run_time() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            let mut config = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            // Host bits are cleared; adding twice is a no-op.
            config.add_route(net("198.19.3.7/24")).expect("add route");
            config
                .add_route(net("198.19.3.0/24"))
                .expect("add it again");
            config.add_route(net("fd19:0:0:3::/64")).expect("add route");
            let seen = observe(NAME);
            assert!(seen
                .routes
                .contains(&(net("198.19.3.0/24"), Some(ip("198.19.1.0")))));
            assert!(seen
                .routes
                .contains(&(net("fd19:0:0:3::/64"), Some(ip("fd19:0:0:1::")))));
            assert_eq!(seen.routes.len(), 4, "{seen:?}");

            config.del_route(net("198.19.2.0/24")).expect("del route");
            config
                .del_route(net("198.19.2.0/24"))
                .expect("del it again");
            config
                .del_route(net("198.19.9.0/24"))
                .expect("del one never added");
            let seen = observe(NAME);
            assert!(
                !seen.routes.iter().any(|(p, _)| *p == net("198.19.2.0/24")),
                "{seen:?}"
            );
            assert_eq!(seen.routes.len(), 3, "{seen:?}");
            let mut routes: Vec<_> = config.routes().collect();
            routes.sort();
            assert_eq!(
                routes,
                [
                    net("198.19.3.0/24"),
                    net("fd19:0:0:2::/64"),
                    net("fd19:0:0:3::/64")
                ]
            );

            config.remove().expect("remove");
            assert!(observe(NAME).routes.is_empty());
        });
    }

    #[test]
    fn a_failing_route_leaves_nothing_configured() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            // Someone else's route makes the third route fail, after the addresses and the
            // first two routes were added. Someone else's IPv4 address keeps that route alive
            // through the rollback: removing a device's last IPv4 address makes the kernel
            // flush every IPv4 route through it.
            let mut netlink = bring_up(NAME);
            let index = netlink.link(NAME).expect("link").index;
            add_their_address(&mut netlink, index, ip("198.19.1.99"));
            let mut theirs = route_message(index, net("198.19.3.0/24"), None);
            theirs.header.protocol = RouteProtocol::Boot;
            netlink
                .request(
                    RouteNetlinkMessage::NewRoute(theirs),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                .expect("their route");

            let mut peers = peer_subnets();
            peers.push(net("198.19.3.0/24"));
            let error =
                configure(&tun, 1400, None, None, &local_subnets(), &peers).expect_err("must fail");
            match &error {
                NetdevError::Route {
                    device,
                    change: Change::Add,
                    prefix,
                    error,
                } => {
                    assert_eq!((device.as_str(), *prefix), (NAME, net("198.19.3.0/24")));
                    assert_eq!(error.raw_os_error(), Some(libc::EEXIST));
                }
                other => panic!("unexpected error {other:?}"),
            }
            let message = error.to_string();
            assert!(
                message.contains("198.19.3.0/24") && message.contains(NAME),
                "{message}"
            );

            let after = observe(NAME);
            assert_eq!((after.mtu, after.up), (1500, true), "{after:?}");
            assert_eq!(after.addresses, [net("198.19.1.99/32")], "theirs stays");
            assert_eq!(after.routes, [(net("198.19.3.0/24"), None)], "theirs stays");
            assert_eq!(after.accept_local, "0");
        });
    }

    fn add_their_address(netlink: &mut Netlink, index: u32, address: IpAddr) {
        netlink
            .request(
                RouteNetlinkMessage::NewAddress(address_message(index, address)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .expect("their address");
    }

    #[test]
    fn an_address_already_there_is_left_there() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            let mut netlink = bring_up(NAME);
            let index = netlink.link(NAME).expect("link").index;
            add_their_address(&mut netlink, index, ip("fd19:0:0:1::"));
            let config = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            let seen = observe(NAME);
            assert_eq!(
                seen.addresses,
                [net("198.19.1.0/32"), net("fd19:0:0:1::/128")]
            );
            assert_eq!(seen.routes.len(), 2, "{seen:?}");
            config.remove().expect("remove");
            let after = observe(NAME);
            assert_eq!(after.addresses, [net("fd19:0:0:1::/128")], "theirs stays");
            assert!(after.routes.is_empty(), "{after:?}");
        });
    }

    #[test]
    fn a_failing_address_leaves_nothing_configured() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            // With IPv6 disabled on the device, the IPv6 address fails after the MTU, the
            // link state, accept_local and the IPv4 address were set.
            fs::write(format!("/proc/sys/net/ipv6/conf/{NAME}/disable_ipv6"), "1").expect("sysctl");
            let error = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect_err("must fail");
            assert!(
                matches!(&error, NetdevError::Address { change: Change::Add, address, .. } if *address == net("fd19:0:0:1::/128")),
                "{error:?}"
            );
            let after = observe(NAME);
            assert_eq!((after.mtu, after.up), (1500, false), "{after:?}");
            assert!(
                after.addresses.is_empty() && after.routes.is_empty(),
                "{after:?}"
            );
            assert_eq!(after.accept_local, "0");
        });
    }

    #[test]
    fn a_too_small_mtu_changes_nothing() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            let error = configure(&tun, 1200, None, None, &local_subnets(), &peer_subnets())
                .expect_err("IPv6 needs 1280");
            assert!(
                matches!(error, NetdevError::MtuTooSmall { minimum: 1280, .. }),
                "{error:?}"
            );
            let error = configure(&tun, 60, None, None, &[net("198.19.1.0/24")], &[])
                .expect_err("IPv4 needs 68");
            assert!(
                matches!(error, NetdevError::MtuTooSmall { minimum: 68, .. }),
                "{error:?}"
            );
            let after = observe(NAME);
            assert_eq!((after.mtu, after.up), (1500, false), "{after:?}");
            // IPv4 alone may go below 1280.
            configure(&tun, 1200, None, None, &[net("198.19.1.0/24")], &[])
                .expect("IPv4 only")
                .remove()
                .expect("remove");
        });
    }

    #[test]
    fn remove_after_the_device_is_gone_succeeds() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            let config = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            drop(tun); // a non-persistent TUN device disappears with its last descriptor
            let mut netlink = Netlink::open().expect("netlink");
            assert_eq!(
                netlink.link(NAME).expect_err("gone").raw_os_error(),
                Some(libc::ENODEV)
            );
            config.remove().expect("remove is idempotent-safe");
        });
    }

    #[test]
    fn underlay_mtu_is_the_route_device_mtu() {
        in_private_netns(|| {
            let peer: SocketAddr = "198.19.2.7:8285".parse().expect("valid");
            let error = underlay_mtu(peer).expect_err("no route yet");
            assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH), "{error:?}");

            let tun = Tun::open(NAME, false).expect("open TUN");
            let config = configure(&tun, 1420, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            assert_eq!(underlay_mtu(peer).expect("IPv4 path"), 1420);
            let peer6: SocketAddr = "[fd19:0:0:2::7]:8285".parse().expect("valid");
            assert_eq!(underlay_mtu(peer6).expect("IPv6 path"), 1420);
            config.remove().expect("remove");
        });
    }

    /// A UDP datagram from `src` to `dst`, as tundra's ICMP errors are: the source is the
    /// node's own overlay address and it arrives through the TUN.
    fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let builder = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let builder = builder.udp(src.port(), dst.port());
        let mut packet = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut packet, payload).expect("write to a Vec");
        packet
    }

    /// Writes a datagram from `own:6000` to `own:5000` into the TUN and waits for it on a
    /// socket bound to `own:5000`.
    fn delivered_from_own_address(tun: &Tun, own: IpAddr) -> bool {
        let socket = UdpSocket::bind((own, 5000)).expect("bind to the overlay address");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let packet = udp_packet((own, 6000).into(), (own, 5000).into(), b"martian?");
        let whole = datapath::batch::Span {
            start: 0,
            len: packet.len() as u32,
        };
        assert_eq!(
            mmsg::writev(tun.as_fd(), &packet, &[whole]).expect("write into the TUN"),
            packet.len()
        );
        let mut buf = [0; 64];
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!((&buf[..n], from), (&b"martian?"[..], (own, 6000).into()));
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("recv: {e}"),
        }
    }

    #[test]
    fn packets_from_the_own_address_need_accept_local_on_ipv4_only() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            let config = configure(&tun, 1400, None, None, &local_subnets(), &peer_subnets())
                .expect("configure");
            // Strict reverse-path filtering, as many hosts have it, does not get in the way.
            for conf in ["all", NAME] {
                fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "1")
                    .expect("rp_filter");
            }
            assert!(delivered_from_own_address(&tun, ip("198.19.1.0")));
            assert!(delivered_from_own_address(&tun, ip("fd19:0:0:1::")));

            // Without accept_local, IPv4 drops them as martians; IPv6 has no such check.
            fs::write(accept_local_path(NAME), "0").expect("sysctl");
            assert!(!delivered_from_own_address(&tun, ip("198.19.1.0")));
            assert!(delivered_from_own_address(&tun, ip("fd19:0:0:1::")));
            config.remove().expect("remove");
        });
    }

    #[test]
    fn nonblocking_reads_would_block() {
        in_private_netns(|| {
            let tun = Tun::open(NAME, false).expect("open TUN");
            tun.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0; 2048];
            let error = mmsg::read(tun.as_fd(), &mut buf).expect_err("nothing to read");
            assert_eq!(error.kind(), ErrorKind::WouldBlock);
        });
    }
}
