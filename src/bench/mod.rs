//! `ctigate bench`: one command, no set-up. The bench's own switch (`switch`, speaking CSTA
//! over BER on loopback), the gateway as a child process (`ctigate run` with a generated
//! configuration, so its CPU and memory are its own), and N NDJSON clients (`clients`).
//!
//! Phases, each bounded in time: the gateway starts (ready: its NDJSON port printed); its
//! link connects (the switch holds the association until the gateway's baseline memory is
//! measured); every device is monitored (the clients' `monitor.start`s and the configured
//! `monitor` list; monitors/s); warm-up at the rate; the measured window; the drain (every
//! event sent must reach its client). Then the report: events/s in and out, losses, lagged
//! clients, latency percentiles (switch send to client receive), the gateway's CPU, peak
//! RSS and memory per monitored device, write stalls on the switch side.

pub mod clients;
pub mod switch;
pub mod unread;

use anyhow::{bail, Context};
use clients::{Histogram, Stats};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switch::Shared;
use tokio::sync::watch;

/// The gateway prints its NDJSON port within this.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The gateway's link connects (its AARQ reaches the switch) within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Every event sent reaches its client within this after the generator stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's `status` answer, at most.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway stops after SIGTERM within this, else it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the gateway's output kept for error messages.
const KEEP_LINES: usize = 40;
/// The p99 latency bound of a passing `--find-max` trial.
pub const FIND_MAX_P99_MS: f64 = 50.0;

/// The lowest rate `--find-max` tries.
pub const FIND_MAX_FLOOR: u64 = 100;

/// What to run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub rate: u64,
    pub clients: usize,
    pub devices: usize,
    pub devices_per_client: usize,
    pub seconds: f64,
    pub warmup_seconds: f64,
    pub switch_delay_ms: u64,
    pub monitor_timeout_s: f64,
    /// The gateway's `[api] write_coalesce_ms`; `None`: its default.
    pub write_coalesce_ms: Option<u64>,
    /// The gateway's `[api] write_coalesce_behind_ms`; `None`: its default.
    pub write_coalesce_behind_ms: Option<u64>,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Spec {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.clients == 0 || self.clients > 100_000 {
            bail!("--clients must be 1 to 100000");
        }
        if self.devices_per_client == 0 {
            bail!("--devices-per-client must be at least 1");
        }
        let watched = self.clients.saturating_mul(self.devices_per_client);
        if watched > self.devices {
            bail!(
                "--devices ({}) must be at least --clients x --devices-per-client ({watched})",
                self.devices
            );
        }
        if self.devices > switch::MAX_DEVICES {
            bail!("--devices must be at most {}", switch::MAX_DEVICES);
        }
        if self.rate > 10_000_000 {
            bail!("--rate must be at most 10000000 events/s");
        }
        for (v, name) in [
            (self.seconds, "--seconds"),
            (self.monitor_timeout_s, "--monitor-timeout-s"),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                bail!("{name} must be above 0 and at most 3600");
            }
        }
        if !(self.warmup_seconds.is_finite() && (0.0..=3600.0).contains(&self.warmup_seconds)) {
            bail!("--warmup-seconds must be 0 to 3600");
        }
        if self.switch_delay_ms > 60_000 {
            bail!("--switch-delay-ms must be at most 60000");
        }
        for (key, ms) in self.coalescing() {
            if ms.is_some_and(|v| v > 1000) {
                bail!("--{} must be at most 1000", key.replace('_', "-"));
            }
        }
        Ok(())
    }

    /// The gateway's write-coalescing keys the run sets (`None`: the gateway's default).
    fn coalescing(&self) -> [(&'static str, Option<u64>); 2] {
        [
            ("write_coalesce_ms", self.write_coalesce_ms),
            ("write_coalesce_behind_ms", self.write_coalesce_behind_ms),
        ]
    }
}

/// The figures of one run (`--json` prints them as one object).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    /// Why not ok, one sentence each.
    pub failures: Vec<String>,
    /// What fell short without failing the run (the rate not reached, the switch's writes
    /// blocked, latency over 50 ms at p99), one sentence each.
    pub warnings: Vec<String>,
    /// The switch's events/s in the measured window as a percentage of `--rate`.
    pub rate_reached_percent: f64,
    pub rate_target_per_s: u64,
    pub clients: usize,
    pub devices: usize,
    pub devices_per_client: usize,
    pub watched_devices: usize,
    pub configured_devices: usize,
    pub seconds: f64,
    pub warmup_seconds: f64,
    pub switch_delay_ms: u64,
    /// The gateway's `[api] write_coalesce_ms` in the run.
    pub write_coalesce_ms: u64,
    /// The gateway's `[api] write_coalesce_behind_ms` in the run.
    pub write_coalesce_behind_ms: u64,
    /// Times the gateway fell behind the link's events (`behind_periods` in its `status`
    /// at the end; `None`: no answer); events to busy clients were batched by
    /// `write_coalesce_behind_ms` meanwhile ...
    pub gateway_behind_periods: Option<u64>,
    /// ... and whether it was still behind at the end.
    pub gateway_behind_at_end: Option<bool>,
    /// Gateway process spawned -> its NDJSON port printed.
    pub ready_port_ms: f64,
    /// Gateway process spawned -> link up (the switch's AARE sent), less the time the
    /// switch held the association while the bench measured the baseline memory
    /// (`baseline_wait_ms`).
    pub ready_link_ms: f64,
    pub baseline_wait_ms: f64,
    pub monitors_expected: usize,
    /// Devices the switch answered MonitorStart for.
    pub monitors_up: u64,
    pub monitors_missing: u64,
    pub monitor_starts: u64,
    pub snapshots: u64,
    /// Link up -> every device monitored (or the timeout).
    pub monitor_phase_ms: f64,
    pub monitor_phase_timed_out: bool,
    pub monitors_per_s: f64,
    /// The gateway's `status` after the monitor phase (None: no answer): the monitors it
    /// lists (those clients hold; configured ones are not listed), the snapshots it took
    /// and the devices it has unconfirmed.
    pub status_client_monitors: Option<u64>,
    pub status_snapshots: Option<u64>,
    pub status_unconfirmed: Option<u64>,
    pub client_monitors_ok: u64,
    pub client_monitors_failed: u64,
    /// Client `monitor.start`s answered `busy` and sent again (after 200 ms).
    pub client_monitor_retries: u64,
    pub measured_s: f64,
    pub switch_events_per_s: f64,
    pub client_events_per_s: f64,
    pub events_sent: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub events_unexpected: u64,
    /// `device.*` events the clients got (device.unconfirmed / device.confirmed: the
    /// gateway's snapshot of a device failed, then succeeded).
    pub device_events: u64,
    pub lagged_clients: u64,
    pub clients_disconnected: u64,
    pub latency_samples: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_p999_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub gateway_cpu_percent: f64,
    pub gateway_peak_rss_bytes: u64,
    pub gateway_rss_baseline_bytes: u64,
    pub gateway_rss_monitored_bytes: u64,
    pub memory_per_device_bytes: f64,
    pub switch_write_stalls: u64,
    pub switch_longest_write_ms: f64,
    /// The measured window, sampled every millisecond ([`unread`]): the longest the
    /// gateway left an octet of its PBX socket unread, and the runs of samples at 10 ms
    /// or more.
    pub pbx_unread_max_ms: f64,
    pub pbx_unread_episodes: u64,
    pub pbx_unread_samples: u64,
    /// Samples the kernel did not answer, and why the first was not (`sock_diag`).
    pub pbx_unread_failed: u64,
    pub pbx_unread_error: Option<String>,
    pub switch_schedule_slips: u64,
    pub link_drops: u64,
    pub latency_fifo_overflow: u64,
    /// Lines the gateway logged (at level warn) during the run, and the last of them.
    pub gateway_log_lines: u64,
    pub gateway_last_log: Option<String>,
    pub bench_cpu_percent: f64,
}

