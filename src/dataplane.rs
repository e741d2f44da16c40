//! Starting and stopping a dataplane, the library's entry point.
//!
//! [`Dataplane::start`] validates everything it can before it changes anything (route table,
//! UDP bind, io_uring availability), then opens and configures the TUN, then starts one egress
//! and one ingress thread and the control thread. [`Dataplane::shutdown`] stops them and
//! removes what was configured.
//!
//! ```no_run
//! use tundra::Dataplane;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dataplane = Dataplane::builder()
//!     .tun("flannel0")
//!     .listen("0.0.0.0:8285".parse()?)
//!     .local_subnet("10.244.1.0/24".parse()?)
//!     .peer("10.244.2.0/24".parse()?, "192.0.2.2:8285".parse()?)
//!     .start()?;
//!
//! // A node joined and another left: one transaction, one new table version.
//! dataplane
//!     .routes()
//!     .insert("10.244.3.0/24".parse()?, "192.0.2.3:8285".parse()?)
//!     .remove("10.244.2.0/24".parse()?)
//!     .commit()?;
//! println!("{} packets sent", dataplane.stats().totals.tx_packets);
//! dataplane.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! With the VXLAN wire format, to join Linux VXLAN devices (flannel's vxlan backend): every
//! peer needs its VTEP MAC; ours is derived from the local subnets unless given.
//!
//! ```no_run
//! use tundra::config::Encap;
//! use tundra::Dataplane;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dataplane = Dataplane::builder()
//!     .encap(Encap::Vxlan) // listens on 0.0.0.0:8472 unless `.listen` says otherwise
//!     .vni(1)
//!     .local_subnet("10.244.1.0/24".parse()?)
//!     .peer_with_mac(
//!         "10.244.2.0/24".parse()?,
//!         "192.0.2.2:8472".parse()?,
//!         "0a:58:0a:f4:02:00".parse()?,
//!     )
//!     .start()?;
//! println!("our VTEP MAC: {:?}", dataplane.encap());
//! # Ok(())
//! # }
//! ```
//!
//! As a node of a flannel network, whose subnet, wire format and routes come from etcd (what
//! `tundra run --etcd-endpoints` does, and `Dataplane::start` with [`Config::etcd`] set):
//!
//! ```no_run
//! use std::path::Path;
//!
//! use tundra::lease::{self, LeaseSource};
//! use tundra::Dataplane;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = lease::Config::new(vec!["http://10.0.0.1:2379".into()], "192.0.2.1".parse()?);
//! // Our subnet, the network's backend, the first route set queued in `source`.
//! let (network, our_lease, source) = LeaseSource::start(&cfg)?;
//! let mut dataplane = Dataplane::builder()
//!     .tun("flannel0")
//!     .flannel(&network, &our_lease) // local subnets, format, VNI, VTEP MAC, listen address
//!     .start()?;
//! let (mtu, _) = dataplane.mtu();
//! lease::write_subnet_file(Path::new(lease::DEFAULT_SUBNET_FILE), &network, &our_lease, mtu.into(), false)?;
//! // From now on every route set is applied as one table version, on a thread of its own.
//! dataplane.follow_leases(source, &our_lease)?;
//! // ... until the daemon stops, or `dataplane.lease_lost()` says another node took our subnet.
//! dataplane.shutdown()?; // the lease stays in etcd, for the next start
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use datapath::encap::VXLAN_OVERHEAD;
use datapath::{Counters, Mac, Route, SharedTable, Table, TableError};
use ipnet::IpNet;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{
    self, Config, ConfigError, CpuList, Encap, EtcdSettings, IoMode, Offload, Priority,
};
use crate::control::metrics::{MetricsError, MetricsListener, MetricsServer};
use crate::control::socket::{self, ControlSocket, SocketError};
use crate::control::{self, ControlError, Controller, LeaseInfo, RouteTxn, Stats};
pub use crate::io::Offloads;
use crate::io::{poll, uring, Ctx};
use crate::lease::{self, Lease, LeaseSource, NetworkConfig, RouteSet, Update};
use crate::netdev::{self, NetConfig, NetdevError};
use crate::sys;
use crate::tun::{Tun, TunOffloads};

/// Outer IPv4 + UDP header bytes, and outer IPv6 + UDP (a format's own header comes on top:
/// see [`tunnel_mtu`]).
const OVERHEAD_V4: u32 = 20 + 8;
const OVERHEAD_V6: u32 = 40 + 8;
/// Underlay MTU assumed when it cannot be found (no peer yet, or no route to it).
const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// UDP socket buffer size: several batches of full-size datagrams or GRO trains. Chosen on
/// the measured sweep in docs/decisions.md (1 and 4 MiB alike, 16 MiB slower).
const SOCKET_BUFFER: usize = 4 << 20;
/// The TUN's transmit queue with offloads, in packets: each may be a 64 KiB super-packet, so
/// the kernel's default of 500 would be 32 MiB of standing queue in front of tundra; 16 lost
/// packets under one TCP stream (docs/decisions.md has the sweep).
const TUN_QUEUE_LEN: u32 = 256;
/// How long a route set from etcd that the control thread refused (a kernel route refused)
/// waits before it is tried again, unless a newer one comes first.
const ROUTE_SET_RETRY: Duration = Duration::from_secs(1);

