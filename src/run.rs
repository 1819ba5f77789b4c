//! `harness run`: the lifecycle of one test, as nested scopes each
//! guaranteeing its own teardown. Set up the cluster, wait for a leader
//! (the run's clock starts then), drive the workload while the nemesis
//! follows its schedule, heal, wait for a leader, final reads, collect the
//! replicas' events, tear down (always), check the stored history, report.

use crate::checker::{self, CheckOptions};
use crate::client::NodeClient;
use crate::cluster::{Cluster, ClusterConfig};
use crate::generator::OpGen;
use crate::history::{read_history, Clock, Event, HistoryWriter, Invocation, OpKind, Outcome};
use crate::hosts::ClockMethod;
use crate::journal::Journal;
use crate::nemesis::clock::{ClockFiles, Clocks, HostClocks};
use crate::nemesis::schedule::{FaultKind, Schedule};
use crate::nemesis::{ExecutedStep, Nemesis};
use crate::observe::{self, Topology, WriteEvents};
use crate::report::{self, Report, RunInfo};
use crate::store::{rfc3339, unix_now, RunDir};
use crate::workload::Workload;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything `harness run` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct RunOptions {
    pub nemesis: String,
    pub workload: String,
    pub nodes: usize,
    pub zk: usize,
    #[serde(rename = "time_limit_ms", serialize_with = "ms")]
    pub time_limit: Duration,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub seed: u64,
    pub bugs: Vec<String>,
    pub out: PathBuf,
    pub session_timeout_ms: u64,
    #[serde(rename = "max_failover_ms", serialize_with = "opt_ms")]
    pub max_failover: Option<Duration>,
    #[serde(rename = "check_timeout_ms", serialize_with = "ms")]
    pub check_timeout: Duration,
    /// Memory budget of the linearizability search's memo, in bytes.
    pub check_memory: usize,
    /// Where `nemesis/` and `workloads/` live.
    pub defs_dir: PathBuf,
    /// Real hosts over SSH (`--hosts FILE`); `None`: local namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<crate::hosts::Hosts>,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

/// How a run ended, before checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Completed,
    /// Ctrl-C or SIGTERM: the history is checked, but is incomplete.
    Interrupted,
}

/// `run.json`: what was asked for, and what actually ran.
#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    id: &'a str,
    started_at: String,
    options: &'a RunOptions,
    workload: Option<&'a Workload>,
    rate: f64,
    concurrency: usize,
    planned: Vec<serde_json::Value>,
    executed: &'a [ExecutedStep],
    versions: serde_json::Value,
    ending: Option<Ending>,
    error: Option<String>,
    heal_problems: &'a [String],
    setup_phases: Vec<(String, f64)>,
}

/// Result of `harness run`: the exit code and the run folder.
pub struct RunResult {
    pub exit_code: i32,
    pub run_dir: PathBuf,
}

fn versions() -> serde_json::Value {
    let zk = std::fs::read_to_string("/usr/share/doc/zookeeper/changelog.Debian.gz")
        .ok()
        .map(|_| "debian".to_string());
    serde_json::json!({
        "harness": env!("CARGO_PKG_VERSION"),
        "rapidstore": env!("CARGO_PKG_VERSION"),
        "zookeeper": zk.unwrap_or_else(|| "Debian zookeeper package".into()),
    })
}

/// Wait for Ctrl-C or SIGTERM, then flip `cancel`.
fn watch_signals(cancel: watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("harness: interrupted; healing, tearing down and checking what was recorded");
        let _ = cancel.send(true);
    });
}

