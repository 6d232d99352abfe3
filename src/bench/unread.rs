//! How long the gateway leaves its PBX socket unread, seen from the bench's switch.
//!
//! A blocked switch write (`write_stalls`) only shows a gateway that stopped reading long
//! enough to fill both sockets' buffers (megabytes: hundreds of milliseconds at 100 000
//! events/s). This measures every pause: the switch logs when each of its writes went into
//! the kernel (its running octet count), and a sampler thread asks the kernel every
//! millisecond (`sock_diag`, as `ss` does) how many octets the two sockets of the link hold:
//! the gateway's receive queue (arrived, not read) and the switch's send queue (written,
//! not yet taken by the gateway's side). The oldest of those octets was written at a time
//! the log knows; its age is how long the gateway has left the socket unread. An episode
//! is a run of samples at [`UNREAD_LIMIT`] or more.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An octet unread this long or longer: the gateway did not read its PBX socket
/// continuously (the same 10 ms as a blocked write, [`super::switch::STALL`]).
pub const UNREAD_LIMIT: Duration = Duration::from_millis(10);
/// How often the sampler looks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// Writes remembered at most (each one of the switch's 1 ms batches; far more than any
/// unread backlog the sockets can hold): beyond it the oldest are forgotten, counted.
const LOG_CAP: usize = 1 << 16;

/// The switch's writes to the gateway and what the sampler found.
#[derive(Default)]
pub struct Unread {
    /// The link's two ends (switch, gateway), once the gateway connected.
    ends: Mutex<Option<(SocketAddr, SocketAddr)>>,
    log: Mutex<Log>,
    log_overflow: AtomicU64,
    /// Whether samples count (the measured window).
    measuring: AtomicBool,
    /// Of the measured window: the worst age (µs), samples taken, samples at the limit or
    /// over, episodes, samples the kernel could not answer.
    worst_us: AtomicU64,
    samples: AtomicU64,
    over: AtomicU64,
    episodes: AtomicU64,
    failed: AtomicU64,
    /// The worst age since the last [`Unread::take_recent_worst_ms`] (µs), for the progress.
    recent_worst_us: AtomicU64,
    /// Why the sampler could not run or sample (the first reason).
    error: Mutex<Option<String>>,
}

/// The switch's writes not known to be read yet.
#[derive(Default)]
struct Log {
    /// (octets written in all after the write, when it went into the kernel).
    writes: VecDeque<(u64, Instant)>,
    /// Octets written in all on this connection.
    written: u64,
}

impl Unread {
    /// A new connection from the gateway: its ends, and a fresh log.
    pub fn connected(&self, switch: SocketAddr, gateway: SocketAddr) {
        *lock(&self.ends) = Some((switch, gateway));
        *lock(&self.log) = Log::default();
    }

    /// `n` octets of the switch went into the kernel just now.
    pub fn wrote(&self, n: usize) {
        let mut log = lock(&self.log);
        log.written += n as u64;
        if log.writes.len() >= LOG_CAP {
            log.writes.pop_front();
            self.log_overflow.fetch_add(1, Relaxed);
        }
        let total = log.written;
        log.writes.push_back((total, Instant::now()));
    }

    /// Count samples from now on (the measured window), or stop counting.
    pub fn measure(&self, on: bool) {
        self.measuring.store(on, Relaxed);
    }

    /// The worst age since the last call (ms), for the progress line.
    pub fn take_recent_worst_ms(&self) -> f64 {
        self.recent_worst_us.swap(0, Relaxed) as f64 / 1000.0
    }

    /// What the measured window showed.
    pub fn report(&self) -> UnreadReport {
        UnreadReport {
            worst_ms: self.worst_us.load(Relaxed) as f64 / 1000.0,
            samples: self.samples.load(Relaxed),
            samples_over: self.over.load(Relaxed),
            episodes: self.episodes.load(Relaxed),
            failed: self.failed.load(Relaxed) + self.log_overflow.load(Relaxed),
            error: lock(&self.error).clone(),
        }
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        lock(&self.error).get_or_insert(why);
    }

