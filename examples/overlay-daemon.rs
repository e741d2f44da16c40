//! A small flanneld-like overlay daemon that embeds tundra through its library API.
//!
//! It starts a dataplane for this node's subnet(s), then keeps the routes to the other nodes'
//! subnets equal to a subnets file, which something else (a cluster agent, a script, you)
//! rewrites as nodes join and leave. Each line of the file is `CIDR ADDR:PORT [MAC]`: the
//! subnet of a node, the underlay address of its tundra and, with `--encap vxlan` (only), the
//! MAC of its VTEP; `#` starts a comment, blank lines are fine.
//!
//! The file is checked every 500 ms (modification time and size). A changed file is read and
//! validated completely; if any line is bad, the error names `file:line` and the running
//! routes stay as they are. A valid file is applied as one table version
//! (`routes().replace_all(..).commit()`), and the daemon logs what was added, removed and
//! moved. SIGINT or SIGTERM shuts the dataplane down (the TUN and its routes go away).
//!
//! ```text
//! $ cat /run/overlay/subnets
//! # node 2 and node 3
//! 10.244.2.0/24  192.0.2.2:8285
//! 10.244.3.0/24  192.0.2.3:8285
//! $ sudo cargo run --example overlay-daemon -- --tun flannel0 --listen 0.0.0.0:8285 \
//!       --local-subnet 10.244.1.0/24 --subnets /run/overlay/subnets
//! ```
//!
//! With `--encap vxlan` the daemon is a VTEP that Linux VXLAN devices (flannel's vxlan backend)
//! reach: it logs its VTEP MAC at start, which the other nodes need.
//!
//! ```text
//! $ cat /run/overlay/subnets
//! 10.244.2.0/24  192.0.2.2:8472  0a:58:0a:f4:02:00
//! $ sudo cargo run --example overlay-daemon -- --encap vxlan --listen 0.0.0.0:8472 \
//!       --local-subnet 10.244.1.0/24 --subnets /run/overlay/subnets
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use clap::Parser;
use ipnet::IpNet;
use signal_hook::consts::{SIGINT, SIGTERM};
use tundra::config::Encap;
use tundra::datapath::route::check_route;
use tundra::datapath::{Mac, Route};
use tundra::Dataplane;

/// How often the subnets file is checked for a change.
const POLL: Duration = Duration::from_millis(500);

#[derive(Parser)]
#[command(about = "A flanneld-like overlay daemon on top of the tundra library")]
struct Args {
    /// Name of the TUN device to create.
    #[arg(long, default_value = "flannel0")]
    tun: String,
    /// Underlay address and port to receive encapsulated packets on.
    #[arg(long, default_value = "0.0.0.0:8285")]
    listen: SocketAddr,
    /// This node's overlay subnet (repeat for IPv4 and IPv6).
    #[arg(long = "local-subnet", required = true)]
    local_subnets: Vec<IpNet>,
    /// File of `CIDR ADDR:PORT [MAC]` lines: the other nodes' subnets.
    #[arg(long)]
    subnets: PathBuf,
    /// Wire format: udp, or vxlan (then every line of the subnets file has the node's MAC).
    #[arg(long, default_value = "udp")]
    encap: Encap,
    /// VXLAN network identifier (vxlan).
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// This node's VTEP MAC (vxlan; default: derived from the local subnets).
    #[arg(long)]
    vtep_mac: Option<Mac>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }

    let mut seen = stamp(&args.subnets);
    let mut routes = read_subnets(&args.subnets, &args.local_subnets, args.encap)?;
    let mut builder = Dataplane::builder()
        .tun(&args.tun)
        .listen(args.listen)
        .encap(args.encap);
    if args.encap == Encap::Vxlan {
        builder = builder.vni(args.vni);
        if let Some(mac) = args.vtep_mac {
            builder = builder.vtep_mac(mac);
        }
    }
    for &subnet in &args.local_subnets {
        builder = builder.local_subnet(subnet);
    }
    for r in &routes {
        builder = match r.mac {
            Some(mac) => builder.peer_with_mac(r.prefix, r.peer, mac),
            None => builder.peer(r.prefix, r.peer),
        };
    }
    let dataplane = builder.start()?;
    tracing::info!(
        routes = routes.len(),
        file = %args.subnets.display(),
        encap = ?dataplane.encap(),
        "overlay daemon running"
    );

    while !stop.load(Ordering::Relaxed) && dataplane.failed().is_none() {
        thread::sleep(POLL);
        let now = stamp(&args.subnets);
        if now == seen {
            continue;
        }
        seen = now;
        let next = match read_subnets(&args.subnets, &args.local_subnets, args.encap) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("{e}; keeping the running routes");
                continue;
            }
        };
        match dataplane
            .routes()
            .replace_all(next.iter().copied())
            .commit()
        {
            Ok(applied) => {
                log_diff(&routes, &next);
                tracing::info!(
                    version = applied.version,
                    added = applied.added,
                    removed = applied.removed,
                    changed = applied.changed,
                    routes = applied.routes,
                    "subnets applied"
                );
                routes = next;
            }
            Err(e) => tracing::error!("subnets refused ({e}); keeping the running routes"),
        }
    }
    if let Some(thread) = dataplane.failed() {
        tracing::error!("the {thread} thread failed; shutting down");
    }
    dataplane.shutdown()?;
    tracing::info!("stopped");
    Ok(())
}

