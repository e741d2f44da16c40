//! `pktgen`: a small UDP packet generator and sink for the namespace benchmark
//! (`scripts/bench`), fast enough that it is not what limits the packets per second
//! measured through an overlay (iperf3 tops out near 120k small packets/s on the test bed).
//!
//! ```text
//! pktgen send --to ADDR:PORT [--bind ADDR] [--size N] [--rate PPS|max] [--duration SECS] [--batch N]
//! pktgen sink --bind ADDR:PORT [--duration SECS] [--json]
//! ```
//!
//! The sender sends `--size`-byte UDP payloads in `sendmmsg` batches for `--duration`
//! seconds, at `--rate` datagrams per second or as fast as it can (`max`). Each payload
//! starts with a 16-byte header: the magic `TDPG`, a kind byte (0 data, 1 end), three zero
//! bytes and a big-endian `u64`: the data packet's sequence number (0, 1, 2, ...) or, in
//! an end packet, how many data packets were sent. After the flood, the sender pauses
//! 200 ms (so that queues drain) and sends the end packet 5 times, 20 ms apart. It prints
//! one JSON line: `sent`, `send_errors`, `duration_s`, `pps`.
//!
//! The sink counts data packets with `recvmmsg` until an end packet arrives or
//! `--duration` seconds pass, and prints one JSON line (or a short text line without
//! `--json`): `sent` (from the end packet; else the highest sequence number seen + 1),
//! `received`, `lost` (`sent - received`), `reordered` (sequence number lower than one
//! seen before), `bytes`, `end_seen`, `duration_s` (first to last data packet) and `pps`
//! (`received / duration_s`). Datagrams without the header are counted as `foreign` and
//! otherwise ignored.
//!
//! Exit status: 0, or 2 with a one-line message for a bad flag or a socket error at start.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const MAGIC: &[u8; 4] = b"TDPG";
const HEADER_LEN: usize = 16;
const KIND_DATA: u8 = 0;
const KIND_END: u8 = 1;
/// Largest datagram the sink reads in full; longer ones are counted (truncated).
const SINK_BUF: usize = 2048;
const SINK_BATCH: usize = 64;
const SOCKET_BUF: usize = 8 << 20;

const USAGE: &str = "usage:
  pktgen send --to ADDR:PORT [--bind ADDR] [--size N] [--rate PPS|max] [--duration SECS] [--batch N]
  pktgen sink --bind ADDR:PORT [--duration SECS] [--json]
defaults: --size 64 (16..=65507), --rate max, --duration 5, --batch 64 (1..=1024)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("send") => parse_send(&args[1..]).and_then(|o| send(&o).map_err(|e| e.to_string())),
        Some("sink") => parse_sink(&args[1..]).and_then(|o| sink(&o).map_err(|e| e.to_string())),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err("expected `send` or `sink`".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktgen: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

struct SendOpts {
    to: SocketAddr,
    bind: Option<IpAddr>,
    size: usize,
    /// Datagrams per second; `None`: as fast as possible.
    rate: Option<u64>,
    duration: Duration,
    batch: usize,
}

struct SinkOpts {
    bind: SocketAddr,
    duration: Duration,
    json: bool,
}

/// Splits `--flag value` pairs; `switches` are flags without a value.
fn flags<'a>(
    args: &'a [String],
    switches: &[&str],
) -> Result<Vec<(&'a str, Option<&'a str>)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {flag:?}"));
        }
        if switches.contains(&flag.as_str()) {
            out.push((flag.as_str(), None));
        } else {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            out.push((flag.as_str(), Some(value.as_str())));
        }
    }
    Ok(out)
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: invalid value {value:?}"))
}

