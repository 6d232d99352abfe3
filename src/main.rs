//! `ctigate` command line: thin wiring of the library (house habit 12).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ctigate::decode::{self, Framing};
use ctigate::sim::control::Command as SimCommand;
use ctigate::sim::model::LoadSpec;
use ctigate::sim::{Sim, SimConfig};
use std::io::{BufReader, Write};
use std::path::PathBuf;

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
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FramingArg {
    /// 2-octet big-endian length before each BER PDU
    U16,
    /// 8-octet CSTA-XML header (framing only)
    Xml8,
}

#[derive(Subcommand)]
enum Command {
    /// Decode CSTA PDUs into one JSON object per PDU (exit 1 if any PDU failed).
    Decode {
        /// Input is one unframed PDU per line in hex (from FILE or stdin).
        #[arg(long)]
        hex: bool,
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
        /// TOML configuration ([api] listen, one [[link]] per PBX).
        #[arg(long)]
        config: PathBuf,
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
    },
    /// Interactive client: type JSON requests or short commands (`help`).
    Client {
        /// The gateway's address.
        #[arg(default_value = "127.0.0.1:7700")]
        addr: String,
    },
    /// Run the CSTA Phase III switch simulator (prints its dial plan; Ctrl-C stops it).
    Sim {
        /// Where applications connect (CSTA BER, 2-octet length framing).
        #[arg(long, default_value = "127.0.0.1:2555")]
        listen: String,
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
        /// Seconds between the switch's keep-alives (0: none).
        #[arg(long)]
        keepalive: Option<u64>,
    },
}

fn main() {
    let cli = Cli::parse();
    let quiet = matches!(cli.cmd, Command::Demo { .. } | Command::Client { .. });
    let log = cli
        .log
        .clone()
        .unwrap_or_else(|| if quiet { "warn" } else { "info" }.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&log).unwrap_or_else(|_| {
        eprintln!("ctigate: bad --log filter {log:?}, using `info`");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.cmd) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctigate: {e:#}");
            std::process::exit(2);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let cfg = ctigate::config::Config::from_toml(&text)
                .with_context(|| format!("in {}", config.display()))?;
            runtime()?.block_on(run_gateway(cfg))
        }
        Command::Demo {
            listen,
            sim_control,
            once,
        } => runtime()?.block_on(run_demo(listen, sim_control, once)),
        Command::Client { addr } => runtime()?.block_on(run_client(addr)),
        Command::Sim {
            listen,
            control,
            config,
            scenario,
            exit_after_scenario,
            profile,
            load,
            handshake,
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
            framing,
            handshake,
            file,
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = if hex {
                match &file {
                    Some(p) => {
                        let f = std::fs::File::open(p)
                            .with_context(|| format!("cannot open {}", p.display()))?;
                        decode::run_hex(&mut BufReader::new(f), &mut out)?
                    }
                    None => decode::run_hex(&mut std::io::stdin().lock(), &mut out)?,
                }
            } else {
                let f = match framing {
                    FramingArg::U16 => Framing::U16,
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
    listen: String,
    control: String,
    scenario: Option<String>,
    exit_after: bool,
    load: Option<f64>,
) -> anyhow::Result<i32> {
    if let Some(s) = &scenario {
        ctigate::sim::server::parse_scenario(s)
            .map_err(|e| anyhow::anyhow!(e))
            .context("the scenario file is not valid")?;
    }
    let ctl = (control != "none").then_some(control.as_str());
    let sim = Sim::start(cfg, &listen, ctl).await?;
    println!(
        "ctigate sim listening: csta {} control {}",
        sim.csta_addr,
        sim.control_addr
            .map_or("none".to_string(), |a| a.to_string())
    );
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
    tokio::signal::ctrl_c().await?;
    Ok(0)
}

async fn run_gateway(cfg: ctigate::config::Config) -> anyhow::Result<i32> {
    let l = ctigate::api::server::bind(&cfg.api.listen).await?;
    let addr = l.local_addr()?;
    let api = ctigate::api::start(cfg);
    let serving = tokio::spawn(ctigate::api::server::serve(api.clone(), l));
    println!(
        "ctigate run: NDJSON port {addr}; links: {}",
        ctigate::api::ops::link_states(&api.gateway)
    );
    stop_signal().await?;
    api.shutdown().await;
    let _ = serving.await;
    Ok(0)
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
        tracing::info!("stop signal");
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
    }
}

async fn run_demo(listen: String, sim_control: String, once: bool) -> anyhow::Result<i32> {
    let d = ctigate::demo::start(&listen, &sim_control)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot start the demo (is port 7700 in use? try --listen 127.0.0.1:0)")?;
    println!(
        "ctigate demo: switch simulator on {} (control {}), gateway NDJSON port {}",
        d.sim.csta_addr,
        d.sim.control_addr.map_or("none".into(), |a| a.to_string()),
        d.api
    );
    println!("A scripted call, as the NDJSON events an adapter receives:");
    ctigate::demo::script(&d, |l| println!("{l}"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the scripted call failed")?;
    if once {
        d.shutdown().await;
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
            "Inbound calls from the simulator's control port:  echo '{{\"cmd\":\"inbound\",\"ani\":\"0891234567\",\"dnis\":\"203\"}}' | nc -q1 {} {}",
            c.ip(),
            c.port()
        );
    }
    println!("Ctrl-C stops.");
    stop_signal().await?;
    d.shutdown().await;
    Ok(0)
}

async fn run_client(addr: String) -> anyhow::Result<i32> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| {
            format!("cannot connect to {addr}: is `ctigate run` or `ctigate demo` running?")
        })?;
    let (r, mut w) = s.into_split();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(r);
        loop {
            match ctigate::lines::read_line(&mut r, 1 << 20).await {
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
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut id = 1;
    while let Some(line) = stdin.next_line().await? {
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
