//! `ctigate` command line: thin wiring of the library (house habit 12).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ctigate::decode::{self, Framing};
use ctigate::sim::control::Command as SimCommand;
use ctigate::sim::model::LoadSpec;
use ctigate::sim::{Sim, SimConfig};
use std::io::{BufReader, Write};
use std::path::PathBuf;

/// mimalloc, not the system's malloc: the event path allocates per event, and glibc's
/// malloc and free took about a fifth of the gateway's CPU at 100 000 events/s
/// (BENCHMARKS.md, "The gateway end to end").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`), before
/// anything much is allocated, unless `MIMALLOC_ALLOW_THP` is set (the user's choice).
/// mimalloc asks for huge pages for its memory; the first touch of a fresh one then
/// clears 2 MiB at once, on the thread that touched it. On a VM whose memory the host
/// backs lazily that took 5 to 50 ms (an event pump growing its call table at the first
/// events after a quiet while, with every event behind it waiting: p99 35 ms at 2 000
/// events/s in the first second, 0.5 ms with huge pages off; BENCHMARKS.md).
fn huge_pages_off() -> Result<(), String> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Err("MIMALLOC_ALLOW_THP is set".into());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and sets a flag of this
        // process; no memory is passed.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err("not Linux".into())
}

#[derive(Parser)]
#[command(
    name = "ctigate",
    version,
    about = "CTI gateway: CSTA Phase III (ECMA-285) link tools"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `debug` or `ctigate=trace`.
    /// (default: `info`; `warn` for demo and client, whose output is the events)
    #[arg(long, global = true, env = "CTIGATE_LOG")]
    log: Option<String>,
    /// Log lines as text (coloured only on a terminal; `NO_COLOR` turns colour off) or as
    /// one JSON object per line for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CTIGATE_LOG_FORMAT"
    )]
    log_format: ctigate::logging::LogFormat,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FramingArg {
    /// 2-octet big-endian length before each BER PDU
    U16,
    /// Siemens HiPath: 26, 80|length-high, length-low before each BER PDU
    Hipath,
    /// 8-octet CSTA-XML header (framing only)
    Xml8,
}