/// Run a whole test. Errors are setup failures (exit 3); verdicts come back
/// as exit codes 0/1/2 in [`RunResult`].
pub async fn run(opts: RunOptions) -> Result<RunResult> {
    let workload = Workload::load(&opts.defs_dir.join("workloads"), &opts.workload)?;
    let schedule = Schedule::load(&opts.defs_dir.join("nemesis"), &opts.nemesis)?;
    let rate = opts.rate.unwrap_or(workload.rate);
    let concurrency = opts.concurrency.unwrap_or(workload.concurrency);
    let run_dir = RunDir::create(&opts.out, &opts.nemesis)?;
    let started_at = rfc3339(unix_now());
    let plan = schedule.plan(opts.seed, opts.time_limit);
    eprintln!(
        "harness: run {} (nemesis {}, workload {}, seed {}, {} nodes, {} ZooKeeper) in {}",
        run_dir.id,
        opts.nemesis,
        opts.workload,
        opts.seed,
        opts.nodes,
        opts.zk,
        run_dir.path.display()
    );
    let planned: Vec<serde_json::Value> = plan
        .iter()
        .map(|p| {
            serde_json::json!({
                "at_ms": p.at.as_millis() as u64, "heal_at_ms": p.heal_at.as_millis() as u64,
                "fault": p.spec.label(),
            })
        })
        .collect();
    let mut record = RunRecord {
        id: &run_dir.id,
        started_at: started_at.clone(),
        options: &opts,
        workload: Some(&workload),
        rate,
        concurrency,
        planned,
        executed: &[],
        versions: versions(),
        ending: None,
        error: None,
        heal_problems: &[],
        setup_phases: Vec::new(),
    };
    run_dir.write_json("run.json", &record)?;

    let journal = Arc::new(Journal::create(&run_dir.path, &run_dir.id)?);
    let (cancel_tx, cancel) = watch::channel(false);
    watch_signals(cancel_tx);

    let mut cfg = ClusterConfig::new(run_dir.id.clone(), run_dir.path.clone());
    cfg.nodes = opts.nodes;
    cfg.zk = opts.zk;
    cfg.session_timeout_ms = opts.session_timeout_ms;
    cfg.bugs = opts.bugs.clone();
    // Clock faults move clocks the way the hosts file says (locally always
    // with libfaketime, each process reading its offset from a file of the
    // run's); `settime` only on hosts all declared dedicated.
    let clock_method = schedule.uses(FaultKind::Clock).then(|| {
        opts.hosts
            .as_ref()
            .map_or(ClockMethod::Faketime, |h| h.clock)
    });
    if let (Some(method), Some(hosts)) = (clock_method, &opts.hosts) {
        crate::control::clock::check_method(hosts, method)?;
    }
    cfg.faketime = clock_method == Some(ClockMethod::Faketime);
    cfg.hosts = opts.hosts.clone();
    eprintln!("harness: setting up the cluster");
    let progress = report::Progress::start(&run_dir.path, opts.time_limit);
    // Setup can be abandoned at any await: what it built is in the journal.
    let mut cancel_setup = cancel.clone();
    let setup = tokio::select! {
        r = Cluster::setup(cfg, journal.clone()) => r,
        _ = cancel_setup.wait_for(|c| *c) => Err(anyhow!("interrupted during setup")),
    };
    let cluster = match setup {
        Ok(c) => c,
        Err(e) => {
            let report = journal.teardown();
            record.error = Some(format!("{e:#}"));
            run_dir.write_json("run.json", &record)?;
            let mut msg = format!("{e:#}");
            if !report.is_clean() {
                msg.push_str(&format!("\n  and cleanup failed: {:?}", report.errors));
            }
            bail!("the cluster could not be set up: {msg}");
        }
    };
    record.setup_phases = cluster
        .setup_phases()
        .iter()
        .map(|p| (p.name.to_string(), p.elapsed.as_secs_f64() * 1000.0))
        .collect();
    let topo = Topology {
        nodes: cluster
            .nodes()
            .into_iter()
            .map(|n| {
                let addr = cluster
                    .http_addr(&n)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                (n, addr)
            })
            .collect(),
        zk_connect: cluster.zk_connect(),
    };

    // The body runs in its own task so a panic in it still reaches teardown.
    let body = {
        let cluster_ref: &Cluster = &cluster;
        let fut = run_body(
            cluster_ref,
            &topo,
            &opts,
            &workload,
            &schedule,
            &run_dir,
            rate,
            concurrency,
            cancel,
            clock_method,
        );
        std::panic::AssertUnwindSafe(fut)
    };
    let outcome = futures::FutureExt::catch_unwind(body).await;
    progress.phase("teardown");
    let teardown = cluster.teardown().await;
    let (ending, executed, heal_problems, body_error) = match outcome {
        Ok(Ok(b)) => (Some(b.ending), b.executed, b.heal_problems, None),
        Ok(Err(e)) => (None, Vec::new(), Vec::new(), Some(format!("{e:#}"))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            (
                None,
                Vec::new(),
                Vec::new(),
                Some(format!("the run panicked: {msg}")),
            )
        }
    };
    record.ending = ending;
    record.executed = &executed;
    record.heal_problems = &heal_problems;
    record.error = body_error.clone();
    run_dir.write_json("run.json", &record)?;
    if let (Some(e), false) = (&body_error, run_dir.history_path().exists()) {
        bail!("the run could not be carried out: {e}");
    }

    let mut teardown_errors = teardown.errors.clone();
    teardown_errors.extend(heal_problems.iter().map(|p| format!("heal: {p}")));
    if let Some(e) = &body_error {
        teardown_errors.push(format!("run: {e}"));
    }
    let info = RunInfo {
        id: run_dir.id.clone(),
        nemesis: opts.nemesis.clone(),
        workload: opts.workload.clone(),
        seed: opts.seed,
        nodes: topo.nodes.iter().map(|(n, _)| n.clone()).collect(),
        zk: cluster.zk_nodes(),
        time_limit_s: opts.time_limit.as_secs_f64(),
        bug: opts.bugs.clone(),
        started_at,
    };
    drop(cluster);
    let check_opts = CheckOptions {
        timeout: opts.check_timeout,
        max_memo_bytes: opts.check_memory,
        max_failover_ms: opts.max_failover.map(|d| d.as_secs_f64() * 1000.0),
        ..CheckOptions::default()
    };
    progress.phase("checking");
    let mut report = check_run_dir(&run_dir.path, info, teardown_errors, &check_opts)?;
    if ending == Some(Ending::Interrupted) || body_error.is_some() {
        // An interrupted or broken run never passes: its history is incomplete.
        if report.valid == checker::Validity::Valid {
            report.valid = checker::Validity::Unknown;
        }
    }
    report.write_json(&run_dir.path)?;
    progress.finish();
    for p in report::write_artifacts(&run_dir.path, &report) {
        eprintln!("warning: {p}");
    }
    println!("{}", report::render_table(&report));
    println!("report: {}", run_dir.path.join("report.html").display());
    Ok(RunResult {
        exit_code: report::exit_code(&report),
        run_dir: run_dir.path.clone(),
    })
}

