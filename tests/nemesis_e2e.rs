//! End-to-end tests of every nemesis schedule in `nemesis/`: on correct
//! RapidStore each run is valid, heals completely (verified by the run: no
//! rule left, no process stopped, clocks back at zero) and leaves nothing
//! behind; and the detection matrix: each planted bug is caught by the
//! nemesis that exposes it. Real namespaces, ZooKeeper and RapidStore; needs
//! root. About ten seconds of faults per run.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// Run `nemesis` on correct RapidStore and assert a valid, fully healed run.
fn valid(nemesis: &str, time_limit: &str) -> Value {
    assert_root();
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let (o, dir) = run(
        out.path(),
        &[
            "--nemesis",
            nemesis,
            "--time-limit",
            time_limit,
            "--seed",
            "11",
        ],
    );
    let r = assert_valid(&o, &dir);
    let h = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(
        h.contains(r#""action":"heal-all""#) && h.contains(r#""problems":[]"#),
        "the final heal was not verified clean"
    );
    assert_faulted(&dir, nemesis);
    assert_nothing_left(&dir);
    r
}

/// The run injected at least one fault (not only skips).
fn assert_faulted(dir: &Path, nemesis: &str) {
    let h = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let faults = h
        .lines()
        .filter(|l| l.contains(r#""type":"nemesis""#))
        .filter(|l| {
            ["partition", "kill", "pause", "skew", "strobe"]
                .iter()
                .any(|a| l.contains(&format!(r#""action":"{a}""#)))
        })
        .filter(|l| !l.contains(r#""error""#))
        .count();
    assert!(faults > 0, "{nemesis}: no fault was injected");
}

#[test]
fn partition_random() {
    valid("partition-random", "10");
}

#[test]
fn partition_halves() {
    valid("partition-halves", "10");
}

#[test]
fn partition_bridge() {
    valid("partition-bridge", "10");
}

#[test]
fn partition_ring() {
    valid("partition-ring", "10");
}

#[test]
fn partition_zk_minority() {
    valid("partition-zk-minority", "10");
}

#[test]
fn partition_zk_majority_acknowledges_no_write_without_quorum() {
    let r = valid("partition-zk-majority", "10");
    let q = &r["checks"]["no-writes-without-quorum"];
    assert_eq!(q["valid"], true);
    assert!(
        q["details"]["no_quorum_ms"].as_f64().unwrap_or(0.0) > 1000.0,
        "ZooKeeper never lost quorum: {q:#}"
    );
    assert_eq!(q["details"]["acknowledged_after_loss"], 0);
    assert!(q["summary"]
        .as_str()
        .unwrap()
        .contains("no write invoked in that time was acknowledged"));
}

#[test]
fn partition_stores() {
    valid("partition-stores", "9");
}

#[test]
fn kill_random() {
    valid("kill-random", "8");
}

#[test]
fn kill_zk() {
    valid("kill-zk", "9");
}

#[test]
fn kill_all() {
    valid("kill-all", "8");
}

#[test]
fn pause_leader() {
    valid("pause-leader", "10");
}

#[test]
fn pause_zk() {
    valid("pause-zk", "9");
}

#[test]
fn clock_skew_records_the_offset_measured_on_the_node() {
    valid("clock-skew", "10");
    let out = tempfile::tempdir().unwrap();
    let _g = serial();
    let (_, dir) = run(
        out.path(),
        &[
            "--nemesis",
            "clock-skew",
            "--time-limit",
            "10",
            "--seed",
            "2",
        ],
    );
    let h = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let skew: Value = h
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["action"] == "skew")
        .expect("a skew step");
    let asked = skew["detail"]["asked_ms"].as_i64().unwrap();
    let measured = skew["detail"]["measured_ms"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .and_then(Value::as_i64)
        .expect("a measured offset");
    assert_eq!(asked, -30_000);
    assert!(
        (measured - asked).abs() < 1_000,
        "asked {asked} ms, node shows {measured} ms"
    );
    assert_nothing_left(&dir);
}

#[test]
fn clock_strobe() {
    valid("clock-strobe", "10");
}

#[test]
fn mixed_runs_valid() {
    valid("mixed", "12");
}

#[test]
fn mixed_replays_the_same_schedule_from_the_same_seed() {
    let plan = |seed: &str| {
        let o = harness()
            .args([
                "run",
                "--nemesis",
                "mixed",
                "--time-limit",
                "120",
                "--dry-run",
                "--seed",
                seed,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", describe(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["planned"].clone()
    };
    let a = plan("5");
    assert!(a.as_array().is_some_and(|p| p.len() > 10), "{a:#}");
    assert_eq!(a, plan("5"), "the same seed must plan the same schedule");
    assert_ne!(a, plan("6"));
    let kinds: std::collections::BTreeSet<String> = a
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["fault"].as_str()?.split(' ').next().map(str::to_string))
        .collect();
    for k in ["partition", "kill", "pause", "clock"] {
        assert!(kinds.contains(k), "mixed never plans {k}: {kinds:?}");
    }
}

/// Run `nemesis` with `bug` up to `tries` times until `check` is invalid.
fn caught(nemesis: &str, bug: &str, workload: &str, check: &str, tries: usize) {
    assert_root();
    let _g = serial();
    for attempt in 1..=tries {
        let out = tempfile::tempdir().unwrap();
        let seed = attempt.to_string();
        let (o, dir) = run(
            out.path(),
            &[
                "--nemesis",
                nemesis,
                "--bug",
                bug,
                "--workload",
                workload,
                "--time-limit",
                "12",
                "--seed",
                &seed,
            ],
        );
        assert_nothing_left(&dir);
        let r = report(&dir);
        if o.status.code() == Some(1) && r["checks"][check]["valid"] == false {
            assert!(
                !r["checks"][check]["counterexample"]
                    .as_array()
                    .unwrap()
                    .is_empty(),
                "no counterexample: {:#}",
                r["checks"][check]
            );
            eprintln!("{nemesis} --bug {bug}: caught by {check} on attempt {attempt}");
            return;
        }
        eprintln!(
            "{nemesis} --bug {bug}: attempt {attempt} not caught by {check} (exit {:?})",
            o.status.code()
        );
    }
    panic!("{nemesis} --bug {bug} was not caught by {check} in {tries} runs");
}

#[test]
fn detect_pause_leader_no_fencing() {
    caught("pause-leader", "no-fencing", "write-heavy", "fencing", 3);
}

#[test]
fn detect_clock_skew_lease_reads() {
    caught("clock-skew", "lease-reads", "register", "linearizable", 3);
}

#[test]
fn detect_partition_leader_stale_reads() {
    caught(
        "partition-leader",
        "stale-reads",
        "register",
        "linearizable",
        3,
    );
}

#[test]
fn detect_kill_leader_no_leader_sync() {
    caught(
        "kill-leader",
        "no-leader-sync",
        "register",
        "no-lost-writes",
        4,
    );
}
