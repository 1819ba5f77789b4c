//! End-to-end tests of `harness run`: the real binary, real namespaces,
//! real ZooKeeper and RapidStore, real faults. They need root and the
//! `rapidstore` binary (built by `cargo test --workspace`). One run at a
//! time; each waits for conditions with generous deadlines and asserts
//! safety, not luck.

mod common;

use common::*;
use std::process::Stdio;

#[test]
fn unknown_names_are_usage_errors_listing_valid_ones() {
    let o = harness()
        .args(["run", "--nemesis", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{}", describe(&o));
    assert!(
        err.contains("unknown nemesis `nope`")
            && err.contains("kill-leader")
            && err.contains("partition-leader"),
        "{err}"
    );
    let o = harness()
        .args(["run", "--workload", "nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("register"));
    let o = harness().args(["run", "--bug", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ack-before-replicate"));
    let o = harness().args(["run", "--zk", "2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    let o = harness().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(64),
        "clap usage errors must be 64, not 2"
    );
    let o = harness().args(["list"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("kill-leader") && out.contains("register"),
        "{out}"
    );
}

/// A run under `nemesis` is valid, measured at least one failover, and left
/// nothing behind; `harness check` agrees offline.
fn valid_run_with_failover(nemesis: &str, time_limit: &str) {
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
            "7",
        ],
    );
    let r = assert_valid(&o, &dir);
    assert_failover_measured(&r);
    for check in [
        "one-leader-per-token",
        "tokens-grow",
        "no-lost-writes",
        "linearizable",
        "fencing",
        "liveness",
    ] {
        assert_eq!(
            r["checks"][check]["valid"], true,
            "{check}: {:#}",
            r["checks"][check]
        );
    }
    for f in ["run.json", "history.jsonl", "report.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    assert!(dir.join("logs/n1/rapidstore.log").exists());
    assert_nothing_left(&dir);
    let c = harness().arg("check").arg(&dir).output().unwrap();
    assert_eq!(
        c.status.code(),
        Some(0),
        "offline check disagrees: {}",
        describe(&c)
    );
}

#[test]
fn partition_leader_run_is_valid_with_a_measured_failover() {
    valid_run_with_failover("partition-leader", "12");
}

#[test]
fn kill_leader_run_is_valid_with_a_measured_failover() {
    valid_run_with_failover("kill-leader", "10");
}

/// With acknowledgement before replication, killing the leader loses
/// acknowledged writes; the report names one. Losing one needs a write in
/// flight at the kill, so a few runs are allowed.
#[test]
fn ack_before_replicate_is_caught_as_lost_writes() {
    assert_root();
    let _g = serial();
    const TRIES: usize = 4;
    for attempt in 1..=TRIES {
        let out = tempfile::tempdir().unwrap();
        let seed = attempt.to_string();
        let (o, dir) = run(
            out.path(),
            &[
                "--nemesis",
                "kill-leader",
                "--workload",
                "write-heavy",
                "--time-limit",
                "16",
                "--bug",
                "ack-before-replicate",
                "--seed",
                &seed,
            ],
        );
        assert_nothing_left(&dir);
        if caught_lost_write(&o, &report(&dir), attempt) {
            return;
        }
    }
    panic!("ack-before-replicate was not caught in {TRIES} runs");
}

/// SIGINT in the middle of a run: the harness heals, tears down, still
/// checks and reports, and leaves nothing behind.
#[test]
fn sigint_mid_run_tears_everything_down() {
    assert_root();
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let mut child = harness()
        .args([
            "run",
            "--nodes",
            "3",
            "--zk",
            "3",
            "--nemesis",
            "partition-leader",
            "--time-limit",
            "120",
        ])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the nemesis has partitioned someone: faults are in force.
    let dir = wait_for_action(out.path(), &mut child, "partition");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "an interrupted run is unknown: {}",
        describe(&o)
    );
    assert_eq!(report(&dir)["valid"], "unknown");
    assert_nothing_left(&dir);
}
