//! flannel's formats in etcd, exactly as flanneld (0.18 and later) writes and reads them:
//!
//! - the network configuration at `<prefix>/config` ([`NetworkConfig::parse`]), with flannel's
//!   defaults and coherence checks (`pkg/subnet/config.go`);
//! - the lease keys `<prefix>/subnets/10.244.1.0-24`, `...-24&fd00:0:0:1::-64` in dual stack
//!   ([`subnet_key`], [`parse_subnet_key`]; `pkg/subnet/subnet.go`);
//! - the lease values ([`LeaseAttrs`]; `pkg/lease/lease.go` and the backends' `BackendData`).
//!
//! Reading follows Go's `encoding/json`: object keys match field names case-insensitively and
//! unknown fields are ignored, so every lease and configuration flanneld reads, we read. A field
//! of the wrong type, or a value tundra cannot act on (another backend's options that change
//! the wire, an IPv6-only network), is refused with a [`FormatError`] naming it.
//!
//! Writing is byte for byte what Go's `json.Marshal` makes of flanneld's structs (field order,
//! `null` for an absent `PublicIPv6`, `BackendType` left out for udp), so that flanneld and
//! tundra nodes read each other's leases and a diff of the two shows nothing.

use std::net::{Ipv4Addr, Ipv6Addr};

use datapath::Mac;
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{Map, Value};

/// flannel's udp backend port.
pub const UDP_PORT: u16 = 8285;
/// flannel's vxlan port (Linux's VXLAN port; flannel's `Port: 0` means it).
pub const VXLAN_PORT: u16 = datapath::encap::VXLAN_PORT;
/// flannel's vxlan VNI.
pub const VXLAN_VNI: u32 = 1;

/// Why a configuration, key or lease value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not valid JSON at all.
    #[error("not JSON: {0}")]
    Json(String),
    /// Valid JSON, but not an object where one is needed.
    #[error("{0} is not a JSON object")]
    NotObject(&'static str),
    /// A field is missing, has the wrong type, or an unusable value.
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    /// Understood, but not something tundra can do (it would misroute or drop traffic).
    #[error("not supported by tundra: {0}")]
    Unsupported(String),
    /// The configuration's values do not fit together (flannel's own checks).
    #[error("{0}")]
    Inconsistent(String),
    /// A key under `<prefix>/subnets/` that is not a subnet key.
    #[error("not a subnet key (want 10.244.1.0-24 or 10.244.1.0-24&fd00:0:0:1::-64): {0:?}")]
    BadKey(String),
}

fn field(field: &'static str, problem: impl Into<String>) -> FormatError {
    FormatError::Field {
        field,
        problem: problem.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive JSON objects, as Go's encoding/json reads them.

/// A JSON object whose keys are matched case-insensitively. When two keys fold to the same
/// name, the later one wins, as in Go. `null` reads as absent (Go leaves the field as it was).
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(text: &[u8], what: &'static str) -> Result<Fields, FormatError> {
        let value: Value =
            serde_json::from_slice(text).map_err(|e| FormatError::Json(e.to_string()))?;
        Fields::of(value, what)
    }

    fn of(value: Value, what: &'static str) -> Result<Fields, FormatError> {
        match value {
            Value::Object(map) => Ok(Fields(
                map.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.to_lowercase(), v))
                    .collect(),
            )),
            _ => Err(FormatError::NotObject(what)),
        }
    }

    fn take(&mut self, name: &'static str) -> Option<Value> {
        self.0.remove(&name.to_lowercase())
    }

    fn bool(&mut self, name: &'static str) -> Result<Option<bool>, FormatError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(field(name, format!("want true or false, got {other}"))),
        }
    }

    fn str(&mut self, name: &'static str) -> Result<Option<String>, FormatError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(field(name, format!("want a string, got {other}"))),
        }
    }

    fn uint(&mut self, name: &'static str, max: u64) -> Result<Option<u64>, FormatError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(field(
                    name,
                    format!("want a whole number 0..={max}, got {n}"),
                )),
            },
            Some(other) => Err(field(name, format!("want a number, got {other}"))),
        }
    }

    fn parsed<T: std::str::FromStr>(
        &mut self,
        name: &'static str,
        kind: &str,
    ) -> Result<Option<T>, FormatError> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| field(name, format!("not {kind}: {s:?}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The network configuration.

/// The wire format of the network, from `Backend` in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// flannel's udp backend: `{"Type": "udp", "Port": 8285}`.
    Udp { port: u16 },
    /// flannel's vxlan backend: `{"Type": "vxlan", "VNI": 1, "Port": 8472}`.
    Vxlan { vni: u32, port: u16 },
}

impl Backend {
    /// The UDP port every node of the network listens on.
    pub fn port(&self) -> u16 {
        match *self {
            Backend::Udp { port } | Backend::Vxlan { port, .. } => port,
        }
    }

    /// flannel's name of the backend, as in `Backend.Type`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Udp { .. } => "udp",
            Backend::Vxlan { .. } => "vxlan",
        }
    }
}