/// Why the dataplane could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid routes: {0}")]
    Table(#[from] TableError),
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error("cannot set up the UDP socket on {addr}: {source}")]
    Socket { addr: SocketAddr, source: io::Error },
    #[error("io_uring cannot be set up here ({0}); use --io poll or --io auto")]
    Uring(io::Error),
    #[error(
        "--offload on: the kernel grants no TUN or UDP offload here; use --offload auto or off"
    )]
    NoOffloads,
    #[error("--cpus {cpus}: CPU {cpu} is not one this process may run on (it may use {allowed})")]
    CpuNotAllowed {
        cpus: CpuList,
        cpu: usize,
        allowed: String,
    },
    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(io::Error),
    #[error("{thread} thread failed: {source}")]
    Thread {
        thread: &'static str,
        source: io::Error,
    },
    #[error("{thread} thread panicked")]
    Panicked { thread: &'static str },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    ControlSocket(#[from] SocketError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The lease source did not start (etcd unreachable until the deadline, no usable network
    /// config, no free subnet, ...).
    #[error("etcd: {0}")]
    Lease(#[from] lease::Error),
    /// Our settings do not fit the flannel network.
    #[error("{0}")]
    Flannel(String),
    #[error("cannot write the subnet file {}: {source}", path.display())]
    SubnetFile { path: PathBuf, source: io::Error },
    /// Another node holds our subnet now (our lease expired or was deleted while we could not
    /// renew it, and was taken): this node must stop, as flanneld does; a restart takes a new
    /// subnet.
    #[error("our etcd lease {key} was lost: {reason}")]
    LeaseLost { key: String, reason: String },
    /// [`Dataplane::follow_leases`] was called twice.
    #[error("this dataplane follows a lease source already")]
    FollowsAlready,
}

/// A running dataplane: the TUN, the socket, the route table, the two datapath threads and the
/// control thread. Dropping it stops it, like [`Dataplane::shutdown`] without the report.
pub struct Dataplane {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<io::Result<()>>)>,
    control: Option<JoinHandle<Option<NetConfig>>>,
    controller: Controller,
    control_socket: Option<socket::Server>,
    metrics: Option<MetricsServer>,
    io: IoMode,
    offloads: Offloads,
    encap: datapath::Encap,
    mtu: u16,
    tunnel_mtu: u16,
    follower: Option<Follower>,
    _tun: Arc<Tun>,
}

impl Dataplane {
    /// A builder with the CLI's defaults (`tundra0`, `udp` on `0.0.0.0:8285`, auto I/O, configure
    /// the TUN, no control socket, no metrics; with [`Builder::encap`] `vxlan`: VNI 1, a derived
    /// VTEP MAC, `0.0.0.0:8472`).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts the dataplane described by `config`, with its control socket and metrics
    /// endpoint if `config` asks for them.
    ///
    /// With [`Config::etcd`] set, as a node of a flannel network: takes a subnet lease in etcd
    /// ([`LeaseSource::start`], which waits for etcd until its start timeout), starts with the
    /// lease's subnets, the network's wire format and the routes to every other node, writes
    /// the subnet file, and follows the leases ([`Dataplane::follow_leases`]).
    ///
    /// # Errors
    /// Invalid routes (with `vxlan`, a peer without a MAC among them), a socket that cannot be
    /// bound (UDP, control, metrics; a control socket another tundra answers on), `--io uring`
    /// where io_uring cannot be set up, or a TUN device that cannot be opened or configured;
    /// with etcd, also a lease source that did not start, settings that do not fit the network
    /// and a subnet file that cannot be written; [`Config::cpus`] naming a CPU this thread may
    /// not run on. Nothing stays configured then.
    pub fn start(config: &Config) -> Result<Dataplane, Error> {
        if let Some(cpus) = &config.cpus {
            check_cpus(cpus)?;
        }
        match &config.etcd {
            None => Dataplane::start_static(config),
            Some(etcd) => {
                let (network, lease, source) = start_lease(etcd, config.vtep_mac)?;
                start_flannel(config, etcd, &network, &lease, source)
            }
        }
    }