#[derive(Subcommand)]
enum Command {
    /// Decode CSTA PDUs into one JSON object per PDU (exit 1 if any PDU failed).
    Decode {
        /// Input is unframed PDUs in hex (from FILE or stdin): one per line, or, for an
        /// annotated dump whose first hex line carries a `# comment` (the files of
        /// fixtures/), one per block of lines.
        #[arg(long)]
        hex: bool,
        /// With --hex: a PDU runs over several lines and ends at a blank line, a
        /// comment-only line or the end of the input (e.g. `xxd -p` output).
        #[arg(long, requires = "hex", conflicts_with = "single_line")]
        multiline: bool,
        /// With --hex: exactly one PDU per line, whatever the comments.
        #[arg(long, requires = "hex")]
        single_line: bool,
        /// Framing of a binary stream (ignored with --hex).
        #[arg(long, value_enum, default_value = "u16")]
        framing: FramingArg,
        /// The stream starts with the pre-association byte `B` or `P` of an OmniPCX Office
        /// link (u16 framing): skip it.
        #[arg(long)]
        handshake: bool,
        /// Input file; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Run the gateway: PBX links from the config, NDJSON port for adapters.
    Run {
        /// TOML configuration ([api] listen, one [[link]] per PBX; docs/CONFIG.md).
        /// Default: $CTIGATE_CONFIG, then /etc/ctigate/ctigate.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a gateway configuration without starting anything: each mistake with its key
    /// and fix (exit 1), or the effective configuration with defaults filled in and
    /// secrets masked (exit 0).
    CheckConfig {
        /// The file; default: $CTIGATE_CONFIG, then /etc/ctigate/ctigate.toml.
        file: Option<PathBuf>,
    },
    /// Make a new client token (256 random bits, base64url) and print it with the
    /// `[[user]]` lines to paste into the configuration (which keep only its SHA-256).
    Token {
        /// The user's name.
        #[arg(long, default_value = "client")]
        name: String,
        /// `monitor` (events and snapshots), `control` (also call and agent requests) or
        /// `admin` (also the full status).
        #[arg(long, default_value = "monitor")]
        role: String,
        /// The devices the user may use: numbers, ranges like 201-220, or * (repeat or
        /// separate with commas).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        devices: Vec<String>,
    },
    /// Simulator + gateway on loopback, a short scripted call, then the port stays open.
    Demo {
        /// Where adapters connect.
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
        /// The simulator's control port (inject calls: see the README).
        #[arg(long, default_value = "127.0.0.1:2556")]
        sim_control: String,
        /// Run the scripted call and exit (no serving afterwards).
        #[arg(long)]
        once: bool,
        /// Also serve Prometheus metrics (GET /metrics, /healthz) here, e.g. 127.0.0.1:9700
        /// (docs/METRICS.md).
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Health check: the gateway answers `ping` within the time (exit 0), or not (exit 1).
    /// For systemd, container healthchecks and monitoring scripts.
    Ping {
        /// The gateway's address.
        #[arg(default_value = "127.0.0.1:7700", env = "CTIGATE_PING_ADDR")]
        addr: String,
        /// Give up after this long.
        #[arg(long, default_value = "3000")]
        timeout_ms: u64,
        /// Also fail when a PBX link is not up.
        #[arg(long)]
        require_links: bool,
    },
    /// Interactive client: type JSON requests or short commands (`help`).
    Client {
        /// The gateway's address.
        #[arg(default_value = "127.0.0.1:7700")]
        addr: String,
        /// Authenticate with this token first (a gateway with users); from the environment
        /// so that it stays out of the shell history and the process list.
        #[arg(
            long = "token-env",
            value_name = "VAR",
            default_value = "CTIGATE_TOKEN"
        )]
        token_env: String,
    },
    /// Soak (a benchmark-style chaos run, not CI): the simulator and the gateway in this
    /// process, load mode on, N clients watching the stations, random faults (close, abort,
    /// garble, stop_keepalive then resume, restart with the links kept); progress lines, then
    /// each client's view compared with the switch's calls. Exit 1 on any loss.
    Soak {
        /// How long to inject faults, in minutes.
        #[arg(long, default_value = "2")]
        minutes: f64,
        /// NDJSON clients, each watching stations 201-210.
        #[arg(long, default_value = "4")]
        clients: usize,
        /// Load mode's inbound calls per second (to group 8000; 10 agents at 201-210, each
        /// call 1.3 to 6.5 s: above about 2.5 calls queue at the group).
        #[arg(long, default_value = "2")]
        calls_per_s: f64,
        /// Seconds between faults.
        #[arg(long, default_value = "10")]
        fault_interval_s: f64,
        /// Seconds between progress lines.
        #[arg(long, default_value = "5")]
        progress_s: f64,
        /// Seed of the fault sequence (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Benchmark (one command, no set-up): a built-in switch generating event reports at a
    /// fixed rate, the gateway as a child process (`ctigate run`), and NDJSON clients on
    /// loopback; progress on stderr, then the figures (events/s in and out, losses, lagged
    /// clients, latency percentiles, the gateway's CPU and memory, monitors/s, ready time).
    /// Exit 1 when events were lost or a phase timed out.
    Bench {
        /// Switch events per second (each call: Delivered, Established, ConnectionCleared,
        /// round robin over the clients' devices).
        #[arg(long, default_value = "100000")]
        rate: u64,
        /// NDJSON clients.
        #[arg(long, default_value = "1000")]
        clients: usize,
        /// Devices monitored on the link in all: the clients' (clients x
        /// devices-per-client, which get the events) and the rest in the configuration's
        /// `monitor` list.
        #[arg(long, default_value = "100000")]
        devices: usize,
        /// Devices each client monitors (monitor.start).
        #[arg(long, default_value = "1")]
        devices_per_client: usize,
        /// Length of the measured window.
        #[arg(long, default_value = "20")]
        seconds: f64,
        /// Load before the measured window.
        #[arg(long, default_value = "2")]
        warmup_seconds: f64,
        /// The switch answers each request after this long.
        #[arg(long, default_value = "1")]
        switch_delay_ms: u64,
        /// Every device must be monitored within this after link up.
        #[arg(long, default_value = "60")]
        monitor_timeout_s: f64,
        /// The gateway's `[api] write_coalesce_ms` (at most one write of events per client
        /// per this many milliseconds; 0 = every event at once); the gateway's default
        /// when absent.
        #[arg(long)]
        write_coalesce_ms: Option<u64>,
        /// The gateway's `[api] write_coalesce_behind_ms` (the same while it is behind the
        /// link's events; 0 = not then); the gateway's default when absent.
        #[arg(long)]
        write_coalesce_behind_ms: Option<u64>,
        /// Print one JSON object (the same fields) instead of the table.
        #[arg(long)]
        json: bool,
        /// Search the highest rate with nothing lost, no client lagged, p99 under 50 ms
        /// and the PBX socket read continuously (no switch write blocked, nothing left
        /// unread 10 ms or more): trials of --seconds (at most 5) from --find-max-start,
        /// doubling while they pass (halving while they fail), then bisecting; each trial
        /// a fresh gateway. Exit 1 when no rate passed.
        #[arg(long)]
        find_max: bool,
        /// The first rate of --find-max.
        #[arg(long, default_value = "5000")]
        find_max_start: u64,
    },
    /// Run the CSTA Phase III switch simulator (prints its dial plan; SIGTERM or Ctrl-C
    /// releases every association (RLRQ, ABRT without RLRE in time) and stops it);
    /// `ctigate sim ctl` drives a running one.
    #[command(args_conflicts_with_subcommands = true)]
    Sim {
        #[command(subcommand)]
        action: Option<SimAction>,
        /// Where applications connect (CSTA BER, 2-octet length framing). Give it once per
        /// side (A, B, ...: up to 16) for a switch with several CSTA ports sharing one call
        /// model; the control port's fault side_down / side_up takes a side away and back.
        #[arg(long, default_value = "127.0.0.1:2555")]
        listen: Vec<String>,
        /// NDJSON control port (`none`: no port).
        #[arg(long, default_value = "127.0.0.1:2556")]
        control: String,
        /// TOML configuration (dial plan, link rules); the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control commands to run at start, one JSON object per line.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Stop when the scenario is done (exit 1 if a step failed).
        #[arg(long, requires = "scenario")]
        exit_after_scenario: bool,
        /// Dialect profile: `default` or `oxo` (10 events/s, 2 requests/s, one outstanding).
        #[arg(long)]
        profile: Option<String>,
        /// Start the load generator with this many inbound calls per second to group 8000.
        #[arg(long)]
        load: Option<f64>,
        /// Expect the pre-association byte B and answer P (OmniPCX Office).
        #[arg(long)]
        handshake: bool,
        /// The header before each PDU: `length` (2-octet length) or `hipath` (Siemens
        /// HiPath 26 8x xx); overrides the configuration's link.framing.
        #[arg(long)]
        framing: Option<String>,
        /// Seconds between the switch's keep-alives (0: none).
        #[arg(long)]
        keepalive: Option<u64>,
    },
}

#[derive(Subcommand)]
enum SimAction {
    /// Send a control command to a running simulator and print its answer (exit 1 when it
    /// is not ok): JSON, or short words such as `inbound 0891234567 8000 case=42`,
    /// `answer 201`, `busy 202 on`, `fault close`. Without a command: an interactive
    /// session (`help` lists the short forms).
    Ctl {
        /// The simulator's control port (`ctigate sim --control`, `ctigate demo --sim-control`).
        #[arg(long, default_value = "127.0.0.1:2556")]
        control: String,
        /// The command (JSON or short words); none: read commands from stdin.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

fn main() {
    let huge_pages_off = huge_pages_off();
    let cli = Cli::parse();
    let quiet = matches!(
        cli.cmd,
        Command::Demo { .. }
            | Command::Client { .. }
            | Command::Ping { .. }
            | Command::Soak { .. }
            | Command::Bench { .. }
            | Command::Sim {
                action: Some(_),
                ..
            }
    );
    let log = cli
        .log
        .clone()
        .unwrap_or_else(|| if quiet { "warn" } else { "info" }.to_string());
    // `run` sets up its log once its configuration is read (the audit file is in it)
    if !matches!(cli.cmd, Command::Run { .. }) {
        ctigate::logging::init(&log, cli.log_format);
    }
    let log_given = cli.log.is_some();
    if let Err(e) = huge_pages_off {
        tracing::debug!("transparent huge pages stay on for this process: {e}");
    }
    match run(cli.cmd, &log, log_given, cli.log_format) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctigate: {e:#}");
            std::process::exit(2);
        }
    }
}

/// `--config`, `$CTIGATE_CONFIG`, `/etc/ctigate/ctigate.toml` (docs/CONFIG.md).
fn locate_config(flag: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    Ok(ctigate::config::locate(
        flag,
        std::env::var_os("CTIGATE_CONFIG"),
        std::path::Path::new(ctigate::config::SYSTEM_CONFIG),
    )?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn runtime_with(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?)
}

async fn run_bench(
    spec: ctigate::bench::Spec,
    exe: PathBuf,
    json: bool,
    find_max: bool,
    start: u64,
) -> anyhow::Result<i32> {
    // Ctrl-C or SIGTERM: the run is dropped, which stops the gateway child
    let stop = stop_signal()?;
    let work = async {
        if find_max {
            let r = ctigate::bench::find_max(&spec, &exe, start, 4, |t| {
                eprintln!(
                    "bench: trial {}/s: {} (switch in {:.0}/s, clients out {:.0}/s, lost {}, lagged {}, p99 {} ms, gateway CPU {:.1} %){}",
                    t.rate_per_s,
                    if t.passed { "pass" } else { "FAIL" },
                    t.switch_events_per_s,
                    t.client_events_per_s,
                    t.events_lost,
                    t.lagged_clients,
                    t.latency_p99_ms.map_or("-".into(), |p| format!("{p:.3}")),
                    t.gateway_cpu_percent,
                    if t.failures.is_empty() { String::new() } else { format!(": {}", t.failures.join("; ")) }
                )
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "highest rate with nothing lost, no client lagged, p99 < {} ms and the PBX socket read continuously: {}/s",
                    ctigate::bench::FIND_MAX_P99_MS,
                    r.max_rate_per_s
                );
                for t in &r.trials {
                    println!(
                        "  trial {:>9}/s  {}  p99 {} ms  lost {}  lagged {}{}",
                        t.rate_per_s,
                        if t.passed { "pass" } else { "FAIL" },
                        t.latency_p99_ms.map_or("-".into(), |p| format!("{p:.3}")),
                        t.events_lost,
                        t.lagged_clients,
                        if t.failures.is_empty() {
                            String::new()
                        } else {
                            format!("  ({})", t.failures.join("; "))
                        }
                    );
                }
                if let Some(b) = &r.best {
                    println!("the highest passing trial:");
                    print!("{}", ctigate::bench::table(b));
                }
            }
            anyhow::Ok(if r.max_rate_per_s > 0 { 0 } else { 1 })
        } else {
            let r = ctigate::bench::run(&spec, &exe).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", ctigate::bench::table(&r));
            }
            if !r.ok {
                eprintln!("bench: FAILED: {}", r.failures.join("; "));
            }
            Ok(if r.ok { 0 } else { 1 })
        }
    };
    tokio::select! {
        r = work => r,
        _ = stop => {
            eprintln!("bench: interrupted; the gateway is stopped");
            Ok(130)
        }
    }
}

fn run(
    cmd: Command,
    log: &str,
    log_given: bool,
    log_format: ctigate::logging::LogFormat,
) -> anyhow::Result<i32> {
    match cmd {
        Command::Run { config } => {
            // SIGHUP watched before anything else: one sent while the gateway starts
            // (logrotate's, a reload) waits for the reload loop instead of ending the
            // process (the signal's default action)
            let rt = runtime()?;
            let hangup = watch_hangup(&rt)?;
            let path = locate_config(config.as_deref())?;
            let cfg = ctigate::config::load(&path)?;
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let audit = cfg.audit.file.as_ref().map(|f| dir.join(f));
            // --log / CTIGATE_LOG, else the file's log.level
            let filter = if log_given { log } else { &cfg.log.level };
            let filter = ctigate::logging::init_with_audit(filter, log_format, audit.as_deref())
                .map_err(|e| anyhow::anyhow!(e))?;
            let reload = ctigate::reload::Setup {
                path,
                log: Some(filter),
                log_from_flag: log_given,
            };
            rt.block_on(run_gateway(cfg, reload, hangup))
        }
        Command::Token {
            name,
            role,
            devices,
        } => {
            use ctigate::api::auth;
            let role: auth::Role = role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
            auth::DeviceSet::parse(&devices).map_err(|e| anyhow::anyhow!("--devices: {e}"))?;
            let token = auth::new_token()
                .map_err(|e| anyhow::anyhow!("no random numbers from the system: {e}"))?;
            print!("{}", auth::token_text(&token, &name, role, &devices));
            Ok(0)
        }
        Command::CheckConfig { file } => {
            let path = locate_config(file.as_deref())?;
            match ctigate::config::load(&path) {
                Ok(cfg) => {
                    println!("# {}: ok; the effective configuration:", path.display());
                    print!("{}", cfg.effective_toml());
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("ctigate: {e}");
                    Ok(1)
                }
            }
        }
        Command::Demo {
            listen,
            sim_control,
            once,
            metrics,
        } => runtime()?.block_on(run_demo(listen, sim_control, once, metrics)),
        Command::Client { addr, token_env } => {
            let token = std::env::var(&token_env).ok().filter(|t| !t.is_empty());
            runtime()?.block_on(run_client(addr, token))
        }
        Command::Soak {
            minutes,
            clients,
            calls_per_s,
            fault_interval_s,
            progress_s,
            seed,
        } => {
            let secs = |x: f64, what: &str| {
                if x.is_finite() && x > 0.0 && x <= 86_400.0 {
                    Ok(std::time::Duration::from_secs_f64(x))
                } else {
                    Err(anyhow::anyhow!("{what} must be above 0 and at most a day"))
                }
            };
            if clients == 0 || clients > 200 {
                anyhow::bail!("--clients must be 1 to 200");
            }
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs())
            });
            let spec = ctigate::soak::SoakSpec {
                duration: secs(minutes * 60.0, "--minutes")?,
                clients,
                calls_per_s,
                fault_interval: secs(fault_interval_s, "--fault-interval-s")?,
                progress: secs(progress_s, "--progress-s")?,
                seed,
            };
            let ok = runtime()?
                .block_on(ctigate::soak::run(spec, |l| println!("{l}")))
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(if ok { 0 } else { 1 })
        }
        Command::Bench {
            rate,
            clients,
            devices,
            devices_per_client,
            seconds,
            warmup_seconds,
            switch_delay_ms,
            monitor_timeout_s,
            write_coalesce_ms,
            write_coalesce_behind_ms,
            json,
            find_max,
            find_max_start,
        } => {
            let spec = ctigate::bench::Spec {
                rate,
                clients,
                devices,
                devices_per_client,
                seconds: if find_max { seconds.min(5.0) } else { seconds },
                warmup_seconds: if find_max {
                    warmup_seconds.min(1.0)
                } else {
                    warmup_seconds
                },
                switch_delay_ms,
                monitor_timeout_s,
                write_coalesce_ms,
                write_coalesce_behind_ms,
                progress: true,
            };
            spec.check()?;
            let exe = std::env::current_exe().context("cannot find the ctigate executable")?;
            runtime_with(2)?.block_on(run_bench(spec, exe, json, find_max, find_max_start))
        }
        Command::Ping {
            addr,
            timeout_ms,
            require_links,
        } => {
            let limit = std::time::Duration::from_millis(timeout_ms);
            match runtime()?.block_on(ctigate::client::ping(&addr, limit, require_links)) {
                Ok(report) => {
                    println!("{report}");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("ctigate ping: {e}");
                    Ok(1)
                }
            }
        }
        Command::Sim {
            action: Some(SimAction::Ctl { control, words }),
            ..
        } => runtime()?
            .block_on(ctigate::sim::ctl::run(&control, &words))
            .map_err(|e| anyhow::anyhow!(e)),
        Command::Sim {
            action: None,
            listen,
            control,
            config,
            scenario,
            exit_after_scenario,
            profile,
            load,
            handshake,
            framing,
            keepalive,
        } => {
            let mut cfg = match &config {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    SimConfig::from_toml(&text).with_context(|| format!("in {}", p.display()))?
                }
                None => SimConfig::default(),
            };
            if let Some(p) = profile {
                cfg.profile = p;
            }
            if handshake {
                cfg.link.handshake = true;
            }
            if let Some(f) = framing {
                cfg.link.framing = f
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--framing: {e}"))?;
            }
            if let Some(k) = keepalive {
                cfg.link.keepalive_s = k;
            }
            cfg.validate().context("bad option")?;
            let scenario = match &scenario {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                ),
                None => None,
            };
            runtime()?.block_on(run_sim(
                cfg,
                listen,
                control,
                scenario,
                exit_after_scenario,
                load,
            ))
        }
        Command::Decode {
            hex,
            multiline,
            single_line,
            framing,
            handshake,
            file,
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = if hex {
                let layout = match (multiline, single_line) {
                    (true, _) => decode::HexLayout::Blocks,
                    (_, true) => decode::HexLayout::Lines,
                    _ => decode::HexLayout::Auto,
                };
                match &file {
                    Some(p) => {
                        let f = std::fs::File::open(p)
                            .with_context(|| format!("cannot open {}", p.display()))?;
                        decode::run_hex_with(&mut BufReader::new(f), layout, &mut out)?
                    }
                    None => decode::run_hex_with(&mut std::io::stdin().lock(), layout, &mut out)?,
                }
            } else {
                let f = match framing {
                    FramingArg::U16 => Framing::U16,
                    FramingArg::Hipath => Framing::Hipath,
                    FramingArg::Xml8 => Framing::Xml8,
                };
                match &file {
                    Some(p) => {
                        let file = std::fs::File::open(p)
                            .with_context(|| format!("cannot open {}", p.display()))?;
                        decode::run_stream(&mut BufReader::new(file), f, handshake, &mut out)?
                    }
                    None => {
                        decode::run_stream(&mut std::io::stdin().lock(), f, handshake, &mut out)?
                    }
                }
            };
            out.flush()?;
            tracing::debug!(
                decoded = summary.decoded,
                failed = summary.failed,
                "decode finished"
            );
            Ok(summary.exit_code())
        }
    }
}