/// The IPv6 half of a dual-stack network (`EnableIPv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Network {
    pub network: Ipv6Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv6Addr,
    pub subnet_max: Ipv6Addr,
}

/// The network configuration at `<prefix>/config`, defaults filled in and checked as flanneld
/// does (`ParseConfig` then `CheckNetworkConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `Network`: the whole IPv4 overlay, e.g. 10.244.0.0/16.
    pub network: Ipv4Net,
    /// `SubnetLen`: each node's share (default 24, or the network's length + 2 when small).
    pub subnet_len: u8,
    /// `SubnetMin`, `SubnetMax`: the first and last subnet handed out (default: every subnet
    /// of the network but the first, whose first address is the network's).
    pub subnet_min: Ipv4Addr,
    pub subnet_max: Ipv4Addr,
    /// `EnableIPv6` with its `IPv6Network`, `IPv6SubnetLen`, `IPv6SubnetMin`, `IPv6SubnetMax`.
    pub ipv6: Option<Ipv6Network>,
    pub backend: Backend,
}

impl NetworkConfig {
    /// Parses and checks the JSON stored at `<prefix>/config`.
    ///
    /// # Errors
    /// Invalid JSON, a field of the wrong type, a value flannel itself refuses (a network too
    /// small for four subnets, a `SubnetMin` outside the network or off a subnet boundary, ...),
    /// or a configuration tundra cannot serve: `EnableIPv4: false`, a backend other than udp
    /// and vxlan, vxlan's `GBP` or `DirectRouting`.
    pub fn parse(text: &[u8]) -> Result<NetworkConfig, FormatError> {
        let mut f = Fields::parse(text, "the network config")?;
        if !f.bool("EnableIPv4")?.unwrap_or(true) {
            return Err(FormatError::Unsupported(
                "EnableIPv4 false (an IPv6-only network)".into(),
            ));
        }
        let enable_ipv6 = f.bool("EnableIPv6")?.unwrap_or(false);
        let backend = parse_backend(f.take("Backend"))?;

        let network: Ipv4Net = f.parsed("Network", "an IPv4 CIDR")?.ok_or_else(|| {
            FormatError::Inconsistent(
                "please define a correct Network parameter in the flannel config".into(),
            )
        })?;
        let network = network.trunc();
        let subnet_len = f.uint("SubnetLen", 32)?.unwrap_or(0) as u8;
        let subnet_min = f.parsed("SubnetMin", "an IPv4 address")?;
        let subnet_max = f.parsed("SubnetMax", "an IPv4 address")?;
        let (subnet_len, subnet_min, subnet_max) =
            check_v4(network, subnet_len, subnet_min, subnet_max)?;

        let ipv6 = if enable_ipv6 {
            let network: Ipv6Net = f.parsed("IPv6Network", "an IPv6 CIDR")?.ok_or_else(|| {
                FormatError::Inconsistent(
                    "please define a correct IPv6Network parameter in the flannel config".into(),
                )
            })?;
            let len = f.uint("IPv6SubnetLen", 128)?.unwrap_or(0) as u8;
            let min = f.parsed("IPv6SubnetMin", "an IPv6 address")?;
            let max = f.parsed("IPv6SubnetMax", "an IPv6 address")?;
            Some(check_v6(network.trunc(), len, min, max)?)
        } else {
            None
        };

        Ok(NetworkConfig {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            ipv6,
            backend,
        })
    }

