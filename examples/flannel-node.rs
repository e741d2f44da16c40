//! A flannel node embedded in another program: the sibling of `overlay-daemon` whose routes
//! come from flannel's etcd leases instead of a file.
//!
//! It takes a subnet from etcd (reusing this node's lease if it has one), starts a dataplane
//! with the network's wire format (udp or vxlan, as `<prefix>/config` says), writes the subnet
//! file for flannel's CNI plugin, and then follows every other node's lease: each change that
//! etcd delivers becomes one table version. SIGINT or SIGTERM stops it and keeps the lease (a
//! restart gets the same subnet); another node taking our subnet stops it with an error.
//!
//! ```text
//! $ sudo cargo run --example flannel-node -- --etcd http://192.0.2.100:2379 \
//!       --public-ip 192.0.2.1 --subnet-file /run/flannel/subnet.env
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use tundra::lease::{self, LeaseSource};
use tundra::Dataplane;

#[derive(Parser)]
#[command(about = "A flannel node on top of the tundra library and its etcd lease source")]
struct Args {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// The network's key prefix in etcd.
    #[arg(long, default_value = lease::DEFAULT_PREFIX)]
    prefix: String,
    /// This node's underlay address, published in its lease.
    #[arg(long)]
    public_ip: std::net::Ipv4Addr,
    /// Name of the TUN device to create.
    #[arg(long, default_value = "flannel0")]
    tun: String,
    /// Where flannel's CNI plugin reads the node's subnet.
    #[arg(long, default_value = lease::DEFAULT_SUBNET_FILE)]
    subnet_file: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut cfg = lease::Config::new(args.etcd, args.public_ip);
    cfg.prefix = args.prefix;
    cfg.subnet_file = Some(args.subnet_file.clone());
    let (network, our_lease, source) = LeaseSource::start(&cfg)?;
    tracing::info!(subnet = %our_lease.subnet, backend = network.backend.name(), "lease taken");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let mut dataplane = Dataplane::builder()
        .tun(&args.tun)
        .flannel(&network, &our_lease)
        .start()?;
    let mtu = dataplane.mtu().0;
    lease::write_subnet_file(&args.subnet_file, &network, &our_lease, mtu.into(), false)?;
    dataplane.follow_leases(source, &our_lease)?;

    while !stop.load(Ordering::Relaxed) {
        if let Some((key, why)) = dataplane.lease_lost() {
            dataplane.shutdown()?;
            return Err(format!("lease {key} lost: {why}").into());
        }
        thread::sleep(Duration::from_millis(200));
    }
    dataplane.shutdown()?;
    Ok(())
}