async fn run_sim(
    cfg: SimConfig,
    listen: Vec<String>,
    control: String,
    scenario: Option<String>,
    exit_after: bool,
    load: Option<f64>,
) -> anyhow::Result<i32> {
    let stop = stop_signal()?;
    if let Some(s) = &scenario {
        ctigate::sim::server::parse_scenario(s)
            .map_err(|e| anyhow::anyhow!(e))
            .context("the scenario file is not valid")?;
    }
    let ctl = (control != "none").then_some(control.as_str());
    // the graceful stop: the RLRE wait, then the ABRTs and closes written out
    let stop_bound = std::time::Duration::from_millis(cfg.link.release_timeout_ms)
        + std::time::Duration::from_secs(5);
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let sim = Sim::start_sides(cfg, &listen, ctl).await?;
    println!(
        "ctigate sim listening: csta {} control {}",
        sim.csta_addr,
        sim.control_addr
            .map_or("none".to_string(), |a| a.to_string())
    );
    for (i, a) in sim.sides.iter().enumerate().skip(1) {
        println!("ctigate sim side {i}: csta {a}");
    }
    println!("{}", sim.dialplan().trim_end());
    if let Some(rate) = load {
        let r = sim
            .command(SimCommand::Load(LoadSpec {
                calls_per_s: rate,
                ..LoadSpec::default()
            }))
            .await;
        if r["ok"] != true {
            anyhow::bail!("cannot start the load generator: {}", r["error"]);
        }
        tracing::info!(calls_per_s = rate, "load generator started");
    }
    if let Some(text) = scenario {
        let res = sim
            .scenario(&text, |line, r| {
                println!(
                    "{}",
                    serde_json::json!({"scenario_line": line, "result": r})
                )
            })
            .await;
        match &res {
            Ok(n) => tracing::info!(steps = n, "scenario done"),
            Err(e) => tracing::error!("{e}"),
        }
        if exit_after {
            return Ok(if res.is_ok() { 0 } else { 1 });
        }
    }
    stop.await;
    if sim.stop(stop_bound).await {
        tracing::info!("simulator stopped: every association released");
    } else {
        tracing::warn!(bound = ?stop_bound, "simulator stopped without every connection closed in time");
    }
    Ok(0)
}

