//! Shared helpers of the end-to-end tests: the real `harness` binary, run
//! folders, reports, and the check that a run left nothing behind.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn harness() -> Command {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_harness"));
    let rs = bin.with_file_name("rapidstore");
    assert!(
        rs.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds RapidStore too)",
        rs.display()
    );
    let mut c = Command::new(bin);
    c.env("HARNESS_HOME", env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    c
}

pub fn assert_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "end-to-end runs need root (namespaces, bridge, iptables)"
    );
}

/// `harness run` with small, fast settings plus `extra`.
pub fn run(out: &Path, extra: &[&str]) -> (Output, PathBuf) {
    let o = harness()
        .args([
            "run",
            "--nodes",
            "3",
            "--zk",
            "3",
            "--session-timeout",
            "2s",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let dir = std::fs::canonicalize(out.join("latest")).unwrap_or_else(|_| {
        panic!(
            "no run folder; stderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o, dir)
}

pub fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json in {}: {e}", dir.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The run exited 0 with a valid report and no heal or teardown error;
/// returns the report.
pub fn assert_valid(o: &Output, dir: &Path) -> Value {
    let r = report(dir);
    assert_eq!(o.status.code(), Some(0), "{}\nreport: {r:#}", describe(o));
    assert_eq!(r["valid"], true);
    assert!(
        r["teardown_errors"].as_array().is_none_or(|e| e.is_empty()),
        "heal or teardown problems: {:#}",
        r["teardown_errors"]
    );
    r
}

/// One try at catching `ack-before-replicate`: true if the run was invalid
/// with a lost write named in the counterexample; false if this try caught
/// nothing (no write in flight at a kill) or something else; panics on an
/// outcome that is neither (a run that could not be carried out).
pub fn caught_lost_write(o: &Output, r: &Value, attempt: usize) -> bool {
    let lost = &r["checks"]["no-lost-writes"];
    match o.status.code() {
        Some(1) if lost["valid"] == false => {
            let cx = lost["counterexample"].to_string();
            assert!(
                cx.contains("\"write\"") && cx.contains("index"),
                "lost write not named: {cx}"
            );
            eprintln!("caught on attempt {attempt}");
            true
        }
        Some(1) => {
            // Also a catch (often linearizability), but not the one asked for.
            eprintln!(
                "attempt {attempt}: invalid without a lost write: {:#}",
                r["checks"]
            );
            false
        }
        Some(0) => {
            eprintln!("attempt {attempt}: no write was in flight at a kill");
            false
        }
        _ => panic!("unexpected outcome: {}\nreport: {r:#}", describe(o)),
    }
}

/// At least one fault of the report has a measured failover.
pub fn assert_failover_measured(r: &Value) {
    let faults = r["failover"]["per_fault"].as_array().unwrap();
    assert!(
        faults
            .iter()
            .any(|f| f["new_leader"].is_string() && f["recovery_ms"].as_f64().is_some()),
        "no measured failover: {:#}",
        r["failover"]
    );
}

/// Nothing of the run is left: namespaces, links, chains, processes, marker.
pub fn assert_nothing_left(run_dir: &Path) {
    let run_id = run_dir.file_name().unwrap().to_string_lossy().to_string();
    let journal = std::fs::read_to_string(run_dir.join("cleanup.journal")).unwrap_or_default();
    let ns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for line in ns.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !journal.contains(&format!("\"{name}\"")),
            "namespace {name} of run {run_id} is left"
        );
    }
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for line in links.lines() {
        let name = line
            .split(':')
            .nth(1)
            .unwrap_or("")
            .trim()
            .split('@')
            .next()
            .unwrap_or("");
        assert!(
            name.is_empty() || !journal.contains(&format!("\"{name}\"")),
            "link {name} of run {run_id} is left"
        );
    }
    let run_path = run_dir.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&run_path) || cmd.contains("run_e2e"),
                "process of run {run_id} is left: {cmd}"
            );
        }
    }
    assert!(
        !Path::new("/run/rapidstore-harness").join(&run_id).exists(),
        "active-run marker of {run_id} is left"
    );
}

/// Wait (up to 120 s) until the run writing into `out` has recorded a
/// nemesis step `action`, while `child` is still running; its run folder.
pub fn wait_for_action(out: &Path, child: &mut std::process::Child, action: &str) -> PathBuf {
    let start = std::time::Instant::now();
    let needle = format!("\"action\":\"{action}\"");
    loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the run never got going"
        );
        if let Ok(dir) = std::fs::canonicalize(out.join("latest")) {
            let h = std::fs::read_to_string(dir.join("history.jsonl")).unwrap_or_default();
            if h.contains(&needle) {
                return dir;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
