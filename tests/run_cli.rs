//! `ctigate run` (the binary) tells how each link's first attempt went: `connecting`, then
//! `up in N ms` or the reason; and it stops with exit 0 on SIGTERM.

use ctigate::sim::{Sim, SimConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn config(dir: &std::path::Path, address: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("ctigate.toml");
    std::fs::write(
        &p,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[[link]]\nname = \"pbx1\"\naddress = \"{address}\"\n"
        ),
    )
    .unwrap();
    p
}

/// The first `n` stdout lines of `ctigate run`, then SIGTERM; the lines and the exit code.
fn run(cfg: &std::path::Path, n: usize) -> (Vec<String>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctigate run");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let got: Vec<String> = (0..n).map_while(|_| lines.next()?.ok()).collect();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    (got, child.wait().unwrap().code())
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_lines_say_connecting_then_up_or_why_not() {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", None)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ctigate-run-cli-{}", std::process::id()));
    let addr = sim.csta_addr.to_string();
    let cfg = config(&dir.join("up"), &addr);
    let (l, code) = tokio::task::spawn_blocking(move || run(&cfg, 3))
        .await
        .unwrap();
    assert!(
        l[0].starts_with("ctigate run: NDJSON port 127.0.0.1:"),
        "{l:?}"
    );
    assert_eq!(l[1], format!("link pbx1: connecting to {addr}"));
    assert!(
        l[2].starts_with("link pbx1: up in ") && l[2].ends_with(" ms"),
        "{l:?}"
    );
    assert_eq!(code, Some(0), "SIGTERM stops it cleanly");
    // nobody listening: the reason, and it keeps trying
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = free.local_addr().unwrap().to_string();
    drop(free);
    let cfg = config(&dir.join("down"), &dead);
    let (l, code) = tokio::task::spawn_blocking(move || run(&cfg, 3))
        .await
        .unwrap();
    assert!(
        l[2].starts_with("link pbx1: down: ") && l[2].contains("retrying"),
        "{l:?}"
    );
    assert_eq!(code, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Transparent huge pages are off for the gateway's process (their first touch cleared
/// 2 MiB on the event pump at once: tens of ms on a VM), unless `MIMALLOC_ALLOW_THP` is
/// set. Linux only; a kernel without `THP_enabled` in /proc/PID/status is not checked.
#[cfg(target_os = "linux")]
#[test]
fn transparent_huge_pages_are_off_unless_mimalloc_allow_thp_is_set() {
    let thp = |env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctigate"));
        cmd.args(["sim", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("MIMALLOC_ALLOW_THP");
        if let Some(v) = env {
            cmd.env("MIMALLOC_ALLOW_THP", v);
        }
        let mut child = cmd.spawn().expect("run ctigate sim");
        // its first line: it is listening, so main() has run
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
    };
    let Some(off) = thp(None) else {
        return; // this kernel does not say
    };
    assert_eq!(off, "0");
    assert_eq!(thp(Some("1")).as_deref(), Some("1"));
}