/// What tells a changed file apart: modification time and size (`None`: cannot stat it).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads and validates the whole file; the error names `file:line` and the problem.
fn read_subnets(path: &Path, local: &[IpNet], encap: Encap) -> Result<Vec<Route>, String> {
    let name = path.display();
    let text = fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |problem: String| format!("{name}:{}: {problem}", i + 1);
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (cidr, addr, mac) = match (encap, &fields[..]) {
            (Encap::Udp, &[cidr, addr]) => (cidr, addr, None),
            (Encap::Vxlan, &[cidr, addr, mac]) => (cidr, addr, Some(mac)),
            (Encap::Udp, _) => return Err(at(format!("expected `CIDR ADDR:PORT`, got `{line}`"))),
            (Encap::Vxlan, _) => {
                return Err(at(format!("expected `CIDR ADDR:PORT MAC`, got `{line}`")))
            }
        };
        let prefix: IpNet = cidr
            .parse()
            .map_err(|e| at(format!("`{cidr}` is not a CIDR: {e}")))?;
        let peer: SocketAddr = addr
            .parse()
            .map_err(|e| at(format!("`{addr}` is not an ADDR:PORT: {e}")))?;
        let mac = match mac {
            Some(mac) => Some(
                mac.parse::<Mac>()
                    .map_err(|e| at(format!("`{mac}` is not a MAC: {e}")))?,
            ),
            None => None,
        };
        let route = Route { prefix, peer, mac };
        check_route(local, &route).map_err(|e| at(e.to_string()))?;
        if !seen.insert(prefix) {
            return Err(at(format!("{prefix} is listed twice")));
        }
        routes.push(route);
    }
    Ok(routes)
}

/// Logs each prefix that was added, removed or moved to another node (or another MAC).
fn log_diff(old: &[Route], new: &[Route]) {
    let old: HashMap<IpNet, &Route> = old.iter().map(|r| (r.prefix, r)).collect();
    let new: HashMap<IpNet, &Route> = new.iter().map(|r| (r.prefix, r)).collect();
    for (prefix, r) in &new {
        let (peer, mac) = (r.peer, r.mac.map(tracing::field::display));
        match old.get(prefix) {
            None => tracing::info!(%prefix, %peer, mac, "added"),
            Some(was) if (was.peer, was.mac) != (r.peer, r.mac) => {
                tracing::info!(%prefix, was = %was.peer, %peer, mac, "moved")
            }
            Some(_) => {}
        }
    }
    for (prefix, r) in old.iter().filter(|(p, _)| !new.contains_key(p)) {
        tracing::info!(%prefix, peer = %r.peer, "removed");
    }
}
