//! A client of the control socket, for the CLI's `tundra routes ...` and `tundra stats`.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::protocol::{Reply, Request};

/// How long to wait for a reply (a route change waits for the kernel's routes).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the path.
    #[error("cannot reach tundra on control socket {}: {source} (is `tundra run` running with this --control path?)", path.display())]
    Unreachable { path: PathBuf, source: io::Error },
    /// The connection failed, or the reply was not understood.
    #[error("control socket {}: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
    /// tundra refused the request; the message is its error line.
    #[error("{0}")]
    Refused(String),
}

/// A connection to a running tundra's control socket.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the control socket at `path`.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] if nothing answers there.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(unreachable)?;
        let writer = stream.try_clone().map_err(unreachable)?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `request` and returns the reply's `result`.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with tundra's error line, or a connection or protocol error.
    pub fn request(&mut self, request: &Request) -> Result<Value, ClientError> {
        self.raw(&request.to_json().to_string())
    }

    /// Sends one request line as given (no newline) and returns the reply's `result`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn raw(&mut self, line: &str) -> Result<Value, ClientError> {
        let protocol = |message: String| ClientError::Protocol {
            path: self.path.clone(),
            message,
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|e| protocol(format!("cannot send the request: {e}")))?;
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(0) => return Err(protocol("tundra closed the connection".into())),
            Ok(_) => {}
            Err(e) => return Err(protocol(format!("no reply: {e}"))),
        }
        match Reply::decode(reply.trim_end()).map_err(protocol)? {
            Reply::Ok(result) => Ok(result),
            Reply::Error(e) => Err(ClientError::Refused(e)),
        }
    }
}

/// A `routes.list` result as a table: a header, then `PREFIX  PEER` lines sorted by prefix, with
/// a `MAC` column when a route has one (vxlan).
pub fn routes_table(result: &Value) -> String {
    let mut rows: Vec<(ipnet::IpNet, String, String, Option<String>)> = result
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let prefix = r["prefix"].as_str().unwrap_or("?").to_owned();
            let peer = r["peer"].as_str().unwrap_or("?").to_owned();
            let mac = r["mac"].as_str().map(str::to_owned);
            let key = prefix.parse().unwrap_or_default();
            (key, prefix, peer, mac)
        })
        .collect();
    rows.sort();
    let prefixes = rows.iter().map(|r| r.1.len()).chain([6]).max().unwrap_or(6);
    if rows.iter().all(|r| r.3.is_none()) {
        let mut out = format!("{:<prefixes$}  PEER\n", "PREFIX");
        for (_, prefix, peer, _) in rows {
            let _ = writeln!(out, "{prefix:<prefixes$}  {peer}");
        }
        return out;
    }
    let peers = rows.iter().map(|r| r.2.len()).chain([4]).max().unwrap_or(4);
    let mut out = format!("{:<prefixes$}  {:<peers$}  MAC\n", "PREFIX", "PEER");
    for (_, prefix, peer, mac) in rows {
        let mac = mac.as_deref().unwrap_or("-");
        let _ = writeln!(out, "{prefix:<prefixes$}  {peer:<peers$}  {mac}");
    }
    out
}

/// A stats or health `encap` object in words: `udp`, or
/// `vxlan, vni 1, vtep mac 0a:58:c6:13:01:00, port 8472`.
fn encap_summary(encap: &Value) -> String {
    let format = encap["format"].as_str().unwrap_or("?");
    let mut out = format.to_owned();
    if let Some(vni) = encap["vni"].as_u64() {
        let _ = write!(out, ", vni {vni}");
    }
    if let Some(mac) = encap["vtep_mac"].as_str() {
        let _ = write!(out, ", vtep mac {mac}");
    }
    if let Some(port) = encap["port"].as_u64() {
        let _ = write!(out, ", port {port}");
    }
    out
}

