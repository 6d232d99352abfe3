//! `ctigate sim ctl` (the binary) against a simulator on 127.0.0.1:0: one-shot commands in
//! short words and JSON, the exit status, and the interactive mode over stdin.

use ctigate::sim::{Sim, SimConfig};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

async fn sim() -> (Sim, String) {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", Some("127.0.0.1:0"))
        .await
        .expect("simulator");
    let ctl = sim.control_addr.expect("control port").to_string();
    (sim, ctl)
}

/// Run `ctigate sim ctl --control ADDR ARGS...` with `stdin`, off the runtime's threads.
async fn ctl(addr: &str, args: &[&str], stdin: &str) -> Output {
    let (addr, args, stdin) = (
        addr.to_string(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        stdin.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ctigate"))
            .args(["sim", "ctl", "--control", &addr])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctigate sim ctl");
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn answers(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON answer line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_commands_and_exit_status() {
    let (sim, addr) = sim().await;
    // short words: an inbound call with the IVR's variable; answered with its call id
    let o = ctl(&addr, &["inbound", "0891234567", "201", "case=42"], "").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let a = answers(&o);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["ok"], true);
    let call = a[0]["call"].as_str().expect("call id").to_string();
    // the switch has it, ringing at 201, with the user data
    let st = sim
        .command(ctigate::sim::control::parse(r#"{"cmd":"status"}"#).unwrap())
        .await;
    let text = st.to_string();
    assert!(text.contains(&call) && text.contains("201"), "{text}");
    // JSON works as well
    let o = ctl(&addr, &[r#"{"cmd":"answer","device":"201"}"#], "").await;
    assert_eq!(
        (o.status.code(), answers(&o)[0]["ok"].clone()),
        (Some(0), Value::Bool(true))
    );
    // the switch says no: printed, exit 1
    let o = ctl(&addr, &["answer", "201", "ffff"], "").await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(answers(&o)[0]["ok"], false);
    // a mistake caught before sending: exit 2, the message names the field
    let o = ctl(&addr, &["busy", "202", "maybe"], "").await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`on` must be on or off"));
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_mode_and_unreachable_port() {
    let (_sim, addr) = sim().await;
    let o = ctl(&addr, &[], "help\nstatus\n\nnot_a_command 1\ndialplan\n").await;
    let a = answers(&o);
    assert_eq!(a.len(), 2, "{o:?}");
    assert!(a.iter().all(|x| x["ok"] == true));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inbound [ani] [dnis]"), "help: {err}");
    assert!(err.contains("unknown command \"not_a_command\""), "{err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed line makes the session fail"
    );
    // nobody listening: a clear error naming the flag
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().to_string();
    drop(free);
    let o = ctl(&port, &["status"], "").await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--control"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_switch_is_restarted_not_left_dead() {
    let (sim, addr) = sim().await;
    let o = ctl(&addr, &["inbound", "0891234567", "201"], "").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // an application associated before the failure
    let csta = tokio::net::TcpStream::connect(sim.csta_addr).await.unwrap();
    // known to the switch before it fails
    let mut known = false;
    for _ in 0..100 {
        let o = ctl(&addr, &["status"], "").await;
        if answers(&o)[0]["associations"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
        {
            known = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(known, "the switch never saw the connection");
    // the switch task fails (a deliberate fault): the command is answered, not lost
    let o = ctl(&addr, &["fault", "crash"], "").await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let a = answers(&o);
    assert!(
        a[0]["error"].as_str().unwrap().contains("restarted"),
        "{a:?}"
    );
    // a fresh switch serves: no calls left from before, new calls work
    let o = ctl(&addr, &["status"], "").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(answers(&o)[0]["calls"], serde_json::json!([]));
    let o = ctl(&addr, &["inbound", "0891234567", "202"], "").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // the connection from before the restart was closed
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut { csta }, &mut buf),
    )
    .await
    .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // and new applications are accepted
    let again = tokio::net::TcpStream::connect(sim.csta_addr).await;
    assert!(again.is_ok());
}
