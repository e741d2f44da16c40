//! Starting and stopping the datapath threads.
//!
//! [`Dataplane::start`] validates everything it can before it changes anything (route table,
//! UDP bind, io_uring availability), then opens and configures the TUN, then starts one egress
//! and one ingress thread. [`Dataplane::shutdown`] stops them and removes what was configured.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datapath::{Counters, DropReason, LocalCounters, SharedTable, Table, TableError};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, IoMode};
use crate::io::{poll, uring, Ctx};
use crate::netdev::{self, NetConfig, NetdevError, Tun};
use crate::sys;

/// Outer IPv4 + UDP header bytes, and outer IPv6 + UDP.
const OVERHEAD_V4: u32 = 20 + 8;
const OVERHEAD_V6: u32 = 40 + 8;
/// Underlay MTU assumed when it cannot be found (no peer yet, or no route to it).
const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// UDP socket buffer size: several batches of full-size datagrams.
const SOCKET_BUFFER: usize = 8 << 20;

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
    #[error("{thread} thread failed: {source}")]
    Thread {
        thread: &'static str,
        source: io::Error,
    },
    #[error("{thread} thread panicked")]
    Panicked { thread: &'static str },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// A running dataplane: the TUN, the socket, the route table and the two datapath threads.
pub struct Dataplane {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<io::Result<()>>)>,
    table: Arc<SharedTable>,
    counters: Arc<Counters>,
    netconfig: Option<NetConfig>,
    io: IoMode,
    mtu: u16,
    tunnel_mtu: u16,
    _tun: Arc<Tun>,
}