    /// [`Dataplane::start`] of a configuration with every subnet and route given.
    fn start_static(config: &Config) -> Result<Dataplane, Error> {
        let encap = config.wire_encap();
        let table = Table::build(encap.format(), &config.local_subnets, &config.peers, None)?;
        let io = resolve_io(config.io)?;
        let udp = bind(config.listen, config.socket_buffer.unwrap_or(SOCKET_BUFFER))?;
        let control_socket = config
            .control
            .as_deref()
            .map(ControlSocket::bind)
            .transpose()?;
        let metrics = config.metrics.map(MetricsListener::bind).transpose()?;

        let tunnel_mtu = tunnel_mtu(config);
        let mtu = config.mtu.unwrap_or(tunnel_mtu);
        let tun = Arc::new(open_tun(&config.tun, config.offload)?);
        let offloads = socket_offloads(&udp, tun.offloads(), config.offload);
        if config.offload == Offload::On && !offloads.any() {
            return Err(Error::NoOffloads);
        }
        let netconfig = if config.configure {
            let peer_subnets: Vec<_> = config.peers.iter().map(|r| r.prefix).collect();
            let queue_len = config
                .tun_queue_len
                .or(offloads.tun.tso.then_some(TUN_QUEUE_LEN));
            let gso_max_size = (offloads.tun.tso && offloads.udp_gso).then(|| gso_max_size(mtu));
            Some(netdev::configure(
                &tun,
                mtu,
                queue_len,
                gso_max_size,
                &config.local_subnets,
                &peer_subnets,
            )?)
        } else {
            None
        };
        // Readiness needs it; io_uring needs it too: the TUN driver does not declare
        // FMODE_NOWAIT, so on a blocking descriptor every read and write would be handed to an
        // io-wq worker thread, while on a non-blocking one io_uring tries inline and arms a
        // poll when the queue is empty.
        if let Err(source) = tun.set_nonblocking(true) {
            if let Some(netconfig) = netconfig {
                let _ = netconfig.remove();
            }
            return Err(Error::Thread {
                thread: "setup",
                source,
            });
        }

        let table = Arc::new(SharedTable::new(table));
        let counters = Arc::new(Counters::default());
        let (controller, control_thread) = control::new(
            config,
            table.clone(),
            counters.clone(),
            io,
            offloads,
            encap,
            netconfig,
        );
        let ctx = Ctx {
            tun: tun.clone(),
            map_v4: config.listen.is_ipv6(),
            offloads,
            encap,
            udp: Arc::new(udp),
            table,
            counters,
            stop: Arc::new(AtomicBool::new(false)),
            tunnel_mtu: usize::from(tunnel_mtu),
            priority: config.priority,
            cpus: config.cpus.clone(),
            epoch: Instant::now(),
        };
        let mut dataplane = Dataplane {
            stop: ctx.stop.clone(),
            threads: Vec::new(),
            control: None,
            controller,
            control_socket: None,
            metrics: None,
            io,
            offloads,
            encap,
            mtu,
            tunnel_mtu,
            follower: None,
            _tun: tun,
        };
        let control = std::thread::Builder::new()
            .name("tundra-control".into())
            .spawn(move || control_thread.run());
        match control {
            Ok(handle) => dataplane.control = Some(handle),
            // The thread state (with the kernel configuration) is gone with the failed spawn;
            // the TUN it configured disappears when `_tun` closes.
            Err(source) => {
                return Err(Error::Thread {
                    thread: "control",
                    source,
                })
            }
        }
        type Loop = fn(Ctx) -> io::Result<()>;
        let (egress, ingress): (Loop, Loop) = match io {
            IoMode::Poll => (poll::egress, poll::ingress),
            _ => (uring::egress, uring::ingress),
        };
        for (name, f) in [("egress", egress), ("ingress", ingress)] {
            let ctx = ctx.clone();
            let watch = dataplane.controller.watch(name, ctx.stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("tundra-{name}"))
                .spawn(move || {
                    let _watch = watch;
                    f(ctx)
                });
            match spawned {
                Ok(handle) => dataplane.threads.push((name, handle)),
                Err(source) => {
                    return Err(Error::Thread {
                        thread: name,
                        source,
                    })
                }
            }
        }
        if let Some(socket) = control_socket {
            dataplane.control_socket = Some(socket.serve(dataplane.controller.clone())?);
        }
        if let Some(metrics) = metrics {
            dataplane.metrics = Some(metrics.serve(dataplane.controller.clone())?);
        }
        let (vni, vtep_mac) = match encap {
            datapath::Encap::Vxlan { vni, mac } => (Some(vni), Some(tracing::field::display(mac))),
            datapath::Encap::Udp => (None, None),
        };
        tracing::info!(
            tun = config.tun,
            listen = %config.listen,
            encap = %config.encap,
            vni,
            vtep_mac,
            io = %io,
            offload = %OffloadsDisplay(offloads),
            priority = %config.priority,
            cpus = config.cpus.as_ref().map(tracing::field::display),
            mtu,
            tunnel_mtu,
            routes = config.peers.len(),
            "dataplane running"
        );
        Ok(dataplane)
    }

    /// A route transaction: `dataplane.routes().insert(..).remove(..).commit()`.
    pub fn routes(&self) -> RouteTxn<'_> {
        self.controller.routes()
    }

    /// A cloneable handle for other threads (a control socket, a daemon's watcher).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Totals, drops by reason, and per-peer counters since start.
    pub fn stats(&self) -> Stats {
        self.controller.stats()
    }

    /// The I/O engine in use (`Uring` or `Poll`, never `Auto`).
    pub fn io(&self) -> IoMode {
        self.io
    }

    /// The offloads in use: what the kernel granted the TUN and the UDP socket.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// The wire format in use with its parameters: with `vxlan`, the VNI and our VTEP MAC
    /// (the one peers must send to, derived if none was given).
    pub fn encap(&self) -> datapath::Encap {
        self.encap
    }

    /// The TUN device's MTU, and the largest inner packet the tunnel carries.
    pub fn mtu(&self) -> (u16, u16) {
        (self.mtu, self.tunnel_mtu)
    }

    /// Applies the route sets of `source`, the lease source that gave us `lease`, from now on:
    /// each as one table version (one [`RouteTxn::replace_all`]: the datapath never sees half a
    /// set), on a thread of its own, skipping to the newest when several are queued. A set the
    /// control thread refuses (the kernel refused a route) is tried again a second later unless
    /// a newer one comes. Stats and health carry a `"lease"` object ([`LeaseInfo`]) from then
    /// on. When another node takes our subnet the thread stops and [`Dataplane::lease_lost`]
    /// says so: the caller should shut down, as flanneld exits.
    ///
    /// Shutting the dataplane down stops the source; the lease stays in etcd.
    ///
    /// # Errors
    /// [`Error::FollowsAlready`]; the thread could not be started.
    pub fn follow_leases(&mut self, source: LeaseSource, lease: &Lease) -> Result<(), Error> {
        self.follow(source, lease, None)
    }

    /// [`Dataplane::follow_leases`], with `applied` the set the table was built from.
    fn follow(
        &mut self,
        source: LeaseSource,
        lease: &Lease,
        applied: Option<&RouteSet>,
    ) -> Result<(), Error> {
        if self.follower.is_some() {
            return Err(Error::FollowsAlready);
        }
        let state = Arc::new(FollowState {
            key: lease.key.clone(),
            subnets: lease.local_subnets(),
            status: source.status_handle(),
            applied: Mutex::new(applied.map_or((0, 0), |s| (s.version, s.revision))),
            apply_errors: AtomicU64::new(0),
            lost: Mutex::new(None),
        });
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let controller = self.controller.clone();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("tundra-leases".into())
            .spawn(move || follow(source, controller, thread_state, stopped))
            .map_err(|source| Error::Thread {
                thread: "leases",
                source,
            })?;
        let report = state.clone();
        self.controller
            .set_lease_report(Some(Arc::new(move || report.info())));
        self.follower = Some(Follower {
            stop: Some(stop),
            thread: Some(thread),
            state,
        });
        Ok(())
    }

    /// Our etcd lease's key and why it is lost, once another node holds our subnet (see
    /// [`Dataplane::follow_leases`]).
    pub fn lease_lost(&self) -> Option<(String, String)> {
        let follower = self.follower.as_ref()?;
        follower
            .state
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The name of a datapath thread that has ended on its own (it failed), if any.
    pub fn failed(&self) -> Option<&'static str> {
        self.threads
            .iter()
            .find(|(_, h)| h.is_finished())
            .map(|(name, _)| *name)
    }

    /// Stops the datapath and control threads, waits for them, and removes the addresses and
    /// routes it added. Returns once every thread is gone, with the first error a thread ended
    /// with, or the cleanup error.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(), Error> {
        // First: no route set may arrive at a control thread that is going away.
        if let Some(mut follower) = self.follower.take() {
            follower.stop();
        }
        if let Some(server) = self.control_socket.take() {
            server.stop();
        }
        if let Some(server) = self.metrics.take() {
            server.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for (thread, handle) in self.threads.drain(..) {
            let r = match handle.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(Error::Thread { thread, source }),
                Err(_) => Err(Error::Panicked { thread }),
            };
            result = result.and(r);
        }
        if let Some(control) = self.control.take() {
            self.controller.close();
            match control.join() {
                Ok(Some(netconfig)) => result = result.and(netconfig.remove().map_err(Error::from)),
                Ok(None) => {}
                Err(_) => result = result.and(Err(Error::Panicked { thread: "control" })),
            }
        }
        result
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            tracing::warn!("while stopping: {e}");
        }
    }
}

