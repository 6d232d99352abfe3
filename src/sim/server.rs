//! The tokio driver around [`Switch`]: the CSTA listeners (2-octet length or HiPath framing,
//! `link.framing`; one per side, all serving the one switch), the NDJSON control port and
//! the scenario runner. One task owns the switch; connections talk to it
//! over bounded channels; every write has a timeout and a client that cannot keep up is
//! dropped (a real switch does the same).

use super::config::SimConfig;
use super::control::{self, Command};
use super::switch::{AssocId, Output, Switch};
use crate::lines::Line;
use bytes::{Bytes, BytesMut};
use ctigate_csta::framing::{Frame, Framing, U16Codec, HANDSHAKE_APP};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tracing::{error, info, warn};

/// Writes to one connection that may wait in its queue.
const WRITE_QUEUE: usize = 4096;
/// A write that takes longer drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest control line.
pub const MAX_CONTROL_LINE: usize = 64 * 1024;
/// Control connections at once.
const MAX_CONTROL_CLIENTS: usize = 16;
/// How long a side coming back (fault `side_up`) tries to listen on its address again.
const REBIND_FOR: Duration = Duration::from_secs(5);

enum Input {
    Connected {
        side: usize,
        peer: String,
        writer: mpsc::Sender<Out>,
        reply: oneshot::Sender<Option<AssocId>>,
    },
    Frame(AssocId, Frame),
    Gone(AssocId),
    Control(Command, oneshot::Sender<Value>),
    /// Release every association and answer when every connection is gone.
    Stop(oneshot::Sender<()>),
}

enum Out {
    Bytes(Bytes),
    Close,
}

/// A running simulator.
pub struct Sim {
    /// Where applications connect (CSTA, 2-octet framing): side 0.
    pub csta_addr: SocketAddr,
    /// Every side's CSTA address (side 0 first); one switch, one call model behind them.
    pub sides: Vec<SocketAddr>,
    /// The NDJSON control port, when opened.
    pub control_addr: Option<SocketAddr>,
    tx: mpsc::Sender<Input>,
    /// Whether each side's listener is open (the answer to `side_down` / `side_up` waits
    /// for it).
    listening: Listening,
    dialplan: String,
}

/// Whether each side's listener is open, by side.
type Listening = Arc<[watch::Receiver<bool>]>;

impl Sim {
    /// Bind both ports and start. `control`: the control port address (None: no port;
    /// commands via [`Sim::command`] only).
    pub async fn start(
        cfg: SimConfig,
        listen: &str,
        control: Option<&str>,
    ) -> std::io::Result<Sim> {
        Sim::start_sides(cfg, &[listen], control).await
    }

