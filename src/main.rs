//! `ctigate` command line: thin wiring of the library (house habit 12).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ctigate::decode::{self, Framing};
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
    #[arg(long, global = true, env = "CTIGATE_LOG", default_value = "info")]
    log: String,
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
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| {
        eprintln!("ctigate: bad --log filter {:?}, using `info`", cli.log);
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

fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
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