fn parse_duration(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = parse(flag, value)?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("{flag}: {value} is not in (0, 3600] seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_send(args: &[String]) -> Result<SendOpts, String> {
    let mut o = SendOpts {
        to: SocketAddr::from(([0, 0, 0, 0], 0)),
        bind: None,
        size: 64,
        rate: None,
        duration: Duration::from_secs(5),
        batch: 64,
    };
    let mut have_to = false;
    for (flag, value) in flags(args, &[])? {
        let value = value.unwrap_or_default();
        match flag {
            "--to" => {
                o.to = parse(flag, value)?;
                have_to = true;
            }
            "--bind" => o.bind = Some(parse(flag, value)?),
            "--size" => o.size = parse(flag, value)?,
            "--rate" if value == "max" => o.rate = None,
            "--rate" => o.rate = Some(parse(flag, value)?),
            "--duration" => o.duration = parse_duration(flag, value)?,
            "--batch" => o.batch = parse(flag, value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !have_to {
        return Err("send: --to is required".to_owned());
    }
    if !(HEADER_LEN..=65507).contains(&o.size) {
        return Err(format!("--size: {} is not in {HEADER_LEN}..=65507", o.size));
    }
    if !(1..=1024).contains(&o.batch) {
        return Err(format!("--batch: {} is not in 1..=1024", o.batch));
    }
    if o.rate == Some(0) {
        return Err("--rate: must be positive or `max`".to_owned());
    }
    Ok(o)
}

fn parse_sink(args: &[String]) -> Result<SinkOpts, String> {
    let mut bind = None;
    let mut o = SinkOpts {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        duration: Duration::from_secs(10),
        json: false,
    };
    for (flag, value) in flags(args, &["--json"])? {
        let value = value.unwrap_or_default();
        match flag {
            "--bind" => bind = Some(parse(flag, value)?),
            "--duration" => o.duration = parse_duration(flag, value)?,
            "--json" => o.json = true,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    o.bind = bind.ok_or("sink: --bind is required")?;
    Ok(o)
}

fn udp_socket(family_of: &SocketAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(*family_of),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
}

fn header(buf: &mut [u8], kind: u8, value: u64) {
    buf[..4].copy_from_slice(MAGIC);
    buf[4] = kind;
    buf[5..8].fill(0);
    buf[8..16].copy_from_slice(&value.to_be_bytes());
}

/// `sendmmsg` of the first `n` datagrams in `iov` on the connected socket `fd`: how many
/// were sent.
fn send_batch(
    fd: &Socket,
    iov: &mut [libc::iovec],
    msgs: &mut [libc::mmsghdr],
    n: usize,
) -> io::Result<usize> {
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()).take(n) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` entries of `msgs` point at one valid iovec each (set above),
    // each naming a live buffer of the length it says; `n <= msgs.len()`; the socket is
    // connected, so no `msg_name` is needed (it stays null from zero-initialization).
    let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

fn zeroed_mmsghdrs(n: usize) -> Vec<libc::mmsghdr> {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which all
    // zero bytes is a valid value (null pointers, zero lengths).
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

fn send(o: &SendOpts) -> io::Result<()> {
    let sock = udp_socket(&o.to)?;
    // Best effort: a larger buffer only smooths bursts.
    let _ = sock.set_send_buffer_size(SOCKET_BUF);
    if let Some(ip) = o.bind {
        sock.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    sock.connect(&SockAddr::from(o.to))?;

    let mut bufs: Vec<Vec<u8>> = (0..o.batch).map(|_| vec![0u8; o.size]).collect();
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = zeroed_mmsghdrs(o.batch);

    let start = Instant::now();
    let mut seq: u64 = 0;
    let mut errors: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= o.duration {
            break;
        }
        let mut n = o.batch;
        if let Some(rate) = o.rate {
            let due = (elapsed.as_secs_f64() * rate as f64) as u64 + 1;
            if seq >= due {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            n = n.min((due - seq) as usize);
        }
        // Writing through `bufs` while `iov` holds pointers into them is fine: the
        // vectors are never resized, so the pointers stay valid.
        for (k, b) in bufs.iter_mut().take(n).enumerate() {
            header(b, KIND_DATA, seq + k as u64);
        }
        match send_batch(&sock, &mut iov, &mut msgs, n) {
            Ok(sent) => seq += sent as u64,
            // A full queue on the path (ENOBUFS, EAGAIN) or an ICMP error reported back
            // (ECONNREFUSED): count it, and carry on until the duration is over.
            Err(_) => errors += 1,
        }
    }
    let duration = start.elapsed().as_secs_f64();

    std::thread::sleep(Duration::from_millis(200));
    let mut end = vec![0u8; o.size];
    header(&mut end, KIND_END, seq);
    for _ in 0..5 {
        let _ = sock.send(&end);
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "{}",
        json!({
            "sent": seq,
            "send_errors": errors,
            "size": o.size,
            "duration_s": duration,
            "pps": seq as f64 / duration,
        })
    );
    Ok(())
}

#[derive(Default)]
struct SinkCount {
    received: u64,
    bytes: u64,
    reordered: u64,
    foreign: u64,
    /// Highest sequence number seen + 1.
    next_seq: u64,
    end: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl SinkCount {
    fn datagram(&mut self, data: &[u8], len: usize, now: Instant) {
        if data.len() < HEADER_LEN || &data[..4] != MAGIC {
            self.foreign += 1;
            return;
        }
        let mut value = [0u8; 8];
        value.copy_from_slice(&data[8..16]);
        let value = u64::from_be_bytes(value);
        match data[4] {
            KIND_DATA => {
                self.received += 1;
                self.bytes += len as u64;
                if value < self.next_seq {
                    self.reordered += 1;
                } else {
                    self.next_seq = value + 1;
                }
                self.first.get_or_insert(now);
                self.last = Some(now);
            }
            KIND_END => self.end = Some(value),
            _ => self.foreign += 1,
        }
    }
}

fn sink(o: &SinkOpts) -> io::Result<()> {
    let sock = udp_socket(&o.bind)?;
    let _ = sock.set_recv_buffer_size(SOCKET_BUF);
    sock.bind(&SockAddr::from(o.bind))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;

    let mut bufs = vec![[0u8; SINK_BUF]; SINK_BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = zeroed_mmsghdrs(SINK_BATCH);
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }

    let start = Instant::now();
    let mut count = SinkCount::default();
    while count.end.is_none() && start.elapsed() < o.duration {
        // SAFETY: every entry of `msgs` points at one iovec naming a live SINK_BUF-byte
        // buffer (set above; neither `iov` nor `bufs` is touched until the loop ends);
        // `msg_name` is null, so no address is written; the timeout pointer is null.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                SINK_BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        let now = Instant::now();
        for (m, b) in msgs.iter().zip(bufs.iter()).take(r as usize) {
            let len = m.msg_len as usize;
            count.datagram(&b[..len.min(SINK_BUF)], len, now);
        }
    }

    let sent = count.end.unwrap_or(count.next_seq);
    let duration = match (count.first, count.last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let pps = if duration > 0.0 {
        count.received as f64 / duration
    } else {
        0.0
    };
    let lost = sent.saturating_sub(count.received);
    if o.json {
        println!(
            "{}",
            json!({
                "sent": sent,
                "received": count.received,
                "lost": lost,
                "loss_pct": if sent > 0 { 100.0 * lost as f64 / sent as f64 } else { 0.0 },
                "reordered": count.reordered,
                "foreign": count.foreign,
                "bytes": count.bytes,
                "end_seen": count.end.is_some(),
                "duration_s": duration,
                "pps": pps,
            })
        );
    } else {
        println!(
            "received {} of {sent} ({lost} lost, {} reordered) in {duration:.3} s: {pps:.0} pps",
            count.received, count.reordered
        );
    }
    Ok(())
}
