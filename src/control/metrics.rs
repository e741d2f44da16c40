//! The Prometheus metrics endpoint: `GET /metrics` in the text exposition format (0.0.4),
//! served by `tiny_http` on one thread. Any other path is 404, any other method 405.
//!
//! [`render`] is pure (stats in, text out); [`MetricsServer`] is the HTTP shell around it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use datapath::{DropReason, PeerTotals};

use super::{Controller, Stats};

/// Why the metrics endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {message}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub message: String,
}

/// A bound metrics listener, not served yet.
pub struct MetricsListener {
    server: tiny_http::Server,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr`. Warns when it is not a loopback address (the counters are then exposed
    /// to whoever reaches it).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError {
            addr,
            message: e.to_string(),
        })?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the metrics endpoint {addr} is exposed beyond this host (give a loopback address, or a port alone, to keep it local)"
            );
        }
        Ok(MetricsListener { server, addr })
    }

    /// Serves scrapes from `controller`'s stats on a thread.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn serve(self, controller: Controller) -> Result<MetricsServer, MetricsError> {
        let server = Arc::new(self.server);
        let serving = server.clone();
        let addr = self.addr;
        let thread = std::thread::Builder::new()
            .name("tundra-metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    respond(&controller, request);
                }
            })
            .map_err(|e| MetricsError {
                addr,
                message: e.to_string(),
            })?;
        tracing::info!("metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            server,
            thread: Some(thread),
        })
    }
}

/// A running metrics endpoint; stopped on drop.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn respond(controller: &Controller, request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let method = request.method().clone();
    let (status, body) = match (path, &method) {
        ("/metrics", tiny_http::Method::Get | tiny_http::Method::Head) => (
            200,
            render(&controller.stats(), controller.failed_threads().len()),
        ),
        ("/metrics", _) => (405, "only GET and HEAD\n".to_owned()),
        _ => (404, "not found; metrics are at /metrics\n".to_owned()),
    };
    if status != 200 {
        tracing::debug!("metrics: {method} {path}: {status}");
    }
    let content_type = if status == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", content_type)
                .expect("a constant, valid header"),
        );
    if let Err(e) = request.respond(response) {
        tracing::debug!("metrics: cannot answer: {e}");
    }
}

/// The stats in the Prometheus text exposition format. `failed_threads` is the number of
/// datapath threads that have died (`tundra_degraded` is 1 then).
pub fn render(stats: &Stats, failed_threads: usize) -> String {
    let mut out = String::with_capacity(4096);
    let c = &stats.totals;
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    metric("tundra_up", "gauge", "1 while tundra runs.", &one(1));
    metric(
        "tundra_degraded",
        "gauge",
        "1 if a datapath thread has died.",
        &one(u64::from(failed_threads > 0)),
    );
    metric(
        "tundra_tx_packets_total",
        "counter",
        "Packets sent to peers.",
        &one(c.tx_packets),
    );
    metric(
        "tundra_tx_bytes_total",
        "counter",
        "Bytes of inner packets sent to peers.",
        &one(c.tx_bytes),
    );
    metric(
        "tundra_rx_packets_total",
        "counter",
        "Packets received from peers and delivered.",
        &one(c.rx_packets),
    );
    metric(
        "tundra_rx_bytes_total",
        "counter",
        "Bytes of inner packets received from peers and delivered.",
        &one(c.rx_bytes),
    );
    metric(
        "tundra_icmp_sent_total",
        "counter",
        "ICMP errors generated (unreachable, time exceeded, too big).",
        &one(c.icmp_sent),
    );
    metric(
        "tundra_gso_fallbacks_total",
        "counter",
        "Times the kernel refused a UDP GSO send (segments go out one datagram each since).",
        &one(c.gso_fallbacks),
    );
    let drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|r| (labels("reason", r.as_str()), c.drops[*r as usize]))
        .collect();
    metric(
        "tundra_drops_total",
        "counter",
        "Packets dropped, by reason.",
        &drops,
    );
    let per_peer = |f: fn(&PeerTotals) -> u64| -> Vec<(String, u64)> {
        stats
            .peers
            .iter()
            .map(|p| (labels("peer", &p.addr.to_string()), f(&p.totals)))
            .collect()
    };
    metric(
        "tundra_peer_tx_packets_total",
        "counter",
        "Packets sent to each peer.",
        &per_peer(|t| t.tx_packets),
    );
    metric(
        "tundra_peer_tx_bytes_total",
        "counter",
        "Bytes of inner packets sent to each peer.",
        &per_peer(|t| t.tx_bytes),
    );
    metric(
        "tundra_peer_rx_packets_total",
        "counter",
        "Packets received from each peer.",
        &per_peer(|t| t.rx_packets),
    );
    metric(
        "tundra_peer_rx_bytes_total",
        "counter",
        "Bytes of inner packets received from each peer.",
        &per_peer(|t| t.rx_bytes),
    );
    metric(
        "tundra_routes",
        "gauge",
        "Routes in the table.",
        &one(stats.routes as u64),
    );
    metric(
        "tundra_table_version",
        "gauge",
        "Version of the route table (grows with each change).",
        &one(stats.version),
    );
    metric(
        "tundra_uptime_seconds",
        "gauge",
        "Seconds since the dataplane started.",
        &one(stats.uptime.as_secs()),
    );
    out
}

/// `{name="value"}` with the value escaped as the format requires.
fn labels(name: &str, value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    format!("{{{name}=\"{escaped}\"}}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datapath::LocalCounters;

    use super::*;
    use crate::config::IoMode;
    use crate::control::PeerInfo;

    #[test]
    fn exposition() {
        let mut totals = LocalCounters {
            tx_packets: 3,
            tx_bytes: 300,
            rx_packets: 2,
            icmp_sent: 1,
            ..LocalCounters::default()
        };
        totals.drops[DropReason::NoRoute as usize] = 5;
        let stats = Stats {
            totals,
            peers: vec![PeerInfo {
                addr: "[fd18::2]:8285".parse().unwrap(),
                mac: None,
                prefixes: vec!["fd19:0:0:2::/64".parse().unwrap()],
                totals: PeerTotals {
                    tx_packets: 7,
                    tx_bytes: 700,
                    rx_packets: 0,
                    rx_bytes: 0,
                },
            }],
            routes: 4,
            version: 9,
            uptime: Duration::from_secs(12),
            io: IoMode::Poll,
            offloads: Default::default(),
            encap: Default::default(),
            port: 8285,
            lease: None,
        };
        let text = render(&stats, 0);
        for line in [
            "tundra_up 1",
            "tundra_degraded 0",
            "# TYPE tundra_tx_packets_total counter",
            "tundra_tx_packets_total 3",
            "tundra_tx_bytes_total 300",
            "tundra_rx_packets_total 2",
            "tundra_rx_bytes_total 0",
            "tundra_icmp_sent_total 1",
            "tundra_drops_total{reason=\"no_route\"} 5",
            "tundra_drops_total{reason=\"too_big\"} 0",
            "tundra_peer_tx_packets_total{peer=\"[fd18::2]:8285\"} 7",
            "tundra_peer_tx_bytes_total{peer=\"[fd18::2]:8285\"} 700",
            "tundra_routes 4",
            "tundra_table_version 9",
            "tundra_uptime_seconds 12",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        assert!(render(&stats, 1).lines().any(|l| l == "tundra_degraded 1"));
        // Every sample line: name, optional labels, a value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
    }

    #[test]
    fn label_escaping() {
        assert_eq!(labels("peer", "a\"b\\c\nd"), r#"{peer="a\"b\\c\nd"}"#);
    }
}
