//! Benchmark of `harness check --format edn` on generated Jepsen histories
//! (issue 7): parse + check, as the command does it.
//!
//! - 100k operations of a cas-register with 10 processes (one key; values
//!   0..5 as in Jepsen's register tests), with no timeouts and with 5%;
//! - 1M operations over 1,000 independent keys (cas-register, 50 processes,
//!   5% timeouts).
//!
//! ```text
//! cargo bench --bench jepsen_edn            # every case
//! cargo bench --bench jepsen_edn -- 1M      # cases whose name contains "1M"
//! ```
//!
//! Method: the parent writes each history to a temporary `history.edn`
//! (one op map per line, with `:index`, `:time` and a nemesis op every 1000
//! lines; not timed), then runs the case in a child process (this binary
//! with `--case NAME FILE`), which resets the kernel's peak-RSS mark and calls
//! `check_file` exactly as the command line does (read, parse on all cores,
//! prepare, search on all cores). Reported: the time to read and parse, to
//! check, in total; peak RSS of the child during it (VmHWM); the search
//! memo's peak; the verdict.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it checks one
//! small case in-process and exits: a smoke test, not a measurement.

use harness::checker::jepsen::{check_file, EdnOptions, ModelName};
use harness::checker::resources::reset_peak_rss;
use harness::checker::synth::{simulate, to_edn, SynthConfig, SynthModel};
use harness::checker::Validity;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Case {
    name: &'static str,
    ops: usize,
    processes: usize,
    keys: usize,
    info: f64,
}

const CASES: &[Case] = &[
    Case {
        name: "cas-register/100k-ops/10-procs/no-info",
        ops: 100_000,
        processes: 10,
        keys: 1,
        info: 0.0,
    },
    Case {
        name: "cas-register/100k-ops/10-procs/info",
        ops: 100_000,
        processes: 10,
        keys: 1,
        info: 0.05,
    },
    Case {
        name: "cas-register/1M-ops/1000-keys/50-procs/info",
        ops: 1_000_000,
        processes: 50,
        keys: 1000,
        info: 0.05,
    },
];

fn write_history(c: &Case, path: &Path) -> u64 {
    let cfg = SynthConfig {
        info_rate: c.info,
        values: Some(5),
        seed: 7,
        ..SynthConfig::new(SynthModel::CasRegister, c.ops, c.processes, c.keys)
    };
    let text = to_edn(&simulate(&cfg), c.keys > 1);
    std::fs::write(path, &text).expect("write history");
    text.len() as u64
}

/// Check `path` in this process; returns a tab-separated result line.
fn run_case(path: &Path) -> String {
    let opts = EdnOptions {
        timeout: Duration::from_secs(120),
        ..EdnOptions::new(ModelName::CasRegister)
    };
    let reset = reset_peak_rss();
    let r = check_file(path, &opts).expect("a well-formed history");
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    format!(
        "{:.3}\t{:.3}\t{:.3}\t{}{}\t{}\t{}\t{}",
        r.time.read_ms / 1000.0,
        r.time.check_ms / 1000.0,
        r.time.total_ms / 1000.0,
        mib(r.memory.peak_rss_bytes.unwrap_or(0)),
        if reset { "" } else { "*" },
        mib(r.memory.memo_peak_bytes as u64),
        r.valid,
        r.summary
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        println!("{}", run_case(Path::new(&args[i + 2])));
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary folder");
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets`: a smoke test, not a measurement.
        let c = Case {
            name: "smoke",
            ops: 2_000,
            processes: 10,
            keys: 10,
            info: 0.05,
        };
        let path = tmp.path().join("history.edn");
        write_history(&c, &path);
        let line = run_case(&path);
        assert!(line.contains(&format!("\t{}\t", Validity::Valid)), "{line}");
        println!("jepsen_edn bench smoke test ok (run `cargo bench` to measure)");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let exe = std::env::current_exe().expect("own path");
    println!(
        "{:<45} {:>8} {:>7} {:>7} {:>7} {:>9} {:>8}  verdict",
        "case", "file MiB", "read s", "check s", "total s", "peak MiB", "memo MiB"
    );
    let mut failed = false;
    for c in CASES {
        if !filters.is_empty() && !filters.iter().any(|f| c.name.contains(f.as_str())) {
            continue;
        }
        let path = tmp.path().join("history.edn");
        let bytes = write_history(c, &path);
        let out = Command::new(&exe)
            .args(["--case", c.name])
            .arg(&path)
            .output()
            .expect("run a case");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split('\t').collect();
        if !out.status.success() || f.len() < 7 {
            failed = true;
            println!(
                "{:<45} failed: {}",
                c.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        }
        failed |= f[5] != "valid";
        println!(
            "{:<45} {:>8.1} {:>7} {:>7} {:>7} {:>9} {:>8}  {}{}",
            c.name,
            bytes as f64 / (1024.0 * 1024.0),
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            if f[5] == "valid" {
                String::new()
            } else {
                format!(" ({})", f[6])
            }
        );
    }
    println!(
        "\nread: read and parse the file (edn-format, {} threads); check: Knossos preparation, \
         key split, search; peak: peak RSS of the process while it ran (VmHWM after resetting \
         it; * = reset refused); memo: search memo peak.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if failed {
        std::process::exit(1);
    }
}
