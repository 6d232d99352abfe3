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