/// The gateway child process; stopped (SIGTERM, then killed) when dropped.
struct Gateway {
    child: Child,
    cfg: PathBuf,
    lines: Arc<Mutex<VecDeque<String>>>,
    /// Lines the gateway logged (stderr; warnings and errors at the bench's log level),
    /// and the last of them.
    logged: Arc<std::sync::atomic::AtomicU64>,
    last_log: Arc<Mutex<Option<String>>>,
}

impl Gateway {
    fn spawn(
        exe: &Path,
        cfg_text: &str,
    ) -> anyhow::Result<(Gateway, tokio::sync::oneshot::Receiver<String>)> {
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let cfg = std::env::temp_dir().join(format!(
            "ctigate-bench-{}-{}.toml",
            std::process::id(),
            RUN.fetch_add(1, Relaxed)
        ));
        std::fs::write(&cfg, cfg_text)
            .with_context(|| format!("cannot write {}", cfg.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--log")
            .arg("warn")
            .arg("--log-format")
            .arg("text")
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; the gateway gets SIGTERM if the bench
            // dies without stopping it (no orphan gateway).
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&cfg);
                return Err(e).with_context(|| format!("cannot start {}", exe.display()));
            }
        };
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let keep = |l: String, lines: &Arc<Mutex<VecDeque<String>>>| {
            if let Ok(mut q) = lines.lock() {
                if q.len() >= KEEP_LINES {
                    q.pop_front();
                }
                q.push_back(l);
            }
        };
        if let Some(out) = child.stdout.take() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut port_tx = Some(port_tx);
                for l in std::io::BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if let Some(a) = l.strip_prefix("ctigate run: NDJSON port ") {
                        if let Some(tx) = port_tx.take() {
                            let _ = tx.send(a.trim().to_string());
                        }
                    }
                    keep(l, &lines);
                }
            });
        }
        let logged = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let last_log = Arc::new(Mutex::new(None));
        if let Some(err) = child.stderr.take() {
            let lines = lines.clone();
            let logged = logged.clone();
            let last_log = last_log.clone();
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(err).lines() {
                    let Ok(l) = l else { break };
                    logged.fetch_add(1, Relaxed);
                    if let Ok(mut x) = last_log.lock() {
                        *x = Some(l.clone());
                    }
                    keep(l, &lines);
                }
            });
        }
        Ok((
            Gateway {
                child,
                cfg,
                lines,
                logged,
                last_log,
            },
            port_rx,
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn last_log(&self) -> Option<String> {
        self.last_log.lock().ok().and_then(|l| l.clone())
    }

    fn last_lines(&self) -> String {
        self.lines
            .lock()
            .map(|q| q.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// SIGTERM, then kill after [`STOP_TIMEOUT`]; true when it stopped by itself.
    fn stop(&mut self) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.cfg);
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after the command: state is field 3, utime 14, stime 15
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A `/proc/PID/status` line in kB, as bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = l[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The gateway's configuration for a run.
fn config(spec: &Spec, switch: std::net::SocketAddr) -> String {
    let watched = spec.clients * spec.devices_per_client;
    let mut c = format!(
        "# generated by ctigate bench\n[api]\nlisten = \"127.0.0.1:0\"\nmax_clients = {}\nrequests_per_s = 0\nmax_monitors_per_client = {}\n",
        spec.clients + 16,
        spec.devices_per_client.max(1)
    );
    for (key, ms) in spec.coalescing() {
        if let Some(ms) = ms {
            c.push_str(&format!("{key} = {ms}\n"));
        }
    }
    c.push_str(&format!(
        "\n[[link]]\nname = \"bench\"\naddress = \"{switch}\"\nmonitor = ["
    ));
    for i in watched..spec.devices {
        if i > watched {
            c.push(',');
        }
        c.push('"');
        c.push_str(&switch::device_number(i));
        c.push('"');
    }
    c.push_str("]\n");
    c
}

/// Ask the gateway's `status`: the monitors it lists, its snapshots, its unconfirmed devices.
async fn status_monitors(addr: std::net::SocketAddr) -> anyhow::Result<(u64, u64, u64)> {
    let r = status(addr).await?;
    let n = r["monitors"]
        .as_array()
        .map(|m| m.len() as u64)
        .context("no monitors in the status answer")?;
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| {
        r["resync"].as_array().map_or(0, |l| l.iter().map(f).sum())
    };
    let snaps = sum(&|x| x["snapshots"].as_u64().unwrap_or(0));
    let unconfirmed = sum(&|x| x["unconfirmed"].as_array().map_or(0, |u| u.len() as u64));
    Ok((n, snaps, unconfirmed))
}

/// Ask the gateway's `status`: how often it fell behind the link's events, and whether it
/// is behind now.
async fn status_behind(addr: std::net::SocketAddr) -> anyhow::Result<(u64, bool)> {
    let r = status(addr).await?;
    let l = &r["links"][0];
    match (l["behind_periods"].as_u64(), l["behind"].as_bool()) {
        (Some(n), Some(b)) => Ok((n, b)),
        _ => bail!("no behind_periods in the status answer's link"),
    }
}

/// The gateway's `status` result.
async fn status(addr: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
    use tokio::io::AsyncWriteExt;
    let go = async {
        let s = tokio::net::TcpStream::connect(addr).await?;
        let (r, mut w) = s.into_split();
        let mut r = tokio::io::BufReader::new(r);
        w.write_all(b"{\"id\":\"bench-status\",\"op\":\"status\"}\n")
            .await?;
        loop {
            match crate::lines::read_line(&mut r, 1 << 28).await? {
                crate::lines::Line::Text(t) if t.contains("\"id\":\"bench-status\"") => {
                    let mut v: serde_json::Value = serde_json::from_str(&t)?;
                    return anyhow::Ok(v["result"].take());
                }
                crate::lines::Line::Text(_) => {}
                crate::lines::Line::TooLong => bail!("a line over 256 MiB"),
                crate::lines::Line::Eof => bail!("the gateway closed the connection"),
            }
        }
    };
    tokio::time::timeout(STATUS_TIMEOUT, go)
        .await
        .map_err(|_| anyhow::anyhow!("no status answer within {STATUS_TIMEOUT:?}"))?
}

fn opt_n(n: Option<u64>) -> String {
    n.map_or("?".into(), |n| n.to_string())
}

fn progress(spec: &Spec, line: impl FnOnce() -> String) {
    if spec.progress {
        eprintln!("bench: {}", line());
    }
}

/// One run: everything started, measured and stopped.
pub async fn run(spec: &Spec, exe: &Path) -> anyhow::Result<Report> {
    spec.check()?;
    let watched = spec.clients * spec.devices_per_client;
    let shared = Arc::new(Shared::new(spec.devices, watched));
    let stats = Arc::new(Stats::new(watched));
    let mut rep = Report {
        rate_target_per_s: spec.rate,
        clients: spec.clients,
        devices: spec.devices,
        devices_per_client: spec.devices_per_client,
        watched_devices: watched,
        configured_devices: spec.devices - watched,
        seconds: spec.seconds,
        warmup_seconds: spec.warmup_seconds,
        switch_delay_ms: spec.switch_delay_ms,
        write_coalesce_ms: spec
            .write_coalesce_ms
            .unwrap_or(crate::config::ApiConfig::default().write_coalesce_ms),
        write_coalesce_behind_ms: spec
            .write_coalesce_behind_ms
            .unwrap_or(crate::config::ApiConfig::default().write_coalesce_behind_ms),
        monitors_expected: spec.devices,
        ..Report::default()
    };
    let (sw_addr, sw_task) =
        switch::start(shared.clone(), Duration::from_millis(spec.switch_delay_ms)).await?;
    let _sw = AbortOnDrop(sw_task);
    let _sampler = unread::Sampler::start(shared.unread.clone());
    let spawned = Instant::now();
    let (mut gw, port_rx) = Gateway::spawn(exe, &config(spec, sw_addr))?;
    let pid = gw.pid().to_string();
    progress(spec, || {
        format!(
            "gateway started (pid {pid}); {} devices ({} watched by {} clients, {} configured)",
            spec.devices,
            watched,
            spec.clients,
            spec.devices - watched
        )
    });
    let port = match tokio::time::timeout(START_TIMEOUT, port_rx).await {
        Ok(Ok(p)) => p,
        _ => bail!(
            "the gateway did not print its NDJSON port within {START_TIMEOUT:?}; its last output:\n{}",
            gw.last_lines()
        ),
    };
    rep.ready_port_ms = ms(spawned.elapsed());
    let api: std::net::SocketAddr = port
        .parse()
        .with_context(|| format!("the gateway printed a port that is no address: {port}"))?;
    // the link connects; the switch holds the association until the baseline is measured
    let seen = tokio::time::timeout(CONNECT_TIMEOUT, async {
        while !shared.aarq.load(Relaxed) {
            let _ =
                tokio::time::timeout(Duration::from_millis(50), shared.aarq_seen.notified()).await;
        }
    })
    .await;
    if seen.is_err() {
        bail!(
            "the gateway's link did not connect to the bench switch within {CONNECT_TIMEOUT:?}; its last output:\n{}",
            gw.last_lines()
        );
    }
    let held = Instant::now();
    // a moment for the gateway to settle (its start-up allocations done)
    tokio::time::sleep(Duration::from_millis(200)).await;
    rep.gateway_rss_baseline_bytes = status_bytes(&pid, "VmRSS").unwrap_or(0);
    let hold = held.elapsed();
    rep.baseline_wait_ms = ms(hold);
    shared.associate_allowed.store(true, Relaxed);
    shared.associate.notify_one();
    let up = tokio::time::timeout(CONNECT_TIMEOUT, async {
        while shared.link_up_us.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    if up.is_err() {
        bail!("the switch did not answer the association (bug)");
    }
    let link_up = shared.epoch + Duration::from_micros(shared.link_up_us.load(Relaxed));
    // less the time the switch held the association for the baseline
    rep.ready_link_ms = ms(link_up
        .saturating_duration_since(spawned)
        .saturating_sub(hold));
    progress(spec, || {
        format!(
            "NDJSON port {api} after {:.0} ms, link up after {:.0} ms (not counting {:.0} ms held for the baseline RSS, {} KiB)",
            rep.ready_port_ms,
            rep.ready_link_ms,
            rep.baseline_wait_ms,
            rep.gateway_rss_baseline_bytes / 1024
        )
    });

    // clients, and the monitor phase
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(spec.clients);
    for c in 0..spec.clients {
        handles.push(tokio::spawn(clients::run(
            api,
            c * spec.devices_per_client,
            spec.devices_per_client,
            shared.clone(),
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    let monitor_limit = Duration::from_secs_f64(spec.monitor_timeout_s);
    let mut last_print = Instant::now();
    let monitored_all = loop {
        let answered = stats.monitors_ok.load(Relaxed) + stats.monitors_failed.load(Relaxed);
        let m = shared.monitored.load(Relaxed);
        let done = m >= spec.devices as u64
            && shared.snapshots.load(Relaxed) >= spec.devices as u64
            && answered >= watched as u64;
        if done {
            break true;
        }
        if link_up.elapsed() >= monitor_limit {
            break false;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            progress(spec, || {
                format!(
                    "[monitor {:.0} s] devices monitored {m}/{}, snapshots {}, client monitor.start answered {answered}/{watched} ({} sent again after `busy`)",
                    link_up.elapsed().as_secs_f64(),
                    spec.devices,
                    shared.snapshots.load(Relaxed),
                    stats.monitor_retries.load(Relaxed)
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let phase = link_up.elapsed();
    rep.monitor_phase_ms = ms(phase);
    rep.monitor_phase_timed_out = !monitored_all;
    rep.monitors_up = shared.monitored.load(Relaxed);
    rep.monitors_missing = (spec.devices as u64).saturating_sub(rep.monitors_up);
    rep.monitor_starts = shared.monitor_starts.load(Relaxed);
    rep.snapshots = shared.snapshots.load(Relaxed);
    rep.monitors_per_s = (rep.monitors_up as f64 / phase.as_secs_f64()).round();
    rep.client_monitors_ok = stats.monitors_ok.load(Relaxed);
    rep.client_monitors_failed = stats.monitors_failed.load(Relaxed);
    rep.client_monitor_retries = stats.monitor_retries.load(Relaxed);
    if !monitored_all {
        rep.failures.push(format!(
            "monitor phase timed out after {:.1} s (--monitor-timeout-s): {} of {} devices monitored, {} of {} client monitor.start answered ok",
            spec.monitor_timeout_s, rep.monitors_up, spec.devices, rep.client_monitors_ok, watched
        ));
    }
    if rep.client_monitors_failed > 0 {
        rep.failures.push(format!(
            "{} client monitor.start failed (first: {})",
            rep.client_monitors_failed,
            stats
                .first_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default()
        ));
    }
    match status_monitors(api).await {
        Ok((n, snaps, unconfirmed)) => {
            rep.status_client_monitors = Some(n);
            rep.status_snapshots = Some(snaps);
            rep.status_unconfirmed = Some(unconfirmed);
        }
        Err(e) => rep.failures.push(format!("the gateway's status: {e:#}")),
    }
    rep.gateway_rss_monitored_bytes = status_bytes(&pid, "VmRSS").unwrap_or(0);
    if rep.monitors_up > 0 {
        rep.memory_per_device_bytes =
            (rep.gateway_rss_monitored_bytes
                .saturating_sub(rep.gateway_rss_baseline_bytes) as f64
                / rep.monitors_up as f64)
                .round();
    }
    progress(spec, || {
        format!(
            "monitor phase: {} of {} devices in {:.0} ms ({:.0}/s), gateway status: {} client monitors, {} snapshots, {} unconfirmed; RSS {} KiB ({:.0} octets per device)",
            rep.monitors_up,
            spec.devices,
            rep.monitor_phase_ms,
            rep.monitors_per_s,
            opt_n(rep.status_client_monitors),
            opt_n(rep.status_snapshots),
            opt_n(rep.status_unconfirmed),
            rep.gateway_rss_monitored_bytes / 1024,
            rep.memory_per_device_bytes
        )
    });

    // load: warm-up, the measured window, the drain
    let tick = clock_ticks_per_s();
    if rep.client_monitors_ok == watched as u64 && spec.rate > 0 {
        shared.rate.store(spec.rate, Relaxed);
        let load = |phase: &str, secs: f64| {
            let shared = shared.clone();
            let stats = stats.clone();
            let phase = phase.to_string();
            async move {
                let start = Instant::now();
                let end = start + Duration::from_secs_f64(secs);
                let (mut in0, mut out0, mut t0) = (
                    shared.events_sent.load(Relaxed),
                    stats.events_out.load(Relaxed),
                    Instant::now(),
                );
                while Instant::now() < end {
                    let next = (t0 + Duration::from_secs(1)).min(end);
                    tokio::time::sleep_until(next.into()).await;
                    let (in1, out1, t1) = (
                        shared.events_sent.load(Relaxed),
                        stats.events_out.load(Relaxed),
                        Instant::now(),
                    );
                    let dt = t1.duration_since(t0).as_secs_f64().max(1e-3);
                    progress(spec, || {
                        format!(
                            "[{phase} {:.0}/{secs:.0} s] switch in {:.0}/s, clients out {:.0}/s, lagged {}, unexpected {}, PBX socket unread up to {:.1} ms, write stalls {}",
                            start.elapsed().as_secs_f64(),
                            (in1 - in0) as f64 / dt,
                            (out1 - out0) as f64 / dt,
                            stats.lagged.load(Relaxed),
                            stats.unexpected.load(Relaxed),
                            shared.unread.take_recent_worst_ms(),
                            shared.write_stalls.load(Relaxed)
                        )
                    });
                    (in0, out0, t0) = (in1, out1, t1);
                }
            }
        };
        if spec.warmup_seconds > 0.0 {
            load("warm-up", spec.warmup_seconds).await;
        }
        let w0 = Instant::now();
        let (in0, out0) = (
            shared.events_sent.load(Relaxed),
            stats.events_out.load(Relaxed),
        );
        let cpu0 = cpu_ticks(&pid).unwrap_or(0);
        let me0 = cpu_ticks("self").unwrap_or(0);
        stats.measure_from_us.store(shared.us(w0), Relaxed);
        shared.unread.measure(true);
        load("measure", spec.seconds).await;
        shared.unread.measure(false);
        let w1 = Instant::now();
        stats.measure_to_us.store(shared.us(w1), Relaxed);
        let (in1, out1) = (
            shared.events_sent.load(Relaxed),
            stats.events_out.load(Relaxed),
        );
        let cpu1 = cpu_ticks(&pid).unwrap_or(0);
        let me1 = cpu_ticks("self").unwrap_or(0);
        shared.rate.store(0, Relaxed);
        let window = w1.duration_since(w0).as_secs_f64();
        rep.measured_s = (window * 1000.0).round() / 1000.0;
        rep.switch_events_per_s = ((in1 - in0) as f64 / window).round();
        rep.client_events_per_s = ((out1 - out0) as f64 / window).round();
        rep.gateway_cpu_percent =
            ((cpu1.saturating_sub(cpu0)) as f64 / tick / window * 1000.0).round() / 10.0;
        rep.bench_cpu_percent =
            ((me1.saturating_sub(me0)) as f64 / tick / window * 1000.0).round() / 10.0;
        // the drain: wait until every event sent has reached its client
        tokio::time::sleep(Duration::from_millis(20)).await; // the generator's last tick
        let drain_end = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let sent = shared.events_sent.load(Relaxed);
            let got: u64 = stats.received.iter().map(|r| r.load(Relaxed)).sum();
            if got >= sent || Instant::now() >= drain_end || stats.disconnected.load(Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else if spec.rate > 0 {
        rep.failures
            .push("no load phase: not every client's monitor.start succeeded".to_string());
    }
    rep.gateway_peak_rss_bytes = status_bytes(&pid, "VmHWM").unwrap_or(0);
    let _ = stop_tx.send(true);
    let mut h = Histogram::new();
    for c in handles {
        if let Ok(Ok(x)) = tokio::time::timeout(Duration::from_secs(5), c).await {
            h.merge(&x);
        }
    }
    rep.events_sent = shared.events_sent.load(Relaxed);
    rep.events_received = stats.received.iter().map(|r| r.load(Relaxed)).sum();
    rep.events_lost = shared
        .sent
        .iter()
        .zip(&stats.received)
        .map(|(s, r)| s.load(Relaxed).saturating_sub(r.load(Relaxed)))
        .sum();
    rep.events_unexpected = stats.unexpected.load(Relaxed);
    rep.device_events = stats.device_events.load(Relaxed);
    if rep.device_events > 0 {
        rep.warnings.push(format!(
            "the clients got {} device.* events (first: {})",
            rep.device_events,
            stats
                .first_device_event
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default()
        ));
    }
    rep.lagged_clients = stats.lagged.load(Relaxed);
    // the bench stops its clients itself; a client gone before is one the gateway dropped
    rep.clients_disconnected = stats.disconnected.load(Relaxed);
    rep.latency_samples = h.n;
    let q = |x: f64| h.quantile(x).map(|us| us as f64 / 1000.0);
    rep.latency_p50_ms = q(0.5);
    rep.latency_p99_ms = q(0.99);
    rep.latency_p999_ms = q(0.999);
    rep.latency_max_ms = (h.n > 0).then(|| h.max_us as f64 / 1000.0);
    rep.switch_write_stalls = shared.write_stalls.load(Relaxed);
    rep.switch_longest_write_ms = shared.longest_write_us.load(Relaxed) as f64 / 1000.0;
    rep.switch_schedule_slips = shared.schedule_slips.load(Relaxed);
    let unread = shared.unread.report();
    rep.pbx_unread_max_ms = (unread.worst_ms * 1000.0).round() / 1000.0;
    rep.pbx_unread_episodes = unread.episodes;
    rep.pbx_unread_samples = unread.samples;
    rep.pbx_unread_failed = unread.failed;
    rep.pbx_unread_error = unread.error;
    rep.link_drops = shared.link_drops.load(Relaxed);
    rep.latency_fifo_overflow = shared.fifo_overflow.load(Relaxed);
    let first_error = || {
        stats
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default()
    };
    if spec.rate > 0 && rep.measured_s > 0.0 {
        rep.rate_reached_percent =
            (rep.switch_events_per_s / spec.rate as f64 * 1000.0).round() / 10.0;
        if rep.rate_reached_percent < 99.0 {
            rep.warnings.push(format!(
                "the switch sent {:.0} events/s, {:.1} % of --rate {}: {}",
                rep.switch_events_per_s,
                rep.rate_reached_percent,
                spec.rate,
                if rep.switch_write_stalls > 0 || rep.switch_schedule_slips > 0 {
                    "its writes were blocked (the gateway did not read its PBX socket fast enough)"
                } else {
                    "the bench itself could not generate faster"
                }
            ));
        }
    }
    let short = shortfalls(&rep);
    rep.warnings.extend(short);
    if let Some(e) = &rep.pbx_unread_error {
        rep.warnings.push(format!(
            "{} samples of the PBX socket's unread time failed (first: {e})",
            rep.pbx_unread_failed
        ));
    }
    if rep.events_lost > 0 {
        rep.failures.push(format!(
            "{} of {} events sent never reached their client (drain {DRAIN_TIMEOUT:?})",
            rep.events_lost, rep.events_sent
        ));
    }
    if rep.events_unexpected > 0 {
        rep.failures.push(format!(
            "{} events out of their expected order (first: {})",
            rep.events_unexpected,
            stats
                .first_unexpected
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default()
        ));
    }
    if rep.lagged_clients > 0 {
        rep.failures.push(format!(
            "{} clients lagged (cut by the gateway)",
            rep.lagged_clients
        ));
    }
    if rep.clients_disconnected > 0 {
        rep.failures.push(format!(
            "{} clients lost their connection ({})",
            rep.clients_disconnected,
            first_error()
        ));
    }
    if rep.link_drops > 0 {
        rep.failures
            .push(format!("the link went down {} times", rep.link_drops));
    }
    match status_behind(api).await {
        Ok((n, now)) => {
            rep.gateway_behind_periods = Some(n);
            rep.gateway_behind_at_end = Some(now);
        }
        Err(e) => rep.failures.push(format!("the gateway's status: {e:#}")),
    }
    rep.gateway_log_lines = gw.logged.load(Relaxed);
    rep.gateway_last_log = gw.last_log();
    if !gw.stop() {
        rep.failures.push(format!(
            "the gateway did not stop within {STOP_TIMEOUT:?} of SIGTERM: killed"
        ));
    }
    rep.ok = rep.failures.is_empty();
    Ok(rep)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `--find-max` trial's verdict: no loss, no lag, every event in order, the switch
/// sent at least 95 % of the rate asked, p99 under [`FIND_MAX_P99_MS`], and the PBX socket
/// read continuously (no switch write blocked, no octet left unread for
/// [`unread::UNREAD_LIMIT`] or more).
pub fn passes(r: &Report) -> bool {
    verdict(r).is_empty()
}

/// Why a `--find-max` trial fails ([`passes`]), one sentence each; empty when it passes:
/// the run's failures, the rate under 95 %, no latency measured, and its [`shortfalls`].
pub fn verdict(r: &Report) -> Vec<String> {
    let mut why = r.failures.clone();
    if r.switch_events_per_s < 0.95 * r.rate_target_per_s as f64 {
        why.push(format!(
            "the switch sent {:.0} events/s, under 95 % of the rate",
            r.switch_events_per_s
        ));
    }
    if r.latency_p99_ms.is_none() {
        why.push("no latency measured".into());
    }
    why.extend(shortfalls(r));
    why
}

/// What a run fell short of the targets by without losing anything (a warning of the run,
/// a failure of a `--find-max` trial): switch writes blocked, the PBX socket left unread,
/// p99 at [`FIND_MAX_P99_MS`] or more.
fn shortfalls(r: &Report) -> Vec<String> {
    let mut s = Vec::new();
    if r.switch_write_stalls > 0 {
        s.push(format!(
            "{} switch writes were blocked 10 ms or more (longest {:.1} ms): the gateway did not read its PBX socket continuously",
            r.switch_write_stalls, r.switch_longest_write_ms
        ));
    }
    if r.pbx_unread_episodes > 0 {
        s.push(format!(
            "the gateway left its PBX socket unread for {} ms or more {} times (longest {:.1} ms): it did not read the switch continuously",
            unread::UNREAD_LIMIT.as_millis(),
            r.pbx_unread_episodes,
            r.pbx_unread_max_ms
        ));
    }
    if let Some(p) = r.latency_p99_ms.filter(|p| *p >= FIND_MAX_P99_MS) {
        s.push(format!(
            "latency p99 {p:.1} ms is {FIND_MAX_P99_MS} ms or more"
        ));
    }
    s
}

/// `--find-max`: trials from `start`, doubling while they pass (halving while they fail,
/// down to [`FIND_MAX_FLOOR`]), then `bisect` steps between the highest passing and the
/// lowest failing rate.
#[derive(Debug, Serialize)]
pub struct FindMax {
    pub max_rate_per_s: u64,
    pub trials: Vec<Trial>,
    /// The report of the highest passing trial.
    pub best: Option<Report>,
}

#[derive(Debug, Serialize)]
pub struct Trial {
    pub rate_per_s: u64,
    pub passed: bool,
    pub switch_events_per_s: f64,
    pub client_events_per_s: f64,
    pub events_lost: u64,
    pub lagged_clients: u64,
    pub latency_p99_ms: Option<f64>,
    pub gateway_cpu_percent: f64,
    /// Why it failed ([`verdict`]); empty when it passed.
    pub failures: Vec<String>,
}

pub async fn find_max(
    spec: &Spec,
    exe: &Path,
    start: u64,
    bisect: u32,
    mut each: impl FnMut(&Trial),
) -> anyhow::Result<FindMax> {
    let mut trials: Vec<Trial> = Vec::new();
    let mut best: Option<Report> = None;
    let mut tried: Vec<(u64, bool)> = Vec::new();
    while let Some(rate) = next_rate(start, bisect, &tried) {
        let (t, r) = trial(spec, exe, rate).await?;
        each(&t);
        tried.push((rate, t.passed));
        if t.passed && best.as_ref().is_none_or(|b| b.rate_target_per_s < rate) {
            best = Some(r);
        }
        trials.push(t);
    }
    let lo = highest_pass(&tried);
    Ok(FindMax {
        max_rate_per_s: lo,
        trials,
        best,
    })
}

/// The highest passing rate (0: none).
fn highest_pass(tried: &[(u64, bool)]) -> u64 {
    tried.iter().filter(|t| t.1).map(|t| t.0).max().unwrap_or(0)
}

/// The search of `--find-max`: the next rate to try after `tried` (rate, passed), or None
/// when done. From `start`: doubling while trials pass (up to 10 M/s), halving while they
/// fail (down to [`FIND_MAX_FLOOR`]); once a pass and a fail bracket the answer, `bisect`
/// steps between the highest pass and the lowest fail above it (or fewer, once they are
/// within 2 %).
pub fn next_rate(start: u64, bisect: u32, tried: &[(u64, bool)]) -> Option<u64> {
    const TOP: u64 = 10_000_000;
    let Some(&(last, passed)) = tried.last() else {
        return Some(start.clamp(FIND_MAX_FLOOR, TOP));
    };
    let lo = highest_pass(tried);
    let hi = tried.iter().filter(|t| !t.1 && t.0 > lo).map(|t| t.0).min();
    let bracketed_at = (0..tried.len()).find(|&k| {
        let (p, f) = tried[..=k]
            .iter()
            .fold((false, false), |(p, f), t| (p || t.1, f || !t.1));
        p && f
    });
    match (bracketed_at, hi) {
        (None, _) if passed => (last < TOP).then(|| (last * 2).min(TOP)),
        (None, _) => (last > FIND_MAX_FLOOR).then(|| (last / 2).max(FIND_MAX_FLOOR)),
        (Some(_), None) => None,
        (Some(k), Some(hi)) => {
            let steps = tried.len() - 1 - k;
            if steps >= bisect as usize || hi - lo <= hi / 50 {
                None
            } else {
                Some(lo + (hi - lo) / 2)
            }
        }
    }
}

async fn trial(spec: &Spec, exe: &Path, rate: u64) -> anyhow::Result<(Trial, Report)> {
    let mut s = spec.clone();
    s.rate = rate;
    let r = run(&s, exe).await?;
    let why = verdict(&r);
    let t = Trial {
        rate_per_s: rate,
        passed: why.is_empty(),
        switch_events_per_s: r.switch_events_per_s,
        client_events_per_s: r.client_events_per_s,
        events_lost: r.events_lost,
        lagged_clients: r.lagged_clients,
        latency_p99_ms: r.latency_p99_ms,
        gateway_cpu_percent: r.gateway_cpu_percent,
        failures: why,
    };
    Ok((t, r))
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    let rows: Vec<(&str, String)> = vec![
        ("result", if r.ok { "ok".into() } else { "FAILED".into() }),
        (
            "run",
            format!(
                "rate {}/s, {} clients x {} devices, {} devices on the link ({} configured), {} s measured after {} s warm-up, switch answers after {} ms, write_coalesce_ms {}, write_coalesce_behind_ms {}",
                r.rate_target_per_s, r.clients, r.devices_per_client, r.devices, r.configured_devices, r.seconds, r.warmup_seconds, r.switch_delay_ms, r.write_coalesce_ms, r.write_coalesce_behind_ms
            ),
        ),
        ("ready: NDJSON port", format!("{:.1} ms after spawn", r.ready_port_ms)),
        ("ready: link up", format!("{:.1} ms after spawn (not counting {:.0} ms held for the baseline RSS)", r.ready_link_ms, r.baseline_wait_ms)),
        (
            "monitors at start-up",
            format!(
                "{} of {} in {:.0} ms: {:.0}/s{}; gateway status: {} client monitors, {} snapshots, {} unconfirmed",
                r.monitors_up,
                r.monitors_expected,
                r.monitor_phase_ms,
                r.monitors_per_s,
                if r.monitor_phase_timed_out { " (TIMED OUT)" } else { "" },
                opt_n(r.status_client_monitors),
                opt_n(r.status_snapshots),
                opt_n(r.status_unconfirmed)
            ),
        ),
        (
            "client monitor.start",
            format!(
                "{} ok, {} failed, {} sent again after `busy`",
                r.client_monitors_ok, r.client_monitors_failed, r.client_monitor_retries
            ),
        ),
        (
            "switch events in",
            format!(
                "{:.0}/s ({:.1} % of the rate)",
                r.switch_events_per_s, r.rate_reached_percent
            ),
        ),
        ("client events out", format!("{:.0}/s", r.client_events_per_s)),
        ("events sent / received", format!("{} / {}", r.events_sent, r.events_received)),
        ("events lost", r.events_lost.to_string()),
        ("events out of order", r.events_unexpected.to_string()),
        ("device.* events", r.device_events.to_string()),
        ("lagged clients", r.lagged_clients.to_string()),
        ("disconnected clients", r.clients_disconnected.to_string()),
        (
            "latency p50 / p99 / p99.9 / max",
            format!(
                "{} / {} / {} / {} ms ({} samples)",
                opt(r.latency_p50_ms),
                opt(r.latency_p99_ms),
                opt(r.latency_p999_ms),
                opt(r.latency_max_ms),
                r.latency_samples
            ),
        ),
        ("gateway CPU", format!("{:.1} % of one core", r.gateway_cpu_percent)),
        (
            "gateway behind",
            format!(
                "{} times (writes to busy clients batched by write_coalesce_behind_ms meanwhile); at the end: {}",
                opt_n(r.gateway_behind_periods),
                match r.gateway_behind_at_end {
                    Some(true) => "behind",
                    Some(false) => "caught up",
                    None => "?",
                }
            ),
        ),
        ("gateway peak RSS", mib(r.gateway_peak_rss_bytes)),
        (
            "memory per device",
            format!(
                "{:.0} octets (RSS {} monitored - {} baseline)",
                r.memory_per_device_bytes,
                mib(r.gateway_rss_monitored_bytes),
                mib(r.gateway_rss_baseline_bytes)
            ),
        ),
        (
            "PBX socket unread",
            match &r.pbx_unread_error {
                Some(e) if r.pbx_unread_samples == 0 => format!("not measured: {e}"),
                _ => format!(
                    "at most {:.1} ms; {} times {} ms or more ({} samples, 1 a ms)",
                    r.pbx_unread_max_ms,
                    r.pbx_unread_episodes,
                    unread::UNREAD_LIMIT.as_millis(),
                    r.pbx_unread_samples
                ),
            },
        ),
        (
            "switch write stalls",
            format!(
                "{} writes blocked >= 10 ms; longest {:.3} ms; schedule slips {}",
                r.switch_write_stalls, r.switch_longest_write_ms, r.switch_schedule_slips
            ),
        ),
        ("bench CPU", format!("{:.1} % of one core", r.bench_cpu_percent)),
        (
            "gateway log",
            format!(
                "{} lines at level warn{}",
                r.gateway_log_lines,
                r.gateway_last_log
                    .as_ref()
                    .map_or(String::new(), |l| format!("; the last: {l}"))
            ),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in rows {
        s.push_str(&format!("{k:<w$}  {v}\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("NOTE: {w}\n"));
    }
    for f in &r.failures {
        s.push_str(&format!("FAILED: {f}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search against a gateway that passes up to `limit`.
    fn search(start: u64, bisect: u32, limit: u64) -> (u64, Vec<u64>) {
        let mut tried = Vec::new();
        while let Some(r) = next_rate(start, bisect, &tried) {
            assert!(tried.len() < 64, "the search ends: {tried:?}");
            tried.push((r, r <= limit));
        }
        (highest_pass(&tried), tried.iter().map(|t| t.0).collect())
    }

    /// A trial passes only with nothing lost, the rate reached, p99 under 50 ms and the
    /// PBX socket read continuously; each shortfall is named.
    #[test]
    fn a_trial_fails_on_each_shortfall_and_says_which() {
        let good = Report {
            ok: true,
            rate_target_per_s: 1000,
            switch_events_per_s: 990.0,
            latency_p99_ms: Some(3.0),
            ..Report::default()
        };
        assert!(passes(&good), "{:?}", verdict(&good));
        let cases: [(&str, Report); 6] = [
            (
                "never reached their client",
                Report {
                    ok: false,
                    failures: vec!["3 of 9 events sent never reached their client".into()],
                    ..good.clone()
                },
            ),
            (
                "under 95 %",
                Report {
                    switch_events_per_s: 900.0,
                    ..good.clone()
                },
            ),
            (
                "latency p99 50.0 ms is 50 ms or more",
                Report {
                    latency_p99_ms: Some(50.0),
                    ..good.clone()
                },
            ),
            (
                "no latency measured",
                Report {
                    latency_p99_ms: None,
                    ..good.clone()
                },
            ),
            (
                "2 switch writes were blocked",
                Report {
                    switch_write_stalls: 2,
                    ..good.clone()
                },
            ),
            (
                "unread for 10 ms or more 1 times (longest 12.5 ms)",
                Report {
                    pbx_unread_episodes: 1,
                    pbx_unread_max_ms: 12.5,
                    ..good.clone()
                },
            ),
        ];
        for (why, r) in cases {
            let v = verdict(&r);
            assert!(!passes(&r), "{why}");
            assert_eq!(v.len(), 1, "{why}: {v:?}");
            assert!(v[0].contains(why), "{why}: {v:?}");
        }
    }

    #[test]
    fn find_max_doubles_halves_then_bisects() {
        // up: 5000 10000 20000 (fail), then 4 steps between 10000 and 20000
        let (max, rates) = search(5000, 4, 12_345);
        assert_eq!(
            rates,
            [5000, 10_000, 20_000, 15_000, 12_500, 11_250, 11_875]
        );
        assert_eq!(max, 11_875);
        // down: 5000 (fail) 2500 1250 (pass), then between 1250 and 2500
        let (max, rates) = search(5000, 2, 1300);
        assert_eq!(rates, [5000, 2500, 1250, 1875, 1562]);
        assert_eq!(max, 1250);
        // nothing passes: down to the floor, then stop
        let (max, rates) = search(500, 4, 10);
        assert_eq!(rates, [500, 250, 125, 100]);
        assert_eq!(max, 0);
        // everything passes: up to the top
        let (max, rates) = search(5_000_000, 4, u64::MAX);
        assert_eq!(rates, [5_000_000, 10_000_000]);
        assert_eq!(max, 10_000_000);
        // no bisection
        let (max, rates) = search(1000, 0, 3000);
        assert_eq!(rates, [1000, 2000, 4000]);
        assert_eq!(max, 2000);
    }

    #[test]
    fn the_config_lists_the_devices_beyond_the_clients() {
        let spec = Spec {
            rate: 1,
            clients: 2,
            devices: 5,
            devices_per_client: 2,
            seconds: 1.0,
            warmup_seconds: 0.0,
            switch_delay_ms: 1,
            monitor_timeout_s: 1.0,
            write_coalesce_ms: None,
            write_coalesce_behind_ms: None,
            progress: false,
        };
        let c = config(&spec, "127.0.0.1:9".parse().unwrap());
        let cfg = crate::config::Config::from_toml(&c).expect("a valid configuration");
        assert_eq!(cfg.api.write_coalesce_ms, 0, "the gateway's default");
        assert_eq!(
            cfg.api.write_coalesce_behind_ms, 30,
            "the gateway's default"
        );
        let c = config(
            &Spec {
                write_coalesce_ms: Some(20),
                write_coalesce_behind_ms: Some(0),
                ..spec.clone()
            },
            "127.0.0.1:9".parse().unwrap(),
        );
        assert!(c.contains("monitor = [\"2000004\"]"), "{c}");
        assert!(c.contains("address = \"127.0.0.1:9\""), "{c}");
        assert!(c.contains("listen = \"127.0.0.1:0\""), "{c}");
        let cfg = crate::config::Config::from_toml(&c).expect("a valid configuration");
        assert_eq!(cfg.links[0].monitor, ["2000004"]);
        assert_eq!(cfg.api.requests_per_s, 0);
        assert_eq!(cfg.api.write_coalesce_ms, 20);
        assert_eq!(cfg.api.write_coalesce_behind_ms, 0);
    }
}
