//! The golden test (house habit 8): every annotated fixture decodes, re-encodes and
//! compares bytes; every negative fixture fails with the error its name says.

mod support;

use bytes::Bytes;
use ctigate::csta::{Apdu, Limits};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use support::unhex;

struct Fixture {
    path: PathBuf,
    bytes: Vec<u8>,
    expect: HashMap<String, String>,
    canonical: Option<Vec<u8>>,
}

fn read(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let mut hex = String::new();
    let mut expect = HashMap::new();
    let mut canonical = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix('#') {
            let c = c.trim();
            if let Some(e) = c.strip_prefix("expect:") {
                for kv in e.split_whitespace() {
                    if let Some((k, v)) = kv.split_once('=') {
                        expect.insert(k.to_string(), v.to_string());
                    }
                }
            } else if let Some(h) = c.strip_prefix("canonical:") {
                canonical = Some(unhex(h));
            }
            continue;
        }
        hex.push_str(t.split('#').next().unwrap());
    }
    Fixture {
        path: path.to_path_buf(),
        bytes: unhex(&hex),
        expect,
        canonical,
    }
}

fn fixtures(dir: &str) -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    v.sort();
    v.iter().map(|p| read(p)).collect()
}

#[test]
fn valid_fixtures_decode_and_reencode() {
    let all = fixtures("valid");
    assert!(
        all.len() >= 60,
        "expected the full fixture set, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for f in &all {
        let name = f.path.file_name().unwrap().to_string_lossy().to_string();
        let apdu = match Apdu::decode_with(&Bytes::from(f.bytes.clone()), &Limits::DEFAULT) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let exp = |k: &str| f.expect.get(k).map(String::as_str).filter(|v| *v != "-");
        if let Some(k) = exp("apdu") {
            if apdu.kind_name() != k {
                failures.push(format!("{name}: apdu {} expected {k}", apdu.kind_name()));
            }
        }
        if let Some(op) = exp("operation") {
            if apdu.operation_name() != Some(op) {
                failures.push(format!(
                    "{name}: operation {:?} expected {op}",
                    apdu.operation_name()
                ));
            }
        }
        if let Some(ev) = exp("event") {
            if apdu.event_name().map(|x| x.1) != Some(ev) {
                failures.push(format!(
                    "{name}: event {:?} expected {ev}",
                    apdu.event_name()
                ));
            }
        }
        let re = apdu.encode().unwrap();
        let want = f.canonical.clone().unwrap_or_else(|| f.bytes.clone());
        if re != want {
            failures.push(format!(
                "{name}: re-encoded {} expected {}",
                hexs(&re),
                hexs(&want)
            ));
        }
        if exp("canonical") == Some("no") && f.canonical.is_none() {
            failures.push(format!("{name}: canonical=no needs a `# canonical:` line"));
        }
        // the canonical form is a fixpoint
        let again = Apdu::decode(&Bytes::from(re.clone()))
            .unwrap()
            .encode()
            .unwrap();
        if again != re {
            failures.push(format!("{name}: canonical form is not a fixpoint"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn invalid_fixtures_fail_with_their_named_error() {
    let all = fixtures("invalid");
    assert!(
        all.len() >= 30,
        "expected the negative fixture set, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for f in &all {
        let name = f.path.file_name().unwrap().to_string_lossy().to_string();
        let want = f
            .expect
            .get("error")
            .cloned()
            .unwrap_or_else(|| name.split("--").next().unwrap().to_string());
        match Apdu::decode(&Bytes::from(f.bytes.clone())) {
            Ok(a) => failures.push(format!(
                "{name}: decoded as {} but must fail with {want}",
                a.kind_name()
            )),
            Err(e) if e.code() != want => {
                failures.push(format!("{name}: {} ({e}), expected {want}", e.code()))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
