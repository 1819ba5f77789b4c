//! The command line (clap): `run`, `list`, `doctor`, `clean`, `check`. Maps
//! every outcome to one documented exit code, in one place.

use crate::checker::CheckOptions;
use crate::hosts::Hosts;
use crate::nemesis::schedule::{parse_duration, Schedule};
use crate::report::baseline::{self, Baseline, BaselineSpec};
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
    /// The run could not be carried out (setup failure, missing
    /// prerequisite), or a valid run was not healed or torn down cleanly.
    pub const NOT_RUN: i32 = crate::report::EXIT_NOT_RUN;
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
carried out (setup failure, missing prerequisite) or a valid run was not
healed or torn down cleanly, 64 usage error.";

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
    /// Regenerate report.html and junit.xml of a stored run, or rebuild a
    /// reports folder's index.html (no cluster needed).
    Report(ReportArgs),
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
    #[command(flatten)]
    checker: CheckerArgs,
    /// Print the fault schedule this seed plans (JSON) and exit; touch nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    baseline: BaselineArgs,
}

/// `--baseline` and `--tolerance`, shared by `run` and `report`.
#[derive(clap::Args, Debug)]
struct BaselineArgs {
    /// Fail (exit 1) if failover p99 is worse than this stored run's, or with
    /// `auto` than the median of earlier runs of the same nemesis in the
    /// reports folder, by more than --tolerance.
    #[arg(long, value_name = "RUN_DIR|auto")]
    baseline: Option<BaselineSpec>,
    /// How much worse than the baseline failover p99 may be, e.g. 25%.
    #[arg(long, default_value = "25%", value_parser = baseline::parse_tolerance, requires = "baseline")]
    tolerance: f64,
}

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["run_dir", "index"]))]
struct ReportArgs {
    /// A run folder (reports/<run-id>): regenerate its report.html and
    /// junit.xml from report.json (checking history.jsonl first if the run
    /// never wrote report.json), and its folder's index.html. Exits with the
    /// run's verdict code.
    run_dir: Option<PathBuf>,
    /// Rebuild DIR/index.html from every run in DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "run_dir")]
    index: Option<PathBuf>,
    #[command(flatten)]
    baseline: BaselineArgs,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// A run folder (reports/<run-id>, holding history.jsonl), or a Jepsen
    /// history file (EDN).
    #[arg(value_name = "PATH")]
    run_dir: PathBuf,
    /// What PATH holds (default: edn for a .edn file, else a run folder).
    #[arg(long, value_enum)]
    format: Option<CheckFormat>,
    /// Model a Jepsen history is checked against (required with edn).
    #[arg(long, value_enum)]
    model: Option<crate::checker::jepsen::ModelName>,
    /// The model's initial state, as EDN (default nil; multi-register: a map
    /// like {:x 0}; mutex: true or false).
    #[arg(long, value_name = "VALUE")]
    init: Option<String>,
    /// Jepsen independent keys (values are [key value] tuples).
    #[arg(long, value_enum, default_value = "auto")]
    independent: crate::checker::jepsen::Independent,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    checker: CheckerArgs,
}

/// How the checker judges, shared by `run` and `check`: the failover
/// target and the linearizability search's budgets.
#[derive(clap::Args, Debug, Clone)]
struct CheckerArgs {
    /// Fail (exit 1) if the slowest failover exceeds this, e.g. 8s.
    #[arg(long, value_parser = parse_duration)]
    max_failover: Option<Duration>,
    /// Give up the linearizability search after this long (verdict unknown).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    check_timeout: Duration,
    /// Memory the linearizability search's memo may hold, e.g. 512MiB
    /// (past it: verdict unknown).
    #[arg(long, default_value = "512MiB", value_parser = crate::checker::resources::parse_bytes)]
    check_memory: usize,
}

