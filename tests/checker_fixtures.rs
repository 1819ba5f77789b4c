//! Crafted histories in `tests/fixtures/` and the verdict each must get, in one
//! table. Each fixture is a whole run (setup, a leader kill and failover, heal,
//! final reads, final log, replica logs) with one planted fault, so a row shows
//! both that its check catches the fault and that the other checks stay quiet.

use harness::checker::{check_all, CheckOptions, Validity};
use harness::history::read_history;
use harness::report::{exit_code, Report, RunInfo};
use std::path::Path;

use Validity::{Invalid as I, Unknown as U, Valid as V};

/// Check names, in the column order of [`FIXTURES`].
const CHECKS: [&str; 6] = [
    "one-leader-per-token",
    "tokens-grow",
    "fencing",
    "no-lost-writes",
    "linearizable",
    "liveness",
];

struct Fixture {
    file: &'static str,
    /// What it proves.
    planted: &'static str,
    /// Expected verdict per check, in [`CHECKS`] order.
    checks: [Validity; 6],
    overall: Validity,
    exit: i32,
    /// For each invalid check: a fragment its summary must contain.
    summary: &'static [(&'static str, &'static str)],
}

#[rustfmt::skip]
const FIXTURES: &[Fixture] = &[
    Fixture { file: "valid-run", planted: "nothing (n1 killed, n2 takes over with token 2, a stale write rejected)",
        checks: [V, V, V, V, V, V], overall: V, exit: 0, summary: &[] },
    Fixture { file: "stale-read", planted: "final read of k1 returns a value overwritten twice before (bug stale-reads)",
        checks: [V, V, V, V, I, V], overall: I, exit: 1,
        summary: &[("linearizable", r#"key "k1": read (op 35"#)] },
    Fixture { file: "lost-write", planted: "new leader n2 never had n1's last acknowledged entry and reused its index (bug no-leader-sync)",
        checks: [V, V, V, I, V, V], overall: I, exit: 1,
        summary: &[("no-lost-writes", "acknowledged write k1=v10 (op 18) is lost: index 10 holds k1=v11 (token 2)")] },
    Fixture { file: "two-leaders-one-token", planted: "n3 claims leadership with n2's token 2",
        checks: [I, I, V, V, V, V], overall: I, exit: 1,
        summary: &[("one-leader-per-token", "token 2 claimed by both n2 and n3"),
                   ("tokens-grow", "n3 claimed leadership with token 2 after n2 had claimed token 2")] },
    Fixture { file: "token-goes-back", planted: "restarted n1 claims leadership with its old token 1 after n2 led with 2",
        checks: [V, I, V, V, V, V], overall: I, exit: 1,
        summary: &[("tokens-grow", "n1 claimed leadership with token 1 after n2 had claimed token 2")] },
    Fixture { file: "stale-token-accepted", planted: "replica n3 accepts a token-1 write after token 2 (bug no-fencing)",
        checks: [V, V, I, V, V, V], overall: I, exit: 1,
        summary: &[("fencing", "n3 accepted a write with token 1 after seeing token 2")] },
    Fixture { file: "no-leader-after-heal", planted: "no node is elected after the final heal; every write fails; no final log",
        checks: [V, V, V, U, V, I], overall: I, exit: 1,
        summary: &[("liveness", "no node claimed leadership after the final heal at 10000 ms")] },
    Fixture { file: "incomplete", planted: "the harness died mid-run: no phases after running, no final log",
        checks: [V, V, V, U, V, U], overall: U, exit: 2, summary: &[] },
];

fn run_info(file: &str) -> RunInfo {
    RunInfo {
        id: file.into(),
        nemesis: "kill-leader".into(),
        workload: "register".into(),
        nodes: vec!["n1".into(), "n2".into(), "n3".into()],
        ..RunInfo::default()
    }
}

#[test]
fn fixtures_get_their_expected_verdicts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut failures = Vec::new();
    for f in FIXTURES {
        let events = read_history(&dir.join(format!("{}.jsonl", f.file))).expect("fixture parses");
        let verdict = check_all(&events, &CheckOptions::default());
        for (name, want) in CHECKS.iter().zip(f.checks) {
            let got = &verdict.checks[*name];
            if got.valid != want {
                failures.push(format!(
                    "{} [{}]: {name} is {} (want {want}): {}",
                    f.file, f.planted, got.valid, got.summary
                ));
            }
            if got.valid == Validity::Invalid && got.counterexample.is_empty() {
                failures.push(format!(
                    "{}: {name} is invalid without a counterexample",
                    f.file
                ));
            }
        }
        for (name, fragment) in f.summary {
            let s = &verdict.checks[*name].summary;
            if !s.contains(fragment) {
                failures.push(format!(
                    "{}: {name} summary {s:?} lacks {fragment:?}",
                    f.file
                ));
            }
        }
        if verdict.valid != f.overall {
            failures.push(format!(
                "{}: overall {} (want {})",
                f.file, verdict.valid, f.overall
            ));
        }
        let report = Report::new(run_info(f.file), verdict, vec![]);
        if exit_code(&report) != f.exit {
            failures.push(format!(
                "{}: exit {} (want {})",
                f.file,
                exit_code(&report),
                f.exit
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".jsonl") {
            assert!(
                FIXTURES.iter().any(|f| f.file == stem),
                "{name} has no row in FIXTURES"
            );
        }
    }
}

#[test]
fn valid_run_failover_is_measured() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let events = read_history(&dir.join("valid-run.jsonl")).unwrap();
    let v = check_all(&events, &CheckOptions::default());
    assert_eq!(v.failover.faults, 1);
    let f = &v.failover.per_fault[0];
    assert_eq!(
        (f.old_leader.as_str(), f.new_leader.as_deref()),
        ("n1", Some("n2"))
    );
    assert_eq!(f.detection_ms, Some(4000.0));
    assert_eq!(f.election_ms, Some(4200.0));
    assert_eq!(f.recovery_ms, Some(4440.0));
    // A 5 s target is met, a 4 s one is missed (exit 1 even though all else is valid).
    let gate = |ms| {
        let opts = CheckOptions {
            max_failover_ms: Some(ms),
            ..CheckOptions::default()
        };
        let report = Report::new(run_info("valid-run"), check_all(&events, &opts), vec![]);
        exit_code(&report)
    };
    assert_eq!(gate(5000.0), 0);
    assert_eq!(gate(4000.0), 1);
}