    /// [`Sim::start`] with one CSTA listener per address in `listen` (the switch's sides,
    /// 1 to [`super::switch::MAX_SIDES`]): one switch and call model behind them all, so a
    /// call survives an application moving from one side to another. Fault `side_down`
    /// closes a side's listener and aborts its associations; `side_up` listens again.
    pub async fn start_sides(
        cfg: SimConfig,
        listen: &[&str],
        control: Option<&str>,
    ) -> std::io::Result<Sim> {
        if listen.is_empty() || listen.len() > super::switch::MAX_SIDES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "1 to {} listen addresses (sides), not {}",
                    super::switch::MAX_SIDES,
                    listen.len()
                ),
            ));
        }
        let handshake = cfg.link.handshake;
        let framing = cfg.link.framing;
        let cfg_for_restart = cfg.clone();
        let switch = Switch::new(cfg).with_sides(listen.len());
        let dialplan = switch.dialplan();
        let mut listeners = Vec::new();
        for a in listen {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?;
            listeners.push(l);
        }
        let sides = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let csta_addr = sides[0];
        let ctl = match control {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {a} (control port): {e}"),
                )
            })?),
            None => None,
        };
        let control_addr = match &ctl {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(1024);
        let mut side_up = Vec::new();
        let mut listening = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let (up_tx, up_rx) = watch::channel(true);
            let (open_tx, open_rx) = watch::channel(true);
            side_up.push(up_tx);
            listening.push(open_rx);
            tokio::spawn(accept_csta(
                i,
                l,
                tx.clone(),
                framing,
                handshake,
                up_rx,
                open_tx,
            ));
        }
        let listening: Listening = listening.into();
        tokio::spawn(core(switch, cfg_for_restart, rx, side_up));
        if let Some(l) = ctl {
            tokio::spawn(accept_control(l, tx.clone(), listening.clone()));
        }
        info!(%csta_addr, ?sides, control = ?control_addr, "switch simulator listening");
        if control_addr.is_some_and(|a| !a.ip().is_loopback()) {
            warn!(control = ?control_addr, "the control port is reachable from other machines and has no authentication: anyone reaching it can inject calls and faults (it binds loopback unless told otherwise)");
        }
        Ok(Sim {
            csta_addr,
            sides,
            control_addr,
            tx,
            listening,
            dialplan,
        })
    }

    pub fn dialplan(&self) -> &str {
        &self.dialplan
    }

    /// Stop gracefully (SIGTERM, SIGINT): RLRQ to every associated application, ABRT to
    /// those that do not answer RLRE within `link.release_timeout_ms`, every connection
    /// closed, no new ones. Returns when every connection is gone, or after `bound` (false
    /// then).
    pub async fn stop(&self, bound: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Stop(tx)).await.is_err() {
            return true;
        }
        matches!(tokio::time::timeout(bound, rx).await, Ok(Ok(())))
    }

    /// Run one control command (as if sent on the control port).
    pub async fn command(&self, cmd: Command) -> Value {
        run_command(&self.tx, &self.listening, cmd).await
    }

    /// Run a scenario: one command per line (`#` comments and blank lines skipped), or a
    /// JSON array of commands. Each answer goes to `report`; stops at the first failure.
    pub async fn scenario(
        &self,
        text: &str,
        mut report: impl FnMut(usize, &Value),
    ) -> Result<usize, String> {
        let cmds = parse_scenario(text)?;
        let n = cmds.len();
        for (i, (line, c)) in cmds.into_iter().enumerate() {
            let r = self.command(c).await;
            report(line, &r);
            if r.get("ok") != Some(&Value::Bool(true)) {
                return Err(format!(
                    "scenario line {line}: {}",
                    r.get("error").and_then(Value::as_str).unwrap_or("failed")
                ));
            }
            let _ = i;
        }
        Ok(n)
    }
}

/// The commands of a scenario file with their line numbers.
pub fn parse_scenario(text: &str) -> Result<Vec<(usize, Command)>, String> {
    if text.trim_start().starts_with('[') {
        let v: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("scenario: bad JSON array: {e}"))?;
        return v
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                control::parse(&c.to_string())
                    .map(|c| (i + 1, c))
                    .map_err(|e| format!("scenario item {}: {e}", i + 1))
            })
            .collect();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            control::parse(l)
                .map(|c| (i + 1, c))
                .map_err(|e| format!("scenario line {}: {e}", i + 1))
        })
        .collect()
}

