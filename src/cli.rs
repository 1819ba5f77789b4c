//! The command line (clap): `run`, `list`, `doctor`, `clean`, `check`. Maps
//! every outcome to one documented exit code, in one place.

use crate::checker::CheckOptions;
use crate::hosts::Hosts;
use crate::nemesis::schedule::{parse_duration, Schedule};
use crate::report::{self, Report};
use crate::run::{self, RunOptions};
use crate::workload::{names_in, Workload};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit codes (documented in the README).
pub mod exit {
    /// Valid.
    pub const VALID: i32 = 0;
    /// A safety violation or a missed target.
    pub const INVALID: i32 = 1;
    /// Unknown: the checker gave up, or the history is incomplete.
    pub const UNKNOWN: i32 = 2;
    /// The run could not be carried out (setup failure, missing prerequisite).
    pub const NOT_RUN: i32 = 3;
    /// Usage error (bad flags, unknown names, malformed files).
    pub const USAGE: i32 = 64;
}

/// Jepsen-style fault injection for RapidStore: a real cluster in network
/// namespaces, real ZooKeeper, real faults, a checker, and reports.
#[derive(Parser, Debug)]
#[command(version, name = "harness", after_help = EXIT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_HELP: &str = "\
Exit codes: 0 valid, 1 invalid (safety violation or missed target),
2 unknown (checker gave up or history incomplete), 3 the run could not be
carried out (setup failure, missing prerequisite), 64 usage error.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Bring up a cluster, run a workload under a nemesis, check, report.
    Run(RunArgs),
    /// List the nemesis schedules and workloads, one line each.
    List,
    /// Check this machine for what `run` needs, and say how to install it.
    Doctor,
    /// Remove what killed runs left behind (namespaces, bridge, rules, processes).
    Clean {
        /// Also clean runs whose harness process still seems alive.
        #[arg(long)]
        force: bool,
        /// Only runs on these hosts (a hosts file, as for `run --hosts`);
        /// every host must be reachable first.
        #[arg(long, value_name = "FILE.toml")]
        hosts: Option<PathBuf>,
    },
    /// Re-check a stored run offline (no cluster needed).
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Nemesis schedule: a file name in nemesis/ (see `harness list`).
    #[arg(long, default_value = "partition-leader")]
    nemesis: String,
    /// Workload: a file name in workloads/ (see `harness list`).
    #[arg(long, default_value = "register")]
    workload: String,
    /// Run on real hosts over SSH, named in this file (see vagrant-hosts.toml);
    /// nodes and ZooKeeper servers then come from the file.
    #[arg(long, value_name = "FILE.toml", conflicts_with_all = ["nodes", "zk"])]
    hosts: Option<PathBuf>,
    /// RapidStore nodes (n1..nN).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// ZooKeeper servers, on n1..nZ: 1, 3 or 5.
    #[arg(long, default_value_t = 3)]
    zk: usize,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 30.0)]
    time_limit: f64,
    /// Operations per second over all clients (default: the workload's).
    #[arg(long)]
    rate: Option<f64>,
    /// Concurrent clients (default: the workload's).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seed for every random choice (default: random, printed and stored).
    #[arg(long)]
    seed: Option<u64>,
    /// Planted RapidStore bug to switch on (repeatable); see `rapidstore --help`.
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Reports folder.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// ZooKeeper session timeout of RapidStore nodes, e.g. 4s.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Fail (exit 1) if the slowest failover exceeds this, e.g. 8s.
    #[arg(long, value_parser = parse_duration)]
    max_failover: Option<Duration>,
    /// Give up the linearizability search after this long (verdict unknown).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    check_timeout: Duration,
    /// Print the fault schedule this seed plans (JSON) and exit; touch nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// A run folder (reports/<run-id>), holding history.jsonl.
    run_dir: PathBuf,
    /// Fail (exit 1) if the slowest failover exceeds this.
    #[arg(long, value_parser = parse_duration)]
    max_failover: Option<Duration>,
    /// Give up the linearizability search after this long (verdict unknown).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    check_timeout: Duration,
}

const BUGS: &[&str] = &[
    "no-fencing",
    "stale-reads",
    "no-leader-sync",
    "ack-before-replicate",
    "lease-reads",
];

