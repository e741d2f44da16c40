//! A real etcd for the lease tests (Debian's `etcd-server`, etcd 3.4), alone in a network
//! namespace made for it, with a raw client that writes what flanneld would write.
//!
//! [`Etcd`] starts `etcd` in its own namespace `tdl<pid>x<k><rand>` (loopback only, client URL
//! `http://127.0.0.1:2379` there); anything that talks to it runs inside that namespace
//! ([`Etcd::run`]). Its `Drop` kills etcd (by pid), deletes the namespace and the data
//! directory, on success and on panic. etcd can be stopped and started again on the same data
//! ([`Etcd::restart`]), or a namespace made without etcd ([`Etcd::without_server`]).
//! [`Etcd::start_on`] runs it in a namespace made by someone else instead, a host of a
//! [`Cluster`](super::Cluster) say, listening on that host's underlay address, so that tundra
//! nodes reach it; [`Cluster::start_tundra_args`] starts such a node with the flags a test
//! chooses.
//!
//! The raw client ([`Etcd::put`], [`Etcd::delete`], ...) speaks etcd's JSON gateway directly
//! with its own code, not tundra's, so it checks tundra against etcd rather than itself.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{in_netns, ip, run_cmd, Cluster, Tundra, CMD_TIMEOUT, TUN};

/// The client URL inside the namespace.
pub const ENDPOINT: &str = "http://127.0.0.1:2379";
/// Bound on etcd becoming ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcd server in a namespace of its own (or of a cluster's host: [`Etcd::start_on`]).
pub struct Etcd {
    pub ns: String,
    dir: PathBuf,
    child: Option<Child>,
    agent: ureq::Agent,
    /// With TLS ([`Etcd::start_tls`]): https with client certificates on 2379; the raw client
    /// uses plain http on 2381.
    tls: bool,
    /// The client URL (plain http): [`ENDPOINT`], or the host's address with `start_on`.
    endpoint: String,
    /// Whether the namespace is ours to delete.
    owns_ns: bool,
}

/// The PEM files of [`Etcd::start_tls`].
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(k);
    format!("tdl{}x{k}{:04x}", std::process::id(), h.finish() & 0xffff)
}

impl Etcd {
    /// A namespace with etcd running and ready in it.
    pub fn start() -> Etcd {
        let mut e = Etcd::without_server();
        e.spawn();
        e
    }

    /// A namespace (loopback up) with no etcd in it.
    pub fn without_server() -> Etcd {
        let ns = unique_name();
        ip(&["netns", "add", &ns]);
        let e = Etcd::new(ns.clone(), ns, ENDPOINT.to_owned(), true);
        ip(&["-n", &e.ns, "link", "set", "lo", "up"]);
        e
    }

    /// etcd running and ready in namespace `ns`, which someone else made (and deletes), with
    /// its client URL `http://<addr>:2379` (peer traffic stays on that namespace's loopback).
    pub fn start_on(ns: &str, addr: std::net::Ipv4Addr) -> Etcd {
        let mut e = Etcd::new(
            ns.to_owned(),
            format!("{}-etcd", unique_name()),
            format!("http://{addr}:2379"),
            false,
        );
        e.spawn();
        e
    }

    fn new(ns: String, dir_name: String, endpoint: String, owns_ns: bool) -> Etcd {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
        fs::create_dir_all(&dir).expect("create etcd dir");
        Etcd {
            ns,
            dir,
            child: None,
            tls: false,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            endpoint,
            owns_ns,
        }
    }

