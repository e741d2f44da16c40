//! A small synchronous etcd v3 client over etcd's JSON gateway (`POST /v3/...` with JSON bodies,
//! keys and values in base64, 64-bit numbers as strings): the calls the lease source needs and
//! nothing else. One [`ureq::Agent`] carries every request; [`Client::shutdown`] interrupts the
//! ones in flight on other threads (a watch blocked on its stream included).
//!
//! Endpoints are tried in turn: a request that cannot reach one endpoint (no connection, a
//! timeout, an HTTP 5xx such as a member without a leader) goes to the next, and the one that
//! answered is tried first next time.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

/// TLS material for `https://` endpoints, as flanneld's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile`: PEM files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificates that sign etcd's server certificate (default: the public web roots).
    pub ca_file: Option<PathBuf>,
    /// Our client certificate (chain) and its private key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered (connection refused or reset, timeout, TLS handshake, HTTP 5xx).
    #[error("no etcd endpoint answered ({}); last error: {last}", endpoints.join(", "))]
    Unreachable {
        endpoints: Vec<String>,
        last: String,
    },
    /// etcd refused the request (its gRPC code and message, e.g. 11 "required revision has
    /// been compacted").
    #[error("etcd at {endpoint} refused {call}: {message} (code {code})")]
    Refused {
        endpoint: String,
        call: &'static str,
        code: i64,
        message: String,
    },
    /// An answer that is not what etcd's gateway sends.
    #[error("etcd at {endpoint}: unexpected answer to {call}: {detail}")]
    Protocol {
        endpoint: String,
        call: &'static str,
        detail: String,
    },
    /// The client's own setup: a bad endpoint URL, an unreadable or invalid TLS file.
    #[error("{0}")]
    Setup(String),
}

impl EtcdError {
    /// Worth retrying later: etcd may come back (as opposed to a refusal or a setup error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EtcdError::Unreachable { .. })
    }
}

/// A key-value pair as etcd returns it, key and value decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The etcd lease the key is bound to; 0 for none (a flannel "reservation").
    pub lease: i64,
}

/// A condition for [`Client::put_if`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// The key does not exist (flannel's `Compare(Version(key), "=", 0)`).
    Absent,
    /// The key is unchanged since this modification revision.
    ModRevision(i64),
}

/// One message of a watch stream.
#[derive(Debug, Default)]
pub struct WatchMessage {
    pub revision: i64,
    pub created: bool,
    pub canceled: bool,
    /// Set when the watch was canceled because its start revision was compacted.
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

/// One change in a watch stream.
#[derive(Debug)]
pub enum Event {
    Put(Kv),
    Delete { key: String, mod_revision: i64 },
}

/// An open watch: read its messages with [`Watch::recv`].
pub struct Watch {
    reader: BufReader<ureq::BodyReader<'static>>,
    endpoint: String,
    line: String,
}

/// The answer etcd sends when a watch stream's lifetime ran out or the stream broke.
#[derive(Debug)]
pub enum WatchEnd {
    /// The stream's lifetime ([`Client::watch`]'s `lifetime`) is over; reopen it from the next
    /// revision.
    Expired,
    /// Closed by etcd, broken, or interrupted by [`Client::shutdown`].
    Broken(String),
}

impl Watch {
    /// Blocks for the next message.
    ///
    /// # Errors
    /// [`WatchEnd::Expired`] when the stream's lifetime is over, [`WatchEnd::Broken`] when it
    /// ended otherwise or carried something else than a watch response.
    pub fn recv(&mut self) -> Result<WatchMessage, WatchEnd> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => return Err(WatchEnd::Broken("closed by etcd".into())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(WatchEnd::Expired),
            Err(e) => return Err(WatchEnd::Broken(e.to_string())),
        }
        let value: Value = serde_json::from_str(&self.line).map_err(|e| {
            WatchEnd::Broken(format!("{}: not a watch response: {e}", self.endpoint))
        })?;
        if let Some(err) = value.get("error") {
            return Err(WatchEnd::Broken(format!("{}: {err}", self.endpoint)));
        }
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        let raw: RawWatchResponse = serde_json::from_value(result).map_err(|e| {
            WatchEnd::Broken(format!("{}: not a watch response: {e}", self.endpoint))
        })?;
        let mut events = Vec::with_capacity(raw.events.len());
        for ev in raw.events {
            let kv = ev
                .kv
                .decode()
                .map_err(|e| WatchEnd::Broken(format!("{}: {e}", self.endpoint)))?;
            events.push(match ev.kind.as_str() {
                "DELETE" => Event::Delete {
                    key: kv.key,
                    mod_revision: kv.mod_revision,
                },
                _ => Event::Put(kv),
            });
        }
        Ok(WatchMessage {
            revision: raw.header.revision,
            created: raw.created,
            canceled: raw.canceled,
            compact_revision: raw.compact_revision,
            cancel_reason: raw.cancel_reason,
            events,
        })
    }