/// Settings for [`Dataplane::start`], the same as the CLI's and the config file's.
#[derive(Clone, Debug)]
pub struct Builder {
    config: Config,
    /// Whether [`Builder::listen`] was called: if not, the port follows [`Builder::encap`].
    listen_given: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            listen_given: false,
            config: Config {
                tun: config::DEFAULT_TUN.to_owned(),
                listen: config::DEFAULT_LISTEN,
                local_subnets: Vec::new(),
                peers: Vec::new(),
                encap: Encap::Udp,
                vni: config::DEFAULT_VNI,
                vtep_mac: None,
                mtu: None,
                io: IoMode::Auto,
                offload: Offload::Auto,
                tun_queue_len: None,
                socket_buffer: None,
                priority: Priority::High,
                cpus: None,
                configure: true,
                control: None,
                metrics: None,
                etcd: None,
            },
        }
    }
}

impl From<Config> for Builder {
    fn from(config: Config) -> Self {
        Builder {
            config,
            listen_given: true,
        }
    }
}

impl Builder {
    pub fn tun(mut self, name: &str) -> Self {
        self.config.tun = name.to_owned();
        self
    }
    /// The UDP socket's address; default: `0.0.0.0` on the format's port (8285 with `udp`,
    /// 8472 with `vxlan`), whichever order `listen` and [`Builder::encap`] are called in.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self.listen_given = true;
        self
    }
    pub fn local_subnet(mut self, subnet: IpNet) -> Self {
        self.config.local_subnets.push(subnet);
        self
    }
    /// Routes `prefix` to the node at `peer` (`udp`; a `vxlan` peer needs
    /// [`Builder::peer_with_mac`]).
    pub fn peer(mut self, prefix: IpNet, peer: SocketAddr) -> Self {
        self.config.peers.push(Route::new(prefix, peer));
        self
    }
    /// Routes `prefix` to the node at `peer` whose VTEP MAC is `mac` (`vxlan`).
    pub fn peer_with_mac(mut self, prefix: IpNet, peer: SocketAddr, mac: Mac) -> Self {
        self.config.peers.push(Route {
            prefix,
            peer,
            mac: Some(mac),
        });
        self
    }
    /// The wire format; default: [`Encap::Udp`]. Without [`Builder::listen`], the listen port
    /// becomes the format's (8472 for `vxlan`).
    pub fn encap(mut self, encap: Encap) -> Self {
        self.config.encap = encap;
        if !self.listen_given {
            self.config.listen.set_port(encap.default_port());
        }
        self
    }
    /// The VXLAN network identifier, at most [`datapath::encap::MAX_VNI`] (`vxlan` only);
    /// default: [`config::DEFAULT_VNI`].
    pub fn vni(mut self, vni: u32) -> Self {
        self.config.vni = vni;
        self
    }
    /// Our VTEP MAC, unicast (`vxlan` only); default: [`config::default_vtep_mac`] of the local
    /// subnets, the same on every start. [`Dataplane::encap`] tells the one in use.
    pub fn vtep_mac(mut self, mac: Mac) -> Self {
        self.config.vtep_mac = Some(mac);
        self
    }
    /// The TUN's MTU; default: the underlay's less the encapsulation overhead.
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.config.mtu = Some(mtu);
        self
    }
    pub fn io(mut self, io: IoMode) -> Self {
        self.config.io = io;
        self
    }
    /// TUN and UDP offloads (see [`Offload`]); default: [`Offload::Auto`].
    pub fn offload(mut self, offload: Offload) -> Self {
        self.config.offload = offload;
        self
    }
    /// The TUN's transmit queue length in packets (the CLI accepts
    /// 1..=[`config::MAX_TUN_QUEUE_LEN`]); default: the dataplane's choice.
    pub fn tun_queue_len(mut self, len: u32) -> Self {
        self.config.tun_queue_len = Some(len);
        self
    }
    /// The UDP socket's send and receive buffer size in bytes (the CLI accepts
    /// [`config::MIN_SOCKET_BUFFER`]..=[`config::MAX_SOCKET_BUFFER`]); default: the dataplane's
    /// choice.
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.config.socket_buffer = Some(bytes);
        self
    }
    /// How the datapath threads are scheduled (see [`Priority`]); default: [`Priority::High`].
    pub fn priority(mut self, priority: Priority) -> Self {
        self.config.priority = priority;
        self
    }
    /// The CPUs the datapath threads run on (see [`CpuList`]); default: any, as the scheduler
    /// decides.
    pub fn cpus(mut self, cpus: CpuList) -> Self {
        self.config.cpus = Some(cpus);
        self
    }
    /// `false`: leave the TUN's MTU, addresses and routes to the caller.
    pub fn configure(mut self, configure: bool) -> Self {
        self.config.configure = configure;
        self
    }
    /// Serves the control socket (see `docs/control.md`) at `path`; default: none.
    pub fn control(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.control = Some(path.into());
        self
    }
    /// Serves Prometheus metrics on `http://addr/metrics`; default: none.
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.config.metrics = Some(addr);
        self
    }
    /// Routes every prefix of `routes` to its peer (with its MAC, `vxlan`): the first route set
    /// of a lease source, say.
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.config.peers.extend(routes);
        self
    }
    /// Settings of a node of a flannel network that holds `lease`: its subnets as the local
    /// subnets, the network's wire format with its VNI and our VTEP MAC as published, and
    /// (unless [`Builder::listen`] was called) the listen address: our public IP on the
    /// backend's port, or `[::]` on it in a dual-stack vxlan network (its IPv6 peers are
    /// reached over IPv6). Routes come from the lease source: [`Builder::routes`] or
    /// [`Dataplane::follow_leases`].
    pub fn flannel(mut self, network: &NetworkConfig, lease: &Lease) -> Self {
        let listen = self
            .listen_given
            .then_some((self.config.listen.ip(), Some(self.config.listen.port())));
        set_flannel(&mut self.config, listen, network, lease);
        self.listen_given = true;
        self
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates the settings and starts the dataplane.
    ///
    /// # Errors
    /// As [`Dataplane::start`], and for an invalid TUN name, an underlay address family the
    /// listen address cannot reach, a VNI out of range, a VTEP MAC that is not unicast or given
    /// with `udp`, a peer without a MAC with `vxlan` or with one with `udp`.
    pub fn start(self) -> Result<Dataplane, Error> {
        let c = &self.config;
        let invalid = |origin: &'static str, value: String, problem| {
            Error::Config(ConfigError::Invalid(Box::new(config::InvalidValue {
                origin: config::Origin::Flag(origin),
                value,
                problem,
            })))
        };
        config::check_tun_name(&c.tun).map_err(|p| invalid("tun", c.tun.clone(), p))?;
        if c.vni > datapath::encap::MAX_VNI {
            return Err(invalid(
                "vni",
                c.vni.to_string(),
                config::Problem::VniOutOfRange,
            ));
        }
        if let Some(mac) = c.vtep_mac {
            if c.encap != Encap::Vxlan {
                return Err(invalid(
                    "vtep_mac",
                    mac.to_string(),
                    config::Problem::VxlanOnly,
                ));
            }
            if !mac.is_unicast() {
                return Err(invalid(
                    "vtep_mac",
                    mac.to_string(),
                    config::Problem::MacNotUnicast(mac),
                ));
            }
        }
        for route in &c.peers {
            let shown = || match route.mac {
                Some(mac) => format!("{}={},mac={mac}", route.prefix, route.peer),
                None => format!("{}={}", route.prefix, route.peer),
            };
            config::check_family(route.peer, c.listen).map_err(|p| invalid("peer", shown(), p))?;
            config::check_peer_mac(route.mac, c.encap).map_err(|p| invalid("peer", shown(), p))?;
        }
        Dataplane::start(c)
    }
}

