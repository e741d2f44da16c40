//! The control socket: a Unix stream socket speaking [`super::protocol`], served by one accept
//! thread and one thread per connection.
//!
//! [`ControlSocket::bind`] runs before the dataplane touches anything: it creates the parent
//! directory if needed, refuses a path another live tundra answers on, replaces a stale socket
//! file, and binds with mode 0600 (the umask is tightened around `bind`, so the socket is never
//! accessible to others). [`ControlSocket::serve`] starts the threads; [`Server::stop`] (or
//! dropping it) stops them and removes the socket file.
//!
//! Limits: [`MAX_CONNECTIONS`] connections at once (one more gets an error line and is closed)
//! and [`MAX_LINE`] bytes per request line (a longer one gets an error line and the connection
//! is closed). Per-request errors are logged at debug level.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::protocol::{self, Reply, MAX_LINE};
use super::Controller;
use crate::sys;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How often an idle connection thread looks at the stop flag.
const IDLE_CHECK: Duration = Duration::from_millis(200);
/// A client that does not read its reply for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A bound control socket, not served yet. Dropping it removes the socket file.
pub struct ControlSocket {
    listener: Option<UnixListener>,
    owned: OwnedPath,
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
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.owned.path
    }

    /// Starts serving requests with `controller` on an accept thread.
    ///
    /// # Errors
    /// The poller or the thread could not be set up; the socket file is removed then.
    pub fn serve(mut self, controller: Controller) -> Result<Server, SocketError> {
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
            controller,
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
    controller: Controller,
    active: Arc<AtomicUsize>,
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
            // Accepted sockets do not inherit O_NONBLOCK on Linux; make sure.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            if self.active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                tracing::debug!("control socket: connection refused, {MAX_CONNECTIONS} open");
                let reply = Reply::Error(format!(
                    "too many control connections (at most {MAX_CONNECTIONS}); try again later"
                ));
                let _ = (&stream).write_all(format!("{}\n", reply.encode()).as_bytes());
                continue;
            }
            self.active.fetch_add(1, Ordering::Relaxed);
            let guard = Active(self.active.clone());
            let controller = self.controller.clone();
            let stop = self.stop.clone();
            let spawned = std::thread::Builder::new()
                .name("tundra-ctl-conn".into())
                .spawn(move || {
                    let _guard = guard;
                    serve_connection(stream, &controller, &stop);
                });
            match spawned {
                Ok(handle) => self.connections.push(handle),
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

/// Answers request lines until the client closes, an I/O error, an oversized line, or stop.
fn serve_connection(mut stream: UnixStream, controller: &Controller, stop: &AtomicBool) {
    if let Err(e) = stream.set_read_timeout(Some(IDLE_CHECK)) {
        tracing::debug!("control connection: {e}");
        return;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes of `buf` known to hold no newline.
    let mut scanned = 0;
    loop {
        while let Some(at) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + at;
            if end > MAX_LINE {
                let _ = send(&mut stream, &too_long());
                return;
            }
            let reply = answer(controller, &buf[..end]);
            buf.drain(..=end);
            scanned = 0;
            if send(&mut stream, &reply).is_err() {
                return;
            }
        }
        scanned = buf.len();
        if buf.len() > MAX_LINE {
            let _ = send(&mut stream, &too_long());
            return;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                // The client closed: a last line without its newline still gets its answer.
                if !buf.is_empty() {
                    let _ = send(&mut stream, &answer(controller, &buf));
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
fn answer(controller: &Controller, line: &[u8]) -> Reply {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let reply = match std::str::from_utf8(line) {
        Ok(text) => protocol::respond(controller, text),
        Err(e) => Reply::Error(format!("request is not UTF-8 ({e})")),
    };
    if let Reply::Error(e) = &reply {
        tracing::debug!("control request refused: {e}");
    }
    reply
}

fn send(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = reply.encode();
    line.push('\n');
    stream.write_all(line.as_bytes())
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
}