    /// Is another complete message already received (so that it arrived together with the
    /// one just read)?
    pub fn has_buffered(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }
}

/// The etcd client: endpoints, TLS, one agent.
pub struct Client {
    agent: Agent,
    endpoints: Vec<String>,
    current: AtomicUsize,
    timeout: Duration,
}

impl Client {
    /// A client for `endpoints` (`http://host:port` or `https://host:port`, etcd's client
    /// URLs). `timeout` bounds each request but watches, including the connection.
    ///
    /// # Errors
    /// [`EtcdError::Setup`]: no endpoint, an endpoint that is not an http(s) URL, a TLS file
    /// that cannot be read or holds no certificate or key, a certificate without its key.
    pub fn new(endpoints: &[String], tls: &Tls, timeout: Duration) -> Result<Client, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Setup("no etcd endpoint given".into()));
        }
        let mut clean = Vec::new();
        for e in endpoints {
            let e = e.trim().trim_end_matches('/');
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 9 {
                return Err(EtcdError::Setup(format!(
                    "etcd endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
            clean.push(e.to_owned());
        }
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            // etcd is reached directly: an HTTP proxy from the environment is not for it.
            .proxy(None)
            .timeout_connect(Some(timeout))
            .tls_config(tls_config(tls)?)
            .build()
            .into();
        Ok(Client {
            agent,
            endpoints: clean,
            current: AtomicUsize::new(0),
            timeout,
        })
    }

    /// The endpoints, normalised.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Interrupts every request in flight on other threads and fails every later one.
    pub fn shutdown(&self) {
        self.agent.clone().shutdown();
    }

    /// `POST path` with `body` to the endpoints in turn; the decoded JSON answer.
    fn call(&self, call: &'static str, path: &str, body: &Value) -> Result<Value, EtcdError> {
        self.send(call, path, body, Some(self.timeout))
            .and_then(|(endpoint, response)| {
                let text = response
                    .into_body()
                    .with_config()
                    .limit(256 << 20)
                    .read_to_string()
                    .map_err(|e| EtcdError::Protocol {
                        endpoint: endpoint.clone(),
                        call,
                        detail: e.to_string(),
                    })?;
                serde_json::from_str(&text).map_err(|e| EtcdError::Protocol {
                    endpoint,
                    call,
                    detail: format!("not JSON ({e}): {text:.200}"),
                })
            })
    }

    /// Sends to the first endpoint that answers; a 200 answer and the endpoint it came from.
    fn send(
        &self,
        call: &'static str,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<(String, ureq::http::Response<ureq::Body>), EtcdError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &self.endpoints[idx];
            let result = self
                .agent
                .post(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                // Fail a watch when this member loses its leader (gRPC metadata
                // "hasleader", passed on by the gateway), instead of a silent stream.
                .header("grpc-metadata-hasleader", "true")
                .config()
                .timeout_global(timeout)
                .build()
                .send(body.to_string());
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%endpoint, call, error = %e, "etcd endpoint did not answer");
                    last = format!("{endpoint}: {e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status == 200 {
                self.current.store(idx, Ordering::Relaxed);
                return Ok((endpoint.clone(), response));
            }
            let text = response
                .into_body()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .unwrap_or_default();
            let (code, message) = match serde_json::from_str::<Value>(&text) {
                Ok(v) => (
                    v.get("code").and_then(Value::as_i64).unwrap_or(-1),
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .and_then(Value::as_str)
                        .unwrap_or(&text)
                        .to_owned(),
                ),
                Err(_) => (-1, format!("HTTP {status}: {text:.200}")),
            };
            // gRPC Unavailable (14) is a member without a leader, or stopping: try another.
            if status >= 500 || code == 14 {
                tracing::debug!(%endpoint, call, status, %message, "etcd endpoint unavailable");
                last = format!("{endpoint}: {message}");
                continue;
            }
            return Err(EtcdError::Refused {
                endpoint: endpoint.clone(),
                call,
                code,
                message,
            });
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.clone(),
            last,
        })
    }

    /// The value at `key`, and the store's revision.
    pub fn get(&self, key: &str) -> Result<(Option<Kv>, i64), EtcdError> {
        let v = self.call("range", "/v3/kv/range", &json!({ "key": b64(key) }))?;
        let r: RawRange = decode(self.endpoint(), "range", v)?;
        let kv = match r.kvs.into_iter().next() {
            Some(raw) => Some(raw.decode().map_err(|e| self.protocol("range", e))?),
            None => None,
        };
        Ok((kv, r.header.revision))
    }

    /// Every key starting with `prefix`, in key order, and the store's revision (watch from
    /// the one after it to miss nothing).
    pub fn list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let body = json!({ "key": b64(prefix), "range_end": b64_bytes(&prefix_end(prefix)) });
        let v = self.call("range", "/v3/kv/range", &body)?;
        let r: RawRange = decode(self.endpoint(), "range", v)?;
        let kvs = r
            .kvs
            .into_iter()
            .map(RawKv::decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.protocol("range", e))?;
        Ok((kvs, r.header.revision))
    }

    /// Grants an etcd lease of `ttl` seconds; its id and the TTL granted (etcd raises a TTL
    /// below its minimum, about 2 s).
    pub fn grant(&self, ttl: i64) -> Result<(i64, i64), EtcdError> {
        let v = self.call(
            "lease grant",
            "/v3/lease/grant",
            &json!({ "TTL": ttl.to_string() }),
        )?;
        let r: RawGrant = decode(self.endpoint(), "lease grant", v)?;
        if r.id == 0 {
            return Err(self.protocol("lease grant", format!("no lease id: {}", r.error)));
        }
        Ok((r.id, r.ttl))
    }

    /// Renews lease `id` once; the TTL it has again, 0 if the lease no longer exists.
    pub fn keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        let v = self.call(
            "lease keepalive",
            "/v3/lease/keepalive",
            &json!({ "ID": id.to_string() }),
        )?;
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        let r: RawGrant = decode(self.endpoint(), "lease keepalive", result)?;
        Ok(r.ttl)
    }

    /// Revokes lease `id` (and deletes its keys).
    pub fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call(
            "lease revoke",
            "/v3/lease/revoke",
            &json!({ "ID": id.to_string() }),
        )
        .map(drop)
    }

    /// Puts `value` at `key` (bound to etcd lease `lease`, none if 0) if `cond` holds, in one
    /// transaction. Whether it held (and the put happened).
    pub fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
        cond: Cond,
    ) -> Result<bool, EtcdError> {
        let compare = match cond {
            Cond::Absent => json!({
                "key": b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"
            }),
            Cond::ModRevision(rev) => json!({
                "key": b64(key), "target": "MOD", "result": "EQUAL",
                "mod_revision": rev.to_string()
            }),
        };
        let mut put = json!({ "key": b64(key), "value": b64_bytes(value) });
        if lease != 0 {
            put["lease"] = Value::String(lease.to_string());
        }
        let body = json!({ "compare": [compare], "success": [{ "request_put": put }] });
        let v = self.call("txn", "/v3/kv/txn", &body)?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Deletes `key` if it is unchanged since `mod_revision`. Whether it was.
    pub fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, EtcdError> {
        let body = json!({
            "compare": [{
                "key": b64(key), "target": "MOD", "result": "EQUAL",
                "mod_revision": mod_revision.to_string()
            }],
            "success": [{ "request_delete_range": { "key": b64(key) } }],
        });
        let v = self.call("txn", "/v3/kv/txn", &body)?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Opens a watch of every key under `prefix`, from revision `start` on. The stream ends
    /// by itself after `lifetime` ([`WatchEnd::Expired`]): reopen it from the next revision.
    /// That bounds how long a connection that died silently (no FIN, no RST) goes unnoticed.
    pub fn watch(&self, prefix: &str, start: i64, lifetime: Duration) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": b64(prefix),
            "range_end": b64_bytes(&prefix_end(prefix)),
            "start_revision": start.to_string(),
        }});
        let (endpoint, response) = self.send("watch", "/v3/watch", &body, Some(lifetime))?;
        Ok(Watch {
            reader: BufReader::with_capacity(64 << 10, response.into_body().into_reader()),
            endpoint,
            line: String::new(),
        })
    }

    fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    fn protocol(&self, call: &'static str, detail: String) -> EtcdError {
        EtcdError::Protocol {
            endpoint: self.endpoint().to_owned(),
            call,
            detail,
        }
    }
}

