//! The control socket's protocol: line-delimited JSON, one request object per line, one reply
//! object per line (see `docs/control.md`).
//!
//! ```text
//! -> {"cmd":"routes.add","prefix":"10.2.0.0/16","peer":"192.0.2.2:8285"}
//! <- {"ok":true,"result":{"version":2,"added":1,"removed":0,"changed":0,"routes":1}}
//! -> {"cmd":"routes.add","prefix":"10.3.0.0/16","peer":"192.0.2.3","mac":"0a:58:c0:00:02:03"}
//! <- {"ok":true,"result":{"version":3,"added":1,"removed":0,"changed":0,"routes":2}}
//! -> {"cmd":"routes.del","prefix":"10.9.0.0/16"}
//! <- {"ok":false,"error":"routes.del: 10.9.0.0/16 is not routed"}
//! ```
//!
//! This module is pure: [`Request::parse`] and [`Request::to_json`] turn a line into a request
//! and back, [`Reply`] encodes and decodes replies, and [`handle`] answers a request from a
//! [`Controller`]. A refused request changes nothing.
//!
//! A request's routes are [`RouteSpec`]s, as given: a peer's port may be left out, and the
//! running dataplane's format decides it (8285 for udp, 8472 for vxlan) when [`handle`] answers,
//! so that a client (`tundra routes add`) need not know the format.

use datapath::Route;
use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::config::{self, Encap, PeerSpec, Problem};
use crate::control::{Controller, RouteOp};

/// Longest request line accepted, in bytes (without its newline).
pub const MAX_LINE: usize = 1 << 20;

/// Every command, as written in `"cmd"`.
pub const COMMANDS: [&str; 7] = [
    "routes.list",
    "routes.add",
    "routes.del",
    "routes.apply",
    "peers",
    "stats",
    "health",
];

/// A route as a request gives it: `{"prefix":..,"peer":"ADDR[:PORT]","mac":..}` (`mac`
/// optional). The peer's port, if left out, is the running format's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub prefix: IpNet,
    pub peer: PeerSpec,
}

impl RouteSpec {
    /// The route in format `encap`: the port defaulted, the MAC checked against the format.
    ///
    /// # Errors
    /// As [`PeerSpec::route`]: a MAC missing with `vxlan`, or given with `udp`.
    pub fn route(&self, encap: Encap) -> Result<Route, Problem> {
        self.peer.route(self.prefix, encap)
    }

    /// As the request object of `routes.add` or an item of `routes.apply` carries it.
    fn to_json(self) -> Value {
        let mut v = json!({"prefix": self.prefix.to_string(), "peer": self.peer.endpoint()});
        if let Some(mac) = self.peer.mac {
            v["mac"] = mac.to_string().into();
        }
        v
    }
}

impl From<Route> for RouteSpec {
    fn from(r: Route) -> RouteSpec {
        RouteSpec {
            prefix: r.prefix,
            peer: PeerSpec {
                ip: r.peer.ip(),
                port: Some(r.peer.port()),
                mac: r.mac,
            },
        }
    }
}

/// One request, parsed and validated (prefixes canonical, peer addresses usable, MACs
/// unicast); whether a route needs a MAC, and its default port, depend on the running format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Every route, sorted by prefix.
    RoutesList,
    /// Routes a prefix to a peer (or moves it to that peer).
    RoutesAdd(RouteSpec),
    /// Removes the route to a prefix; refused if it is not routed.
    RoutesDel(IpNet),
    /// One transaction: `replace` (if given) replaces every route, then `del` removes, then
    /// `add` inserts.
    RoutesApply {
        replace: Option<Vec<RouteSpec>>,
        del: Vec<IpNet>,
        add: Vec<RouteSpec>,
    },
    Peers,
    Stats,
    Health,
}

impl Request {
    /// Parses one request line (without its newline).
    ///
    /// # Errors
    /// One line saying what is wrong and naming the value: malformed JSON, not an object, a
    /// missing, unknown or mistyped field, an unknown command, an invalid prefix or address.
    pub fn parse(line: &str) -> Result<Request, String> {
        Self::parse_fields(line).map_err(|e| one_line(&e))
    }