    /// flannel's `isSubnetConfigCompat` and `isIPv6SubnetConfigCompat`: may a node hold a lease
    /// on these subnets under this configuration?
    pub fn fits(&self, v4: Ipv4Net, v6: Option<Ipv6Net>) -> bool {
        let v4_ok = v4.prefix_len() == self.subnet_len
            && (self.subnet_min..=self.subnet_max).contains(&v4.network());
        let v6_ok = match (&self.ipv6, v6) {
            (None, None) => true,
            (Some(n), Some(v6)) => {
                v6.prefix_len() == n.subnet_len
                    && (n.subnet_min..=n.subnet_max).contains(&v6.network())
            }
            _ => false,
        };
        v4_ok && v6_ok
    }
}

fn parse_backend(value: Option<Value>) -> Result<Backend, FormatError> {
    let Some(value) = value else {
        // flannel: no Backend at all is the udp backend.
        return Ok(Backend::Udp { port: UDP_PORT });
    };
    let mut b = Fields::of(value, "Backend")?;
    let kind = b
        .str("Type")?
        .ok_or_else(|| field("Backend.Type", "missing (udp or vxlan)"))?;
    match kind.as_str() {
        "udp" => {
            let port = b.uint("Port", u16::MAX.into())?.unwrap_or(0) as u16;
            Ok(Backend::Udp {
                port: if port == 0 { UDP_PORT } else { port },
            })
        }
        "vxlan" => {
            let vni = b
                .uint("VNI", datapath::encap::MAX_VNI.into())?
                .map_or(VXLAN_VNI, |v| v as u32);
            let port = b.uint("Port", u16::MAX.into())?.unwrap_or(0) as u16;
            if b.bool("GBP")?.unwrap_or(false) {
                return Err(FormatError::Unsupported(
                    "vxlan GBP (group policy bits in the VXLAN header)".into(),
                ));
            }
            if b.bool("DirectRouting")?.unwrap_or(false) {
                return Err(FormatError::Unsupported(
                    "vxlan DirectRouting (unencapsulated routes between nodes on one subnet)"
                        .into(),
                ));
            }
            Ok(Backend::Vxlan {
                vni,
                port: if port == 0 { VXLAN_PORT } else { port },
            })
        }
        other => Err(FormatError::Unsupported(format!(
            "backend type {other:?} (tundra speaks udp and vxlan)"
        ))),
    }
}

/// `CheckNetworkConfig`, the IPv4 half.
fn check_v4(
    network: Ipv4Net,
    len: u8,
    min: Option<Ipv4Addr>,
    max: Option<Ipv4Addr>,
) -> Result<(u8, Ipv4Addr, Ipv4Addr), FormatError> {
    let bad = |s: &str| Err(FormatError::Inconsistent(s.into()));
    let plen = network.prefix_len();
    let len = if len > 0 {
        if len > 30 {
            return bad("SubnetLen must be less than /31");
        }
        if len < plen + 2 {
            return bad("network must be able to accommodate at least four subnets");
        }
        len
    } else if plen > 28 {
        return bad("network is too small. Minimum useful network prefix is /28");
    } else if plen <= 22 {
        24
    } else {
        plen + 2
    };
    let size = 1u64 << (32 - len);
    let first = u64::from(u32::from(network.network()));
    let end = first + (1u64 << (32 - plen));
    let as_addr = |v: u64| Ipv4Addr::from(v as u32);
    let min = match min.filter(|m| !m.is_unspecified()) {
        None => as_addr(first + size),
        Some(m) if network.contains(&m) => m,
        Some(_) => return bad("SubnetMin is not in the range of the Network"),
    };
    let max = match max.filter(|m| !m.is_unspecified()) {
        None => as_addr(end - size),
        Some(m) if network.contains(&m) => m,
        Some(_) => return bad("SubnetMax is not in the range of the Network"),
    };
    // flannel takes SubnetMin above SubnetMax and then finds no subnet to lease; say so now.
    if min > max {
        return Err(FormatError::Inconsistent(format!(
            "SubnetMin {min} is above SubnetMax {max}"
        )));
    }
    let mask = u32::MAX << (32 - len);
    if u32::from(min) & mask != u32::from(min) {
        return Err(FormatError::Inconsistent(format!(
            "SubnetMin is not on a SubnetLen boundary: {min}"
        )));
    }
    if u32::from(max) & mask != u32::from(max) {
        return Err(FormatError::Inconsistent(format!(
            "SubnetMax is not on a SubnetLen boundary: {max}"
        )));
    }
    Ok((len, min, max))
}

