//! The lease source: node subnets from flannel's etcd leases, so that tundra is a drop-in
//! flannel node (flanneld 0.18 and later, etcd v3 API).
//!
//! [`LeaseSource::start`] reads the network configuration at `<prefix>/config`, takes a subnet
//! for this node (reusing its earlier lease where flanneld would), and from then on follows
//! every other node's lease, handing on complete route sets, while a background thread renews
//! our lease. Nothing here touches the datapath: the caller applies each [`RouteSet`] as one
//! table version (`Controller::routes().replace_all(set.routes).commit()`), gives the TUN the
//! lease's subnet, and writes the subnet file for flannel's CNI plugin ([`write_subnet_file`]).
//!
//! Layers, top to bottom:
//! - this module: the configuration, starting and stopping, what the caller receives;
//! - [`acquire`] takes a subnet with flanneld's rules;
//! - `watch` turns the other nodes' leases into a route set, kept in step with etcd;
//! - `renew` keeps our lease alive (and takes it back if it vanished);
//! - [`format`] reads and writes flannel's JSON and key formats, byte for byte;
//! - [`etcd`] is a small client for etcd's v3 JSON gateway (HTTP/1.1, no gRPC, no runtime);
//! - [`subnet_file`] writes and reads `/run/flannel/subnet.env`.
//!
//! ```no_run
//! # fn main() -> Result<(), tundra::lease::Error> {
//! use tundra::lease::{Config, LeaseSource, Update};
//!
//! let cfg = Config::new(vec!["http://127.0.0.1:2379".into()], "192.0.2.10".parse().unwrap());
//! let (network, lease, source) = LeaseSource::start(&cfg)?;
//! println!("{} backend, our subnet {}", network.backend.name(), lease.subnet);
//! for update in source.updates() {
//!     match update {
//!         Update::Routes(set) => println!("version {}: {} routes", set.version, set.routes.len()),
//!         Update::LeaseLost { reason, .. } => panic!("our subnet is gone: {reason}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod acquire;
pub mod etcd;
pub mod format;
mod renew;
pub mod subnet_file;
mod watch;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use datapath::{Encap, Mac, Route};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use self::acquire::Origin;
pub use self::etcd::{EtcdError, Tls};
pub use self::format::{Backend, FormatError, LeaseAttrs, NetworkConfig};
pub use self::subnet_file::DEFAULT_SUBNET_FILE;

/// flanneld's default `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
/// flanneld's lease TTL (`subnetTTL`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// flanneld's default `--subnet-lease-renew-margin`.
pub const DEFAULT_RENEW_MARGIN: Duration = Duration::from_secs(3600);

/// How to reach etcd and who we are.
#[derive(Clone, Debug)]
pub struct Config {
    /// etcd client URLs (`http://host:2379`, `https://...`), tried in turn.
    pub endpoints: Vec<String>,
    /// The key prefix of the network (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Our address on the underlay: other nodes send to it (`PublicIP` in our lease).
    pub public_ip: Ipv4Addr,
    /// Our IPv6 underlay address (`PublicIPv6`); needed by vxlan with `EnableIPv6`.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Our VTEP MAC in vxlan mode (default: derived from `public_ip`, the same on every start).
    pub vtep_mac: Option<Mac>,
    pub tls: Tls,
    /// The previous run's subnet file, to ask for the same subnet (default
    /// [`DEFAULT_SUBNET_FILE`]; `None`: none). Only read here: see [`write_subnet_file`].
    pub subnet_file: Option<PathBuf>,
    /// How long [`LeaseSource::start`] keeps trying while etcd is unreachable or the network
    /// config is missing (default 60 s).
    pub start_deadline: Duration,
    /// The TTL of our lease (default 24 h, flanneld's) and how much of it is left when it is
    /// renewed (default 1 h; at most half the TTL).
    pub lease_ttl: Duration,
    pub renew_margin: Duration,
    /// Bound on one etcd request, connecting included (default 5 s).
    pub request_timeout: Duration,
    /// A watch stream is reopened (from the next revision, nothing lost) after this long, so a
    /// connection that died without a sign is noticed (default 5 min).
    pub watch_lifetime: Duration,
}

