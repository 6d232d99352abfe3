//! `ctigate demo` (the binary): a port that is taken is named with the flag that moves it.

use std::process::Command;

fn demo(listen: &str, sim_control: &str) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args([
            "demo",
            "--once",
            "--listen",
            listen,
            "--sim-control",
            sim_control,
        ])
        .output()
        .expect("run ctigate demo");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_taken_port_is_named_with_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, err) = demo("127.0.0.1:0", &port);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&port) && err.contains("control port"), "{err}");
    assert!(
        err.contains("--sim-control") && !err.contains("--listen"),
        "{err}"
    );
    let (code, err) = demo(&port, "127.0.0.1:0");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&port) && err.contains("NDJSON port"), "{err}");
    assert!(
        err.contains("--listen") && !err.contains("--sim-control"),
        "{err}"
    );
}

fn ping(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .arg("ping")
        .args(args)
        .output()
        .expect("run ctigate ping");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text)
}

#[test]
fn ping_is_a_health_check() {
    use std::io::{BufRead, BufReader};
    // a running demo: find its NDJSON port in the banner
    let mut demo = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--sim-control",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ctigate demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let banner = lines.next().expect("a banner line").unwrap();
    let addr = banner
        .rsplit("gateway NDJSON port ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let (code, out) = ping(&[&addr, "--require-links"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("ok {addr}: ctigate/1")) && out.contains("links up 1/1"),
        "{out}"
    );
    demo.kill().unwrap();
    demo.wait().unwrap();
    let (code, out) = ping(&[&addr, "--timeout-ms", "2000"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot connect"), "{out}");
    // a port that is not a gateway: no hello, within the time
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = other.local_addr().unwrap().to_string();
    let (code, out) = ping(&[&a, "--timeout-ms", "300"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no answer"), "{out}");
}

/// The events printed under each numbered step of `demo --once`: (step, event, device).
fn demo_steps() -> Vec<(u32, String, String)> {
    let o = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args([
            "demo",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--sim-control",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run ctigate demo");
    assert_eq!(o.status.code(), Some(0));
    let mut step = 0;
    let mut out = Vec::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((n, _)) = l.split_once(". ") {
            if let Ok(n) = n.parse() {
                step = n;
                continue;
            }
        }
        // "    [12] 8000 agent.state ..."
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 3 && w[0].starts_with('[') {
            out.push((step, w[2].to_string(), w[1].to_string()));
        }
    }
    out
}

#[test]
fn demo_events_stand_under_the_step_that_caused_them() {
    let steps = demo_steps();
    let at = |s: u32| -> Vec<(String, String)> {
        steps
            .iter()
            .filter(|x| x.0 == s)
            .map(|x| (x.1.clone(), x.2.clone()))
            .collect()
    };
    let ev = |e: &str, d: &str| (e.to_string(), d.to_string());
    // the answer makes the agent busy: under step 3, not 4
    assert_eq!(
        at(3),
        vec![
            ev("call.connected", "201"),
            ev("agent.state", "201"),
            ev("agent.state", "8000")
        ]
    );
    assert!(!at(4).contains(&ev("agent.state", "201")), "{:?}", at(4));
    // the transfer frees 201 and the agent is ready again: under step 5
    let five = at(5);
    for e in [
        ev("call.transferred", "202"),
        ev("call.transferred", "201"),
        ev("call.released", "201"),
        ev("agent.state", "201"),
        ev("agent.state", "8000"),
    ] {
        assert!(five.contains(&e), "{e:?} not under step 5: {five:?}");
    }
    // the customer's hang-up: only 202's release
    assert_eq!(at(6), vec![ev("call.released", "202")]);
}

/// The demo has no users: it serves on loopback only (issue 11), and says what to use
/// instead.
#[test]
fn the_demo_stays_on_loopback() {
    let (code, err) = demo("0.0.0.0:0", "127.0.0.1:0");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("loopback only") && err.contains("[[user]]"),
        "{err}"
    );
}
