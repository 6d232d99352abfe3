//! Log output of the binary: no colour codes when stderr is not a terminal (here a pipe),
//! and `--log-format json` gives one JSON object per line.

use serde_json::Value;
use std::process::Command;

/// `ctigate sim` running a one-line scenario and exiting; its stderr.
fn sim_log(extra: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("ctigate-logging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("status.jsonl");
    std::fs::write(&scenario, "{\"cmd\":\"status\"}\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["sim", "--listen", "127.0.0.1:0", "--control", "none"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--exit-after-scenario")
        .args(extra)
        .env_remove("NO_COLOR")
        .output()
        .expect("run ctigate sim");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let err = sim_log(&[]);
    assert!(err.contains("switch simulator listening"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in {err:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let err = sim_log(&["--log-format", "json"]);
    let lines: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    let l = lines
        .iter()
        .find(|l| l["fields"]["message"] == "switch simulator listening")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(l["level"], "INFO");
    assert!(l["timestamp"].is_string());
    assert!(l["fields"]["csta_addr"].is_string());
}
