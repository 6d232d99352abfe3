//! `ctigate decode --hex` reads the annotated fixtures as they are (README "Decoding a CSTA
//! link"): every file of fixtures/valid and fixtures/invalid through the real binary, one
//! output line each, with what the file's `# expect:` header says.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    v.sort();
    v
}

/// The `key=value` pairs of the file's `# expect:` line.
fn expect(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{}: no # expect: line", path.display()));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run the CLI on one file: its output lines and exit status.
fn decode(path: &Path) -> (Vec<Value>, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["decode", "--hex"])
        .arg(path)
        .output()
        .expect("run ctigate decode");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (lines, out.status.code())
}

#[test]
fn every_valid_fixture_decodes_as_one_pdu() {
    let files = fixtures("valid");
    assert!(files.len() > 100, "fixtures/valid: {} files", files.len());
    for f in files {
        let (lines, code) = decode(&f);
        let name = f.display();
        assert_eq!(lines.len(), 1, "{name}: one line per PDU, got {lines:?}");
        let l = &lines[0];
        assert!(l.get("error").is_none(), "{name}: {l}");
        assert_eq!(code, Some(0), "{name}");
        for (k, v) in expect(&f) {
            match (k.as_str(), v.as_str()) {
                (_, "-") => {}
                ("canonical", v) => assert_eq!(l["canonical"], v == "yes", "{name}: canonical"),
                (k, v) => assert_eq!(l[k].as_str(), Some(v), "{name}: {k}"),
            }
        }
    }
}

#[test]
fn every_invalid_fixture_gives_its_error_code() {
    let files = fixtures("invalid");
    assert!(files.len() > 50, "fixtures/invalid: {} files", files.len());
    for f in files {
        let (lines, code) = decode(&f);
        let name = f.display();
        let want = expect(&f)
            .into_iter()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{name}: no error= in # expect:"));
        assert_eq!(lines.len(), 1, "{name}: one line, got {lines:?}");
        assert_eq!(lines[0]["code"].as_str(), Some(want.as_str()), "{name}");
        assert_eq!(code, Some(1), "{name}: exit status");
    }
}

/// `ctigate decode --framing hipath` reads a binary HiPath stream from stdin: a line per
/// PDU, then the loss of framing named with its offset (exit 1).
#[test]
fn decode_reads_hipath_framed_bytes() {
    use std::io::Write;
    let run = |framing: &str, data: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
            .args(["decode", "--framing", framing])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run ctigate decode");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        (lines, out.status.code())
    };
    // RLRQ, RLRE in HiPath frames
    let good = [
        0x26, 0x80, 0x05, 0x62, 0x03, 0x80, 0x01, 0x00, 0x26, 0x80, 0x05, 0x63, 0x03, 0x80, 0x01,
        0x00,
    ];
    let (lines, code) = run("hipath", &good);
    assert_eq!(code, Some(0), "{lines:?}");
    let apdus: Vec<&str> = lines.iter().map(|l| l["apdu"].as_str().unwrap()).collect();
    assert_eq!(apdus, ["rlrq", "rlre"]);
    // then a 2-octet length frame: the marker is wrong
    let mut bad = good.to_vec();
    bad.extend([0x00, 0x05, 0x62, 0x03, 0x80, 0x01, 0x00]);
    let (lines, code) = run("hipath", &bad);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2]["code"], "framing");
    assert_eq!(lines[2]["stream_offset"], 16);
    assert!(
        lines[2]["error"].as_str().unwrap().starts_with(
            "loss of framing: bad HiPath header (the first octet must be 0x26, got 0x00)"
        ),
        "{}",
        lines[2]
    );
    // the HiPath stream read as 2-octet length framing is not understood
    let (_, code) = run("u16", &good);
    assert_eq!(code, Some(1));
}