async fn run_gateway(
    cfg: ctigate::config::Config,
    reload: ctigate::reload::Setup,
    hangup: Hangup,
) -> anyhow::Result<i32> {
    let stop = stop_signal()?;
    #[cfg(unix)]
    let mut hangup = hangup;
    let running = cfg.clone();
    // the TLS files are read and checked before anything listens
    let tls = cfg.api.tls().map_err(|e| anyhow::anyhow!("{e}"))?;
    let l = ctigate::api::server::bind(&cfg.api.listen).await?;
    let addr = l.local_addr()?;
    // bound before anything starts: a busy port is a start-up error naming metrics.listen
    let metrics_listener = match cfg.metrics.listen() {
        Some(m) => Some(ctigate::http::bind(m).await?),
        None => None,
    };
    let metrics_limits = ctigate::http::Limits::from(&cfg.metrics);
    let targets: Vec<(String, String)> = cfg
        .links
        .iter()
        .map(|l| (l.name.clone(), l.sides().join(", then ")))
        .collect();
    let api = ctigate::api::start(cfg);
    let serving = match tls {
        Some(tls) => {
            println!("ctigate run: NDJSON port {addr} (TLS)");
            tokio::spawn(ctigate::api::server::serve_tls(api.clone(), l, tls))
        }
        None => {
            println!("ctigate run: NDJSON port {addr}");
            tokio::spawn(ctigate::api::server::serve(api.clone(), l))
        }
    };
    let metrics = match metrics_listener {
        Some(ml) => {
            println!("ctigate run: metrics http://{}/metrics", ml.local_addr()?);
            let api = api.clone();
            Some(tokio::spawn(async move {
                let router = ctigate::http::router(api.clone());
                ctigate::http::serve(&api, ml, router, metrics_limits).await
            }))
        }
        None => None,
    };
    for (name, address) in &targets {
        println!("link {name}: connecting to {address}");
    }
    let reported = tokio::spawn(report_links(api.gateway.clone()));
    // SIGHUP: open the audit file again (logrotate moved it aside), read the configuration
    // again, apply what can change live
    let mut reloader = ctigate::reload::Reloader::new(reload, api.clone(), running);
    let audit = reloader.audit_file();
    #[cfg(unix)]
    let reloading =
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                if let Some(a) = &audit {
                    reopen_audit(a);
                }
                match reloader.reload().await {
                    Ok(r) => println!(
                    "ctigate run: configuration reloaded: {} applied, {} waiting for a restart{}",
                    r.applied.len(),
                    r.restart.len(),
                    if r.restart.is_empty() { "" } else { " (see the log)" }
                ),
                    Err(e) => {
                        println!("ctigate run: configuration reload refused, nothing changed: {e}")
                    }
                }
            }
        });
    #[cfg(not(unix))]
    let reloading = tokio::spawn(async move { drop((reloader, audit, hangup)) });
    stop.await;
    reloading.abort();
    reported.abort();
    api.shutdown().await;
    let _ = serving.await;
    if let Some(m) = metrics {
        // bounded by http::STOP_BOUND inside
        let _ = m.await;
    }
    Ok(0)
}