    /// The age of the oldest octet not yet read by the gateway, the kernel having just
    /// said `unread` octets are. The switch's count is read after the kernel's: a write in
    /// between counts as already there, which can only make the age too low; a write the
    /// kernel has but the log not yet (the switch logs after its write returns) makes it
    /// too high by at most the time since the write before (the log is emptied whenever
    /// everything was read, so never by an older one).
    fn age(&self, unread: u64, now: Instant) -> Duration {
        let mut log = lock(&self.log);
        // octets [written - unread, written) are unread: the first of them went out in the
        // first logged write that ends after it; older writes were all read (forgotten)
        let first = log.written.saturating_sub(unread);
        while log.writes.front().is_some_and(|&(end, _)| end <= first) {
            log.writes.pop_front();
        }
        if unread == 0 {
            return Duration::ZERO;
        }
        log.writes
            .front()
            .map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at))
    }
}

/// What the bench reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnreadReport {
    pub worst_ms: f64,
    pub samples: u64,
    pub samples_over: u64,
    pub episodes: u64,
    /// Samples the kernel did not answer (and writes forgotten by a full log).
    pub failed: u64,
    pub error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sampler's thread, stopped and joined when dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Start sampling for `unread` (without a thread, the report says it was not measured).
    pub fn start(unread: Arc<Unread>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = start(unread, stop.clone());
        Sampler { stop, thread }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the sampler thread; it ends when `stop` is set. `None` when no thread could be
/// started (the report says so).
fn start(unread: Arc<Unread>, stop: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    let report_to = unread.clone();
    let started = std::thread::Builder::new()
        .name("bench unread".into())
        .spawn(move || {
            let mut diag = match Diag::open() {
                Ok(d) => d,
                Err(e) => {
                    unread.fail(format!(
                        "sock_diag unavailable ({e}): the PBX socket's unread time was not measured"
                    ));
                    return;
                }
            };
            let mut in_episode = false;
            let mut next = Instant::now();
            while !stop.load(Relaxed) {
                next += SAMPLE_EVERY;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now; // late (the machine was busy): no burst of samples
                }
                let Some((switch, gateway)) = *lock(&unread.ends) else {
                    continue;
                };
                let queued = diag
                    .queue(gateway, switch)
                    .map(|(rq, _)| rq)
                    .and_then(|rq| diag.queue(switch, gateway).map(|(_, sq)| rq + sq));
                let age = match queued {
                    Ok(q) => unread.age(u64::from(q), Instant::now()),
                    Err(e) => {
                        if unread.measuring.load(Relaxed) {
                            unread.fail(format!("sock_diag: {e}"));
                        }
                        continue;
                    }
                };
                let us = age.as_micros() as u64;
                unread.recent_worst_us.fetch_max(us, Relaxed);
                if !unread.measuring.load(Relaxed) {
                    in_episode = false;
                    continue;
                }
                unread.samples.fetch_add(1, Relaxed);
                unread.worst_us.fetch_max(us, Relaxed);
                if age >= UNREAD_LIMIT {
                    unread.over.fetch_add(1, Relaxed);
                    if !in_episode {
                        unread.episodes.fetch_add(1, Relaxed);
                    }
                    in_episode = true;
                } else {
                    in_episode = false;
                }
            }
        });
    match started {
        Ok(t) => Some(t),
        Err(e) => {
            report_to.fail(format!(
                "no thread for the sampler ({e}): the PBX socket's unread time was not measured"
            ));
            None
        }
    }
}

/// A `NETLINK_SOCK_DIAG` socket asking for one TCP socket at a time.
struct Diag {
    sock: Socket,
    buf: Vec<u8>,
}