/// Where `nemesis/` and `workloads/` are: `$HARNESS_HOME`, else the current
/// folder if it has them, else the source tree the binary was built from.
pub fn defs_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HARNESS_HOME") {
        return PathBuf::from(h);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("nemesis").is_dir() && cwd.join("workloads").is_dir() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::VALID
            };
            let _ = e.print();
            return code;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,zookeeper_client=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::NOT_RUN;
        }
    };
    rt.block_on(dispatch(cli.command))
}

async fn dispatch(cmd: Command) -> i32 {
    match cmd {
        Command::List => list(&defs_dir()),
        Command::Doctor => doctor(),
        Command::Clean { force, hosts } => match hosts {
            Some(file) => clean_hosts(&file, force).await,
            None => clean(force),
        },
        Command::Check(a) => check(a),
        Command::Run(a) => run_cmd(a).await,
    }
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    exit::USAGE
}

async fn run_cmd(a: RunArgs) -> i32 {
    let defs = defs_dir();
    // Early validation: nothing is touched before the whole request is sound.
    if let Err(e) = Schedule::load(&defs.join("nemesis"), &a.nemesis) {
        return usage(e);
    }
    if let Err(e) = Workload::load(&defs.join("workloads"), &a.workload) {
        return usage(e);
    }
    let hosts = match &a.hosts {
        Some(file) => match Hosts::load(file) {
            Ok(h) => Some(h),
            Err(e) => return usage(e),
        },
        None => None,
    };
    let (nodes, zk) = match &hosts {
        Some(h) => (h.hosts.len() as u64, h.zk_nodes().len()),
        None => (a.nodes, a.zk),
    };
    let a = RunArgs { nodes, zk, ..a };
    if ![1, 3, 5].contains(&a.zk) {
        return usage(format!("--zk {} is not supported; use 1, 3 or 5", a.zk));
    }
    if a.zk as u64 > a.nodes {
        return usage(format!(
            "--zk {} needs at least that many --nodes (got {})",
            a.zk, a.nodes
        ));
    }
    if let Some(b) = a.bugs.iter().find(|b| !BUGS.contains(&b.as_str())) {
        return usage(format!(
            "unknown bug `{b}`; valid bugs: {}",
            BUGS.join(", ")
        ));
    }
    if a.time_limit.is_nan() || a.time_limit <= 0.0 {
        return usage("--time-limit must be positive (seconds)");
    }
    if a.rate.is_some_and(|r| r.is_nan() || r <= 0.0) || a.concurrency == Some(0) {
        return usage("--rate and --concurrency must be positive");
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    if a.dry_run {
        let schedule = match Schedule::load(&defs.join("nemesis"), &a.nemesis) {
            Ok(s) => s,
            Err(e) => return usage(e),
        };
        let plan: Vec<serde_json::Value> = schedule
            .plan(seed, Duration::from_secs_f64(a.time_limit))
            .iter()
            .map(|p| {
                serde_json::json!({
                    "at_ms": p.at.as_millis() as u64,
                    "heal_at_ms": p.heal_at.as_millis() as u64,
                    "fault": p.spec.label(),
                })
            })
            .collect();
        let out = serde_json::json!({ "nemesis": a.nemesis, "seed": seed, "planned": plan });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return exit::VALID;
    }
    let problems = match &hosts {
        // Over SSH this machine only drives: it needs `ssh` and the binary.
        Some(_) => crate::doctor::check()
            .into_iter()
            .filter(|p| matches!(p.name, "root" | "rapidstore"))
            .collect(),
        None => crate::doctor::check(),
    };
    if !problems.is_empty() {
        eprintln!("error: this machine cannot run the harness yet:");
        for p in &problems {
            eprintln!("  - {}: {}\n    fix: {}", p.name, p.what, p.fix);
        }
        return exit::NOT_RUN;
    }
    if let Some(h) = &hosts {
        // Every host must answer before anything is changed anywhere.
        if let Err(e) = crate::control::ssh::probe(h).await {
            eprintln!("error: {e:#}");
            return exit::NOT_RUN;
        }
    }
    let opts = RunOptions {
        nemesis: a.nemesis,
        workload: a.workload,
        nodes: a.nodes as usize,
        zk: a.zk,
        time_limit: Duration::from_secs_f64(a.time_limit),
        rate: a.rate,
        concurrency: a.concurrency,
        seed,
        bugs: a.bugs,
        out: a.out,
        session_timeout_ms: a.session_timeout.as_millis() as u64,
        max_failover: a.max_failover,
        check_timeout: a.check_timeout,
        defs_dir: defs,
        hosts,
    };
    match run::run(opts).await {
        Ok(r) => r.exit_code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<crate::workload::DefinitionError>()
                .is_some()
            {
                exit::USAGE
            } else {
                exit::NOT_RUN
            }
        }
    }
}