/// Runs the dataplane until SIGINT or SIGTERM, then shuts it down. SIGUSR1 prints the
/// counters as one `stats {json}` line on stderr; so does the shutdown. SIGHUP calls `reload`
/// for a fresh configuration and applies its route changes as one version, or refuses it whole
/// (logged) if it is invalid or changes a setting that needs a restart; a flannel node's routes
/// follow etcd, so it only logs that.
///
/// A flannel node ([`Config::etcd`]) takes its lease before the signal handlers are installed:
/// SIGINT or SIGTERM while it waits for etcd ends the process at once (nothing is configured
/// yet; a lease taken stays in etcd). Once running, it stops with [`Error::LeaseLost`] when
/// another node takes its subnet.
///
/// # Errors
/// A start error, a datapath thread that failed, a lost lease, or a cleanup error.
pub fn run_until_signal(
    config: &Config,
    reload: impl Fn() -> Result<Config, ConfigError>,
) -> Result<(), Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let term = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let register = || -> Result<(), Error> {
        for (sig, flag) in [
            (SIGINT, &term),
            (SIGTERM, &term),
            (SIGUSR1, &usr1),
            (SIGHUP, &hup),
        ] {
            signal_hook::flag::register(sig, flag.clone()).map_err(Error::Signals)?;
        }
        Ok(())
    };
    let dataplane = match &config.etcd {
        None => {
            register()?;
            Dataplane::start(config)?
        }
        Some(etcd) => {
            let (network, lease, source) = start_lease(etcd, config.vtep_mac)?;
            register()?;
            start_flannel(config, etcd, &network, &lease, source)?
        }
    };
    let mut running = config.clone();
    let mut lost = None;
    while !term.load(Ordering::Relaxed) && dataplane.failed().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        if usr1.swap(false, Ordering::Relaxed) {
            eprintln!("stats {}", dataplane.stats().to_json());
        }
        if let Some((key, reason)) = dataplane.lease_lost() {
            tracing::error!(%key, %reason, "our etcd lease was lost to another node: stopping \
                (a restart takes a new subnet)");
            lost = Some(Error::LeaseLost { key, reason });
            break;
        }
        if !hup.swap(false, Ordering::Relaxed) {
            continue;
        }
        if running.etcd.is_some() {
            tracing::warn!(
                "SIGHUP: the routes follow the leases in etcd; nothing is reloaded \
                (restart tundra to change its settings)"
            );
        } else {
            match reload_routes(&dataplane, &running, reload()) {
                Ok((next, applied)) => {
                    tracing::info!(
                        version = applied.version,
                        added = applied.added,
                        removed = applied.removed,
                        changed = applied.changed,
                        "configuration reloaded"
                    );
                    running = next;
                }
                Err(e) => tracing::error!("reload refused, running configuration kept: {e}"),
            }
        }
    }
    let stats = dataplane.stats();
    let result = dataplane.shutdown();
    eprintln!("stats {}", stats.to_json());
    if let Some(lost) = lost {
        return Err(lost);
    }
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// Starts the lease source of a flannel node: waits for etcd (until `etcd.start_timeout`),
/// reads the network config and takes our subnet.
fn start_lease(
    etcd: &EtcdSettings,
    vtep_mac: Option<Mac>,
) -> Result<(NetworkConfig, Lease, LeaseSource), Error> {
    let started = LeaseSource::start(&etcd.lease_config(vtep_mac))?;
    let (network, lease, _) = &started;
    if vtep_mac.is_some() && matches!(network.backend, lease::Backend::Udp { .. }) {
        return Err(Error::Flannel(format!(
            "--vtep-mac applies to a vxlan network; the network config at {}/config says udp",
            etcd.prefix.trim_end_matches('/')
        )));
    }
    tracing::info!(key = %lease.key, subnet = %lease.subnet, ipv6_subnet = ?lease.ipv6_subnet,
        origin = ?lease.origin, backend = network.backend.name(), "joined the flannel network");
    Ok(started)
}