fn tls_config(tls: &Tls) -> Result<TlsConfig, EtcdError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|e| EtcdError::Setup(format!("cannot read {}: {e}", path.display())))
    };
    let certs = |path: &Path| -> Result<Vec<Certificate<'static>>, EtcdError> {
        let pem = read(path)?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(EtcdError::Setup(format!(
                "{}: no PEM certificate in it",
                path.display()
            )));
        }
        Ok(certs)
    };
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &tls.ca_file {
        builder = builder.root_certs(RootCerts::new_with_certs(&certs(ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key = PrivateKey::from_pem(&read(key)?).map_err(|e| {
                EtcdError::Setup(format!("{}: no usable PEM private key: {e}", key.display()))
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::Setup(
                "an etcd client certificate needs its key file, and a key its certificate".into(),
            ))
        }
    }
    Ok(builder.build())
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn b64_bytes(b: &[u8]) -> String {
    B64.encode(b)
}

/// The end of the range of keys starting with `prefix` (etcd's `WithPrefix`): the prefix with
/// its last byte below 0xff incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

fn decode<T: for<'de> Deserialize<'de>>(
    endpoint: &str,
    call: &'static str,
    v: Value,
) -> Result<T, EtcdError> {
    serde_json::from_value(v).map_err(|e| EtcdError::Protocol {
        endpoint: endpoint.to_owned(),
        call,
        detail: e.to_string(),
    })
}

/// A 64-bit integer the gateway writes as a string ("42"); a number is accepted too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        S(String),
        N(i64),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Default, Deserialize)]
struct RawHeader {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Default, Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    lease: i64,
}

impl RawKv {
    fn decode(self) -> Result<Kv, String> {
        let key = B64
            .decode(&self.key)
            .map_err(|e| format!("key not base64: {e}"))?;
        let key = String::from_utf8(key).map_err(|_| "key not UTF-8".to_owned())?;
        let value = B64
            .decode(&self.value)
            .map_err(|e| format!("value of {key} not base64: {e}"))?;
        Ok(Kv {
            key,
            value,
            mod_revision: self.mod_revision,
            lease: self.lease,
        })
    }
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default)]
    header: RawHeader,
    #[serde(default)]
    kvs: Vec<RawKv>,
}