    fn parse_fields(line: &str) -> Result<Request, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
        let Value::Object(mut fields) = value else {
            return Err(format!(
                "a request is a JSON object like {{\"cmd\":\"health\"}}, got {}",
                shown(&value)
            ));
        };
        let cmd = match fields.remove("cmd") {
            None => return Err(format!("missing \"cmd\" (one of {})", COMMANDS.join(", "))),
            Some(Value::String(cmd)) => cmd,
            Some(other) => return Err(format!("\"cmd\" must be a string, got {}", shown(&other))),
        };
        let mut f = Fields {
            cmd: match COMMANDS.iter().find(|&&c| c == cmd) {
                Some(c) => c,
                None => {
                    return Err(format!(
                        "unknown command {} (expected one of {})",
                        shown(&Value::String(cmd)),
                        COMMANDS.join(", ")
                    ))
                }
            },
            fields,
        };
        let request = match f.cmd {
            "routes.list" => Request::RoutesList,
            "routes.add" => {
                let prefix = f.string("prefix")?;
                let peer = f.string("peer")?;
                let mac = match f.fields.contains_key("mac") {
                    true => Some(f.string("mac")?),
                    false => None,
                };
                Request::RoutesAdd(f.route(&prefix, &peer, mac.as_deref(), "")?)
            }
            "routes.del" => {
                let prefix = f.string("prefix")?;
                Request::RoutesDel(f.prefix(&prefix, "prefix")?)
            }
            "routes.apply" => {
                let replace = match f.fields.contains_key("replace") {
                    true => Some(f.routes("replace")?),
                    false => None,
                };
                let del = match f.array("del")? {
                    None => Vec::new(),
                    Some(items) => {
                        let mut del = Vec::with_capacity(items.len());
                        for (i, item) in items.iter().enumerate() {
                            let name = format!("del[{i}]");
                            match item {
                                Value::String(s) => del.push(f.prefix(s, &name)?),
                                other => return Err(f.mistyped(&name, "a CIDR string", other)),
                            }
                        }
                        del
                    }
                };
                let add = match f.fields.contains_key("add") {
                    true => f.routes("add")?,
                    false => Vec::new(),
                };
                if replace.is_none() && del.is_empty() && add.is_empty() {
                    return Err(
                        "routes.apply: nothing to do (give \"add\", \"del\" or \"replace\")".into(),
                    );
                }
                Request::RoutesApply { replace, del, add }
            }
            "peers" => Request::Peers,
            "stats" => Request::Stats,
            "health" => Request::Health,
            _ => unreachable!("every name in COMMANDS has a branch"),
        };
        f.no_more()?;
        Ok(request)
    }

    /// The request as the JSON object sent on the wire (one line once serialised).
    pub fn to_json(&self) -> Value {
        let route = |r: &RouteSpec| r.to_json();
        match self {
            Request::RoutesList => json!({"cmd": "routes.list"}),
            Request::RoutesAdd(r) => {
                let mut v = r.to_json();
                v["cmd"] = "routes.add".into();
                v
            }
            Request::RoutesDel(prefix) => {
                json!({"cmd": "routes.del", "prefix": prefix.to_string()})
            }
            Request::RoutesApply { replace, del, add } => {
                let mut v = json!({
                    "cmd": "routes.apply",
                    "add": add.iter().map(route).collect::<Vec<_>>(),
                    "del": del.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                if let Some(replace) = replace {
                    v["replace"] = replace.iter().map(route).collect::<Vec<_>>().into();
                }
                v
            }
            Request::Peers => json!({"cmd": "peers"}),
            Request::Stats => json!({"cmd": "stats"}),
            Request::Health => json!({"cmd": "health"}),
        }
    }

    /// Whether the request changes routes.
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Request::RoutesAdd(_) | Request::RoutesDel(_) | Request::RoutesApply { .. }
        )
    }
}

/// The fields of a request object not consumed yet.
struct Fields {
    cmd: &'static str,
    fields: Map<String, Value>,
}

impl Fields {
    fn mistyped(&self, name: &str, expected: &str, got: &Value) -> String {
        format!(
            "{}: \"{name}\" must be {expected}, got {}",
            self.cmd,
            shown(got)
        )
    }

    fn string(&mut self, name: &str) -> Result<String, String> {
        match self.fields.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.mistyped(name, "a string", &other)),
            None => Err(format!("{}: missing \"{name}\"", self.cmd)),
        }
    }

    fn array(&mut self, name: &str) -> Result<Option<Vec<Value>>, String> {
        match self.fields.remove(name) {
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.mistyped(name, "an array", &other)),
            None => Ok(None),
        }
    }

    /// A list of `{"prefix":..,"peer":..[,"mac":..]}` objects.
    fn routes(&mut self, name: &str) -> Result<Vec<RouteSpec>, String> {
        let items = self.array(name)?.unwrap_or_default();
        let mut routes = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{name}[{i}]");
            let Value::Object(mut obj) = item else {
                return Err(self.mistyped(&at, "an object {\"prefix\":..,\"peer\":..}", &item));
            };
            let mut take = |key: &str, required: bool| match obj.remove(key) {
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(self.mistyped(&format!("{at}.{key}"), "a string", &other)),
                None if required => Err(format!("{}: missing \"{at}.{key}\"", self.cmd)),
                None => Ok(None),
            };
            let prefix = take("prefix", true)?.unwrap_or_default();
            let peer = take("peer", true)?.unwrap_or_default();
            let mac = take("mac", false)?;
            if let Some(key) = obj.keys().next() {
                return Err(format!("{}: unknown field \"{at}.{key}\"", self.cmd));
            }
            routes.push(self.route(&prefix, &peer, mac.as_deref(), &format!("{at}."))?);
        }
        Ok(routes)
    }

    fn prefix(&self, text: &str, name: &str) -> Result<IpNet, String> {
        config::parse_cidr(text).map_err(|p| self.invalid(name, text, &p))
    }

    fn route(
        &self,
        prefix: &str,
        peer: &str,
        mac: Option<&str>,
        at: &str,
    ) -> Result<RouteSpec, String> {
        let prefix = self.prefix(prefix, &format!("{at}prefix"))?;
        let mut peer = config::parse_peer_endpoint(peer)
            .map_err(|p| self.invalid(&format!("{at}peer"), peer, &p))?;
        if let Some(mac) = mac {
            peer.mac = Some(
                config::parse_mac(mac).map_err(|p| self.invalid(&format!("{at}mac"), mac, &p))?,
            );
        }
        Ok(RouteSpec { prefix, peer })
    }

    fn invalid(&self, name: &str, text: &str, problem: &Problem) -> String {
        format!(
            "{}: {name} {}: {problem}",
            self.cmd,
            shown(&Value::String(text.to_owned()))
        )
    }

    fn no_more(&self) -> Result<(), String> {
        match self.fields.keys().next() {
            Some(key) => Err(format!(
                "{}: unknown field {}",
                self.cmd,
                shown(&Value::String(key.clone()))
            )),
            None => Ok(()),
        }
    }
}