/// What `harness check` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CheckFormat {
    /// A harness run folder holding history.jsonl.
    Run,
    /// A Jepsen history: one EDN vector of op maps, or one op map per line.
    Edn,
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
        Command::Report(a) => report_cmd(a),
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
    // An explicit baseline is read now: before the run (so `reports/latest`
    // still names the previous run) and before anything is touched.
    let explicit_baseline = match &a.baseline.baseline {
        Some(BaselineSpec::Run(dir)) => match baseline::load_run(dir) {
            Ok(b) => Some(b),
            Err(e) => return usage(e),
        },
        _ => None,
    };
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
        max_failover: a.checker.max_failover,
        check_timeout: a.checker.check_timeout,
        check_memory: a.checker.check_memory,
        defs_dir: defs,
        hosts,
    };
    let reports_dir = opts.out.clone();
    match run::run(opts).await {
        Ok(r) => match &a.baseline.baseline {
            None => r.exit_code,
            Some(spec) => {
                let b = match spec {
                    BaselineSpec::Auto => None,
                    BaselineSpec::Run(_) => explicit_baseline,
                };
                match apply_baseline(&r.run_dir, &reports_dir, b, a.baseline.tolerance) {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("error: baseline comparison failed: {e:#}");
                        r.exit_code
                    }
                }
            }
        },
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
    let format = a.format.unwrap_or(
        if a.run_dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("edn"))
        {
            CheckFormat::Edn
        } else {
            CheckFormat::Run
        },
    );
    if format == CheckFormat::Edn {
        return check_edn(a);
    }
    if a.model.is_some() || a.init.is_some() {
        return usage("--model and --init apply to Jepsen histories (--format edn)");
    }
    let history = a.run_dir.join("history.jsonl");
    if !history.exists() {
        return usage(format!(
            "`{}` holds no history.jsonl; pass a run folder such as reports/latest, or a Jepsen history with --format edn",
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
        timeout: a.checker.check_timeout,
        max_memo_bytes: a.checker.check_memory,
        max_failover_ms: a.checker.max_failover.map(|d| d.as_secs_f64() * 1000.0),
        ..CheckOptions::default()
    };
    match run::check_run_dir(&a.run_dir, info, Vec::new(), &opts) {
        Ok(r) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("reports always serialize")
                );
            } else {
                println!("{}", report::render_table(&r));
            }
            report::exit_code(&r)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}

/// `harness check --format edn FILE --model NAME`: a Jepsen history.
fn check_edn(a: CheckArgs) -> i32 {
    use crate::checker::jepsen;
    let Some(model) = a.model else {
        return usage(
            "--model is required for a Jepsen history: register, cas-register, multi-register or mutex",
        );
    };
    if a.checker.max_failover.is_some() {
        return usage("--max-failover applies to harness runs, not Jepsen histories");
    }
    let opts = jepsen::EdnOptions {
        init: a.init,
        independent: a.independent,
        timeout: a.checker.check_timeout,
        max_memo_bytes: a.checker.check_memory,
        ..jepsen::EdnOptions::new(model)
    };
    match jepsen::check_file(&a.run_dir, &opts) {
        Ok(r) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("reports always serialize")
                );
            } else {
                print!("{}", jepsen::render_text(&r));
            }
            r.exit_code()
        }
        Err(e) => usage(e),
    }
}

/// Judge a checked run's failover p99 against `explicit` (or, if `None`, the
/// `auto` baseline from `reports_dir`), store the `failover-baseline` check
/// in its report.json, re-render what renders it, and return the exit code.
fn apply_baseline(
    run_dir: &Path,
    reports_dir: &Path,
    explicit: Option<Baseline>,
    tolerance: f64,
) -> anyhow::Result<i32> {
    let mut r = Report::read_json(run_dir)?;
    let b = explicit.or_else(|| baseline::auto(reports_dir, &r));
    let c = baseline::compare(&r, b.as_ref(), tolerance);
    println!("baseline: {} — {}", c.valid, c.summary);
    baseline::apply(&mut r, c);
    r.write_json(run_dir)?;
    for p in report::write_artifacts(run_dir, &r) {
        eprintln!("warning: {p}");
    }
    Ok(report::exit_code(&r))
}

