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
