//! The control socket: a Unix stream socket speaking [`super::protocol`], served by one accept
//! thread and one thread per connection.
//!
//! [`ControlSocket::bind`] runs before the dataplane touches anything: it creates the parent
//! directory if needed, refuses a path another live tundra answers on, replaces a stale socket
//! file, and binds with mode 0600 (the umask is tightened around `bind`, so the socket is never
//! accessible to others). [`ControlSocket::serve`] starts the threads; [`Server::stop`] (or
//! dropping it) stops them and removes the socket file.
//!
//! A connection thread blocks only itself, so a slow client (a byte at a time, or one that
//! never reads its replies) cannot hold up the others. What it can hold is one of the
//! [`Limits::max_connections`] slots, and only for a bounded time: a connection that sends no
//! complete request line within [`Limits::idle_timeout`] of being accepted or of its last
//! reply gets an error line and is closed (trickling bytes does not extend the deadline), and
//! one that does not take in a reply within [`Limits::write_timeout`] is closed. A line longer
//! than [`MAX_LINE`] bytes gets an error line and the connection is closed. When every slot is
//! taken, one more connection gets an error line and is closed. Per-request errors are logged
//! at debug level.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::protocol::{self, Reply, MAX_LINE};
use super::Controller;
use crate::sys;

/// Most connections served at once (the default of [`Limits::max_connections`]).
pub const MAX_CONNECTIONS: usize = 16;
/// The default of [`Limits::idle_timeout`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`Limits::write_timeout`].
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a connection thread waiting for bytes looks at the stop flag and its deadline.
const IDLE_CHECK: Duration = Duration::from_millis(200);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another tundra is running with control socket {} (stop it, or give it another path with --control)", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it (give another path with --control)", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What the control socket allows each client; [`Limits::default`] is what tundra uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once; one more gets an error line and is closed.
    pub max_connections: usize,
    /// A connection that sends no complete request line for this long, counted from its
    /// accept or from its last reply, gets an error line and is closed.
    pub idle_timeout: Duration,
    /// A connection whose client does not take in a reply for this long is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    /// [`MAX_CONNECTIONS`], [`IDLE_TIMEOUT`], [`WRITE_TIMEOUT`].
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// Answers one request line (without its newline).
type Respond = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A bound control socket, not served yet. Dropping it removes the socket file.
pub struct ControlSocket {
    listener: Option<UnixListener>,
    owned: OwnedPath,
    limits: Limits,
}