/// A value for an error message: a plain string as is (quoted if empty or if it has spaces
/// or control characters), anything else as compact JSON; cut at 80 characters.
/// `text` with its control characters escaped: a refusal quotes what it refuses (a field
/// name, a prefix), and a newline in it would split the reply and the log line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s)
            if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            s.clone()
        }
        other => other.to_string(),
    };
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// One reply line.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Ok(Value),
    Error(String),
}

impl Reply {
    /// The reply as one line of JSON, without the newline.
    pub fn encode(&self) -> String {
        let value = match self {
            Reply::Ok(result) => json!({"ok": true, "result": result}),
            Reply::Error(error) => json!({"ok": false, "error": error}),
        };
        value.to_string()
    }

    /// Parses a reply line.
    ///
    /// # Errors
    /// Not JSON, or not an object with `ok` and `result` or `error`.
    pub fn decode(line: &str) -> Result<Reply, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("malformed reply ({e}): {line}"))?;
        match (value.get("ok"), value.get("result"), value.get("error")) {
            (Some(Value::Bool(true)), Some(result), _) => Ok(Reply::Ok(result.clone())),
            (Some(Value::Bool(false)), _, Some(Value::String(e))) => Ok(Reply::Error(e.clone())),
            _ => Err(format!("malformed reply: {line}")),
        }
    }
}

/// Parses and answers one request line.
pub fn respond(controller: &Controller, line: &str) -> Reply {
    match Request::parse(line) {
        Ok(request) => handle(controller, &request),
        Err(e) => Reply::Error(e),
    }
}

/// Answers one request. Route changes are one transaction each; a refused one changed nothing.
pub fn handle(controller: &Controller, request: &Request) -> Reply {
    let resolve = |cmd: &str, specs: &[RouteSpec]| resolve(controller, cmd, specs);
    match request {
        Request::RoutesList => Reply::Ok(routes_json(&controller.table().routes().to_vec())),
        Request::RoutesAdd(spec) => match resolve("routes.add", std::slice::from_ref(spec)) {
            Ok(new) => routes(controller, "routes.add", vec![RouteOp::Insert(new[0])]),
            Err(e) => Reply::Error(e),
        },
        Request::RoutesDel(prefix) => {
            routes(controller, "routes.del", vec![RouteOp::Remove(*prefix)])
        }
        Request::RoutesApply { replace, del, add } => {
            let replace = match replace.as_deref().map(|r| resolve("routes.apply", r)) {
                None => None,
                Some(Ok(routes)) => Some(routes),
                Some(Err(e)) => return Reply::Error(e),
            };
            let add = match resolve("routes.apply", add) {
                Ok(add) => add,
                Err(e) => return Reply::Error(e),
            };
            let mut ops = Vec::with_capacity(del.len() + add.len() + 1);
            if let Some(replace) = replace {
                ops.push(RouteOp::ReplaceAll(replace));
            }
            ops.extend(del.iter().map(|&p| RouteOp::Remove(p)));
            ops.extend(add.into_iter().map(RouteOp::Insert));
            routes(controller, "routes.apply", ops)
        }
        Request::Peers => Reply::Ok(json!(controller.peers())),
        Request::Stats => Reply::Ok(controller.stats().to_json()),
        Request::Health => Reply::Ok(health_json(controller)),
    }
}

/// The routes as `[{"prefix":..,"peer":..}]` (with `"mac"` when a route has one), sorted by
/// prefix.
pub fn routes_json(routes: &[Route]) -> Value {
    let mut routes = routes.to_vec();
    routes.sort_by_key(|r| r.prefix);
    routes
        .iter()
        .map(|r| {
            let mut v = json!({"prefix": r.prefix.to_string(), "peer": r.peer.to_string()});
            if let Some(mac) = r.mac {
                v["mac"] = mac.to_string().into();
            }
            v
        })
        .collect::<Vec<_>>()
        .into()
}

/// The routes of a request in the running format (ports defaulted, MACs checked), each
/// reachable from the listen socket; the error names the first peer that is not.
fn resolve(controller: &Controller, cmd: &str, specs: &[RouteSpec]) -> Result<Vec<Route>, String> {
    let encap = Encap::from(controller.encap().format());
    let listen = controller.listen();
    let mut routes = Vec::with_capacity(specs.len());
    for spec in specs {
        let peer = spec.peer.addr(encap.default_port());
        let route = spec.route(encap).map_err(|problem| {
            let why = match problem {
                Problem::NoPeerMac => {
                    "a vxlan peer needs its VTEP MAC: give \"mac\" (tundra routes add: ADDR,mac=MAC)"
                        .to_owned()
                }
                Problem::PeerMacVxlanOnly => {
                    "a VTEP MAC (\"mac\") applies to the vxlan format only (this tundra runs udp)"
                        .to_owned()
                }
                other => other.to_string(),
            };
            format!("{cmd}: peer {peer}: {why}")
        })?;
        if let Err(problem) = config::check_family(route.peer, listen) {
            return Err(format!("{cmd}: peer {}: {problem}", route.peer));
        }
        routes.push(route);
    }
    Ok(routes)
}