/// Check a stored history and build the report (shared by `run` and `check`).
pub fn check_run_dir(
    dir: &Path,
    info: RunInfo,
    teardown_errors: Vec<String>,
    opts: &CheckOptions,
) -> Result<Report> {
    let events = read_history(&dir.join("history.jsonl"))?;
    let verdict = checker::check_all(&events, opts);
    Ok(Report::new(info, verdict, teardown_errors))
}

struct BodyOutcome {
    ending: Ending,
    executed: Vec<ExecutedStep>,
    heal_problems: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run_body(
    cluster: &Cluster,
    topo: &Topology,
    opts: &RunOptions,
    workload: &Workload,
    schedule: &Schedule,
    run_dir: &RunDir,
    rate: f64,
    concurrency: usize,
    mut cancel: watch::Receiver<bool>,
    clock_method: Option<ClockMethod>,
) -> Result<BodyOutcome> {
    let clocks = clock_method.map(|m| match m {
        ClockMethod::Faketime => {
            Clocks::Faketime(ClockFiles::new(cluster.faketime_files().clone()))
        }
        ClockMethod::Settime => Clocks::Settime(HostClocks::default()),
    });
    let client = NodeClient::new();
    eprintln!("harness: waiting for a leader");
    observe::wait_for_leader(topo, &client, Duration::from_secs(60))
        .await
        .ok_or_else(|| {
            anyhow!("no RapidStore leader was elected within 60 s of start-up; see logs/")
        })?;

    // The run's clock starts once a leader is elected.
    let clock = Clock::start();
    let history =
        HistoryWriter::create(&run_dir.history_path()).context("failed to create history.jsonl")?;
    let phase = |p: &str| {
        history.record(&Event::Phase {
            time_ms: clock.now_ms(),
            phase: p.to_string(),
        })
    };
    phase("running");
    let (stop_obs_tx, stop_obs) = watch::channel(false);
    let zk_watch = tokio::spawn(observe::watch_zookeeper(
        topo.clone(),
        clock,
        history.clone(),
        stop_obs.clone(),
    ));
    let writes: WriteEvents = Default::default();
    let poller = tokio::spawn(observe::poll_node_events(
        topo.clone(),
        client.clone(),
        clock,
        history.clone(),
        writes.clone(),
        stop_obs.clone(),
    ));

    // Clients.
    let op_ids = Arc::new(AtomicU64::new(0));
    let (stop_clients_tx, stop_clients) = watch::channel(false);
    let mut clients = Vec::new();
    for p in 0..concurrency as u64 {
        let gen = OpGen::new(workload, opts.seed, p, rate, concurrency);
        clients.push(tokio::spawn(client_loop(
            p,
            gen,
            topo.clone(),
            client.clone(),
            clock,
            history.clone(),
            op_ids.clone(),
            stop_clients.clone(),
            opts.seed,
        )));
    }

    // Nemesis, following the plan.
    let mut nemesis = Nemesis::new(
        cluster,
        topo.clone(),
        clock,
        history.clone(),
        opts.seed,
        &schedule.name,
    )
    .with_clocks(clocks)
    .with_session_timeout(opts.session_timeout_ms);
    let plan = schedule.plan(opts.seed, opts.time_limit);
    let mut interrupted = false;
    let sleep_until = |t: Duration, cancel: &mut watch::Receiver<bool>| {
        let wait = t.saturating_sub(Duration::from_secs_f64(clock.now_ms() / 1000.0));
        let mut cancel = cancel.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = cancel.wait_for(|c| *c) => true,
            }
        }
    };
    for planned in &plan {
        if sleep_until(planned.at, &mut cancel).await {
            interrupted = true;
            break;
        }
        let active = nemesis.inject_group(&planned.spec).await;
        let cut = sleep_until(planned.heal_at, &mut cancel).await;
        nemesis.heal_group(active).await;
        if cut {
            interrupted = true;
            break;
        }
    }
    if !interrupted && sleep_until(opts.time_limit, &mut cancel).await {
        interrupted = true;
    }
    let _ = stop_clients_tx.send(true);
    for c in clients {
        let _ = c.await;
    }

    phase("healing");
    let heal_problems = nemesis.heal_all().await;
    let executed = std::mem::take(&mut nemesis.executed);

    if !interrupted {
        phase("final_reads");
        final_reads(
            topo,
            &client,
            workload,
            clock,
            &history,
            &op_ids,
            concurrency as u64,
        )
        .await;
    }
    // Final sweep: every node's remaining events (killed nodes were restarted).
    let _ = stop_obs_tx.send(true);
    let _ = zk_watch.await;
    let mut cursors = poller.await.unwrap_or_default();
    for (node, addr) in &topo.nodes {
        observe::sweep_node(node, addr, &client, &clock, &history, &writes, &mut cursors).await;
    }
    observe::record_replica_events(&writes, &history);
    phase("teardown");
    Ok(BodyOutcome {
        ending: if interrupted {
            Ending::Interrupted
        } else {
            Ending::Completed
        },
        executed,
        heal_problems,
    })
}