impl Dataplane {
    /// Starts the dataplane described by `config`.
    ///
    /// # Errors
    /// Invalid routes, a socket that cannot be bound, `--io uring` where io_uring cannot be set
    /// up, or a TUN device that cannot be opened or configured. Nothing stays configured then.
    pub fn start(config: &Config) -> Result<Dataplane, Error> {
        let table = Table::new(&config.local_subnets, &config.peers)?;
        let io = resolve_io(config.io)?;
        let udp = bind(config.listen)?;

        let tunnel_mtu = tunnel_mtu(config);
        let mtu = config.mtu.unwrap_or(tunnel_mtu);
        let tun = Arc::new(Tun::open(&config.tun)?);
        let netconfig = if config.configure {
            let peer_subnets: Vec<_> = config.peers.iter().map(|r| r.prefix).collect();
            Some(netdev::configure(
                &tun,
                mtu,
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
        tun.set_nonblocking(true).map_err(|source| Error::Thread {
            thread: "setup",
            source,
        })?;

        let ctx = Ctx {
            tun: tun.clone(),
            map_v4: config.listen.is_ipv6(),
            udp: Arc::new(udp),
            table: Arc::new(SharedTable::new(table)),
            counters: Arc::new(Counters::default()),
            stop: Arc::new(AtomicBool::new(false)),
            tunnel_mtu: usize::from(tunnel_mtu),
            epoch: Instant::now(),
        };
        let mut dataplane = Dataplane {
            stop: ctx.stop.clone(),
            threads: Vec::new(),
            table: ctx.table.clone(),
            counters: ctx.counters.clone(),
            netconfig,
            io,
            mtu,
            tunnel_mtu,
            _tun: tun,
        };
        type Loop = fn(Ctx) -> io::Result<()>;
        let (egress, ingress): (Loop, Loop) = match io {
            IoMode::Poll => (poll::egress, poll::ingress),
            _ => (uring::egress, uring::ingress),
        };
        for (name, f) in [("egress", egress), ("ingress", ingress)] {
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tundra-{name}"))
                .spawn(move || f(ctx));
            match spawned {
                Ok(handle) => dataplane.threads.push((name, handle)),
                Err(source) => {
                    let _ = dataplane.stop_threads();
                    return Err(Error::Thread {
                        thread: name,
                        source,
                    });
                }
            }
        }
        tracing::info!(
            tun = config.tun,
            listen = %config.listen,
            io = ?io,
            mtu,
            tunnel_mtu,
            peers = dataplane.table.load().peers().len(),
            "dataplane running"
        );
        Ok(dataplane)
    }

    /// The published route table: load it to read, publish a new version to change routes.
    pub fn table(&self) -> &Arc<SharedTable> {
        &self.table
    }

    /// Totals since start.
    pub fn counters(&self) -> LocalCounters {
        self.counters.snapshot()
    }

    /// The I/O engine in use (`Uring` or `Poll`, never `Auto`).
    pub fn io(&self) -> IoMode {
        self.io
    }

    /// The TUN device's MTU, and the largest inner packet the tunnel carries.
    pub fn mtu(&self) -> (u16, u16) {
        (self.mtu, self.tunnel_mtu)
    }

    /// The name of a datapath thread that has ended on its own (it failed), if any.
    pub fn failed(&self) -> Option<&'static str> {
        self.threads
            .iter()
            .find(|(_, h)| h.is_finished())
            .map(|(name, _)| *name)
    }

    /// Stops the datapath threads, waits for them, and removes the addresses and routes it
    /// added. Returns the first error a thread ended with, or the cleanup error.
    pub fn shutdown(mut self) -> Result<(), Error> {
        let threads = self.stop_threads();
        let cleanup = match self.netconfig.take() {
            Some(netconfig) => netconfig.remove().map_err(Error::from),
            None => Ok(()),
        };
        threads.and(cleanup)
    }

    fn stop_threads(&mut self) -> Result<(), Error> {
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
        result
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.stop_threads();
        if let Some(netconfig) = self.netconfig.take() {
            let _ = netconfig.remove();
        }
    }
}

/// Runs the dataplane until SIGINT or SIGTERM, then shuts it down. SIGUSR1 prints the
/// counters as one `stats {json}` line on stderr; so does the shutdown.
///
/// # Errors
/// A start error, a datapath thread that failed, or a cleanup error.
pub fn run_until_signal(config: &Config) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let term = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [(SIGINT, &term), (SIGTERM, &term), (SIGUSR1, &usr1)] {
        signal_hook::flag::register(sig, flag.clone()).map_err(Error::Signals)?;
    }
    let dataplane = Dataplane::start(config)?;
    while !term.load(Ordering::Relaxed) && dataplane.failed().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        if usr1.swap(false, Ordering::Relaxed) {
            eprintln!("stats {}", stats_json(&dataplane.counters()));
        }
    }
    let counters = dataplane.counters();
    let result = dataplane.shutdown();
    eprintln!("stats {}", stats_json(&counters));
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// The counters as a JSON object: packets and bytes each way, ICMP errors sent, drops by reason.
pub fn stats_json(c: &LocalCounters) -> serde_json::Value {
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), c.drops[*r as usize].into()))
        .collect();
    serde_json::json!({
        "tx_packets": c.tx_packets,
        "tx_bytes": c.tx_bytes,
        "rx_packets": c.rx_packets,
        "rx_bytes": c.rx_bytes,
        "icmp_sent": c.icmp_sent,
        "drops": drops,
    })
}

/// `Auto` becomes `Uring` where a ring can be set up, else `Poll`.
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

fn bind(addr: SocketAddr) -> Result<UdpSocket, Error> {
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
    sys::udp::set_buffers(socket.as_fd(), SOCKET_BUFFER);
    sys::udp::allow_fragmentation(socket.as_fd(), addr.is_ipv6()).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(socket.into())
}

/// The largest inner packet that crosses the underlay unfragmented: the path MTU towards the
/// first peer, less the outer headers (IPv6's if any peer is reached over IPv6).
fn tunnel_mtu(config: &Config) -> u16 {
    let overhead = if config
        .peers
        .iter()
        .any(|r| r.peer.is_ipv6() && !is_v4_mapped(r.peer))
    {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
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

fn is_v4_mapped(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => false,
    }
}