#[derive(Deserialize)]
struct RawGrant {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: i64,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct RawWatchResponse {
    #[serde(default)]
    header: RawHeader,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    kv: RawKv,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/subnets/"), b"/a/subnets0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }

    #[test]
    fn gateway_json_decoded() {
        // As etcd 3.4's gateway writes a range answer: numbers as strings, defaults left out.
        let v: Value = serde_json::from_str(
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},
                "kvs":[{"key":"L2Evc3VibmV0cy8xMC4wLjEuMC0yNA==","create_revision":"3",
                        "mod_revision":"5","version":"2","value":"e30=","lease":"694d7"}],
                "count":"1"}"#
                .replace("694d7", "7587899300812995079")
                .as_str(),
        )
        .unwrap();
        let r: RawRange = decode("e", "range", v).unwrap();
        assert_eq!(r.header.revision, 7);
        let kv = r.kvs.into_iter().next().unwrap().decode().unwrap();
        assert_eq!(kv.key, "/a/subnets/10.0.1.0-24");
        assert_eq!(kv.value, b"{}");
        assert_eq!((kv.mod_revision, kv.lease), (5, 7587899300812995079));
        // A keepalive of a lease that is gone: no TTL at all.
        let r: RawGrant = decode("e", "k", serde_json::json!({"ID": "123"})).unwrap();
        assert_eq!(r.ttl, 0);
    }

    #[test]
    fn setup_refused() {
        let t = Duration::from_secs(1);
        let tls = Tls::default();
        assert!(Client::new(&[], &tls, t).is_err());
        assert!(Client::new(&["127.0.0.1:2379".into()], &tls, t).is_err());
        let half = Tls {
            cert_file: Some("/nonexistent.pem".into()),
            ..Tls::default()
        };
        let err = Client::new(&["http://127.0.0.1:2379".into()], &half, t)
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs its key"), "{err}");
        let missing = Tls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Tls::default()
        };
        let err = Client::new(&["https://127.0.0.1:2379".into()], &missing, t)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("cannot read /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