/// One logical client: generate, invoke, complete, pause; until stopped.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    process: u64,
    mut gen: OpGen,
    topo: Topology,
    client: NodeClient,
    clock: Clock,
    history: HistoryWriter,
    op_ids: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) {
    use rand::{Rng, SeedableRng};
    let mut pick = rand::rngs::StdRng::seed_from_u64(seed ^ process ^ 0x6e6f6465);
    // Stagger the start so clients do not fire together.
    let first = gen.gap() / 2;
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = stop.changed() => return,
    }
    while !*stop.borrow() {
        let op = gen.next_op();
        let (node, addr) = topo.nodes[pick.random_range(0..topo.nodes.len())].clone();
        let inv = Invocation {
            op_id: op_ids.fetch_add(1, Ordering::Relaxed),
            process,
            time_ms: clock.now_ms(),
            f: op.f,
            key: op.key.clone(),
            value: op.value.clone(),
            expected: op.expected.clone(),
            node,
        };
        history.record(&Event::Invoke(inv.clone()));
        let r = client
            .op(
                &addr,
                op.f,
                &op.key,
                op.value.as_deref(),
                op.expected.as_ref().map(|e| e.as_deref()),
            )
            .await;
        let done = complete(&inv, &r, &topo, clock.now_ms());
        if r.outcome == Outcome::Ok {
            gen.observe(
                &op.key,
                if op.f == OpKind::Read {
                    r.value.clone()
                } else {
                    op.value.clone()
                },
            );
        }
        history.record(&Event::Complete(done));
        let gap = gen.gap();
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = stop.changed() => {}
        }
    }
}

