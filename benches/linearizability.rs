//! Benchmark of the linearizability search on generated RapidStore histories
//! (issue 6): 10k, 100k and 1M operations; one key with 10 concurrent
//! clients, and 100 keys with 50 clients; without and with `info`
//! operations (5% of operations time out; half of those still take effect,
//! some late). Values are unique, as RapidStore's workload writes them.
//!
//! ```text
//! cargo bench --bench linearizability            # every case
//! cargo bench --bench linearizability -- 100k    # cases whose name contains "100k"
//! ```
//!
//! Method: each case runs in a child process (this binary again, with
//! `--case NAME`), so peak memory is that case's alone. The child generates
//! the history (not timed), resets the kernel's peak-RSS mark
//! (`/proc/self/clear_refs`), runs the `linearizable` check exactly as
//! `harness check` does (pairing, key split, search on all cores), and reads
//! `VmHWM`. Reported: wall time of the check; RSS before it (the history
//! itself); peak RSS during it; the search memo's peak; the verdict. Targets:
//! 1M ops over 100 keys < 5 s, 100k ops on one key with 10 clients < 5 s,
//! memory < 1 GiB.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it checks one
//! small case in-process and exits: a smoke test, not a measurement.

use harness::checker::resources::{peak_rss_bytes, reset_peak_rss, rss_bytes};
use harness::checker::synth::{simulate, to_events, SynthConfig, SynthModel};
use harness::checker::{Checker, Linearizable};
use std::process::Command;
use std::time::{Duration, Instant};

struct Case {
    name: String,
    ops: usize,
    keys: usize,
    clients: usize,
    info: f64,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (ops, label) in [(10_000, "10k"), (100_000, "100k"), (1_000_000, "1M")] {
        for (keys, clients) in [(1, 10), (100, 50)] {
            for info in [0.0, 0.05] {
                out.push(Case {
                    name: format!(
                        "{label}-ops/{keys}-key{}/{clients}-clients/{}",
                        if keys == 1 { "" } else { "s" },
                        if info > 0.0 { "info" } else { "no-info" }
                    ),
                    ops,
                    keys,
                    clients,
                    info,
                });
            }
        }
    }
    out
}

/// Run one case in this process; returns a tab-separated result line.
fn run_case(c: &Case) -> String {
    let mut cfg = SynthConfig::new(SynthModel::CasRegister, c.ops, c.clients, c.keys);
    cfg.info_rate = c.info;
    cfg.seed = 42;
    let events = to_events(&simulate(&cfg));
    let checker = Linearizable {
        timeout: Duration::from_secs(120),
        ..Linearizable::default()
    };
    let reset = reset_peak_rss();
    let before = rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let r = checker.check(&events);
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes().unwrap_or(0);
    let memo = r.details["memo_peak_bytes"].as_u64().unwrap_or(0);
    let dropped = r.details["unobserved_info_ops_dropped"]
        .as_u64()
        .unwrap_or(0);
    format!(
        "{}\t{secs:.3}\t{}\t{}\t{}\t{}\t{}\t{}",
        c.name,
        mib(before),
        if reset {
            mib(peak)
        } else {
            format!("{}*", mib(peak))
        },
        mib(memo),
        dropped,
        r.valid,
        r.summary.replace('\t', " ")
    )
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let name = &args[i + 1];
        let c = cases()
            .into_iter()
            .find(|c| &c.name == name)
            .expect("known case");
        println!("{}", run_case(&c));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets`: a smoke test, not a measurement.
        let c = Case {
            name: "smoke".into(),
            ops: 2_000,
            keys: 1,
            clients: 10,
            info: 0.05,
        };
        let line = run_case(&c);
        assert!(line.contains("\tvalid\t"), "{line}");
        println!("linearizability bench smoke test ok (run `cargo bench` to measure)");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let exe = std::env::current_exe().expect("own path");
    println!(
        "{:<42} {:>8} {:>10} {:>10} {:>9} {:>8}  verdict",
        "case", "check s", "before MiB", "peak MiB", "memo MiB", "dropped"
    );
    let mut failed = false;
    for c in cases() {
        if !filters.is_empty() && !filters.iter().any(|f| c.name.contains(f.as_str())) {
            continue;
        }
        let out = Command::new(&exe)
            .args(["--case", &c.name])
            .output()
            .expect("run a case");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split('\t').collect();
        if !out.status.success() || f.len() < 7 {
            failed = true;
            println!(
                "{:<42} failed: {}",
                c.name,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            continue;
        }
        failed |= f[6] != "valid";
        println!(
            "{:<42} {:>8} {:>10} {:>10} {:>9} {:>8}  {}{}",
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            f[6],
            if f[6] == "valid" {
                String::new()
            } else {
                format!(" ({})", f[7])
            }
        );
    }
    println!(
        "\ncheck s: wall time of the linearizable check (pairing, key split, search on {} cores); \
         before: RSS with the history loaded; peak: peak RSS during the check (VmHWM after \
         resetting it; * = reset refused, peak includes generation); memo: search memo peak; \
         dropped: unobserved info writes removed before the search.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if failed {
        std::process::exit(1);
    }
}