fn routes(controller: &Controller, cmd: &str, ops: Vec<RouteOp>) -> Reply {
    match controller.apply(ops) {
        Ok(applied) => {
            tracing::info!(
                cmd,
                version = applied.version,
                added = applied.added,
                removed = applied.removed,
                changed = applied.changed,
                "routes changed through the control socket"
            );
            Reply::Ok(json!(applied))
        }
        Err(e) => Reply::Error(format!("{cmd}: {e}")),
    }
}

/// `{"status":"ok"|"degraded", ...}`: degraded when a datapath thread has ended on its own.
pub fn health_json(controller: &Controller) -> Value {
    let stats = controller.stats();
    let failed = controller.failed_threads();
    let lost = stats.lease.as_ref().is_some_and(|l| l.lost.is_some());
    let mut health = json!({
        "status": if failed.is_empty() && !lost { "ok" } else { "degraded" },
        "failed_threads": failed,
        "uptime_secs": stats.uptime.as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
        "table_version": stats.version,
        "routes": stats.routes,
        "io": stats.io.to_string(),
        "offload": super::offloads_json(stats.offloads),
        "encap": super::encap_json(stats.encap, stats.port),
    });
    if let Some(lease) = &stats.lease {
        health["lease"] = json!(lease);
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, peer: &str) -> Route {
        Route {
            prefix: prefix.parse().unwrap(),
            peer: peer.parse().unwrap(),
            mac: None,
        }
    }

    /// A request's route: `peer` as `ADDR[:PORT][,mac=MAC]`.
    fn spec(prefix: &str, peer: &str) -> RouteSpec {
        RouteSpec {
            prefix: prefix.parse().unwrap(),
            peer: peer.parse().unwrap(),
        }
    }

    #[track_caller]
    fn error(line: &str, parts: &[&str]) {
        let e = match Request::parse(line) {
            Ok(r) => panic!("{line}: accepted as {r:?}"),
            Err(e) => e,
        };
        assert!(!e.contains('\n'), "{e:?} is not one line");
        for part in parts {
            assert!(e.contains(part), "{line}: {e:?} does not contain {part:?}");
        }
    }

    #[test]
    fn good_requests() {
        let p = |s: &str| Request::parse(s).unwrap();
        assert_eq!(p(r#"{"cmd":"routes.list"}"#), Request::RoutesList);
        assert_eq!(p(r#" {"cmd" : "peers"} "#), Request::Peers);
        assert_eq!(p(r#"{"cmd":"stats"}"#), Request::Stats);
        assert_eq!(p(r#"{"cmd":"health"}"#), Request::Health);
        assert_eq!(
            p(r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2:8285"}"#),
            Request::RoutesAdd(spec("198.19.2.0/24", "198.18.0.2:8285"))
        );
        // The port is left to the running format; IPv4-mapped becomes IPv4.
        assert_eq!(
            p(r#"{"peer":"[::ffff:198.18.0.2]","prefix":"fd19:0:0:2::/64","cmd":"routes.add"}"#),
            Request::RoutesAdd(spec("fd19:0:0:2::/64", "198.18.0.2"))
        );
        assert_eq!(
            p(
                r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"[fd18::2]","mac":"0A-58-C6-13-02-00"}"#
            ),
            Request::RoutesAdd(spec("198.19.2.0/24", "[fd18::2],mac=0a:58:c6:13:02:00"))
        );
        assert_eq!(
            p(r#"{"cmd":"routes.del","prefix":"fd19:0:0:2::/64"}"#),
            Request::RoutesDel("fd19:0:0:2::/64".parse().unwrap())
        );
        assert_eq!(
            p(
                r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.3.0/24","peer":"198.18.0.3:1"}],"del":["198.19.2.0/24"]}"#
            ),
            Request::RoutesApply {
                replace: None,
                del: vec!["198.19.2.0/24".parse().unwrap()],
                add: vec![spec("198.19.3.0/24", "198.18.0.3:1")],
            }
        );
        assert_eq!(
            p(
                r#"{"cmd":"routes.apply","replace":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":"0a:58:c6:13:02:00"}],"add":[{"mac":"0a:58:c6:13:03:00","prefix":"198.19.3.0/24","peer":"198.18.0.3:4789"}]}"#
            ),
            Request::RoutesApply {
                replace: Some(vec![spec(
                    "198.19.2.0/24",
                    "198.18.0.2,mac=0a:58:c6:13:02:00"
                )]),
                del: vec![],
                add: vec![spec(
                    "198.19.3.0/24",
                    "198.18.0.3:4789,mac=0a:58:c6:13:03:00"
                )],
            }
        );
        assert_eq!(
            p(r#"{"cmd":"routes.apply","replace":[]}"#),
            Request::RoutesApply {
                replace: Some(vec![]),
                del: vec![],
                add: vec![],
            }
        );
    }

    #[test]
    fn round_trip() {
        for request in [
            Request::RoutesList,
            Request::RoutesAdd(spec("198.19.2.0/24", "198.18.0.2:8285")),
            Request::RoutesAdd(spec("fd19:0:0:2::/64", "[fd18::2]:9000")),
            Request::RoutesAdd(spec("fd19:0:0:2::/64", "[fd18::2]")),
            Request::RoutesAdd(spec("198.19.2.0/24", "198.18.0.2,mac=0a:58:c6:13:02:00")),
            Request::RoutesDel("198.19.2.0/24".parse().unwrap()),
            Request::RoutesApply {
                replace: Some(vec![spec("198.19.4.0/24", "198.18.0.4:8285")]),
                del: vec!["198.19.2.0/24".parse().unwrap()],
                add: vec![spec("198.19.3.0/24", "198.18.0.3,mac=0a:58:c6:13:03:00")],
            },
            Request::RoutesApply {
                replace: None,
                del: vec!["198.19.2.0/24".parse().unwrap()],
                add: vec![],
            },
            Request::Peers,
            Request::Stats,
            Request::Health,
        ] {
            let line = request.to_json().to_string();
            assert!(!line.contains('\n'));
            assert_eq!(Request::parse(&line), Ok(request.clone()), "{line}");
        }
    }

    #[test]
    fn malformed() {
        error("", &["malformed JSON"]);
        error("{", &["malformed JSON", "EOF"]);
        error(r#"{"cmd":"health"} x"#, &["malformed JSON", "trailing"]);
        error("[1,2]", &["JSON object", "[1,2]"]);
        error(r#""health""#, &["JSON object", "health"]);
        error("{}", &["missing \"cmd\"", "routes.list"]);
        error(r#"{"cmd":5}"#, &["\"cmd\" must be a string, got 5"]);
        error(
            r#"{"cmd":"routes.frob"}"#,
            &["unknown command routes.frob", "routes.add"],
        );
        error(r#"{"cmd":""}"#, &["unknown command \"\""]);
        error(
            r#"{"cmd":"health","verbose":true}"#,
            &["health: unknown field verbose"],
        );
        let long = format!(r#"{{"cmd":"{}"}}"#, "x".repeat(500));
        let e = Request::parse(&long).unwrap_err();
        assert!(e.len() < 300, "{e}");
        // Found by the control fuzz target: names it quotes carried newlines.
        error(
            r#"{"cmd":"routes.add","prefix":"198.1.3.0/i\n2","peer":"198.18.0.3"}"#,
            &[r"198.1.3.0/i\n2"],
        );
        error(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.3.0/24","peer":"198.18.0.3","m\n2":1}]}"#,
            &[r"m\n2"],
        );
    }

    #[test]
    fn bad_fields() {
        error(
            r#"{"cmd":"routes.add","peer":"198.18.0.2"}"#,
            &["routes.add: missing \"prefix\""],
        );
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24"}"#,
            &["routes.add: missing \"peer\""],
        );
        error(
            r#"{"cmd":"routes.add","prefix":12,"peer":"198.18.0.2"}"#,
            &["routes.add: \"prefix\" must be a string, got 12"],
        );
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2","x":1}"#,
            &["routes.add: unknown field x"],
        );
        error(
            r#"{"cmd":"routes.del"}"#,
            &["routes.del: missing \"prefix\""],
        );
        error(
            r#"{"cmd":"routes.del","prefix":null}"#,
            &["\"prefix\" must be a string, got null"],
        );
    }

    #[test]
    fn bad_prefixes() {
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.1/24","peer":"198.18.0.2"}"#,
            &[
                "routes.add: prefix 198.19.2.1/24:",
                "host bits are set (did you mean 198.19.2.0/24?)",
            ],
        );
        error(
            r#"{"cmd":"routes.del","prefix":"198.19.2.0/33"}"#,
            &[
                "routes.del: prefix 198.19.2.0/33:",
                "invalid prefix length 33",
            ],
        );
        error(
            r#"{"cmd":"routes.del","prefix":"198.19.2.0"}"#,
            &["prefix 198.19.2.0:", "missing prefix length"],
        );
        error(
            r#"{"cmd":"routes.del","prefix":"node2/24"}"#,
            &["prefix node2/24:", "invalid IP address"],
        );
        error(
            r#"{"cmd":"routes.del","prefix":"a b"}"#,
            &["prefix \"a b\":"],
        );
    }

    #[test]
    fn bad_addresses() {
        let add = |peer: &str| {
            format!(r#"{{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"{peer}"}}"#)
        };
        error(
            &add("node2:8285"),
            &["routes.add: peer node2:8285:", "invalid address"],
        );
        error(&add("198.18.0.2:0"), &["peer 198.18.0.2:0:", "port 0"]);
        error(
            &add("198.18.0.2:99999"),
            &["peer 198.18.0.2:99999:", "invalid port"],
        );
        error(&add("fd18::2"), &["peer fd18::2:", "brackets"]);
        error(&add("0.0.0.0:8285"), &["peer 0.0.0.0:8285:", "unspecified"]);
        error(
            &add("224.0.0.1:8285"),
            &["peer 224.0.0.1:8285:", "not a unicast"],
        );
        error(&add(""), &["peer \"\":"]);
    }

    #[test]
    fn bad_apply() {
        error(
            r#"{"cmd":"routes.apply"}"#,
            &["routes.apply: nothing to do"],
        );
        error(
            r#"{"cmd":"routes.apply","add":[],"del":[]}"#,
            &["routes.apply: nothing to do"],
        );
        error(
            r#"{"cmd":"routes.apply","add":{}}"#,
            &["routes.apply: \"add\" must be an array, got {}"],
        );
        error(
            r#"{"cmd":"routes.apply","del":"198.19.2.0/24"}"#,
            &["\"del\" must be an array"],
        );
        error(
            r#"{"cmd":"routes.apply","del":[1]}"#,
            &["\"del[0]\" must be a CIDR string, got 1"],
        );
        error(
            r#"{"cmd":"routes.apply","del":["198.19.2.0/24","198.19.3.1/24"]}"#,
            &["routes.apply: del[1] 198.19.3.1/24:", "host bits"],
        );
        error(
            r#"{"cmd":"routes.apply","add":["198.19.2.0/24"]}"#,
            &["\"add[0]\" must be an object"],
        );
        error(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.2.0/24"}]}"#,
            &["missing \"add[0].peer\""],
        );
        error(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.2.0/24","peer":1}]}"#,
            &["\"add[0].peer\" must be a string, got 1"],
        );
        error(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2","via":"x"}]}"#,
            &["unknown field \"add[0].via\""],
        );
        error(
            r#"{"cmd":"routes.apply","replace":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2:0"}]}"#,
            &["routes.apply: replace[0].peer 198.18.0.2:0:", "port 0"],
        );
        error(
            r#"{"cmd":"routes.apply","replace":null}"#,
            &["\"replace\" must be an array, got null"],
        );
    }

    #[test]
    fn replies() {
        let ok = Reply::Ok(json!({"routes": 2}));
        assert_eq!(ok.encode(), r#"{"ok":true,"result":{"routes":2}}"#);
        assert_eq!(Reply::decode(&ok.encode()), Ok(ok));
        let err = Reply::Error("routes.del: 10.9.0.0/16 is not routed\nx".into());
        let line = err.encode();
        assert!(!line.contains('\n'));
        assert_eq!(Reply::decode(&line), Ok(err));
        assert!(Reply::decode("nope").is_err());
        assert!(Reply::decode(r#"{"ok":true}"#).is_err());
        assert!(Reply::decode(r#"{"ok":false,"error":3}"#).is_err());
    }

    /// A controller with no kernel side, its control thread running.
    fn controller() -> Controller {
        let config = crate::dataplane::Builder::default()
            .local_subnet("198.19.1.0/24".parse().unwrap())
            .peer(
                "198.19.2.0/24".parse().unwrap(),
                "198.18.0.2:8285".parse().unwrap(),
            )
            .config()
            .clone();
        start(&config)
    }

    /// A controller for `config`, with no kernel side, its control thread running.
    fn start(config: &config::Config) -> Controller {
        let encap = config.wire_encap();
        let table =
            datapath::Table::build(encap.format(), &config.local_subnets, &config.peers, None)
                .unwrap();
        let (controller, thread) = crate::control::new(
            config,
            std::sync::Arc::new(datapath::SharedTable::new(table)),
            Default::default(),
            crate::config::IoMode::Poll,
            Default::default(),
            encap,
            None,
        );
        std::thread::spawn(move || thread.run());
        controller
    }

    #[test]
    fn answers() {
        let c = controller();
        let ok = |line: &str| match respond(&c, line) {
            Reply::Ok(v) => v,
            Reply::Error(e) => panic!("{line}: {e}"),
        };
        let err = |line: &str| match respond(&c, line) {
            Reply::Ok(v) => panic!("{line}: accepted: {v}"),
            Reply::Error(e) => e,
        };
        let initial = json!([{"prefix": "198.19.2.0/24", "peer": "198.18.0.2:8285"}]);
        assert_eq!(ok(r#"{"cmd":"routes.list"}"#), initial);
        let applied = ok(r#"{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3"}"#);
        assert_eq!(applied["added"], 1);
        assert_eq!(applied["routes"], 2);
        assert_eq!(ok(r#"{"cmd":"routes.list"}"#).as_array().unwrap().len(), 2);
        assert_eq!(
            ok(r#"{"cmd":"routes.del","prefix":"198.19.3.0/24"}"#)["removed"],
            1
        );
        assert_eq!(
            err(r#"{"cmd":"routes.del","prefix":"198.19.3.0/24"}"#),
            "routes.del: 198.19.3.0/24 is not routed"
        );
        assert!(
            err(r#"{"cmd":"routes.add","prefix":"198.19.1.0/25","peer":"198.18.0.3"}"#)
                .contains("overlaps local subnet 198.19.1.0/24")
        );
        assert!(
            err(r#"{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"[fd18::3]"}"#)
                .contains("routes.add: peer [fd18::3]:8285: IPv6 peer address")
        );
        // One bad change: nothing of the transaction is applied.
        assert!(err(r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.4.0/24","peer":"198.18.0.4"}],"del":["198.19.9.0/24"]}"#)
            .contains("198.19.9.0/24 is not routed"));
        assert_eq!(ok(r#"{"cmd":"routes.list"}"#), initial);
        let applied = ok(
            r#"{"cmd":"routes.apply","replace":[],"add":[{"prefix":"198.19.4.0/24","peer":"198.18.0.4"}]}"#,
        );
        assert_eq!(
            (applied["added"].clone(), applied["removed"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(
            ok(r#"{"cmd":"peers"}"#)[0]["prefixes"],
            json!(["198.19.4.0/24"])
        );
        assert_eq!(ok(r#"{"cmd":"stats"}"#)["routes"], 1);
        let health = ok(r#"{"cmd":"health"}"#);
        assert_eq!(health["status"], "ok");
        assert_eq!(health["io"], "poll");
        assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
        // A datapath thread that ends while the dataplane is not stopping: degraded.
        drop(c.watch("egress", std::sync::Arc::default()));
        let health = ok(r#"{"cmd":"health"}"#);
        assert_eq!(health["status"], "degraded");
        assert_eq!(health["failed_threads"], json!(["egress"]));
        c.close();
        assert_eq!(
            err(r#"{"cmd":"routes.del","prefix":"198.19.4.0/24"}"#),
            "routes.del: the dataplane is shutting down"
        );
    }

    #[test]
    fn bad_macs() {
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":"0a:58"}"#,
            &["routes.add: mac 0a:58:", "invalid MAC address"],
        );
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":"ff:ff:ff:ff:ff:ff"}"#,
            &["routes.add: mac ff:ff:ff:ff:ff:ff:", "not a unicast MAC"],
        );
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":null}"#,
            &["routes.add: \"mac\" must be a string, got null"],
        );
        error(
            r#"{"cmd":"routes.add","prefix":"198.19.2.0/24","peer":"198.18.0.2,mac=0a:58:c6:13:02:00"}"#,
            &[
                "routes.add: peer 198.18.0.2,mac=0a:58:c6:13:02:00:",
                "invalid address",
            ],
        );
        error(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":"x"}]}"#,
            &["routes.apply: add[0].mac x:", "invalid MAC address"],
        );
        error(
            r#"{"cmd":"routes.apply","replace":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":1}]}"#,
            &["\"replace[0].mac\" must be a string, got 1"],
        );
    }

    const MAC2: &str = "0a:58:c6:13:02:00";
    const MAC3: &str = "0a:58:c6:13:03:00";

    /// A vxlan controller: local 198.19.1.0/24, 198.19.2.0/24 to 198.18.0.2 (MAC2).
    fn vxlan_controller() -> Controller {
        let mac2 = MAC2.parse().unwrap();
        let config = crate::dataplane::Builder::default()
            .encap(Encap::Vxlan)
            .local_subnet("198.19.1.0/24".parse().unwrap())
            .peer_with_mac(
                "198.19.2.0/24".parse().unwrap(),
                "198.18.0.2:8472".parse().unwrap(),
                mac2,
            )
            .config()
            .clone();
        start(&config)
    }

    #[test]
    fn vxlan_answers() {
        let c = vxlan_controller();
        let ok = |line: &str| match respond(&c, line) {
            Reply::Ok(v) => v,
            Reply::Error(e) => panic!("{line}: {e}"),
        };
        let err = |line: &str| match respond(&c, line) {
            Reply::Ok(v) => panic!("{line}: accepted: {v}"),
            Reply::Error(e) => e,
        };
        assert_eq!(
            ok(r#"{"cmd":"routes.list"}"#),
            json!([{"prefix": "198.19.2.0/24", "peer": "198.18.0.2:8472", "mac": MAC2}])
        );
        // No port: vxlan's, 8472.
        let add = format!(
            r#"{{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"{MAC3}"}}"#
        );
        assert_eq!(ok(&add)["added"], 1);
        let table = c.table();
        let peer = table.peer(table.lookup("198.19.3.1".parse().unwrap()).unwrap());
        assert_eq!(peer.addr, "198.18.0.3:8472".parse().unwrap());
        assert_eq!(peer.mac, Some(MAC3.parse().unwrap()));
        assert_eq!(
            ok(r#"{"cmd":"routes.list"}"#)[1],
            json!({"prefix": "198.19.3.0/24", "peer": "198.18.0.3:8472", "mac": MAC3})
        );
        let peers = ok(r#"{"cmd":"peers"}"#);
        assert_eq!(peers[0]["addr"], "198.18.0.2:8472");
        assert_eq!(peers[0]["mac"], MAC2);
        assert_eq!(peers[1]["mac"], MAC3);
        // A vxlan route needs its MAC; the error names the peer with its port.
        assert_eq!(
            err(r#"{"cmd":"routes.add","prefix":"198.19.4.0/24","peer":"198.18.0.4"}"#),
            "routes.add: peer 198.18.0.4:8472: a vxlan peer needs its VTEP MAC: give \"mac\" (tundra routes add: ADDR,mac=MAC)"
        );
        assert!(err(
            r#"{"cmd":"routes.apply","add":[{"prefix":"198.19.4.0/24","peer":"198.18.0.4:4789"}]}"#
        )
        .starts_with("routes.apply: peer 198.18.0.4:4789: a vxlan peer needs its VTEP MAC"));
        // One MAC per peer: a second one for 198.18.0.2 is refused, naming both.
        assert_eq!(
            err(&format!(
                r#"{{"cmd":"routes.add","prefix":"198.19.4.0/24","peer":"198.18.0.2","mac":"{MAC3}"}}"#
            )),
            format!("routes.add: peer 198.18.0.2:8472 is given two VTEP MACs, {MAC2} and {MAC3}")
        );
        // One peer per IP address.
        assert_eq!(
            err(&format!(
                r#"{{"cmd":"routes.add","prefix":"198.19.4.0/24","peer":"198.18.0.2:4789","mac":"{MAC2}"}}"#
            )),
            "routes.add: vxlan peers 198.18.0.2:8472 and 198.18.0.2:4789 share an address: a vxlan peer is known by its address alone"
        );
        // Moving the only route of a peer to a new MAC is fine; so is moving all of a peer's
        // routes at once, and not one of them alone.
        let mac4 = "0a:58:c6:13:04:00";
        let applied = ok(&format!(
            r#"{{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"{mac4}"}}"#
        ));
        assert_eq!(
            (applied["changed"].clone(), applied["routes"].clone()),
            (json!(1), json!(2))
        );
        ok(&format!(
            r#"{{"cmd":"routes.add","prefix":"fd19:0:0:3::/64","peer":"198.18.0.3","mac":"{mac4}"}}"#
        ));
        assert!(err(&format!(
            r#"{{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"{MAC3}"}}"#
        ))
        .contains("two VTEP MACs"));
        ok(&format!(
            r#"{{"cmd":"routes.apply","add":[{{"prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"{MAC3}"}},{{"prefix":"fd19:0:0:3::/64","peer":"198.18.0.3","mac":"{MAC3}"}}]}}"#
        ));
        // A refused transaction left nothing behind: a peer's old MAC is gone with its routes.
        let before = ok(r#"{"cmd":"routes.list"}"#);
        assert!(err(&format!(
            r#"{{"cmd":"routes.apply","del":["198.19.2.0/24"],"add":[{{"prefix":"198.19.5.0/24","peer":"198.18.0.5","mac":"{MAC2}"}},{{"prefix":"198.19.6.0/24","peer":"198.18.0.5","mac":"{MAC3}"}}]}}"#
        ))
        .contains("two VTEP MACs"));
        assert_eq!(ok(r#"{"cmd":"routes.list"}"#), before);
        ok(&format!(
            r#"{{"cmd":"routes.apply","del":["198.19.2.0/24"],"add":[{{"prefix":"198.19.2.0/24","peer":"198.18.0.2","mac":"{mac4}"}}]}}"#
        ));
        // A replace checks its routes against each other only.
        ok(&format!(
            r#"{{"cmd":"routes.apply","replace":[{{"prefix":"198.19.2.0/24","peer":"198.18.0.3:4789","mac":"{MAC2}"}}]}}"#
        ));
        assert_eq!(
            ok(r#"{"cmd":"routes.list"}"#),
            json!([{"prefix": "198.19.2.0/24", "peer": "198.18.0.3:4789", "mac": MAC2}])
        );
        // The format in stats and health.
        let encap = json!({
            "format": "vxlan",
            "vni": 1,
            "vtep_mac": crate::config::default_vtep_mac(&["198.19.1.0/24".parse().unwrap()]).to_string(),
            "port": 8472,
        });
        assert_eq!(ok(r#"{"cmd":"stats"}"#)["encap"], encap);
        assert_eq!(ok(r#"{"cmd":"health"}"#)["encap"], encap);
    }

    #[test]
    fn udp_takes_no_mac() {
        let c = controller();
        let Reply::Error(e) = respond(
            &c,
            &format!(
                r#"{{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"{MAC3}"}}"#
            ),
        ) else {
            panic!("accepted a MAC in udp");
        };
        assert_eq!(
            e,
            "routes.add: peer 198.18.0.3:8285: a VTEP MAC (\"mac\") applies to the vxlan format only (this tundra runs udp)"
        );
        // The library's transactions are checked by the control thread alike.
        let e = c
            .routes()
            .insert_with_mac(
                "198.19.3.0/24".parse().unwrap(),
                "198.18.0.3:8285".parse().unwrap(),
                MAC3.parse().unwrap(),
            )
            .commit()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer 198.18.0.3:8285: a VTEP MAC applies to the vxlan format only (this dataplane runs udp)"
        );
        assert_eq!(c.stats().to_json()["encap"], json!({"format": "udp"}));
        assert!(c.peers()[0].mac.is_none());
        assert!(json!(c.peers())[0].get("mac").is_none());
    }

    #[test]
    fn vxlan_library_checks() {
        let c = vxlan_controller();
        let p = |s: &str| s.parse().unwrap();
        let e = c
            .routes()
            .insert(p("198.19.3.0/24"), "198.18.0.3:8472".parse().unwrap())
            .commit()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "vxlan peer 198.18.0.3:8472 has no VTEP MAC (give it as ,mac=MAC)"
        );
        let e = c
            .routes()
            .replace_all([Route {
                prefix: p("198.19.3.0/24"),
                peer: "198.18.0.3:8472".parse().unwrap(),
                mac: Some(datapath::Mac([1, 0, 0x5e, 0, 0, 1])),
            }])
            .commit()
            .unwrap_err();
        assert!(e.to_string().contains("is not a unicast MAC"), "{e}");
        // IPv4-mapped and plain IPv4 are one peer: one MAC.
        let e = c
            .routes()
            .insert_with_mac(
                p("198.19.3.0/24"),
                "[::ffff:198.18.0.2]:8472".parse().unwrap(),
                MAC3.parse().unwrap(),
            )
            .commit()
            .unwrap_err();
        assert!(e.to_string().contains("two VTEP MACs"), "{e}");
        assert_eq!(c.table().routes().len(), 1);
    }

    #[test]
    fn sorted_routes() {
        let routes = [
            route("198.19.3.0/24", "198.18.0.3:8285"),
            route("198.19.2.0/24", "198.18.0.2:8285"),
        ];
        assert_eq!(
            routes_json(&routes),
            json!([
                {"prefix": "198.19.2.0/24", "peer": "198.18.0.2:8285"},
                {"prefix": "198.19.3.0/24", "peer": "198.18.0.3:8285"},
            ])
        );
    }
}