impl ControlSocket {
    /// Binds the control socket at `path`, mode 0600; creates the parent directory (0755) if
    /// it is missing; replaces a stale socket file nobody answers on.
    ///
    /// # Errors
    /// [`SocketError::InUse`] if a live process answers on `path`; [`SocketError::NotASocket`]
    /// if something else than a socket is there; the failed step otherwise.
    pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
        let io_err = |what, source| SocketError::Io {
            what,
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|e| SocketError::Io {
                        what: "create directory",
                        path: parent.to_owned(),
                        source: e,
                    })?;
            }
        }
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", e)),
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(SocketError::NotASocket(path.to_owned()))
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_owned())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!("replacing stale control socket {}", path.display());
                    fs::remove_file(path).map_err(|e| io_err("remove stale socket", e))?;
                }
                Err(e) => return Err(io_err("check existing socket", e)),
            },
        }
        // 0177: the socket file is created 0600, never readable or writable by others.
        let listener = sys::with_umask(0o177, || UnixListener::bind(path))
            .map_err(|e| io_err("bind control socket", e))?;
        let owned = OwnedPath::of(path).map_err(|e| io_err("inspect", e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err("set permissions of", e))?;
        Ok(ControlSocket {
            listener: Some(listener),
            owned,
            limits: Limits::default(),
        })
    }

    /// Serves with `limits` instead of [`Limits::default`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> ControlSocket {
        self.limits = limits;
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.owned.path
    }

    /// Starts serving requests with `controller` on an accept thread.
    ///
    /// # Errors
    /// The poller or the thread could not be set up; the socket file is removed then.
    pub fn serve(self, controller: Controller) -> Result<Server, SocketError> {
        self.serve_with(Arc::new(move |line: &str| {
            protocol::respond(&controller, line)
        }))
    }

    /// [`ControlSocket::serve`] with any responder (the tests use a fake one).
    fn serve_with(mut self, respond: Respond) -> Result<Server, SocketError> {
        let path = self.owned.path.clone();
        let io_err = |what, source| SocketError::Io {
            what,
            path: path.clone(),
            source,
        };
        let listener = self
            .listener
            .take()
            .expect("a bound socket has its listener");
        listener
            .set_nonblocking(true)
            .map_err(|e| io_err("set up", e))?;
        let poll = Poll::new().map_err(|e| io_err("set up a poller for", e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(|e| io_err("set up a poller for", e))?,
        );
        poll.registry()
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .map_err(|e| io_err("set up a poller for", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = Accept {
            listener,
            poll,
            stop: stop.clone(),
            respond,
            limits: self.limits,
            active: Arc::new(AtomicUsize::new(0)),
            connections: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("tundra-ctl-accept".into())
            .spawn(move || accept.run())
            .map_err(|e| io_err("start a thread for", e))?;
        tracing::info!("control socket on {}", path.display());
        Ok(Server {
            stop,
            waker,
            thread: Some(thread),
            _owned: std::mem::replace(&mut self.owned, OwnedPath::none()),
        })
    }
}

/// The socket file this process created; removed on drop if it is still the same file (not
/// replaced by someone else meanwhile).
struct OwnedPath {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl OwnedPath {
    fn of(path: &Path) -> io::Result<OwnedPath> {
        let meta = fs::symlink_metadata(path)?;
        Ok(OwnedPath {
            path: path.to_owned(),
            id: Some((meta.dev(), meta.ino())),
        })
    }

    fn none() -> OwnedPath {
        OwnedPath {
            path: PathBuf::new(),
            id: None,
        }
    }
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == id {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// A running control socket server. Dropping it stops it like [`Server::stop`].
pub struct Server {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    _owned: OwnedPath,
}

impl Server {
    /// Stops accepting, waits for the connection threads (each notices within a fraction of a
    /// second, or when its request is answered), and removes the socket file.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the control socket's accept thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_all();
    }
}

struct Accept {
    listener: UnixListener,
    poll: Poll,
    stop: Arc<AtomicBool>,
    respond: Respond,
    limits: Limits,
    active: Arc<AtomicUsize>,
    /// Each connection's thread. None waits long for its client: reads and writes wait
    /// [`IDLE_CHECK`] at a time, and between waits the thread looks at the stop flag.
    connections: Vec<JoinHandle<()>>,
}

impl Accept {
    fn run(mut self) {
        let mut events = Events::with_capacity(8);
        while !self.stop.load(Ordering::Relaxed) {
            // A timeout too: after a failed accept (EMFILE) the edge-triggered poller would not
            // report the connection still waiting.
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("control socket poller failed, no longer serving: {e}");
                    break;
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.accept_all();
            self.connections.retain(|c| !c.is_finished());
        }
        for c in self.connections.drain(..) {
            let _ = c.join();
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("control socket accept failed: {e}");
                    return;
                }
            };
            let Limits {
                max_connections,
                idle_timeout,
                ..
            } = self.limits;
            if self.active.load(Ordering::Relaxed) >= max_connections {
                tracing::debug!("control socket: connection refused, {max_connections} open");
                let reply = Reply::Error(format!(
                    "too many control connections (at most {max_connections}, each closed after {} s without a request); try again later",
                    idle_timeout.as_secs_f64()
                ));
                // One non-blocking write: the accept thread never waits for a client. A new
                // socket's buffer takes the line.
                let _ = stream.set_nonblocking(true);
                let _ = (&stream).write_all(format!("{}\n", reply.encode()).as_bytes());
                continue;
            }
            // Accepted sockets do not inherit O_NONBLOCK on Linux; make sure.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            self.active.fetch_add(1, Ordering::Relaxed);
            let guard = Active(self.active.clone());
            let respond = self.respond.clone();
            let stop = self.stop.clone();
            let limits = self.limits;
            let spawned = std::thread::Builder::new()
                .name("tundra-ctl-conn".into())
                .spawn(move || {
                    let _guard = guard;
                    serve_connection(stream, &*respond, limits, &stop);
                });
            match spawned {
                Ok(thread) => self.connections.push(thread),
                Err(e) => tracing::warn!("control socket: cannot start a thread: {e}"),
            }
        }
    }
}

/// Counts one open connection while it lives.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers request lines until the client closes, an I/O error, an oversized line, a deadline
/// missed (no complete line within the idle timeout, a reply not taken in within the write
/// timeout), or stop.
fn serve_connection(
    mut stream: UnixStream,
    respond: &(dyn Fn(&str) -> Reply + Send + Sync),
    limits: Limits,
    stop: &AtomicBool,
) {
    // Short blocking waits both ways, so that the deadlines and the stop flag are looked at.
    let set_up = stream
        .set_read_timeout(Some(IDLE_CHECK))
        .and_then(|()| stream.set_write_timeout(Some(IDLE_CHECK)));
    if let Err(e) = set_up {
        tracing::debug!("control connection: {e}");
        return;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes of `buf` known to hold no newline.
    let mut scanned = 0;
    // The next complete line is due by then; a partial line does not move it.
    let mut deadline = Instant::now() + limits.idle_timeout;
    loop {
        while let Some(at) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + at;
            if end > MAX_LINE {
                let _ = send(&mut stream, &too_long(), limits.write_timeout, stop);
                return;
            }
            let reply = answer(respond, &buf[..end]);
            buf.drain(..=end);
            scanned = 0;
            if let Err(e) = send(&mut stream, &reply, limits.write_timeout, stop) {
                tracing::debug!("control connection: reply not taken in, closing: {e}");
                return;
            }
            deadline = Instant::now() + limits.idle_timeout;
        }
        scanned = buf.len();
        if buf.len() > MAX_LINE {
            let _ = send(&mut stream, &too_long(), limits.write_timeout, stop);
            return;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::debug!(
                "control connection: no complete request line in {:?}, closing",
                limits.idle_timeout
            );
            let _ = send(
                &mut stream,
                &Reply::Error(format!(
                    "no complete request line in {} s; closing the connection",
                    limits.idle_timeout.as_secs_f64()
                )),
                limits.write_timeout,
                stop,
            );
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                // The client closed: a last line without its newline still gets its answer.
                if !buf.is_empty() {
                    let _ = send(
                        &mut stream,
                        &answer(respond, &buf),
                        limits.write_timeout,
                        stop,
                    );
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::debug!("control connection: {e}");
                return;
            }
        }
    }
}

fn too_long() -> Reply {
    tracing::debug!("control request refused: line longer than {MAX_LINE} bytes");
    Reply::Error(format!(
        "request line longer than {MAX_LINE} bytes; closing the connection"
    ))
}

/// The reply to one line (at most [`MAX_LINE`] bytes).
fn answer(respond: &(dyn Fn(&str) -> Reply + Send + Sync), line: &[u8]) -> Reply {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let reply = match std::str::from_utf8(line) {
        Ok(text) => respond(text),
        Err(e) => Reply::Error(format!("request is not UTF-8 ({e})")),
    };
    if let Reply::Error(e) = &reply {
        tracing::debug!("control request refused: {e}");
    }
    reply
}

/// Writes `reply` and its newline; gives up when the client has not taken it all in within
/// `timeout` (however slowly it reads meanwhile), or at stop.
fn send(
    stream: &mut UnixStream,
    reply: &Reply,
    timeout: Duration,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut line = reply.encode();
    line.push('\n');
    let deadline = Instant::now() + timeout;
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        if !rest.is_empty() && (Instant::now() >= deadline || stop.load(Ordering::Relaxed)) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} bytes of a reply not taken in within {timeout:?}",
                    rest.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("tundra-sock-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn bind_rules() {
        let dir = Dir::new("bind");
        // The parent directory is created; the socket is 0600; dropping removes it.
        let path = dir.0.join("run/tundra.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Someone answers: refused, and the live socket stays.
        let e = ControlSocket::bind(&path).err().unwrap();
        assert!(matches!(e, SocketError::InUse(_)), "{e}");
        assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
        drop(socket);
        assert!(!path.exists());
        // A stale socket (nobody listens) is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let socket = ControlSocket::bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(socket);
        // Something else than a socket is never replaced.
        fs::write(&path, "data").unwrap();
        let e = ControlSocket::bind(&path).err().unwrap();
        assert!(matches!(e, SocketError::NotASocket(_)), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn a_replaced_file_is_not_removed() {
        let dir = Dir::new("replaced");
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("t.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        drop(socket);
        assert!(path.exists(), "removed a socket that was not ours");
        drop(other);
    }

    /// A server on `dir` with `limits` and a fake responder: `ping` gets `"pong"`, `big N` a
    /// string of N bytes, anything else an error.
    fn fake(dir: &Dir, limits: Limits) -> (PathBuf, Server) {
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("t.sock");
        let respond: Respond = Arc::new(|line: &str| match line.split_once(' ') {
            None if line == "ping" => Reply::Ok("pong".into()),
            Some(("big", n)) => Reply::Ok("x".repeat(n.parse().unwrap()).into()),
            _ => Reply::Error(format!("unknown: {line}")),
        });
        let server = ControlSocket::bind(&path)
            .unwrap()
            .with_limits(limits)
            .serve_with(respond)
            .unwrap();
        (path, server)
    }

    fn connect(path: &Path) -> UnixStream {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// The next line from `s` (empty at end of stream; a reset, which a client whose last
    /// bytes were not read gets after the final line, counts as the end too).
    fn line(s: &mut UnixStream) -> String {
        let mut out = Vec::new();
        let mut byte = [0u8];
        while matches!(s.read(&mut byte), Ok(1)) && byte[0] != b'\n' {
            out.push(byte[0]);
        }
        String::from_utf8(out).unwrap()
    }

    /// Sends `ping` on `s` and checks the answer.
    fn ping(s: &mut UnixStream) {
        s.write_all(b"ping\n").unwrap();
        assert_eq!(line(s), r#"{"ok":true,"result":"pong"}"#);
    }

    /// A connection that sends nothing is closed after the idle timeout, with an error line
    /// that says why; so is one that trickles a byte at a time without ever ending its line.
    /// Each request line answered starts the time again.
    #[test]
    fn idle_and_trickling_connections_are_closed() {
        let dir = Dir::new("idle");
        let idle_timeout = Duration::from_millis(1500);
        let limits = Limits {
            idle_timeout,
            ..Limits::default()
        };
        let (path, _server) = fake(&dir, limits);

        let start = Instant::now();
        let mut idle = connect(&path);
        let mut busy = connect(&path);
        // `busy` sends a request every 100 ms, so is never idle for the whole timeout.
        let mut trickle = connect(&path);
        let mut trickled = 0;
        while start.elapsed() < idle_timeout * 2 {
            ping(&mut busy);
            if trickle.write_all(b"p").is_ok() {
                trickled += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(trickled >= 3, "{trickled}");
        for (what, s) in [("idle", &mut idle), ("trickling", &mut trickle)] {
            assert_eq!(
                Reply::decode(&line(s)),
                Ok(Reply::Error(
                    "no complete request line in 1.5 s; closing the connection".into()
                )),
                "{what}"
            );
            assert_eq!(line(s), "", "{what}: still open");
        }
        assert!(start.elapsed() >= idle_timeout);
        ping(&mut busy);
    }

    /// Clients that take every slot and send nothing refuse further clients only until the
    /// idle timeout closes them.
    #[test]
    fn idle_connections_free_their_slots() {
        let dir = Dir::new("slots");
        let limits = Limits {
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let (path, _server) = fake(&dir, limits);
        let hogs: Vec<UnixStream> = (0..MAX_CONNECTIONS).map(|_| connect(&path)).collect();
        // Each hog's thread counts once it is accepted: wait for the refusals to start.
        let mut extra = connect(&path);
        let refused = line(&mut extra);
        assert!(
            refused.contains("too many control connections (at most 16, each closed after 2 s without a request)"),
            "{refused}"
        );
        // Some time after the timeout, a new client is served.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut again = connect(&path);
            // A refused connection may be closed before the request is written.
            let _ = again.write_all(b"ping\n");
            if line(&mut again).contains("pong") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no slot freed after the idle timeout"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for mut hog in hogs {
            assert!(line(&mut hog).contains("no complete request line"));
        }
    }

    /// A client that sends requests but never reads its replies does not hold up the others,
    /// and loses its connection (and slot) after the write timeout.
    #[test]
    fn a_client_that_never_reads_is_dropped() {
        let dir = Dir::new("noread");
        let limits = Limits {
            max_connections: 2,
            write_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (path, _server) = fake(&dir, limits);
        let mut deaf = connect(&path);
        deaf.set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        // Replies of 1 MiB, more than the socket buffers hold.
        for _ in 0..4 {
            let _ = deaf.write_all(b"big 1048576\n");
        }
        let mut other = connect(&path);
        let start = Instant::now();
        for _ in 0..5 {
            ping(&mut other);
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        // `deaf` gets closed: then `other` and one more fit in the two slots.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut third = connect(&path);
            let _ = third.write_all(b"ping\n");
            if line(&mut third).contains("pong") {
                break;
            }
            assert!(Instant::now() < deadline, "the deaf client kept its slot");
            std::thread::sleep(Duration::from_millis(100));
        }
        ping(&mut other);
    }

    /// Stopping does not wait for a client that does not read, however long the write
    /// timeout.
    #[test]
    fn stop_does_not_wait_for_clients() {
        let dir = Dir::new("stop");
        let limits = Limits {
            write_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(600),
            ..Limits::default()
        };
        let (path, server) = fake(&dir, limits);
        let mut deaf = connect(&path);
        deaf.set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        for _ in 0..4 {
            let _ = deaf.write_all(b"big 1048576\n");
        }
        let _idle = connect(&path);
        let mut other = connect(&path);
        ping(&mut other);
        let start = Instant::now();
        server.stop();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            start.elapsed()
        );
        assert!(!path.exists());
    }
}