/// `CheckNetworkConfig`, the IPv6 half.
fn check_v6(
    network: Ipv6Net,
    len: u8,
    min: Option<Ipv6Addr>,
    max: Option<Ipv6Addr>,
) -> Result<Ipv6Network, FormatError> {
    let bad = |s: &str| Err(FormatError::Inconsistent(s.into()));
    let plen = network.prefix_len();
    if plen == 0 {
        return bad("IPv6Network ::/0 is not a network of nodes");
    }
    let len = if len > 0 {
        if len > 126 {
            return bad("SubnetLen must be less than /127");
        }
        if len < plen + 2 {
            return bad("network must be able to accommodate at least four subnets");
        }
        len
    } else if plen > 124 {
        return bad("IPv6Network is too small. Minimum useful network prefix is /124");
    } else if plen <= 62 {
        64
    } else {
        plen + 2
    };
    let size = 1u128 << (128 - len);
    let first = u128::from(network.network());
    let end = first.wrapping_add(1u128 << (128 - plen));
    let min = match min.filter(|m| !m.is_unspecified()) {
        None => Ipv6Addr::from(first + size),
        Some(m) if network.contains(&m) => m,
        Some(_) => return bad("IPv6SubnetMin is not in the range of the IPv6Network"),
    };
    let max = match max.filter(|m| !m.is_unspecified()) {
        None => Ipv6Addr::from(end.wrapping_sub(size)),
        Some(m) if network.contains(&m) => m,
        Some(_) => return bad("IPv6SubnetMax is not in the range of the IPv6Network"),
    };
    if min > max {
        return Err(FormatError::Inconsistent(format!(
            "IPv6SubnetMin {min} is above IPv6SubnetMax {max}"
        )));
    }
    let mask = u128::MAX << (128 - len);
    for (name, addr) in [("IPv6SubnetMin", min), ("IPv6SubnetMax", max)] {
        if u128::from(addr) & mask != u128::from(addr) {
            return Err(FormatError::Inconsistent(format!(
                "{name} is not on a SubnetLen boundary: {addr}"
            )));
        }
    }
    Ok(Ipv6Network {
        network,
        subnet_len: len,
        subnet_min: min,
        subnet_max: max,
    })
}

// ---------------------------------------------------------------------------------------------
// Lease keys.

/// flannel's `MakeSubnetKey`: `10.244.1.0-24`, or `10.244.1.0-24&fd00:0:0:1::-64` with an IPv6
/// subnet (the address as Go prints it: RFC 5952, as Rust does too).
pub fn subnet_key(v4: Ipv4Net, v6: Option<Ipv6Net>) -> String {
    let mut key = format!("{}-{}", v4.addr(), v4.prefix_len());
    if let Some(v6) = v6 {
        key.push_str(&format!("&{}-{}", v6.addr(), v6.prefix_len()));
    }
    key
}

/// flannel's `ParseSubnetKey`, on the last component of a key (after `<prefix>/subnets/`).
///
/// # Errors
/// [`FormatError::BadKey`] for anything else, a subnet with host bits set included (no node
/// can own `10.244.1.5/24`), and so is a key that is not spelt as [`subnet_key`] writes it
/// (`10.244.1.0-024`, `...&fd00:0:0:0::-64`): one subnet has one key, so two keys never name
/// the same subnet.
pub fn parse_subnet_key(key: &str) -> Result<(Ipv4Net, Option<Ipv6Net>), FormatError> {
    let bad = || FormatError::BadKey(key.to_owned());
    let (v4, v6) = match key.split_once('&') {
        Some((v4, v6)) => (v4, Some(v6)),
        None => (key, None),
    };
    let net = |s: &str| -> Option<(String, u8)> {
        let (addr, len) = s.rsplit_once('-')?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((addr.to_owned(), len.parse().ok()?))
    };
    let (addr, len) = net(v4).ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let v4 = Ipv4Net::new(addr, len).map_err(|_| bad())?;
    if v4.trunc() != v4 {
        return Err(bad());
    }
    let v6 = match v6 {
        None => None,
        Some(s) => {
            let (addr, len) = net(s).ok_or_else(bad)?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
            let v6 = Ipv6Net::new(addr, len).map_err(|_| bad())?;
            if v6.trunc() != v6 {
                return Err(bad());
            }
            Some(v6)
        }
    };
    if subnet_key(v4, v6) != key {
        return Err(bad());
    }
    Ok((v4, v6))
}

// ---------------------------------------------------------------------------------------------
// Lease values.