/// Starts the dataplane of a flannel node from its lease source (see [`Dataplane::start`]).
fn start_flannel(
    config: &Config,
    etcd: &EtcdSettings,
    network: &NetworkConfig,
    lease: &Lease,
    source: LeaseSource,
) -> Result<Dataplane, Error> {
    let mut resolved = config.clone();
    // Resolved: a dataplane with every subnet and route given.
    resolved.etcd = None;
    set_flannel(&mut resolved, etcd.listen, network, lease);
    if let (Some(mtu), Some(_)) = (config.mtu, lease.ipv6_subnet) {
        if mtu < config::MIN_MTU_IPV6 {
            return Err(Error::Flannel(format!(
                "--mtu {mtu}: the network is dual stack (EnableIPv6), which needs an MTU of at least {}",
                config::MIN_MTU_IPV6
            )));
        }
    }
    // The first route set (the initial list, queued by the start) becomes the first table:
    // no moment without routes, and the underlay MTU is found towards a real peer.
    let first = match source.updates().try_recv() {
        Ok(Update::Routes(set)) => Some(set),
        _ => None,
    };
    if let Some(set) = &first {
        resolved.peers = set.routes.clone();
    }
    Builder::from(resolved)
        .start()?
        .flannel_started(network, lease, etcd, source, first)
}

impl Dataplane {
    /// The rest of [`start_flannel`] once the datapath runs: the subnet file, the follower.
    fn flannel_started(
        mut self,
        network: &NetworkConfig,
        lease: &Lease,
        etcd: &EtcdSettings,
        source: LeaseSource,
        first: Option<RouteSet>,
    ) -> Result<Dataplane, Error> {
        lease::write_subnet_file(&etcd.subnet_file, network, lease, self.mtu.into(), false)
            .map_err(|source| Error::SubnetFile {
                path: etcd.subnet_file.clone(),
                source,
            })?;
        tracing::info!(path = %etcd.subnet_file.display(), mtu = self.mtu, "subnet file written");
        self.follow(source, lease, first.as_ref())?;
        Ok(self)
    }
}

/// Makes `config` that of a node of `network` holding `lease` (see [`Builder::flannel`]);
/// `listen` is the address given, with its port if one was.
fn set_flannel(
    config: &mut Config,
    listen: Option<(IpAddr, Option<u16>)>,
    network: &NetworkConfig,
    lease: &Lease,
) {
    config.local_subnets = lease.local_subnets();
    let port = network.backend.port();
    match lease.encap() {
        datapath::Encap::Udp => config.encap = Encap::Udp,
        datapath::Encap::Vxlan { vni, mac } => {
            config.encap = Encap::Vxlan;
            config.vni = vni;
            config.vtep_mac = Some(mac);
        }
    }
    let dual_stack_vxlan = config.encap == Encap::Vxlan && lease.ipv6_subnet.is_some();
    config.listen = match listen {
        Some((ip, port_given)) => SocketAddr::new(ip, port_given.unwrap_or(port)),
        None if dual_stack_vxlan => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        None => SocketAddr::new(lease.attrs.public_ip.into(), port),
    };
}

/// The thread that applies a lease source's route sets (see [`Dataplane::follow_leases`]).
struct Follower {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    state: Arc<FollowState>,
}

impl Follower {
    /// Stops the thread and with it the lease source (the lease stays in etcd).
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the lease thread panicked");
            }
        }
    }
}

/// What the follower shares with stats and health.
struct FollowState {
    key: String,
    subnets: Vec<IpNet>,
    status: lease::StatusHandle,
    /// The version and etcd revision of the set applied last.
    applied: Mutex<(u64, i64)>,
    apply_errors: AtomicU64,
    /// Our key and why it is lost.
    lost: Mutex<Option<(String, String)>>,
}

impl FollowState {
    fn info(&self) -> LeaseInfo {
        let status = self.status.get();
        let (version, revision) = *self.applied.lock().unwrap_or_else(|e| e.into_inner());
        LeaseInfo {
            key: self.key.clone(),
            subnets: self.subnets.clone(),
            version,
            revision,
            leases: status.leases,
            routes: status.routes,
            refused: status.refused.len(),
            refused_total: status.refused_total,
            ignored: status.ignored.len(),
            relists: status.relists,
            apply_errors: self.apply_errors.load(Ordering::Relaxed),
            lost: self
                .lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(_, reason)| reason.clone()),
        }
    }
}

