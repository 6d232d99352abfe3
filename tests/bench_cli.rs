//! `ctigate bench` (the binary): a small run over real TCP on loopback (the bench's switch,
//! the gateway as a child process, NDJSON clients) accounts for every event, and prints its
//! figures as one JSON object.

use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run ctigate bench");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_small_run_accounts_for_every_event() {
    let (code, out, err) = bench(&[
        "--json",
        "--rate",
        "2000",
        "--clients",
        "4",
        "--devices",
        "20",
        "--devices-per-client",
        "2",
        "--seconds",
        "2",
        "--warmup-seconds",
        "0.5",
    ]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {out}");
    let r: Value = serde_json::from_str(lines[0]).expect("JSON");
    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["failures"], serde_json::json!([]));
    // the shape: every figure the issue asks for, units in the names
    for k in [
        "switch_events_per_s",
        "client_events_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "latency_max_ms",
        "gateway_cpu_percent",
        "memory_per_device_bytes",
        "monitors_per_s",
        "ready_port_ms",
        "ready_link_ms",
        "switch_longest_write_ms",
    ] {
        assert!(f(k) >= 0.0, "{k}");
    }
    assert!(u("gateway_peak_rss_bytes") > 1 << 20, "{r}");
    assert!(u("gateway_rss_monitored_bytes") > 0, "{r}");
    // the devices: 8 watched by 4 clients, 12 configured, every one monitored
    assert_eq!(u("watched_devices"), 8);
    assert_eq!(u("configured_devices"), 12);
    assert_eq!(u("monitors_up"), 20);
    assert_eq!(u("monitors_missing"), 0);
    assert_eq!(u("client_monitors_ok"), 8);
    assert_eq!(u("status_client_monitors"), 8);
    assert_eq!(u("status_unconfirmed"), 0);
    assert!(u("snapshots") >= 20, "{r}");
    assert_eq!(r["monitor_phase_timed_out"], false);
    // every event sent reached its client, in its device's order
    let sent = u("events_sent");
    assert!(sent >= 2000 * 2, "{r}");
    assert_eq!(u("events_received"), sent, "{r}");
    assert_eq!(u("events_lost"), 0);
    assert_eq!(u("events_unexpected"), 0);
    assert_eq!(u("device_events"), 0);
    // (latency and the rate reached depend on the machine's load: warnings, not failures)
    assert!(r["warnings"].is_array(), "{r}");
    assert_eq!(u("lagged_clients"), 0);
    assert_eq!(u("clients_disconnected"), 0);
    assert_eq!(u("link_drops"), 0);
    // the measured window: the rate held, a latency sample per event sent in it
    let rate = f("switch_events_per_s");
    assert!((1500.0..=2200.0).contains(&rate), "{r}");
    let samples = u("latency_samples");
    assert!(samples >= 3000 && samples <= sent, "{r}");
    assert!(f("latency_p50_ms") <= f("latency_p99_ms"));
    assert!(f("latency_p99_ms") <= f("latency_max_ms"));
    // the PBX socket's unread time, sampled from the kernel about every ms of the 2 s
    assert_eq!(r["pbx_unread_error"], serde_json::Value::Null, "{r}");
    assert_eq!(u("pbx_unread_failed"), 0, "{r}");
    let samples = u("pbx_unread_samples");
    assert!((500..=2100).contains(&samples), "{r}");
    assert!(f("pbx_unread_max_ms") >= 0.0, "{r}");
    // progress went to stderr
    assert!(err.contains("[measure"), "{err}");
    assert!(err.contains("PBX socket unread up to"), "{err}");
}

#[test]
fn impossible_sizes_are_refused_with_the_flag() {
    let (code, _, err) = bench(&["--clients", "10", "--devices", "5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--devices"), "{err}");
}