/// SIGHUP for `run` (nothing where there is none).
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// Watch SIGHUP from now on (in `rt`; the signals that come before it is read are kept).
fn watch_hangup(rt: &tokio::runtime::Runtime) -> anyhow::Result<Hangup> {
    #[cfg(unix)]
    {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP")
    }
    #[cfg(not(unix))]
    {
        let _ = rt;
        Ok(())
    }
}

/// SIGHUP's first step: the audit records go to a new file at `[audit] file`'s path from now
/// on (logrotate's `postrotate` sends the signal once it moved the file aside); when it
/// cannot be opened they go on in the file open before, and both say so.
#[cfg(unix)]
fn reopen_audit(a: &ctigate::logging::AuditFile) {
    match a.reopen() {
        Ok(()) => {
            tracing::info!(file = %a.path().display(), "audit.file opened again");
            println!(
                "ctigate run: audit file opened again: {}",
                a.path().display()
            );
        }
        Err(e) => {
            tracing::warn!(file = %a.path().display(), error = %e,
                "the audit records go on in the file open before; check the path and its directory, then send SIGHUP again");
            println!(
                "ctigate run: {e}; the audit records go on in the file open before (send SIGHUP again once the path can be opened)"
            );
        }
    }
}

/// Say how each link's first attempt ended: up (and how long it took) or why not.
async fn report_links(gw: std::sync::Arc<ctigate::gateway::Gateway>) {
    let started = std::time::Instant::now();
    let mut pending: std::collections::BTreeSet<String> = gw.links().keys().cloned().collect();
    let mut warned = false;
    while !pending.is_empty() {
        for l in gw.link_states() {
            if !pending.contains(&l.name) || l.state == "connecting" {
                continue;
            }
            pending.remove(&l.name);
            match l.reason {
                None => println!(
                    "link {}: up in {} ms",
                    l.name,
                    started.elapsed().as_millis()
                ),
                Some(r) => println!("link {}: down: {r} (retrying with backoff)", l.name),
            }
        }
        if !warned && started.elapsed() > std::time::Duration::from_secs(30) {
            warned = true;
            println!("links still connecting after 30 s: {pending:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM: watched from this call on, so a signal sent once
/// the start-up lines are out is never missed; the future ends with the first one.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stop signal");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stop signal");
        })
    }
}