/// The follower thread: applies each route set (the newest of those queued) as one
/// transaction until `stop` is dropped or our lease is lost; then drops the source.
fn follow(
    source: LeaseSource,
    controller: Controller,
    state: Arc<FollowState>,
    stop: Receiver<()>,
) {
    let mut pending: Option<RouteSet> = None;
    loop {
        let wait = if pending.is_some() {
            ROUTE_SET_RETRY
        } else {
            Duration::from_secs(3600)
        };
        let first = select! {
            recv(stop) -> _ => return,
            recv(source.updates()) -> update => match update {
                Ok(update) => Some(update),
                // The source's threads are gone: nothing will come any more.
                Err(_) => return,
            },
            default(wait) => None,
        };
        // Each set is complete: only the newest queued one matters.
        for update in first.into_iter().chain(source.updates().try_iter()) {
            match update {
                Update::Routes(set) => pending = Some(set),
                Update::LeaseLost { key, reason } => {
                    *state.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, reason));
                    return;
                }
            }
        }
        let Some(set) = pending.take() else {
            continue;
        };
        match controller
            .routes()
            .replace_all(set.routes.iter().copied())
            .commit()
        {
            Ok(applied) => {
                *state.applied.lock().unwrap_or_else(|e| e.into_inner()) =
                    (set.version, set.revision);
                if applied.added + applied.removed + applied.changed > 0 {
                    tracing::info!(
                        set = set.version,
                        revision = set.revision,
                        table_version = applied.version,
                        added = applied.added,
                        removed = applied.removed,
                        changed = applied.changed,
                        routes = applied.routes,
                        "routes from etcd applied"
                    );
                }
            }
            Err(ControlError::Closed) => return,
            Err(e) => {
                state.apply_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(set = set.version, revision = set.revision, error = %e,
                    retry_in = ?ROUTE_SET_RETRY, "route set from etcd refused");
                pending = Some(set);
            }
        }
    }
}

/// Applies a reloaded configuration's routes as one version, if nothing else changed.
fn reload_routes(
    dataplane: &Dataplane,
    running: &Config,
    loaded: Result<Config, ConfigError>,
) -> Result<(Config, control::Applied), Box<dyn std::error::Error>> {
    let next = loaded?;
    let fixed: [(&'static str, bool); 16] = [
        ("tun", next.tun == running.tun),
        ("listen", next.listen == running.listen),
        ("local_subnets", next.local_subnets == running.local_subnets),
        ("encap", next.encap == running.encap),
        ("vni", next.vni == running.vni),
        ("vtep_mac", next.vtep_mac == running.vtep_mac),
        ("mtu", next.mtu == running.mtu),
        ("io", next.io == running.io),
        ("offload", next.offload == running.offload),
        ("tun_queue_len", next.tun_queue_len == running.tun_queue_len),
        ("socket_buffer", next.socket_buffer == running.socket_buffer),
        ("priority", next.priority == running.priority),
        ("cpus", next.cpus == running.cpus),
        ("configure", next.configure == running.configure),
        (
            "control",
            next.control == running.control && next.metrics == running.metrics,
        ),
        ("etcd", next.etcd == running.etcd),
    ];
    if let Some((name, _)) = fixed.iter().find(|(_, same)| !same) {
        return Err(control::ControlError::NeedsRestart(name).into());
    }
    let applied = dataplane
        .routes()
        .replace_all(next.peers.iter().copied())
        .commit()?;
    Ok((next, applied))
}

/// `Auto` becomes `Uring` where a ring can be set up, else `Poll`.
/// Refuses CPUs this process may not run on (a cpuset, `taskset`), before anything is set up:
/// the datapath threads would otherwise fail to pin themselves after the start.
fn check_cpus(cpus: &CpuList) -> Result<(), Error> {
    let allowed = sys::sched::allowed_cpus().map_err(Error::Affinity)?;
    match cpus.cpus().iter().find(|cpu| !allowed.contains(cpu)) {
        None => Ok(()),
        Some(&cpu) => Err(Error::CpuNotAllowed {
            cpus: cpus.clone(),
            cpu,
            allowed: CpuList::new(allowed).map_or_else(|| "none".into(), |a| a.to_string()),
        }),
    }
}

fn resolve_io(requested: IoMode) -> Result<IoMode, Error> {
    match (requested, uring::probe()) {
        (IoMode::Poll, _) => Ok(IoMode::Poll),
        (IoMode::Uring, Err(e)) => Err(Error::Uring(e)),
        (IoMode::Auto, Err(e)) => {
            tracing::warn!("io_uring is not available ({e}); using the readiness fallback");
            Ok(IoMode::Poll)
        }
        (_, Ok(())) => Ok(IoMode::Uring),
    }
}

/// The largest TSO packet the kernel should build for a TUN of `mtu` so that its segments,
/// each with its own headers (up to 72 bytes: IPv6 and TCP with timestamps), fit in one UDP
/// GSO send: a 64 KiB packet would take two sends, the second with a segment or two.
fn gso_max_size(mtu: u16) -> u32 {
    const HEADERS: u32 = 72;
    let mtu = u32::from(mtu).max(2 * HEADERS);
    (datapath::batch::MAX_GSO_BYTES as u32) * (mtu - HEADERS) / mtu
}

/// Opens the TUN with offloads unless they are off; `auto` falls back to a plain TUN where
/// the kernel refuses them.
fn open_tun(name: &str, offload: Offload) -> Result<Tun, Error> {
    if offload == Offload::Off {
        return Ok(Tun::open(name, false)?);
    }
    match Tun::open(name, true) {
        Err(e) if offload == Offload::Auto => {
            tracing::warn!("TUN offloads refused ({e}); opening {name} without them");
            Ok(Tun::open(name, false)?)
        }
        r => Ok(r?),
    }
}

/// Adds the UDP offloads the socket takes to what the TUN was granted. GRO on the socket
/// only pays when the TUN takes super-packets back; GSO pays either way.
fn socket_offloads(udp: &UdpSocket, tun: TunOffloads, offload: Offload) -> Offloads {
    if offload == Offload::Off {
        return Offloads::default();
    }
    let udp_gso = sys::udp::probe_gso(udp.as_fd());
    let udp_gro = tun.tso && sys::udp::enable_gro(udp.as_fd()).is_ok();
    Offloads {
        tun,
        udp_gso,
        udp_gro,
    }
}

/// The offloads as the startup log shows them.
struct OffloadsDisplay(Offloads);

impl std::fmt::Display for OffloadsDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.0;
        let names = [
            ("tun-tso", o.tun.tso),
            ("tun-uso", o.tun.uso),
            ("udp-gso", o.udp_gso),
            ("udp-gro", o.udp_gro),
        ];
        let granted: Vec<&str> = names
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if granted.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&granted.join(","))
        }
    }
}

