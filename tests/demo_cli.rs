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