/// The vxlan backend's `BackendData` (and `BackendV6Data`): `{"VNI":1,"VtepMAC":"..."}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanData {
    pub vni: u32,
    pub vtep_mac: Mac,
}

impl VxlanData {
    fn parse(value: &Value, name: &'static str) -> Result<VxlanData, FormatError> {
        let mut f = Fields::of(value.clone(), name)?;
        let vni = f
            .uint("VNI", u32::MAX.into())?
            .ok_or_else(|| field(name, "no VNI"))? as u32;
        let mac = f.str("VtepMAC")?.ok_or_else(|| field(name, "no VtepMAC"))?;
        let vtep_mac = mac
            .parse()
            .map_err(|_| field(name, format!("VtepMAC {mac:?} is not a MAC address")))?;
        Ok(VxlanData { vni, vtep_mac })
    }

    /// What Go's `json.Marshal` writes for flannel's `vxlanLeaseAttrs`.
    fn to_json(self) -> String {
        format!(r#"{{"VNI":{},"VtepMAC":"{}"}}"#, self.vni, self.vtep_mac)
    }
}

/// A lease's value (flannel's `LeaseAttrs`): where the node is and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseAttrs {
    pub public_ip: Ipv4Addr,
    pub public_ipv6: Option<Ipv6Addr>,
    /// `BackendType` as written; empty for flannel's udp backend, which writes none.
    pub backend_type: String,
    /// `BackendData` and `BackendV6Data`, read as JSON and interpreted per backend.
    pub backend_data: Option<Value>,
    pub backend_v6_data: Option<Value>,
}

