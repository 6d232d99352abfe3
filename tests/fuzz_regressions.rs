//! Replays the committed fuzz inputs under plain `cargo test`: every file of
//! `fuzz/regressions/<target>/` and `fuzz/corpus/<target>/` goes through the same checks
//! as the libFuzzer target `<target>` (decoders must not panic; canonical re-encoding is a
//! fixpoint where decoding succeeds; framing is exact). The checks are the fuzz crate's own
//! code (`fuzz/src/lib.rs`), included here, so both stay the same.
//!
//! This guards the regressions even where the fuzz campaign (`bash fuzz/run.sh`) is skipped.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

mod support;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use support::hex;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(inputs(&p));
            } else if p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Run every file under `fuzz/<kind>/<target>/` through the check of `<target>`; returns
/// the number of files and a description of each failure.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut count = 0;
    let mut failures = Vec::new();
    let Ok(rd) = fs::read_dir(&root) else {
        return (0, failures);
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            checks::TARGETS.contains(&target.as_str()),
            "{}: no fuzz target named `{target}` (targets: {:?})",
            dir.display(),
            checks::TARGETS
        );
        for file in inputs(&dir) {
            let data = fs::read(&file).unwrap();
            count += 1;
            let r = panic::catch_unwind(|| checks::check(&target, &data));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{} ({} octets: {}): {msg}",
                    file.display(),
                    data.len(),
                    hex(&data)
                ));
            }
        }
    }
    (count, failures)
}

#[test]
fn fuzz_corpus_and_regressions_replay_clean() {
    let (corpus, mut failures) = replay("corpus");
    let (regressions, f2) = replay("regressions");
    failures.extend(f2);
    eprintln!("fuzz replay: {corpus} corpus inputs, {regressions} regression inputs");
    assert!(
        corpus > 0,
        "no files under fuzz/corpus/<target>/: nothing was replayed"
    );
    assert!(
        failures.is_empty(),
        "{} of {} fuzz inputs fail their target's checks:\n{}",
        failures.len(),
        corpus + regressions,
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_committed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for t in checks::TARGETS {
        let n = inputs(&root.join(t)).len();
        assert!(n > 0, "fuzz/corpus/{t}/ is empty or missing");
    }
}