/// The identity of a run that never wrote report.json, from its run.json.
fn info_from_run_json(dir: &Path) -> report::RunInfo {
    let v: serde_json::Value = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let s = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let strings = |p: &str| -> Vec<String> {
        v.pointer(p)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = match s("/id") {
        id if id.is_empty() => dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        id => id,
    };
    report::RunInfo {
        id,
        nemesis: s("/options/nemesis"),
        workload: s("/options/workload"),
        seed: v
            .pointer("/options/seed")
            .and_then(|x| x.as_u64())
            .unwrap_or(0),
        nodes: Vec::new(),
        zk: Vec::new(),
        time_limit_s: v
            .pointer("/options/time_limit_ms")
            .and_then(|x| x.as_f64())
            .map(|ms| ms / 1000.0)
            .or_else(|| {
                v.pointer("/options/time_limit/secs")
                    .and_then(|x| x.as_f64())
            })
            .unwrap_or(0.0),
        bug: strings("/options/bugs"),
        started_at: s("/started_at"),
    }
}

fn report_cmd(a: ReportArgs) -> i32 {
    if let Some(dir) = &a.index {
        if !dir.is_dir() {
            return usage(format!("`{}` is not a folder", dir.display()));
        }
        return match report::index::write_index(dir) {
            Ok(p) => {
                println!("index: {}", p.display());
                exit::VALID
            }
            Err(e) => {
                eprintln!(
                    "error: failed to write the index of `{}`: {e}",
                    dir.display()
                );
                exit::NOT_RUN
            }
        };
    }
    let Some(dir) = a.run_dir else {
        return usage("pass a run folder, or --index DIR");
    };
    let mut r = match Report::read_json(&dir) {
        Ok(r) => r,
        Err(report::ReportError::Read { .. }) if dir.join("history.jsonl").is_file() => {
            // The run never got to write report.json (the harness died):
            // check what it recorded.
            eprintln!(
                "note: `{}` has no report.json; checking its history.jsonl",
                dir.display()
            );
            let info = info_from_run_json(&dir);
            match run::check_run_dir(&dir, info, Vec::new(), &CheckOptions::default()) {
                Ok(mut r) => {
                    // An unfinished run never passes: its history is incomplete.
                    if r.valid == crate::checker::Validity::Valid {
                        r.valid = crate::checker::Validity::Unknown;
                        r.teardown_errors
                            .push("the run never wrote report.json; checked offline".into());
                    }
                    r
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return exit::USAGE;
                }
            }
        }
        Err(e) => {
            return usage(format!(
                "{e}\n  hint: pass a run folder such as reports/latest"
            ))
        }
    };
    if let Some(spec) = &a.baseline.baseline {
        let b = match spec {
            BaselineSpec::Run(d) => match baseline::load_run(d) {
                Ok(b) => Some(b),
                Err(e) => return usage(e),
            },
            BaselineSpec::Auto => baseline::auto(dir.parent().unwrap_or(Path::new(".")), &r),
        };
        let c = baseline::compare(&r, b.as_ref(), a.baseline.tolerance);
        println!("baseline: {} — {}", c.valid, c.summary);
        baseline::apply(&mut r, c);
    }
    if a.baseline.baseline.is_some() || !dir.join("report.json").is_file() {
        if let Err(e) = r.write_json(&dir) {
            eprintln!("error: {e}");
            return exit::NOT_RUN;
        }
    }
    let problems = report::write_artifacts(&dir, &r);
    for p in &problems {
        eprintln!("error: {p}");
    }
    if problems.iter().any(|p| !p.starts_with("index.html")) {
        return exit::NOT_RUN;
    }
    println!(
        "report: {}\njunit: {}",
        dir.join(report::html::REPORT_HTML).display(),
        dir.join(report::junit::JUNIT_XML).display()
    );
    report::exit_code(&r)
}