/// A `stats` result for people: totals, drops by reason (those not zero), one line per peer.
pub fn stats_summary(stats: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "up {:.0}s, io {}, {} routes (table version {})",
        stats["uptime_secs"].as_f64().unwrap_or(0.0),
        stats["io"].as_str().unwrap_or("?"),
        n(&stats["routes"]),
        n(&stats["version"]),
    );
    if stats["encap"].is_object() {
        let _ = writeln!(out, "encap {}", encap_summary(&stats["encap"]));
    }
    if let Some(lease) = stats["lease"].as_object() {
        let _ = writeln!(
            out,
            "lease {} ({}): route set {} at etcd revision {}, {} leases, {} routes, {} refused, {} ignored, {} relists",
            lease.get("key").and_then(Value::as_str).unwrap_or("?"),
            lease
                .get("subnets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            lease.get("version").map_or(0, n),
            lease.get("revision").and_then(Value::as_i64).unwrap_or(0),
            lease.get("leases").map_or(0, n),
            lease.get("routes").map_or(0, n),
            lease.get("refused").map_or(0, n),
            lease.get("ignored").map_or(0, n),
            lease.get("relists").map_or(0, n),
        );
        if let Some(lost) = lease.get("lost").and_then(Value::as_str) {
            let _ = writeln!(out, "lease LOST: {lost}");
        }
    }
    let _ = writeln!(
        out,
        "tx {} packets, {} bytes",
        n(&stats["tx_packets"]),
        n(&stats["tx_bytes"])
    );
    let _ = writeln!(
        out,
        "rx {} packets, {} bytes",
        n(&stats["rx_packets"]),
        n(&stats["rx_bytes"])
    );
    let _ = writeln!(out, "icmp sent {}", n(&stats["icmp_sent"]));
    let drops: Vec<String> = stats["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| n(v) > 0)
                .map(|(k, v)| format!("{k} {}", n(v)))
                .collect()
        })
        .unwrap_or_default();
    if drops.is_empty() {
        out.push_str("drops: none\n");
    } else {
        let _ = writeln!(out, "drops: {}", drops.join(", "));
    }
    for peer in stats["peers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let prefixes: Vec<&str> = peer["prefixes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mac = match peer["mac"].as_str() {
            Some(mac) => format!(" (mac {mac})"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "peer {}{mac}: tx {} packets {} bytes, rx {} packets {} bytes, prefixes {}",
            peer["addr"].as_str().unwrap_or("?"),
            n(&peer["tx_packets"]),
            n(&peer["tx_bytes"]),
            n(&peer["rx_packets"]),
            n(&peer["rx_bytes"]),
            if prefixes.is_empty() {
                "none".to_owned()
            } else {
                prefixes.join(", ")
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table() {
        let routes = json!([
            {"prefix": "198.19.10.0/24", "peer": "198.18.0.3:8285"},
            {"prefix": "198.19.2.0/24", "peer": "198.18.0.2:8285"},
        ]);
        assert_eq!(
            routes_table(&routes),
            "PREFIX          PEER\n198.19.2.0/24   198.18.0.2:8285\n198.19.10.0/24  198.18.0.3:8285\n"
        );
        assert_eq!(routes_table(&json!([])), "PREFIX  PEER\n");
        let routes = json!([
            {"prefix": "198.19.2.0/24", "peer": "198.18.0.2:8472", "mac": "0a:58:c6:13:02:00"},
            {"prefix": "fd19:0:0:3::/64", "peer": "[fd18::3]:8472", "mac": "0a:58:c6:13:03:00"},
        ]);
        assert_eq!(
            routes_table(&routes),
            "PREFIX           PEER             MAC\n\
             198.19.2.0/24    198.18.0.2:8472  0a:58:c6:13:02:00\n\
             fd19:0:0:3::/64  [fd18::3]:8472   0a:58:c6:13:03:00\n"
        );
    }

    #[test]
    fn summary() {
        let stats = json!({
            "tx_packets": 3, "tx_bytes": 300, "rx_packets": 2, "rx_bytes": 200, "icmp_sent": 1,
            "drops": {"no_route": 4, "too_big": 0}, "routes": 2, "version": 5,
            "uptime_secs": 7.2, "io": "poll", "encap": {"format": "udp"},
            "peers": [{"addr": "198.18.0.2:8285", "prefixes": ["198.19.2.0/24"],
                       "tx_packets": 3, "tx_bytes": 300, "rx_packets": 2, "rx_bytes": 200}],
        });
        let text = stats_summary(&stats);
        assert_eq!(
            text,
            "up 7s, io poll, 2 routes (table version 5)\n\
             encap udp\n\
             tx 3 packets, 300 bytes\n\
             rx 2 packets, 200 bytes\n\
             icmp sent 1\n\
             drops: no_route 4\n\
             peer 198.18.0.2:8285: tx 3 packets 300 bytes, rx 2 packets 200 bytes, prefixes 198.19.2.0/24\n"
        );
        let stats = json!({
            "encap": {"format": "vxlan", "vni": 1, "vtep_mac": "0a:58:c6:13:01:00", "port": 8472},
            "peers": [{"addr": "198.18.0.2:8472", "mac": "0a:58:c6:13:02:00", "prefixes": []}],
        });
        let text = stats_summary(&stats);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "encap vxlan, vni 1, vtep mac 0a:58:c6:13:01:00, port 8472"
        );
        assert_eq!(
            lines.last().copied(),
            Some("peer 198.18.0.2:8472 (mac 0a:58:c6:13:02:00): tx 0 packets 0 bytes, rx 0 packets 0 bytes, prefixes none")
        );
        // A flannel node: its lease.
        let stats = json!({
            "encap": {"format": "udp"},
            "lease": {"key": "/coreos.com/network/subnets/198.19.1.0-24",
                      "subnets": ["198.19.1.0/24"], "version": 3, "revision": 17, "leases": 3,
                      "routes": 2, "refused": 1, "refused_total": 1, "ignored": 0,
                      "relists": 1, "apply_errors": 0},
        });
        let text = stats_summary(&stats);
        assert_eq!(
            text.lines().nth(2),
            Some("lease /coreos.com/network/subnets/198.19.1.0-24 (198.19.1.0/24): route set 3 at etcd revision 17, 3 leases, 2 routes, 1 refused, 0 ignored, 1 relists")
        );
        assert!(!text.contains("LOST"));
    }
}
