//! A complete screen-pop adapter in ~40 lines: connect to ctigate, monitor some devices,
//! and "pop" the customer record when a call offers at one of them.
//!
//! ```sh
//! cargo run --release -- demo &                      # or: ctigate run --config ctigate.toml
//! cargo run --example screen_pop -- 127.0.0.1:7700 201 202
//! ```
//! Any language with a TCP socket and a JSON parser can do the same: one JSON object per
//! line (docs/PROTOCOL.md). A gateway with users wants a token first: set `CTIGATE_TOKEN`.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7700".into());
    let devices: Vec<String> = args.collect();
    let stream = TcpStream::connect(&addr)?;
    let mut out = stream.try_clone()?;
    if let Ok(token) = std::env::var("CTIGATE_TOKEN") {
        writeln!(
            out,
            "{}",
            json!({"id": "auth", "op": "auth", "token": token})
        )?;
    }
    for (i, d) in devices.iter().enumerate() {
        let req = json!({"id": i + 1, "op": "monitor.start", "device": d});
        writeln!(out, "{req}")?;
    }
    println!("screen pop adapter on {addr}, watching {devices:?}");
    for line in BufReader::new(stream).lines() {
        let v: Value = serde_json::from_str(&line?).unwrap_or(Value::Null);
        match (v["type"].as_str(), v["event"].as_str()) {
            (Some("event"), Some("call.offering")) => {
                let c = &v["call"];
                // one offering per interaction and device: pop exactly here
                println!(
                    "POP at {}: {} call from {} to {} (interaction {}) variables {}",
                    v["device"].as_str().unwrap_or("?"),
                    c["type"].as_str().unwrap_or("?"),
                    c["ani"].as_str().unwrap_or("unknown"),
                    c["dnis"].as_str().unwrap_or("?"),
                    c["id"].as_str().unwrap_or("?"),
                    c["variables"]
                );
            }
            (Some("event"), Some("call.released")) => {
                println!(
                    "closed interaction {} (cause {})",
                    v["call"]["id"], v["cause"]
                );
            }
            // the gateway pings a client that has been silent a while: any request answers
            (Some("ping"), _) => writeln!(out, r#"{{"id":"pong","op":"ping"}}"#)?,
            (Some("response"), _) if v["ok"] == false => eprintln!("error: {}", v["error"]),
            _ => {}
        }
    }
    Ok(())
}