fn bind(addr: SocketAddr, buffer: usize) -> Result<UdpSocket, Error> {
    let fail = |source| Error::Socket { addr, source };
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(fail)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` carries IPv4 peers too, as IPv4-mapped addresses.
        socket.set_only_v6(false).map_err(fail)?;
    }
    sys::udp::set_buffers(socket.as_fd(), buffer);
    sys::udp::allow_fragmentation(socket.as_fd(), addr.is_ipv6()).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(socket.into())
}

/// The largest inner packet that crosses the underlay unfragmented: the path MTU towards the
/// first peer, less the outer headers (IPv6's if any peer is reached over IPv6) and the
/// format's own (`vxlan`: 22, so 50 over IPv4 and 70 over IPv6, as Linux VXLAN devices).
fn tunnel_mtu(config: &Config) -> u16 {
    let outer = if config
        .peers
        .iter()
        .any(|r| datapath::route::canonical_addr(r.peer).is_ipv6())
    {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    };
    let overhead = match config.encap {
        Encap::Udp => outer,
        Encap::Vxlan => outer + VXLAN_OVERHEAD as u32,
    };
    let underlay = match config.peers.first() {
        Some(route) => netdev::underlay_mtu(route.peer).unwrap_or_else(|e| {
            tracing::warn!(
                "cannot find the underlay MTU towards {}: {e}; assuming {DEFAULT_UNDERLAY_MTU}",
                route.peer
            );
            DEFAULT_UNDERLAY_MTU
        }),
        None => DEFAULT_UNDERLAY_MTU,
    };
    u16::try_from(underlay.saturating_sub(overhead)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Backend, LeaseAttrs, Origin};

    fn node(network: &str, v6: bool, mac: Option<&str>) -> (NetworkConfig, Lease) {
        let network = NetworkConfig::parse(network.as_bytes()).unwrap();
        let public_ipv6 = v6.then(|| "fd18::1".parse().unwrap());
        let attrs = LeaseAttrs::ours(
            network.backend,
            "198.18.0.1".parse().unwrap(),
            public_ipv6,
            mac.map(|m| m.parse().unwrap()),
        );
        let lease = Lease {
            subnet: "198.19.1.0/24".parse().unwrap(),
            ipv6_subnet: v6.then(|| "fd19:0:0:1::/64".parse().unwrap()),
            key: "/coreos.com/network/subnets/198.19.1.0-24".into(),
            attrs,
            origin: Origin::Allocated,
            backend: network.backend,
        };
        (network, lease)
    }

    #[test]
    fn flannel_settings_follow_the_network() {
        // udp: our public IP on the network's port; both subnets local.
        let (network, lease) = node(
            r#"{"Network": "198.19.0.0/16", "EnableIPv6": true, "IPv6Network": "fd19::/48",
                "Backend": {"Type": "udp", "Port": 9000}}"#,
            true,
            None,
        );
        let b = Dataplane::builder().flannel(&network, &lease);
        let c = b.config();
        assert_eq!(c.listen, "198.18.0.1:9000".parse().unwrap());
        assert_eq!(c.encap, Encap::Udp);
        assert_eq!(
            c.local_subnets,
            vec![
                "198.19.1.0/24".parse::<IpNet>().unwrap(),
                "fd19:0:0:1::/64".parse().unwrap()
            ]
        );
        // vxlan: the VNI and the MAC published; dual stack listens on [::].
        let mac = "0a:58:c6:13:01:00";
        let (network, lease) = node(
            r#"{"Network": "198.19.0.0/16", "EnableIPv6": true, "IPv6Network": "fd19::/48",
                "Backend": {"Type": "vxlan", "VNI": 42}}"#,
            true,
            Some(mac),
        );
        assert_eq!(
            network.backend,
            Backend::Vxlan {
                vni: 42,
                port: 8472
            }
        );
        let c = Dataplane::builder()
            .flannel(&network, &lease)
            .config()
            .clone();
        assert_eq!(c.listen, "[::]:8472".parse().unwrap());
        assert_eq!(
            c.wire_encap(),
            datapath::Encap::Vxlan {
                vni: 42,
                mac: mac.parse().unwrap()
            }
        );
        // A listen address given stays; without a port it takes the network's.
        let c = Dataplane::builder()
            .listen("198.18.0.1:4789".parse().unwrap())
            .flannel(&network, &lease)
            .config()
            .clone();
        assert_eq!(c.listen, "198.18.0.1:4789".parse().unwrap());
        let mut config = c.clone();
        set_flannel(
            &mut config,
            Some(("0.0.0.0".parse().unwrap(), None)),
            &network,
            &lease,
        );
        assert_eq!(config.listen, "0.0.0.0:8472".parse().unwrap());
        // IPv4-only vxlan: our public IP.
        let (network, lease) = node(
            r#"{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan"}}"#,
            false,
            Some(mac),
        );
        let c = Dataplane::builder()
            .flannel(&network, &lease)
            .config()
            .clone();
        assert_eq!(c.listen, "198.18.0.1:8472".parse().unwrap());
        assert_eq!(c.local_subnets.len(), 1);
    }
}