async fn run_demo(
    listen: String,
    sim_control: String,
    once: bool,
    metrics: Option<String>,
) -> anyhow::Result<i32> {
    let stop = stop_signal()?;
    let d = ctigate::demo::start(&listen, &sim_control)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the demo: {e}"))?;
    println!(
        "ctigate demo: switch simulator on {} (control {}), gateway NDJSON port {}",
        d.sim.csta_addr,
        d.sim.control_addr.map_or("none".into(), |a| a.to_string()),
        d.api
    );
    let metrics = match metrics {
        Some(m) => {
            let cfg = ctigate::config::MetricsConfig {
                listen: m,
                ..Default::default()
            };
            let started = ctigate::http::start(&d.service, &cfg).await;
            let (addr, task) = match started {
                Ok(s) => s,
                Err(e) => {
                    d.shutdown().await;
                    return Err(anyhow::anyhow!("cannot start the demo: {e} (--metrics)"));
                }
            };
            println!("ctigate demo: metrics http://{addr}/metrics");
            Some(task)
        }
        None => None,
    };
    println!("A scripted call, as the NDJSON events an adapter receives:");
    ctigate::demo::script(&d, |l| println!("{l}"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the scripted call failed")?;
    if once {
        d.shutdown().await;
        if let Some(t) = metrics {
            let _ = t.await; // stops with the gateway, bounded (http::STOP_BOUND)
        }
        return Ok(0);
    }
    println!();
    println!(
        "The gateway keeps serving on {}. Dial plan of the simulated PBX:",
        d.api
    );
    println!("{}", d.sim.dialplan().trim_end());
    println!();
    println!(
        "Try it:  cargo run --release -- client {}   (or: nc {} {})",
        d.api,
        d.api.ip(),
        d.api.port()
    );
    println!("  {{\"id\":1,\"op\":\"monitor.start\",\"device\":\"203\"}}");
    println!("  {{\"id\":2,\"op\":\"call.make\",\"device\":\"203\",\"to\":\"204\"}}");
    if let Some(c) = d.sim.control_addr {
        println!(
            "Inbound calls from the simulator's control port:  cargo run --release -- sim ctl --control {c} inbound 0891234567 203"
        );
    }
    println!("Ctrl-C stops.");
    stop.await;
    d.shutdown().await;
    if let Some(t) = metrics {
        let _ = t.await; // stops with the gateway, bounded (http::STOP_BOUND)
    }
    Ok(0)
}

async fn run_client(addr: String, token: Option<String>) -> anyhow::Result<i32> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| {
            format!("cannot connect to {addr}: is `ctigate run` or `ctigate demo` running?")
        })?;
    let (r, mut w) = s.into_split();
    // the gateway's idle pings are answered for the person at the keyboard
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(r);
        loop {
            match ctigate::lines::read_line(&mut r, 1 << 20).await {
                Ok(ctigate::lines::Line::Text(t)) if ctigate::client::is_ping(&t) => {
                    let _ = pong_tx.try_send(());
                }
                Ok(ctigate::lines::Line::Text(t)) if ctigate::client::is_pong(&t) => {}
                Ok(ctigate::lines::Line::Text(t)) => println!("{}", ctigate::client::pretty(&t)),
                Ok(ctigate::lines::Line::TooLong) => println!("(a line over 1 MiB was skipped)"),
                _ => {
                    println!("the gateway closed the connection");
                    std::process::exit(0);
                }
            }
        }
    });
    println!("{}", ctigate::client::help().trim_end());
    if let Some(t) = token {
        let auth = serde_json::json!({"id": "auth", "op": "auth", "token": t});
        w.write_all(format!("{auth}\n").as_bytes()).await?;
    }
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut id = 1;
    loop {
        let line = tokio::select! {
            l = stdin.next_line() => match l? {
                Some(l) => l,
                None => break,
            },
            Some(()) = pong_rx.recv() => {
                w.write_all(ctigate::client::PONG.as_bytes()).await?;
                continue;
            }
        };
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t == "help" {
            println!("{}", ctigate::client::help().trim_end());
            continue;
        }
        match ctigate::client::request(t, id) {
            Ok(v) => {
                id += 1;
                w.write_all(format!("{v}\n").as_bytes()).await?;
            }
            Err(e) => println!("{e}"),
        }
    }
    Ok(0)
}