impl LeaseAttrs {
    /// The attributes a node of `backend` publishes, as flanneld's backends build them: udp
    /// writes the addresses alone; vxlan adds `BackendType` and its `BackendData` (and with an
    /// IPv6 address, `BackendV6Data` with the same VNI and MAC: tundra has one VTEP).
    pub fn ours(
        backend: Backend,
        public_ip: Ipv4Addr,
        public_ipv6: Option<Ipv6Addr>,
        vtep_mac: Option<Mac>,
    ) -> LeaseAttrs {
        let mut attrs = LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type: String::new(),
            backend_data: None,
            backend_v6_data: None,
        };
        if let (Backend::Vxlan { vni, .. }, Some(vtep_mac)) = (backend, vtep_mac) {
            let data = VxlanData { vni, vtep_mac };
            let json = |d: VxlanData| {
                serde_json::from_str(&d.to_json()).expect("VxlanData::to_json writes valid JSON")
            };
            attrs.backend_type = "vxlan".into();
            attrs.backend_data = Some(json(data));
            attrs.backend_v6_data = public_ipv6.map(|_| json(data));
        }
        attrs
    }

    /// Parses a lease value.
    ///
    /// # Errors
    /// Invalid JSON, not an object, or a field of the wrong type; a `PublicIP` that is missing,
    /// unspecified or multicast (no node can be reached there).
    pub fn parse(value: &[u8]) -> Result<LeaseAttrs, FormatError> {
        let mut f = Fields::parse(value, "the lease value")?;
        let public_ip: Ipv4Addr = f
            .parsed("PublicIP", "an IPv4 address")?
            .ok_or_else(|| field("PublicIP", "missing"))?;
        if public_ip.is_unspecified() || public_ip.is_multicast() || public_ip.is_broadcast() {
            return Err(field(
                "PublicIP",
                format!("{public_ip} is not a node address"),
            ));
        }
        let public_ipv6: Option<Ipv6Addr> = f.parsed("PublicIPv6", "an IPv6 address")?;
        let backend_type = f.str("BackendType")?.unwrap_or_default();
        Ok(LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type,
            backend_data: f.take("BackendData"),
            backend_v6_data: f.take("BackendV6Data"),
        })
    }

    /// The value as flanneld writes it, byte for byte: Go's `json.Marshal` of `LeaseAttrs`
    /// (`PublicIP`, `PublicIPv6` even when null, then the `omitempty` backend fields).
    pub fn to_json(&self) -> String {
        let mut s = format!(r#"{{"PublicIP":"{}","PublicIPv6":"#, self.public_ip);
        match self.public_ipv6 {
            Some(v6) => s.push_str(&format!(r#""{v6}""#)),
            None => s.push_str("null"),
        }
        if !self.backend_type.is_empty() {
            s.push_str(&format!(
                r#","BackendType":{}"#,
                Value::String(self.backend_type.clone())
            ));
        }
        let data = |v: &Value| match VxlanData::parse(v, "BackendData") {
            // Our own vxlan data: in flannel's field order (a JSON map would sort the keys).
            Ok(d) if self.backend_type == "vxlan" => d.to_json(),
            _ => v.to_string(),
        };
        if let Some(v) = &self.backend_data {
            s.push_str(&format!(r#","BackendData":{}"#, data(v)));
        }
        if let Some(v) = &self.backend_v6_data {
            s.push_str(&format!(r#","BackendV6Data":{}"#, data(v)));
        }
        s.push('}');
        s
    }

    /// Is this a lease of flannel's udp backend (which writes no `BackendType`)?
    pub fn is_udp(&self) -> bool {
        self.backend_type.is_empty() || self.backend_type == "udp"
    }

    /// The vxlan `BackendData`.
    ///
    /// # Errors
    /// Missing, or not `{"VNI": number, "VtepMAC": "aa:bb:cc:dd:ee:ff"}`.
    pub fn vxlan(&self) -> Result<VxlanData, FormatError> {
        let v = self.backend_data.as_ref().ok_or_else(|| {
            field(
                "BackendData",
                "missing (a vxlan lease needs VNI and VtepMAC)",
            )
        })?;
        VxlanData::parse(v, "BackendData")
    }

    /// The vxlan `BackendV6Data` (dual stack).
    ///
    /// # Errors
    /// Missing, or not `{"VNI": number, "VtepMAC": "..."}`.
    pub fn vxlan_v6(&self) -> Result<VxlanData, FormatError> {
        let v = self.backend_v6_data.as_ref().ok_or_else(|| {
            field(
                "BackendV6Data",
                "missing (a dual-stack vxlan lease needs it)",
            )
        })?;
        VxlanData::parse(v, "BackendV6Data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<NetworkConfig, FormatError> {
        NetworkConfig::parse(json.as_bytes())
    }

    #[test]
    fn config_defaults_as_flannel() {
        let c = config(r#"{"Network": "10.244.0.0/16"}"#).unwrap();
        assert_eq!(c.network, "10.244.0.0/16".parse().unwrap());
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 244, 255, 0));
        assert_eq!(c.backend, Backend::Udp { port: 8285 });
        assert_eq!(c.ipv6, None);

        // A /24 network: subnets of /26, the first left out (it holds the network address).
        let c = config(r#"{"Network": "10.5.6.0/24", "Backend": {"Type": "vxlan"}}"#).unwrap();
        assert_eq!(c.subnet_len, 26);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 5, 6, 64));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 5, 6, 192));
        assert_eq!(c.backend, Backend::Vxlan { vni: 1, port: 8472 });

        // Host bits in Network are dropped, as Go's ParseCIDR does.
        let c = config(r#"{"Network": "10.244.3.7/16"}"#).unwrap();
        assert_eq!(c.network, "10.244.0.0/16".parse().unwrap());
    }

    #[test]
    fn config_fields_case_insensitive_unknown_ignored() {
        let c = config(
            r#"{"network": "198.19.0.0/16", "subnetLen": 24, "SubnetMin": "198.19.1.0",
                "SubnetMax": "198.19.9.0", "EnableNFTables": true, "Whatever": [1],
                "backend": {"type": "vxlan", "vni": 42, "port": 4789, "Learning": false,
                            "MTU": 1400}}"#,
        )
        .unwrap();
        assert_eq!(c.subnet_min, Ipv4Addr::new(198, 19, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(198, 19, 9, 0));
        assert_eq!(
            c.backend,
            Backend::Vxlan {
                vni: 42,
                port: 4789
            }
        );
    }

    #[test]
    fn config_dual_stack() {
        let c = config(
            r#"{"Network": "198.19.0.0/16", "EnableIPv6": true, "IPv6Network": "fd19::/48",
                "Backend": {"Type": "udp", "Port": 9000}}"#,
        )
        .unwrap();
        let v6 = c.ipv6.unwrap();
        assert_eq!(v6.subnet_len, 64);
        assert_eq!(v6.subnet_min, "fd19:0:0:1::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            v6.subnet_max,
            "fd19:0:0:ffff::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(c.backend, Backend::Udp { port: 9000 });
        // IPv6 given but not enabled: ignored, as flannel does.
        let c = config(r#"{"Network": "198.19.0.0/16", "IPv6Network": "fd19::/48"}"#).unwrap();
        assert_eq!(c.ipv6, None);
    }

    #[test]
    fn config_refused_clearly() {
        let cases = [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "please define a correct Network"),
            (r#"{"Network": 5}"#, "Network: want a string"),
            (r#"{"Network": "10.0.0.0/33"}"#, "Network: not an IPv4 CIDR"),
            (
                r#"{"Network": "10.0.0.0/29"}"#,
                "Minimum useful network prefix is /28",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "SubnetLen": 31}"#,
                "less than /31",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "SubnetLen": 17}"#,
                "at least four subnets",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "SubnetMin": "10.1.0.0"}"#,
                "SubnetMin is not in the range",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "SubnetMax": "10.0.3.4"}"#,
                "SubnetMax is not on a SubnetLen boundary: 10.0.3.4",
            ),
            // Found by fuzz/lease in CI: an empty range passed as a configuration.
            (
                r#"{"Network": "10.0.0.0/16", "SubnetMin": "10.0.9.0", "SubnetMax": "10.0.3.0"}"#,
                "SubnetMin 10.0.9.0 is above SubnetMax 10.0.3.0",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/48",
                    "IPv6SubnetMin": "fd00:0:0:9::", "IPv6SubnetMax": "fd00:0:0:3::"}"#,
                "IPv6SubnetMin fd00:0:0:9:: is above IPv6SubnetMax fd00:0:0:3::",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "EnableIPv4": false}"#,
                "IPv6-only",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "EnableIPv6": true}"#,
                "IPv6Network parameter",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "EnableIPv6": "yes"}"#,
                "EnableIPv6: want true",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {"Type": "host-gw"}}"#,
                r#"backend type "host-gw""#,
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {}}"#,
                "Backend.Type: missing",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {"Type": "vxlan", "GBP": true}}"#,
                "GBP",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": true}}"#,
                "DirectRouting",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777216}}"#,
                "VNI: want a whole number",
            ),
            (
                r#"{"Network": "10.0.0.0/16", "Backend": {"Type": "udp", "Port": 70000}}"#,
                "Port: want a whole number",
            ),
        ];
        for (json, want) in cases {
            let err = config(json).expect_err(json).to_string();
            assert!(err.contains(want), "{json}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn config_fits() {
        let c = config(
            r#"{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56"}"#,
        )
        .unwrap();
        let v4 = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let v6 = |s: &str| s.parse::<Ipv6Net>().unwrap();
        assert!(c.fits(v4("10.244.1.0/24"), Some(v6("fd00:0:0:1::/64"))));
        assert!(!c.fits(v4("10.244.1.0/24"), None), "dual stack needs both");
        assert!(
            !c.fits(v4("10.244.0.0/24"), Some(v6("fd00:0:0:1::/64"))),
            "first subnet"
        );
        assert!(
            !c.fits(v4("10.244.1.0/25"), Some(v6("fd00:0:0:1::/64"))),
            "length"
        );
        assert!(
            !c.fits(v4("10.245.1.0/24"), Some(v6("fd00:0:0:1::/64"))),
            "outside"
        );
        assert!(
            !c.fits(v4("10.244.1.0/24"), Some(v6("fd00:0:0:100::/64"))),
            "v6 outside"
        );
    }

    #[test]
    fn keys_as_flannel_writes_them() {
        let v4: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let v6: Ipv6Net = "fd00:0:0:1::/64".parse().unwrap();
        assert_eq!(subnet_key(v4, None), "10.244.1.0-24");
        assert_eq!(subnet_key(v4, Some(v6)), "10.244.1.0-24&fd00:0:0:1::-64");
        let v6b: Ipv6Net = "fd00:1:0:0:2::/80".parse().unwrap();
        assert_eq!(subnet_key(v4, Some(v6b)), "10.244.1.0-24&fd00:1:0:0:2::-80");
        assert_eq!(parse_subnet_key("10.244.1.0-24"), Ok((v4, None)));
        assert_eq!(
            parse_subnet_key("10.244.1.0-24&fd00:0:0:1::-64"),
            Ok((v4, Some(v6)))
        );
        for bad in [
            "",
            "10.244.1.0",
            "10.244.1.0-",
            "10.244.1.0-33",
            "10.244.1.5-24",
            "10.244.1.0-24&",
            "10.244.1.0-24&fd00::1-64",
            "10.244.1.0/24",
            "config",
            // Found by fuzz/fuzz_targets/lease.rs: other spellings of a subnet key.
            "10.244.1.0-024",
            "10.244.1.0-24&fd00:0:0:0::-64",
            "10.244.1.0-24&FD00:0:0:1::-64",
            "10.244.1.0-24&fd00:0:0:1:0:0:0:0-64",
        ] {
            assert!(parse_subnet_key(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// Leases as flanneld writes them (udp: no BackendType; vxlan: BackendData; dual-stack
    /// vxlan: BackendV6Data): ours are the same bytes, and they parse back.
    #[test]
    fn lease_values_byte_compatible() {
        let mac: Mac = "0a:58:c6:13:01:00".parse().unwrap();
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        let ip6: Ipv6Addr = "fd18::1".parse().unwrap();
        let udp = LeaseAttrs::ours(Backend::Udp { port: 8285 }, ip, None, None);
        assert_eq!(
            udp.to_json(),
            r#"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#
        );
        let vx = Backend::Vxlan { vni: 1, port: 8472 };
        let v4 = LeaseAttrs::ours(vx, ip, None, Some(mac));
        assert_eq!(
            v4.to_json(),
            r#"{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}}"#
        );
        let dual = LeaseAttrs::ours(vx, ip, Some(ip6), Some(mac));
        assert_eq!(
            dual.to_json(),
            r#"{"PublicIP":"198.18.0.1","PublicIPv6":"fd18::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"},"BackendV6Data":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}}"#
        );
        for attrs in [&udp, &v4, &dual] {
            assert_eq!(
                &LeaseAttrs::parse(attrs.to_json().as_bytes()).unwrap(),
                attrs
            );
        }
        assert!(udp.is_udp() && !v4.is_udp());
        assert_eq!(
            v4.vxlan(),
            Ok(VxlanData {
                vni: 1,
                vtep_mac: mac
            })
        );
        assert!(v4.vxlan_v6().is_err());
        assert_eq!(
            dual.vxlan_v6(),
            Ok(VxlanData {
                vni: 1,
                vtep_mac: mac
            })
        );
    }

    #[test]
    fn lease_values_read_leniently() {
        // Keys in any case, unknown fields, upper-case MAC, a host-gw lease.
        let a = LeaseAttrs::parse(
            br#"{"publicip":"10.0.0.7","BACKENDTYPE":"vxlan","Extra":{"x":1},
                 "backenddata":{"vni":1,"vtepmac":"0A:58:C6:13:01:00"}}"#,
        )
        .unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(a.vxlan().unwrap().vtep_mac.to_string(), "0a:58:c6:13:01:00");
        let hg = LeaseAttrs::parse(br#"{"PublicIP":"10.0.0.8","BackendType":"host-gw"}"#).unwrap();
        assert!(!hg.is_udp());
        assert_eq!(hg.backend_type, "host-gw");
    }

    #[test]
    fn lease_values_refused_clearly() {
        let cases: [(&[u8], &str); 8] = [
            (b"not json", "not JSON"),
            (b"\"a string\"", "not a JSON object"),
            (b"{}", "PublicIP: missing"),
            (
                br#"{"PublicIP":"10.0.0.300"}"#,
                "PublicIP: not an IPv4 address",
            ),
            (br#"{"PublicIP":"0.0.0.0"}"#, "not a node address"),
            (
                br#"{"PublicIP":"10.0.0.1","PublicIPv6":"x"}"#,
                "PublicIPv6: not an IPv6",
            ),
            (
                br#"{"PublicIP":"10.0.0.1","BackendType":7}"#,
                "BackendType: want a string",
            ),
            (br#"{"PublicIP":1}"#, "PublicIP: want a string"),
        ];
        for (json, want) in cases {
            let err = LeaseAttrs::parse(json).unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
        }
        let bad_data = [
            (
                r#"{"PublicIP":"10.0.0.1","BackendType":"vxlan"}"#,
                "BackendData: missing",
            ),
            (
                r#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1}}"#,
                "no VtepMAC",
            ),
            (
                r#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}"#,
                "is not a MAC address",
            ),
            (
                r#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":[1]}"#,
                "BackendData is not a JSON object",
            ),
        ];
        for (json, want) in bad_data {
            let attrs = LeaseAttrs::parse(json.as_bytes()).unwrap();
            let err = attrs.vxlan().unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
        }
    }
}