impl Config {
    /// The defaults above, for `endpoints` and `public_ip`.
    pub fn new(endpoints: Vec<String>, public_ip: Ipv4Addr) -> Config {
        Config {
            endpoints,
            prefix: DEFAULT_PREFIX.into(),
            public_ip,
            public_ipv6: None,
            vtep_mac: None,
            tls: Tls::default(),
            subnet_file: Some(PathBuf::from(DEFAULT_SUBNET_FILE)),
            start_deadline: Duration::from_secs(60),
            lease_ttl: DEFAULT_LEASE_TTL,
            renew_margin: DEFAULT_RENEW_MARGIN,
            request_timeout: Duration::from_secs(5),
            watch_lifetime: Duration::from_secs(300),
        }
    }

    /// The prefix as flannel joins keys to it (`path.Join`): no trailing slash.
    fn clean_prefix(&self) -> String {
        let p = self.prefix.trim_end_matches('/');
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/{p}")
        }
    }
}

/// Why the lease source did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// etcd stayed unreachable, or the network config missing, until the start deadline.
    #[error("{what}: gave up after {waited:?}: {last}")]
    Deadline {
        what: &'static str,
        waited: Duration,
        last: String,
    },
    /// etcd has no network config yet (retried until the deadline).
    #[error("no network config at {0} in etcd (write flannel's JSON network config there)")]
    NoConfig(String),
    /// The network config cannot be used.
    #[error("network config at {key}: {error}")]
    Config { key: String, error: FormatError },
    /// Our settings do not fit the network.
    #[error("{0}")]
    Unfit(String),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("no free subnet left in {range}")]
    OutOfSubnets { range: String },
    #[error("the subnet picked was taken by another node {0} times in a row")]
    Conflicts(usize),
    #[error("subnet file {path}: {error}")]
    SubnetFile { path: PathBuf, error: io::Error },
}

impl Error {
    /// Worth trying again until the start deadline.
    fn is_transient(&self) -> bool {
        match self {
            Error::Etcd(e) => e.is_unreachable(),
            Error::NoConfig(_) => true,
            _ => false,
        }
    }
}

/// The subnet this node holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub subnet: Ipv4Net,
    /// Our IPv6 subnet when the network is dual stack.
    pub ipv6_subnet: Option<Ipv6Net>,
    /// The etcd key (`<prefix>/subnets/10.244.1.0-24`).
    pub key: String,
    /// What we published in it.
    pub attrs: LeaseAttrs,
    /// How it was taken.
    pub origin: Origin,
    /// The network's backend.
    pub backend: Backend,
}

impl Lease {
    /// Our subnets, the datapath's local subnets.
    pub fn local_subnets(&self) -> Vec<IpNet> {
        let mut v = vec![IpNet::V4(self.subnet)];
        v.extend(self.ipv6_subnet.map(IpNet::V6));
        v
    }

    /// The wire format to run: the network's backend with the VTEP MAC we published.
    pub fn encap(&self) -> Encap {
        match (self.backend, self.attrs.vxlan()) {
            (Backend::Vxlan { vni, .. }, Ok(d)) => Encap::Vxlan {
                vni,
                mac: d.vtep_mac,
            },
            _ => Encap::Udp,
        }
    }
}

/// A complete set of routes to every other node, to apply as one table version. It always
/// builds into a table for the network's wire format next to [`Lease::local_subnets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSet {
    /// 1 for the set of the initial list, then one more per set handed on.
    pub version: u64,
    /// The etcd revision it reflects.
    pub revision: i64,
    /// Sorted by prefix.
    pub routes: Vec<Route>,
}

/// What the lease source hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Update {
    /// The routes changed. Each set is complete: a consumer that falls behind may skip to the
    /// last one queued.
    Routes(RouteSet),
    /// Our key now holds another node's lease (after ours expired or was deleted): this node's
    /// subnet is no longer ours. flanneld exits then; so should the caller, and a restart
    /// takes a new subnet.
    LeaseLost { key: String, reason: String },
}

/// What the watcher knows, for logs and the control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The etcd revision of the latest route set, and that set's version.
    pub revision: i64,
    pub version: u64,
    /// Other nodes' leases known, and routes made from them.
    pub leases: usize,
    pub routes: usize,
    /// Leases refused now (key → why): bad JSON, a conflict, a value tundra cannot route.
    pub refused: BTreeMap<String, String>,
    /// Leases of other backends, ignored (key → backend type).
    pub ignored: BTreeMap<String, String>,
    /// Refusals logged since start (a lease refused again after it changed counts again).
    pub refused_total: u64,
    /// Times the leases were listed again after a watch broke or fell behind compaction.
    pub relists: u64,
}