fn complete(
    inv: &Invocation,
    r: &crate::client::OpResult,
    topo: &Topology,
    now: f64,
) -> crate::history::Completion {
    let mut c = match r.outcome {
        Outcome::Ok => inv.ok(now, r.value.clone()),
        Outcome::Fail => inv.fail(now, r.error.clone().unwrap_or_default()),
        Outcome::Info => inv.info(now, r.error.clone().unwrap_or_default()),
    };
    c.token = r.token;
    c.index = r.index;
    c.node = r
        .served_by
        .as_deref()
        .map(|a| topo.node_of(a).unwrap_or(a).to_string());
    c
}

/// After the final heal: wait for a leader, prove it takes a write, read
/// every key, and store the leader's committed log.
async fn final_reads(
    topo: &Topology,
    client: &NodeClient,
    workload: &Workload,
    clock: Clock,
    history: &HistoryWriter,
    op_ids: &AtomicU64,
    process: u64,
) {
    let Some((leader, _)) = observe::wait_for_leader(topo, client, Duration::from_secs(60)).await
    else {
        return;
    };
    let Some(addr) = topo.addr_of(&leader).map(str::to_string) else {
        return;
    };
    let mut ops: Vec<(OpKind, String, Option<String>)> =
        vec![(OpKind::Write, "liveness".into(), Some("final".into()))];
    ops.extend(
        workload
            .key_names()
            .into_iter()
            .map(|k| (OpKind::Read, k, None)),
    );
    for (f, key, value) in ops {
        // A few tries each: the leader may still be settling after the heal.
        for _ in 0..5 {
            let inv = Invocation {
                op_id: op_ids.fetch_add(1, Ordering::Relaxed),
                process,
                time_ms: clock.now_ms(),
                f,
                key: key.clone(),
                value: value.clone(),
                expected: None,
                node: leader.clone(),
            };
            history.record(&Event::Invoke(inv.clone()));
            let r = client.op(&addr, f, &key, value.as_deref(), None).await;
            let ok = r.outcome == Outcome::Ok;
            let info = r.outcome == Outcome::Info;
            history.record(&Event::Complete(complete(&inv, &r, topo, clock.now_ms())));
            if ok || info && f == OpKind::Write {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let mut best: Option<Vec<crate::history::LogEntry>> = None;
    for _ in 0..5 {
        if let Some(entries) = client.committed_log(&addr).await {
            best = Some(entries);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(entries) = best {
        history.record(&Event::FinalLog {
            time_ms: clock.now_ms(),
            node: leader,
            entries,
        });
    }
}