    /// The client URL for tundra (plain http; with TLS see [`Etcd::start_tls`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// etcd with TLS at [`ENDPOINT`] (`https://` instead of `http://`): a CA of its own, a
    /// server certificate for 127.0.0.1, and client certificates required
    /// (`--client-cert-auth`). Returns the CA and a client certificate and key, made with
    /// `openssl`.
    pub fn start_tls() -> (Etcd, TlsFiles) {
        let mut e = Etcd::without_server();
        let d = e.dir.clone();
        let openssl = |args: &[&str]| {
            let out = run_cmd("openssl", args, CMD_TIMEOUT);
            assert!(out.success(), "openssl failed:\n{out}");
        };
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=tundra test CA"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
        ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
        openssl(&ca);
        for (name, ext) in [
            // etcd 3.4's gateway dials etcd's own gRPC port with the server certificate
            // as its client certificate: it needs clientAuth too (kubeadm's have both).
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            fs::write(d.join(format!("{name}.ext")), ext).expect("write ext");
            let (key, csr, pem, ext) = (
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.pem")),
                p(&format!("{name}.ext")),
            );
            let subj = format!("/CN={name}");
            let mut req = vec!["req", "-subj", &subj];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr]);
            openssl(&req);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ]);
        }
        e.tls = true;
        e.spawn();
        let files = TlsFiles {
            ca: d.join("ca.pem"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
        };
        (e, files)
    }

    /// The URL the raw client uses.
    fn raw_endpoint(&self) -> &str {
        if self.tls {
            "http://127.0.0.1:2381"
        } else {
            &self.endpoint
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd runs already");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log");
        let data = self.dir.join("data");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "etcd",
            "--name",
            "n1",
            "--data-dir",
        ])
        .arg(&data);
        if self.tls {
            let d = &self.dir;
            cmd.args([
                "--listen-client-urls",
                "https://127.0.0.1:2379,http://127.0.0.1:2381",
            ])
            .args(["--advertise-client-urls", "https://127.0.0.1:2379"])
            .arg("--cert-file")
            .arg(d.join("server.pem"))
            .arg("--key-file")
            .arg(d.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(d.join("ca.pem"))
            .arg("--client-cert-auth");
        } else {
            cmd.args(["--listen-client-urls", &self.endpoint])
                .args(["--advertise-client-urls", &self.endpoint]);
        }
        let child = cmd
            .args([
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "n1=http://127.0.0.1:2380",
                "--heartbeat-interval",
                "20",
                "--election-timeout",
                "200",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd (apt-get install etcd-server)");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self
                .try_call("/v3/kv/range", json!({ "key": b64("x") }))
                .is_ok()
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills etcd (SIGKILL, as a crash) and starts it again on the same data; returns once it
    /// answers. `down` is how long it stays down.
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        thread::sleep(down);
        self.spawn();
    }

    /// Kills etcd, by pid, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs etcd: the pid is etcd's.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// Runs `f` on a thread inside the namespace (where 127.0.0.1:2379 is this etcd).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
    }

    fn try_call(&self, path: &str, body: Value) -> Result<Value, String> {
        let agent = self.agent.clone();
        let url = format!("{}{path}", self.raw_endpoint());
        self.run(move || {
            let resp = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string())
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp
                .into_body()
                .read_to_string()
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("HTTP {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
        })
    }

    /// A gateway call that must succeed.
    pub fn call(&self, path: &str, body: Value) -> Value {
        self.try_call(path, body.clone())
            .unwrap_or_else(|e| panic!("etcd {path} {body}: {e}"))
    }

    /// Puts `value` at `key`, bound to etcd lease `lease` (0: none). The new revision.
    pub fn put(&self, key: &str, value: &str, lease: i64) -> i64 {
        let mut body = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            body["lease"] = Value::String(lease.to_string());
        }
        revision(&self.call("/v3/kv/put", body))
    }

    pub fn delete(&self, key: &str) -> i64 {
        revision(&self.call("/v3/kv/deleterange", json!({ "key": b64(key) })))
    }

    /// The value at `key` and its etcd lease (0: none).
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        let v = self.call("/v3/kv/range", json!({ "key": b64(key) }));
        let kv = v.get("kvs")?.get(0)?;
        let value = B64
            .decode(kv.get("value").and_then(Value::as_str).unwrap_or(""))
            .expect("base64 value");
        let lease = kv
            .get("lease")
            .and_then(Value::as_str)
            .map_or(0, |s| s.parse().expect("lease id"));
        Some((String::from_utf8(value).expect("UTF-8 value"), lease))
    }

    /// Every key under `prefix`, in order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        let v = self.call(
            "/v3/kv/range",
            json!({ "key": b64(prefix), "range_end": B64.encode(end), "keys_only": true }),
        );
        v.get("kvs")
            .and_then(Value::as_array)
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        let k = B64
                            .decode(kv["key"].as_str().expect("key"))
                            .expect("base64 key");
                        String::from_utf8(k).expect("UTF-8 key")
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Grants an etcd lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: i64) -> i64 {
        let v = self.call("/v3/lease/grant", json!({ "TTL": ttl.to_string() }));
        v["ID"]
            .as_str()
            .expect("lease id")
            .parse()
            .expect("lease id")
    }

    /// The granted TTL and the TTL left of etcd lease `id` (-1 when it does not exist).
    pub fn ttl(&self, id: i64) -> (i64, i64) {
        let v = self.call("/v3/lease/timetolive", json!({ "ID": id.to_string() }));
        let n = |f: &str| {
            v.get(f)
                .and_then(Value::as_str)
                .map_or(0, |s| s.parse().expect("number"))
        };
        (n("grantedTTL"), n("TTL"))
    }

    /// Compacts the history up to `rev`.
    pub fn compact(&self, rev: i64) {
        self.call(
            "/v3/kv/compaction",
            json!({ "revision": rev.to_string(), "physical": true }),
        );
    }
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn revision(v: &Value) -> i64 {
    v["header"]["revision"]
        .as_str()
        .expect("revision")
        .parse()
        .expect("revision")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "[{}] etcd log, last lines:\n{}",
                self.ns,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.kill();
        if self.owns_ns {
            let out = run_cmd("ip", &["netns", "del", &self.ns], CMD_TIMEOUT);
            if !out.success() {
                eprintln!("[{}] cleanup failed:\n{out}", self.ns);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// Starts `tundra run --tun TUN --control <its socket> ARGS` in node `i`'s namespace and
    /// returns at once, with its pid (a flannel node finds its subnet and peers in etcd, so
    /// what "configured" means is the test's to wait for). The cluster stops it and shows its
    /// log like any other of its tundras.
    pub fn start_tundra_args(&mut self, i: u8, args: &[String]) -> u32 {
        assert!((1..=self.n).contains(&i), "node {i} is not in the cluster");
        assert!(
            self.tundras
                .iter()
                .all(|t| t.node != i || t.exited.is_some()),
            "tundra already runs on node {i}"
        );
        let run = self.tundras.iter().filter(|t| t.node == i).count();
        let mut control = self.log_dir.join(format!("node{i}.{run}.sock"));
        // A Unix socket path has at most 107 bytes; a deep checkout may exceed it.
        if control.as_os_str().len() > 100 {
            control = std::env::temp_dir().join(format!("{}-n{i}.{run}.sock", self.prefix));
        }
        let mut all: Vec<String> = ["netns", "exec", &self.ns(i), env!("CARGO_BIN_EXE_tundra")]
            .map(String::from)
            .into();
        all.extend(["run", "--tun", TUN, "--control"].map(String::from));
        all.push(control.to_string_lossy().into_owned());
        all.extend(args.iter().cloned());
        let stderr_path = self.log_dir.join(format!("node{i}.{run}.stderr"));
        let stdout_path = self.log_dir.join(format!("node{i}.{run}.stdout"));
        let child = Command::new("ip")
            .args(&all)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn tundra: {e}"));
        let pid = child.id();
        eprintln!(
            "[{}] node {i}: started tundra pid {pid}: ip {}",
            self.prefix,
            all.join(" ")
        );
        self.tundras.push(Tundra {
            node: i,
            child,
            stderr_path,
            control,
            exited: None,
        });
        pid
    }
}