/// See [`LeaseSource::status_handle`].
#[derive(Clone)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    /// What the watcher knows now.
    pub fn get(&self) -> Status {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running lease source: the watcher and renewer threads. Dropping it (or [`stop`]) stops
/// them and keeps the lease in etcd, as flanneld does.
///
/// [`stop`]: LeaseSource::stop
pub struct LeaseSource {
    updates: Receiver<Update>,
    status: Arc<Mutex<Status>>,
    client: Arc<etcd::Client>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl LeaseSource {
    /// Connects to etcd, reads the network config, takes a subnet and lists the other nodes'
    /// leases; then starts following them and renewing ours.
    ///
    /// Returns the network config, our lease, and the source, whose [`updates`] already hold
    /// the first [`RouteSet`] (version 1, from the initial list): build the first table from it.
    ///
    /// While etcd is unreachable (or has no network config yet) it logs why and tries again
    /// with backoff, until `cfg.start_deadline`.
    ///
    /// # Errors
    /// [`Error::Deadline`] after the deadline; at once: bad settings (endpoint URLs, TLS
    /// files, a vxlan dual-stack network without `public_ipv6`), an unusable network config, an
    /// etcd refusal, no free subnet, too many lost races.
    ///
    /// [`updates`]: LeaseSource::updates
    pub fn start(cfg: &Config) -> Result<(NetworkConfig, Lease, LeaseSource), Error> {
        let started = Instant::now();
        let deadline = started + cfg.start_deadline;
        let client = Arc::new(etcd::Client::new(
            &cfg.endpoints,
            &cfg.tls,
            cfg.request_timeout,
        )?);
        let prefix = cfg.clean_prefix();
        let config_key = format!("{prefix}/config");
        let subnets = format!("{prefix}/subnets/");
        tracing::info!(endpoints = ?client.endpoints(), key = %config_key, "reading the network config from etcd");

        let network = retry(deadline, started, "reading the network config", || {
            let (kv, _) = client.get(&config_key)?;
            let kv = kv.ok_or_else(|| Error::NoConfig(config_key.clone()))?;
            NetworkConfig::parse(&kv.value).map_err(|error| Error::Config {
                key: config_key.clone(),
                error,
            })
        })?;
        tracing::info!(network = %network.network, backend = network.backend.name(),
            port = network.backend.port(), ipv6 = ?network.ipv6.map(|v| v.network), "network config");

        let vtep_mac = match network.backend {
            Backend::Udp { .. } => None,
            Backend::Vxlan { .. } => {
                if network.ipv6.is_some() && cfg.public_ipv6.is_none() {
                    return Err(Error::Unfit(
                        "a dual-stack vxlan network needs our public IPv6 address (flanneld \
                         nodes reach our IPv6 subnet there)"
                            .into(),
                    ));
                }
                Some(
                    cfg.vtep_mac
                        .unwrap_or_else(|| Mac::derived(cfg.public_ip.to_string().as_bytes())),
                )
            }
        };
        let public_ipv6 = cfg.public_ipv6.filter(|_| network.ipv6.is_some());
        let attrs = LeaseAttrs::ours(network.backend, cfg.public_ip, public_ipv6, vtep_mac);

        let previous = match &cfg.subnet_file {
            None => None,
            Some(path) => subnet_file::read_previous(path).map_err(|error| Error::SubnetFile {
                path: path.clone(),
                error,
            })?,
        };
        let ttl = cfg.lease_ttl.as_secs().max(1) as i64;
        let acquired = retry(deadline, started, "taking a subnet", || {
            acquire::acquire(&client, &subnets, &network, &attrs, previous, ttl)
        })?;
        tracing::info!(key = %acquired.key, subnet = %acquired.subnet, ipv6_subnet = ?acquired.ipv6_subnet,
            origin = ?acquired.origin, ttl_s = acquired.ttl, "our lease");
        let lease = Lease {
            subnet: acquired.subnet,
            ipv6_subnet: acquired.ipv6_subnet,
            key: acquired.key.clone(),
            attrs: attrs.clone(),
            origin: acquired.origin,
            backend: network.backend,
        };

        let (kvs, revision) = retry(deadline, started, "listing the leases", || {
            client.list(&subnets).map_err(Error::from)
        })?;
        let mut book = watch::Book::new(
            network.backend,
            network.ipv6.is_some(),
            subnets,
            lease.key.clone(),
            IpAddr::V4(cfg.public_ip),
            lease.local_subnets(),
        );
        book.reset(kvs);
        book.take_own_touched();

        let (updates_tx, updates) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (touched_tx, touched_rx) = crossbeam_channel::bounded(1);
        let status = Arc::new(Mutex::new(Status::default()));
        let mut watcher = watch::Watcher {
            client: client.clone(),
            book,
            next_rev: revision + 1,
            version: 0,
            lifetime: cfg.watch_lifetime,
            updates: updates_tx.clone(),
            stop: stop_rx.clone(),
            own_touched: touched_tx,
            status: status.clone(),
        };
        // The first set, even when empty: the caller builds its first table from it.
        watcher.publish(revision);
        if watcher.version == 0 {
            watcher.version = 1;
            let _ = updates_tx.send(Update::Routes(RouteSet {
                version: 1,
                revision,
                routes: Vec::new(),
            }));
        }
        tracing::info!(routes = status.lock().map(|s| s.routes).unwrap_or(0), revision,
            took = ?started.elapsed(), "etcd leases loaded");

        let renewer = renew::Renewer {
            client: client.clone(),
            key: acquired.key,
            value: attrs.to_json().into_bytes(),
            lease_id: acquired.lease_id,
            ttl,
            granted: acquired.ttl,
            margin: cfg.renew_margin,
            updates: updates_tx,
            stop: stop_rx,
            own_touched: touched_rx,
        };
        let threads = vec![
            thread::Builder::new()
                .name("lease-watch".into())
                .spawn(move || watch::run(watcher))
                .map_err(|e| Error::Unfit(format!("cannot start the lease watcher: {e}")))?,
            thread::Builder::new()
                .name("lease-renew".into())
                .spawn(move || renew::run(renewer))
                .map_err(|e| Error::Unfit(format!("cannot start the lease renewer: {e}")))?,
        ];
        Ok((
            network,
            lease,
            LeaseSource {
                updates,
                status,
                client,
                stop: Some(stop_tx),
                threads,
            },
        ))
    }

    /// The route sets (and a lost lease), in order. The first is there as soon as
    /// [`start`](LeaseSource::start) returns.
    pub fn updates(&self) -> &Receiver<Update> {
        &self.updates
    }

    /// What the watcher knows now.
    pub fn status(&self) -> Status {
        self.status_handle().get()
    }

    /// A handle on [`status`](LeaseSource::status) for another thread (a stats endpoint),
    /// while this source is owned elsewhere. After the source stops it tells the last status.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.status.clone())
    }

    /// Stops following and renewing; the lease stays in etcd (it expires after its TTL unless
    /// a restarted node takes it up again).
    pub fn stop(self) {}
}

impl Drop for LeaseSource {
    fn drop(&mut self) {
        drop(self.stop.take());
        self.client.shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writes the subnet file for flannel's CNI plugin, as flanneld does (see [`subnet_file`]):
/// `mtu` is what pods should use (the TUN's MTU), `ip_masq` whether this node masquerades.
///
/// # Errors
/// The file could not be written (its directory is created if missing).
pub fn write_subnet_file(
    path: &Path,
    network: &NetworkConfig,
    lease: &Lease,
    mtu: u32,
    ip_masq: bool,
) -> io::Result<()> {
    let text = subnet_file::contents(network, lease.subnet, lease.ipv6_subnet, mtu, ip_masq);
    subnet_file::write(path, &text)
}

/// Calls `f` until it succeeds, fails for good, or `deadline` passes; logs each transient
/// failure with the time left.
fn retry<T>(
    deadline: Instant,
    started: Instant,
    what: &'static str,
    mut f: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Deadline {
                        what,
                        waited: now - started,
                        last: e.to_string(),
                    });
                }
                let left = deadline - now;
                let pause = backoff.min(left);
                tracing::warn!(error = %e, retry_in = ?pause, gives_up_in = ?left, "etcd: {what}");
                thread::sleep(pause);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