async fn run_command(tx: &mpsc::Sender<Input>, listening: &Listening, cmd: Command) -> Value {
    match cmd {
        Command::Fault {
            ref fault,
            side: Some(side),
            ..
        } if fault == "side_down" || fault == "side_up" => {
            // answered once the side's listener is closed (or open again)
            let up = fault == "side_up";
            let v = ask(tx, cmd).await;
            let Some(mut open) = listening.get(side).cloned() else {
                return v;
            };
            if v["ok"] != true {
                return v;
            }
            let bound = REBIND_FOR + Duration::from_secs(1);
            let done =
                tokio::time::timeout(bound, async { open.wait_for(|o| *o == up).await.is_ok() })
                    .await;
            match done {
                Ok(true) => v,
                _ => json!({"ok": false, "error": format!(
                    "side {side}: its listener did not {} within {bound:?} (see the log)",
                    if up { "open again" } else { "close" }
                )}),
            }
        }
        Command::Sleep { ms } => {
            tokio::time::sleep(Duration::from_millis(ms.min(3_600_000))).await;
            json!({"ok": true})
        }
        Command::WaitFor { device, timeout_ms } => {
            let end = Instant::now() + Duration::from_millis(timeout_ms.min(3_600_000));
            loop {
                let st = ask(tx, Command::Status).await;
                let found = st["associations"].as_array().is_some_and(|l| {
                    l.iter().any(|a| {
                        a["phase"] == "associated"
                            && device.as_ref().is_none_or(|d| {
                                a["monitors"].as_array().is_some_and(|m| {
                                    m.iter().any(|x| x["watches"]["device"] == json!(d))
                                })
                            })
                    })
                });
                if found {
                    return json!({"ok": true});
                }
                if Instant::now() >= end {
                    return json!({"ok": false, "error": format!(
                        "no application associated{} within {timeout_ms} ms",
                        device.map(|d| format!(" with a monitor on {d}")).unwrap_or_default()
                    )});
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c => ask(tx, c).await,
    }
}

async fn ask(tx: &mpsc::Sender<Input>, cmd: Command) -> Value {
    let (rtx, rrx) = oneshot::channel();
    if tx.send(Input::Control(cmd, rtx)).await.is_err() {
        return json!({"ok": false, "error": "the simulator has stopped"});
    }
    match tokio::time::timeout(Duration::from_secs(10), rrx).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => {
            json!({"ok": false, "error": "the simulator failed on this command and was restarted (see its log)"})
        }
        Err(_) => json!({"ok": false, "error": "the simulator did not answer in 10 s"}),
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Run one step of the switch; a panic is caught and reported (the supervisor then
/// restarts the switch instead of leaving the simulator dead).
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("{what}: {msg}")
    })
}

/// The task that owns the switch, and its supervisor: a step that panics (a bug: input is
/// validated before it reaches the switch) is logged, every connection is closed, and a
/// fresh switch with the same configuration takes over, so the simulator is never left
/// dead; applications reconnect as after a switch restart.
async fn core(
    mut sw: Switch,
    cfg: SimConfig,
    mut rx: mpsc::Receiver<Input>,
    side_up: Vec<watch::Sender<bool>>,
) {
    let mut writers: HashMap<AssocId, mpsc::Sender<Out>> = HashMap::new();
    let mut framer = U16Codec::new().with_framing(cfg.link.framing);
    let mut stopped: Option<oneshot::Sender<()>> = None;
    loop {
        if stopped.is_some() && writers.is_empty() && sw.all_closed() {
            info!("every association released or closed: the simulator stops");
            if let Some(s) = stopped.take() {
                let _ = s.send(());
            }
        }
        let deadline = sw
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let step = tokio::select! {
            inp = rx.recv() => {
                let Some(inp) = inp else { break };
                match inp {
                    Input::Connected { side, peer, writer, reply } => {
                        guarded("connect", || sw.connect_on(side, &peer, now())).map(|id| {
                            if let Some(id) = id {
                                writers.insert(id, writer);
                            }
                            let _ = reply.send(id);
                        })
                    }
                    Input::Frame(id, f) => guarded("a frame", || sw.receive(id, f, now())),
                    Input::Gone(id) => {
                        writers.remove(&id);
                        guarded("a disconnect", || sw.disconnected(id))
                    }
                    Input::Stop(reply) => {
                        info!("stopping: releasing every association");
                        stopped = Some(reply);
                        guarded("stop", || sw.release_all(now()))
                    }
                    Input::Control(c, reply) => {
                        let what = format!("control command {c:?}");
                        guarded(&what, || sw.control(c, now())).map(|v| {
                            let _ = reply.send(v);
                        })
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => guarded("a timer", || sw.handle_timeout(now())),
        };
        if let Err(e) = step {
            error!(
                "the switch simulator failed ({e}); restarting it: every association is closed and every call is lost"
            );
            let last = sw
                .next_assoc_id()
                .saturating_sub(1)
                .max(writers.keys().copied().max().unwrap_or(0));
            for (_, w) in writers.drain() {
                let _ = w.try_send(Out::Close);
            }
            sw = Switch::new(cfg.clone())
                .ids_after(last)
                .with_sides(side_up.len());
            continue;
        }
        // a side down (or back): its listener closes (or listens again)
        for (i, tx) in side_up.iter().enumerate() {
            let up = sw.sides().get(i).copied().unwrap_or(true);
            tx.send_if_modified(|v| std::mem::replace(v, up) != up);
        }
        while let Some(o) = sw.poll_output() {
            let (id, msg) = match o {
                Output::Pdu { assoc, pdu } => {
                    let mut b = BytesMut::with_capacity(pdu.len() + 3);
                    if let Err(e) = framer.encode(&pdu[..], &mut b) {
                        warn!(assoc, error = %e, "cannot frame a PDU: dropped");
                        continue;
                    }
                    (assoc, Out::Bytes(b.freeze()))
                }
                Output::Raw { assoc, bytes } => (assoc, Out::Bytes(bytes)),
                Output::Close { assoc, .. } => (assoc, Out::Close),
            };
            let Some(w) = writers.get(&id) else { continue };
            tracing::trace!(assoc = id, "output queued");
            if w.try_send(msg).is_err() {
                warn!(
                    assoc = id,
                    "the application does not read fast enough: dropping the connection"
                );
                writers.remove(&id);
                sw.disconnected(id);
            }
        }
    }
}

/// One side's listener: accepts while the side is up; closed while it is down (connections
/// are refused), bound to the same address again when it is back.
async fn accept_csta(
    side: usize,
    l: TcpListener,
    tx: mpsc::Sender<Input>,
    framing: Framing,
    handshake: bool,
    mut up: watch::Receiver<bool>,
    open: watch::Sender<bool>,
) {
    let Ok(addr) = l.local_addr() else { return };
    let mut listener = Some(l);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                if up.wait_for(|u| *u).await.is_err() {
                    return; // the simulator stopped
                }
                match rebind(addr).await {
                    Ok(l) => {
                        info!(side, %addr, "side up: listening again");
                        open.send_replace(true);
                        l
                    }
                    Err(e) => {
                        error!(side, %addr, error = %e, "side up, but cannot listen on its address again within {REBIND_FOR:?}: it stays closed until the next side_down / side_up");
                        if up.wait_for(|u| !*u).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        loop {
            tokio::select! {
                a = l.accept() => match a {
                    Ok((s, peer)) => {
                        let tx = tx.clone();
                        tokio::spawn(csta_conn(side, s, peer, tx, framing, handshake));
                    }
                    Err(e) => {
                        warn!(side, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                down = async { up.wait_for(|u| !*u).await.is_ok() } => {
                    if !down {
                        return; // the simulator stopped
                    }
                    break;
                }
            }
        }
        drop(l);
        open.send_replace(false);
        info!(side, %addr, "side down: listener closed (connections refused)");
    }
}

/// Listen on `addr` again, retrying for [`REBIND_FOR`] (the port may be held a moment).
async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let end = Instant::now() + REBIND_FOR;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(e) => {
                warn!(%addr, error = %e, "cannot listen again yet: retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn csta_conn(
    side: usize,
    s: TcpStream,
    peer: SocketAddr,
    tx: mpsc::Sender<Input>,
    framing: Framing,
    handshake: bool,
) {
    let _ = s.set_nodelay(true);
    let (r, mut w) = s.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Out>(WRITE_QUEUE);
    let (rtx, rrx) = oneshot::channel();
    let connected = Input::Connected {
        side,
        peer: peer.to_string(),
        writer: wtx,
        reply: rtx,
    };
    if tx.send(connected).await.is_err() {
        return;
    }
    let Ok(Some(id)) = rrx.await else {
        return; // refused: dropping the socket closes it
    };
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        while let Some(m) = wrx.recv().await {
            match m {
                Out::Bytes(b) => match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&b)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                },
                Out::Close => break,
            }
        }
        let _ = w.shutdown().await;
        drop(done_tx);
    });
    let mut codec = U16Codec::new().with_framing(framing);
    if handshake {
        codec = codec.expecting_handshake(HANDSHAKE_APP);
    }
    let mut r = r;
    let mut buf = BytesMut::with_capacity(4096);
    'conn: loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    if tx.send(Input::Frame(id, f)).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(assoc = id, %peer, error = %e, "framing error: closing the connection");
                    break 'conn;
                }
            }
        }
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = &mut done_rx => break,
        }
    }
    writer.abort();
    let _ = tx.send(Input::Gone(id)).await;
}

/// One control connection, as the acceptor sees it.
struct ControlSlot {
    /// When it last finished a command (or connected).
    idle_since: Arc<std::sync::Mutex<Instant>>,
    /// Running a command now.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// Close it (it was idle longest when the port was full).
    evict: tokio_util::sync::CancellationToken,
    /// It has ended.
    done: tokio_util::sync::CancellationToken,
}

/// The control port: at most [`MAX_CONTROL_CLIENTS`] connections. When they are all taken,
/// a new one closes the one idle longest (so idle connections never lock the port out);
/// only when all are running commands is the new one refused, with an error line.
async fn accept_control(l: TcpListener, tx: mpsc::Sender<Input>, listening: Listening) {
    let refused_log = crate::api::auth::LogLimit::new();
    let mut slots: Vec<ControlSlot> = Vec::new();
    loop {
        let Ok((mut s, peer)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        slots.retain(|c| !c.done.is_cancelled());
        if slots.len() >= MAX_CONTROL_CLIENTS {
            let idle = slots
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.busy.load(std::sync::atomic::Ordering::Acquire))
                .min_by_key(|(_, c)| *c.idle_since.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|(i, _)| i);
            match idle {
                Some(i) => {
                    let old = slots.swap_remove(i);
                    old.evict.cancel();
                    info!(%peer, max = MAX_CONTROL_CLIENTS, "control port full: the connection idle longest is closed for a new one");
                }
                None => {
                    if let Some(left_out) = refused_log.allow() {
                        warn!(%peer, max = MAX_CONTROL_CLIENTS, left_out,
                              "too many control connections, all running commands: refused");
                    }
                    let line = format!(
                        "{}\n",
                        json!({"ok": false, "error": format!("the control port has {MAX_CONTROL_CLIENTS} connections, all running commands: try again")})
                    );
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(WRITE_TIMEOUT, s.write_all(line.as_bytes())).await;
                    });
                    continue;
                }
            }
        }
        let slot = ControlSlot {
            idle_since: Arc::new(std::sync::Mutex::new(Instant::now())),
            busy: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            evict: tokio_util::sync::CancellationToken::new(),
            done: tokio_util::sync::CancellationToken::new(),
        };
        let (idle_since, busy, evict, done) = (
            slot.idle_since.clone(),
            slot.busy.clone(),
            slot.evict.clone(),
            slot.done.clone(),
        );
        slots.push(slot);
        let tx = tx.clone();
        let listening = listening.clone();
        tokio::spawn(async move {
            control_conn(s, tx, listening, idle_since, busy, evict).await;
            done.cancel();
        });
    }
}