fn list(defs: &Path) -> i32 {
    println!("nemeses (nemesis/*.toml, use with --nemesis NAME):");
    let nem = defs.join("nemesis");
    for n in names_in(&nem) {
        match Schedule::load(&nem, &n) {
            Ok(s) => println!("  {n:<24} {}", s.description),
            Err(e) => println!("  {n:<24} (broken: {e})"),
        }
    }
    println!("\nworkloads (workloads/*.toml, use with --workload NAME):");
    let wl = defs.join("workloads");
    for n in names_in(&wl) {
        match Workload::load(&wl, &n) {
            Ok(w) => println!("  {n:<24} {}", w.description),
            Err(e) => println!("  {n:<24} (broken: {e})"),
        }
    }
    println!("\nplanted bugs (use with --bug NAME): {}", BUGS.join(", "));
    exit::VALID
}

fn doctor() -> i32 {
    let checks = crate::doctor::checks();
    let mut ok = true;
    for c in &checks {
        let mark = if c.ok { "ok " } else { "MISSING" };
        println!("{mark:<8} {:<14} {}", c.name, c.detail);
        if let (false, Some(fix)) = (c.ok, &c.fix) {
            println!("         fix: {fix}");
        }
        ok &= c.ok;
    }
    if ok {
        println!("\nall prerequisites present");
        exit::VALID
    } else {
        exit::NOT_RUN
    }
}

fn clean(force: bool) -> i32 {
    print_clean(&crate::journal::clean_stale(force))
}

fn print_clean(report: &crate::journal::CleanReport) -> i32 {
    if report.runs.is_empty() {
        println!("nothing to clean: no run markers left behind");
    }
    for r in &report.runs {
        match &r.skipped {
            Some(why) => println!("skipped {}: {why}", r.run_id),
            None => println!(
                "cleaned {}: {} undone, {} already gone{}",
                r.run_id,
                r.replay.undone.len(),
                r.replay.already_gone.len(),
                if r.replay.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {:?}", r.replay.errors)
                }
            ),
        }
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if report.is_clean() {
        exit::VALID
    } else {
        exit::NOT_RUN
    }
}

/// `harness clean --hosts FILE`: every host must answer first; then the
/// stale runs that acted on those hosts are replayed (over SSH where their
/// steps are remote), and no other run is touched.
async fn clean_hosts(file: &Path, force: bool) -> i32 {
    let hosts = match Hosts::load(file) {
        Ok(h) => h,
        Err(e) => return usage(e),
    };
    if let Err(e) = crate::control::ssh::probe(&hosts).await {
        eprintln!("error: {e:#}");
        return exit::NOT_RUN;
    }
    let addrs: Vec<(std::net::Ipv4Addr, u16)> =
        hosts.hosts.iter().map(|h| (h.address, h.port)).collect();
    let report =
        tokio::task::spawn_blocking(move || crate::journal::clean_stale_on_hosts(&addrs, force))
            .await
            .unwrap_or_else(|e| crate::journal::CleanReport {
                errors: vec![format!("clean task failed: {e}")],
                ..Default::default()
            });
    print_clean(&report)
}

fn check(a: CheckArgs) -> i32 {
    let history = a.run_dir.join("history.jsonl");
    if !history.exists() {
        return usage(format!(
            "`{}` holds no history.jsonl; pass a run folder such as reports/latest",
            a.run_dir.display()
        ));
    }
    // The run's identity comes from its stored report (or run.json) if any.
    let info = Report::read_json(&a.run_dir.join("report.json"))
        .map(|r| r.run)
        .unwrap_or_else(|_| report::RunInfo {
            id: a
                .run_dir
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default(),
            ..Default::default()
        });
    let opts = CheckOptions {
        timeout: a.check_timeout,
        max_failover_ms: a.max_failover.map(|d| d.as_secs_f64() * 1000.0),
        ..CheckOptions::default()
    };
    match run::check_run_dir(&a.run_dir, info, Vec::new(), &opts) {
        Ok(r) => {
            println!("{}", report::render_table(&r));
            report::exit_code(&r)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}