impl Diag {
    fn open() -> std::io::Result<Diag> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&NlAddr::new(0, 0))?;
        // the kernel answers within the send: a reply not there is a failed sample
        sock.set_non_blocking(true)?;
        Ok(Diag {
            sock,
            buf: vec![0; 8192],
        })
    }

    /// (receive queue, send queue) of the TCP socket bound to `local` and connected to
    /// `remote`.
    fn queue(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<(u32, u32), String> {
        let mut id = if local.is_ipv4() {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        id.source_port = local.port();
        id.destination_port = remote.port();
        id.source_address = local.ip();
        id.destination_address = remote.ip();
        id.cookie = [0xff; 8]; // INET_DIAG_NOCOOKIE: found by its addresses
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST;
        let mut msg = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family: if local.is_ipv4() { AF_INET } else { AF_INET6 },
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: id,
            })
            .into(),
        );
        msg.finalize();
        let len = msg.buffer_len();
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        msg.serialize(&mut self.buf[..len]);
        self.sock
            .send(&self.buf[..len], 0)
            .map_err(|e| format!("send: {e}"))?;
        // the kernel answers within the send; a reply for another socket (one that came
        // late for an earlier request) is skipped, a few at most
        for _ in 0..4 {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| format!("recv: {e}"))?;
            let reply = <NetlinkMessage<SockDiagMessage>>::deserialize(&self.buf[..n])
                .map_err(|e| format!("reply not understood: {e}"))?;
            match reply.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                    if r.header.socket_id.source_port == local.port()
                        && r.header.socket_id.destination_port == remote.port() =>
                {
                    return Ok((r.header.recv_queue, r.header.send_queue));
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(_)) => continue,
                NetlinkPayload::Error(e) => return Err(format!("the kernel: {e}")),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Err("no reply for the socket asked about".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn the_age_is_that_of_the_oldest_unread_octet() {
        let u = Unread::default();
        let t0 = Instant::now();
        {
            let mut log = lock(&u.log);
            log.writes
                .extend([(100, t0), (250, t0 + Duration::from_millis(5))]);
            log.written = 250;
        }
        let now = t0 + Duration::from_millis(20);
        // octets 99..250: the first write's last octet is unread
        assert_eq!(u.age(151, now), Duration::from_millis(20));
        assert_eq!(lock(&u.log).writes.len(), 2);
        // the first write was read meanwhile (octets 100.. unread): it leaves the log
        assert_eq!(u.age(150, now), Duration::from_millis(15));
        assert_eq!(lock(&u.log).writes.len(), 1);
        // octets 200..250 unread: the second write's
        assert_eq!(u.age(50, now), Duration::from_millis(15));
        // all read: the log is emptied, so that a write the kernel has before the log
        // (the switch counts after its write returns) is never paired with an old one
        assert_eq!(u.age(0, now), Duration::ZERO, "all read");
        assert!(lock(&u.log).writes.is_empty());
        assert_eq!(u.age(30, now), Duration::ZERO, "unread, not logged yet");
    }

    /// Real sockets on loopback: a reader that pauses 150 ms shows an episode of about
    /// that length; the kernel's queues are what the sampler reads.
    #[test]
    fn a_reader_that_pauses_is_seen_unread_for_as_long() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut switch = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut gateway, _) = l.accept().unwrap();
        let u = Arc::new(Unread::default());
        u.connected(switch.local_addr().unwrap(), switch.peer_addr().unwrap());
        let sampler = Sampler::start(u.clone());
        assert!(sampler.thread.is_some(), "a thread");
        u.measure(true);
        let mut buf = [0u8; 4096];
        // 1 KiB every ms for 100 ms, read at once; then 150 ms unread; then read
        for _ in 0..100 {
            switch.write_all(&[7; 1024]).unwrap();
            u.wrote(1024);
            gateway.read_exact(&mut buf[..1024]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let paused = Instant::now();
        switch.write_all(&[7; 1024]).unwrap();
        u.wrote(1024);
        std::thread::sleep(Duration::from_millis(150));
        gateway.read_exact(&mut buf[..1024]).unwrap();
        let unread_for = paused.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        u.measure(false);
        drop(sampler); // stopped and joined
        let r = u.report();
        assert_eq!(r.error, None);
        assert!(r.samples > 50, "{r:?}");
        assert!(r.episodes >= 1, "{r:?}");
        assert!(
            r.worst_ms >= 140.0 && r.worst_ms <= unread_for.as_secs_f64() * 1000.0 + 5.0,
            "{r:?}, unread for {unread_for:?}"
        );
    }
}