async fn control_conn(
    s: TcpStream,
    tx: mpsc::Sender<Input>,
    listening: Listening,
    idle_since: Arc<std::sync::Mutex<Instant>>,
    busy: Arc<std::sync::atomic::AtomicBool>,
    evict: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    loop {
        let line = tokio::select! {
            l = crate::lines::read_line(&mut r, MAX_CONTROL_LINE) => l,
            _ = evict.cancelled() => {
                let bye = format!("{}\n", json!({"ok": false, "error": format!("closed: the control port's {MAX_CONTROL_CLIENTS} connections were all taken and this one was idle longest")}));
                let _ = tokio::time::timeout(WRITE_TIMEOUT, w.write_all(bye.as_bytes())).await;
                return;
            }
        };
        busy.store(true, Ordering::Release);
        let answer = match line {
            Err(_) | Ok(Line::Eof) => return,
            Ok(Line::TooLong) => {
                json!({"ok": false, "error": format!("line longer than {MAX_CONTROL_LINE} octets: ignored")})
            }
            Ok(Line::Text(t)) if t.trim().is_empty() => {
                busy.store(false, Ordering::Release);
                continue;
            }
            Ok(Line::Text(t)) => match control::parse(t.trim()) {
                Ok(c) => run_command(&tx, &listening, c).await,
                Err(e) => json!({"ok": false, "error": e}),
            },
        };
        let mut out = answer.to_string();
        out.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(out.as_bytes())).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        *idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        busy.store(false, Ordering::Release);
    }
}
