//! `harness check RUN_DIR` gives the same verdict as the live run (issue 6).
//!
//! The live run checks the history it wrote with `run::check_run_dir` and
//! stores `report.json`; `harness check RUN_DIR` re-reads `history.jsonl`
//! with no cluster. For every crafted fixture, in a fresh run folder: the
//! checker core on the events in memory (`check_all`), the shared
//! `check_run_dir`, and the real binary (`harness check DIR --json`, and its
//! exit code) must agree on every check's verdict, summary and
//! counterexample, and on the failover figures.

use harness::checker::{check_all, CheckOptions, Verdict};
use harness::history::read_history;
use harness::report::{exit_code, Report, RunInfo};
use harness::run::check_run_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    assert!(v.len() >= 8, "{v:?}");
    v
}

/// A run folder holding `fixture` as its history.
fn run_dir(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture, dir.path().join("history.jsonl")).unwrap();
    dir
}

/// What must agree: per check (verdict, summary, counterexample), and the
/// failover figures. Timing details differ run to run and are left out.
fn essentials(r: &Report) -> serde_json::Value {
    let checks: serde_json::Map<String, serde_json::Value> = r
        .checks
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                serde_json::json!([c.valid, c.summary, c.counterexample]),
            )
        })
        .collect();
    serde_json::json!({ "valid": r.valid, "checks": checks, "failover": r.failover })
}

fn live(events_path: &Path, opts: &CheckOptions) -> Report {
    let events = read_history(events_path).unwrap();
    let v: Verdict = check_all(&events, opts);
    Report::new(RunInfo::default(), v, vec![])
}

fn cli(dir: &Path, extra: &[&str]) -> (i32, Report) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("check")
        .arg(dir)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run harness check");
    let report: Report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is a report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn offline_check_matches_the_live_verdict_for_every_fixture() {
    let opts = CheckOptions::default();
    for f in fixtures() {
        let dir = run_dir(&f);
        let want = live(&dir.path().join("history.jsonl"), &opts);
        // What the live run stores (it calls the same function).
        let stored = check_run_dir(dir.path(), RunInfo::default(), vec![], &opts).unwrap();
        stored.write_json(dir.path()).unwrap();
        assert_eq!(essentials(&stored), essentials(&want), "{}", f.display());
        // What `harness check RUN_DIR` says, offline, from the stored run.
        let (code, got) = cli(dir.path(), &[]);
        assert_eq!(essentials(&got), essentials(&want), "{}", f.display());
        assert_eq!(code, exit_code(&want), "{}", f.display());
    }
}

#[test]
fn offline_gates_failover_as_the_live_run_does() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid-run.jsonl");
    let dir = run_dir(&f);
    for (flag, ms) in [("5s", 5000.0), ("4s", 4000.0)] {
        let opts = CheckOptions {
            max_failover_ms: Some(ms),
            ..CheckOptions::default()
        };
        let want = live(&dir.path().join("history.jsonl"), &opts);
        let (code, got) = cli(dir.path(), &["--max-failover", flag]);
        assert_eq!(essentials(&got), essentials(&want), "--max-failover {flag}");
        assert_eq!(code, exit_code(&want), "--max-failover {flag}");
    }
}

#[test]
fn offline_budgets_give_unknown_not_a_crash() {
    // The stale-read fixture needs the search; with no time it gives up.
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid-run.jsonl");
    let dir = run_dir(&f);
    let (code, got) = cli(dir.path(), &["--check-timeout", "0s"]);
    let lin = &got.checks["linearizable"];
    assert_eq!(
        lin.valid,
        harness::checker::Validity::Unknown,
        "{}",
        lin.summary
    );
    assert!(lin.summary.contains("time budget"), "{}", lin.summary);
    assert_eq!(code, 2);
    let (_, got) = cli(dir.path(), &["--check-memory", "64B"]);
    let lin = &got.checks["linearizable"];
    assert!(
        lin.summary.contains("memory budget of 64 B"),
        "{}",
        lin.summary
    );
}
