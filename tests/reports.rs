//! Reports people and CI read (issue 8): `report.html`, `reports/index.html`,
//! `junit.xml`, baselines, `harness report`, and the JSON Schema of
//! `report.json`. Reports are built from the crafted histories in
//! `tests/fixtures/` (valid, invalid, unknown), from a real partition-leader
//! run stored in `tests/runs/`, and from a synthetic 100k-operation run, and
//! the tests assert what a reader must see: the banner, every node's lane,
//! every fault, every counterexample operation. One test opens the pages in
//! headless Chromium (Debian's `chromium`).

use harness::checker::{
    check_all, measure_failover, measure_stats, CheckOptions, CheckResult, Validity, Verdict,
};
use harness::history::{read_history, Completion, Event, Invocation, LogEntry, OpKind, Role};
use harness::report::{self, html, index, junit, schema, Report, RunInfo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("tests/fixtures"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jsonl").map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

fn fixture_events(name: &str) -> Vec<Event> {
    read_history(&root().join(format!("tests/fixtures/{name}.jsonl"))).expect("fixture parses")
}

fn fixture_report(name: &str) -> Report {
    let info = RunInfo {
        id: format!("20260101T000000-{name}"),
        nemesis: "kill-leader".into(),
        workload: "register".into(),
        seed: 7,
        nodes: vec!["n1".into(), "n2".into(), "n3".into()],
        zk: vec!["n1".into(), "n2".into(), "n3".into()],
        time_limit_s: 10.0,
        bug: vec![],
        started_at: "2026-01-01T00:00:00Z".into(),
    };
    let opts = CheckOptions {
        timeout: Duration::from_secs(20),
        ..CheckOptions::default()
    };
    Report::new(info, check_all(&fixture_events(name), &opts), vec![])
}

/// A run folder as `harness run` leaves it: history, report.json, logs.
fn fixture_run_dir(parent: &Path, name: &str) -> (PathBuf, Report) {
    let r = fixture_report(name);
    let dir = parent.join(&r.run.id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        root().join(format!("tests/fixtures/{name}.jsonl")),
        dir.join("history.jsonl"),
    )
    .unwrap();
    for node in ["n1", "n2", "n3"] {
        let logs = dir.join("logs").join(node);
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("rapidstore.log"), "started\n").unwrap();
    }
    r.write_json(&dir).unwrap();
    (dir, r)
}

/// The `<svg id="{id}" ...>...</svg>` element of a page.
fn svg<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!(r#"<svg id="{id}""#))
        .unwrap_or_else(|| panic!("no <svg id={id:?}>"));
    let end = start + page[start..].find("</svg>").unwrap();
    &page[start..end]
}

/// The `<article ... id="check-{name}">` of a failed check.
fn article<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!(r#"id="check-{name}""#))
        .unwrap_or_else(|| panic!("no card for check {name}"));
    let end = start + page[start..].find("</article>").unwrap();
    &page[start..end]
}

/// The fault-starting nemesis steps of a history: (fault, action, targets).
fn faults(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Nemesis {
                fault,
                action,
                targets,
                ..
            } if !["heal", "start", "resume", "reset_clock", "heal-all"]
                .contains(&action.as_str()) =>
            {
                Some((fault.clone(), action.clone(), targets.join(" ")))
            }
            _ => None,
        })
        .collect()
}

/// Assert what a reader of any report must see.
fn assert_readable(page: &str, r: &Report, events: &[Event]) {
    let banner = &page[page.find(r#"<header id="verdict""#).expect("banner")..];
    let banner = &banner[..banner.find("</header>").unwrap()];
    assert!(
        banner.contains(&format!(r#"data-verdict="{}""#, r.valid.as_str())),
        "banner: {banner}"
    );
    assert!(banner.contains(&r.valid.as_str().to_uppercase()));
    for d in r.deciding_checks() {
        assert!(
            banner.contains(d),
            "banner does not name deciding check {d}"
        );
    }
    let timeline = svg(page, "timeline");
    for node in &r.run.nodes {
        assert!(
            timeline.contains(&format!(r#"<g class="lane" data-node="{node}">"#)),
            "no lane for {node}"
        );
    }
    assert!(timeline.contains(r#"data-lane="zk-leader""#));
    for (fault, action, targets) in faults(events) {
        assert!(
            timeline.contains(&format!(
                r#"data-fault="{fault}" data-action="{action}" data-targets="{targets}""#
            )),
            "fault {fault} {action} {targets} not on the timeline"
        );
    }
    for (name, c) in &r.checks {
        assert!(page.contains(&format!(r#"data-check="{name}""#)));
        if c.valid == Validity::Valid {
            continue;
        }
        let card = article(page, name);
        assert!(
            card.contains(&c.summary.replace('"', "&quot;"))
                || card.contains(&html_escape(&c.summary))
        );
        for (i, item) in c.counterexample.iter().enumerate() {
            assert!(
                card.contains(&format!(r#"id="cx-check-{name}-{i}""#)),
                "{name}: counterexample item {i} has no row"
            );
            if let Some(op) = item.get("op_id").and_then(Value::as_u64) {
                let in_history = events
                    .iter()
                    .any(|e| matches!(e, Event::Invoke(i) if i.op_id == op));
                if in_history {
                    assert!(
                        card.contains(&format!(r#"data-op="{op}""#)),
                        "{name}: counterexample op {op} is not on the zoomed timeline"
                    );
                }
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[test]
fn every_fixture_renders_what_a_reader_must_see() {
    let tmp = tempfile::tempdir().unwrap();
    for name in fixture_names() {
        let (dir, r) = fixture_run_dir(tmp.path(), &name);
        let path = html::write_html(&dir, &r).unwrap();
        let page = std::fs::read_to_string(path).unwrap();
        assert_readable(&page, &r, &fixture_events(&name));
        assert!(
            page.contains(r#"href="logs/n1/rapidstore.log""#),
            "{name}: no log links"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{name}: external reference"
        );
    }
}

#[test]
fn invalid_fixture_shows_the_counterexample_and_links_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, r) = fixture_run_dir(tmp.path(), "stale-read");
    assert_eq!(r.valid, Validity::Invalid);
    let page = std::fs::read_to_string(html::write_html(&dir, &r).unwrap()).unwrap();
    assert!(page.contains(r#"<div class="word">INVALID</div>"#));
    assert!(page.contains(r##"decided by <a href="#check-linearizable">linearizable</a>"##));
    let card = article(&page, "linearizable");
    assert!(card.contains(r#"<svg class="plot zoom" id="zoom-check-linearizable""#));
    assert!(card.contains("cannot be linearized"));
    assert!(card.contains(r#"class="logs""#) && card.contains("logs/n"));
    // The counterexample is marked on the full timeline too.
    assert!(svg(&page, "timeline").contains(r#"class="cx-mark""#));
}

#[test]
fn unknown_fixture_has_an_unknown_banner_and_cards() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, r) = fixture_run_dir(tmp.path(), "incomplete");
    assert_eq!(r.valid, Validity::Unknown);
    let page = std::fs::read_to_string(html::write_html(&dir, &r).unwrap()).unwrap();
    assert!(page.contains(r#"<header id="verdict" class="banner unknown" data-verdict="unknown">"#));
    for d in r.deciding_checks() {
        assert!(page.contains(&format!(r#"class="check unknown" id="check-{d}""#)));
    }
}

#[test]
fn a_missing_history_still_gives_a_page() {
    let tmp = tempfile::tempdir().unwrap();
    let r = fixture_report("valid-run");
    let page = std::fs::read_to_string(html::write_html(tmp.path(), &r).unwrap()).unwrap();
    assert!(page.contains("History unavailable"));
    assert!(page.contains(r#"data-verdict="valid""#));
}

/// The stored real run: `harness run --nemesis partition-leader --nodes 5
/// --zk 3 --time-limit 20 --seed 2` (valid; two leader partitions).
fn real_run() -> PathBuf {
    root().join("tests/runs/partition-leader")
}

#[test]
fn real_partition_leader_run_shows_lanes_faults_rejections_and_failover() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["history.jsonl", "report.json", "run.json"] {
        std::fs::copy(real_run().join(f), tmp.path().join(f)).unwrap();
    }
    let r = Report::read_json(tmp.path()).unwrap();
    let events = read_history(&tmp.path().join("history.jsonl")).unwrap();
    let page = std::fs::read_to_string(html::write_html(tmp.path(), &r).unwrap()).unwrap();
    assert_readable(&page, &r, &events);
    assert_eq!(r.run.nodes.len(), 5);
    let timeline = svg(&page, "timeline");
    // Both partitions, labelled with the leader they isolated.
    assert!(timeline.contains(">partition n3<") && timeline.contains(">partition n2<"));
    // Every rejected fenced write is marked.
    let rejected = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Replica {
                    accepted: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(rejected, 8);
    assert_eq!(timeline.matches(r#"<path class="rej""#).count(), rejected);
    // Failover table: one row per fault; the plots are there.
    let table = &page[page.find(r#"<table id="failover-table">"#).unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(
        table.matches("<tr><td>").count(),
        r.failover.per_fault.len()
    );
    for id in ["failover-plot", "latency", "throughput"] {
        svg(&page, id);
    }
    // Versions and the replay command come from run.json.
    assert!(page.contains("zookeeper Debian zookeeper package"));
    assert!(page.contains("--seed 2 --time-limit 20"));
    eprintln!(
        "report.html of a 20 s, 847-operation run: {} bytes",
        page.len()
    );
    assert!(page.len() < 300_000);
}

/// A long run, synthesised: `ops` operations over 10 processes and 20 keys,
/// a leader kill every 30 s with 4 s of failed writes, 3 nodes.
fn synthetic_history(ops: usize) -> Vec<Event> {
    let mut ev = Vec::with_capacity(ops * 2 + 1000);
    ev.push(Event::Phase {
        time_ms: 0.0,
        phase: "running".into(),
    });
    let nodes = ["n1", "n2", "n3"];
    let mut leader = 0usize;
    let mut token = 1u64;
    ev.push(Event::Role {
        time_ms: 1.0,
        node: "n1".into(),
        role: Role::Leader,
        token: Some(token),
    });
    ev.push(Event::ZkLeader {
        time_ms: 1.0,
        leader: Some("n1".into()),
        token: Some(token),
    });
    let mut next_fault = 30_000.0;
    let mut down_until = 0.0;
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut log = Vec::new();
    for i in 0..ops {
        let t0 = i as f64 * 10.0;
        if t0 >= next_fault {
            let old = nodes[leader];
            ev.push(Event::Nemesis {
                time_ms: t0,
                fault: "kill-leader".into(),
                action: "kill".into(),
                targets: vec![old.into()],
                detail: Value::Null,
            });
            ev.push(Event::Role {
                time_ms: t0,
                node: old.into(),
                role: Role::Down,
                token: Some(token),
            });
            leader = (leader + 1) % 3;
            token += 1;
            ev.push(Event::Role {
                time_ms: t0 + 3900.0,
                node: nodes[leader].into(),
                role: Role::Leader,
                token: Some(token),
            });
            ev.push(Event::ZkLeader {
                time_ms: t0 + 3950.0,
                leader: Some(nodes[leader].into()),
                token: Some(token),
            });
            ev.push(Event::Nemesis {
                time_ms: t0 + 4000.0,
                fault: "kill-leader".into(),
                action: "start".into(),
                targets: vec![old.into()],
                detail: Value::Null,
            });
            ev.push(Event::Role {
                time_ms: t0 + 4100.0,
                node: old.into(),
                role: Role::Follower,
                token: None,
            });
            down_until = t0 + 4000.0;
            next_fault += 30_000.0;
        }
        let key = format!("k{}", i % 20);
        let process = (i % 10) as u64;
        let write = i % 2 == 0;
        let value = format!("{process}-{i}");
        let inv = Invocation {
            op_id: i as u64,
            process,
            time_ms: t0,
            f: if write { OpKind::Write } else { OpKind::Read },
            key: key.clone(),
            value: write.then(|| value.clone()),
            expected: None,
            node: nodes[i % 3].into(),
        };
        let t1 = t0 + 2.0 + (i % 7) as f64;
        let done: Completion = if t0 < down_until {
            inv.fail(t1, "no leader")
        } else if i % 997 == 0 {
            inv.info(t0 + 1000.0, "timeout")
        } else if write {
            values.insert(key.clone(), value.clone());
            log.push(LogEntry {
                index: log.len() as u64 + 1,
                token,
                key: key.clone(),
                value: value.clone(),
            });
            inv.ok(t1, None)
        } else {
            inv.ok(t1, values.get(&key).cloned())
        };
        ev.push(Event::Invoke(inv));
        ev.push(Event::Complete(done));
    }
    let end = ops as f64 * 10.0 + 2000.0;
    ev.push(Event::Phase {
        time_ms: end,
        phase: "healing".into(),
    });
    ev.push(Event::FinalLog {
        time_ms: end + 10.0,
        node: nodes[leader].into(),
        entries: log,
    });
    ev
}

#[test]
fn a_100k_operation_report_stays_under_5_mb_and_keeps_every_counterexample_op() {
    const OPS: usize = 100_000;
    let events = synthetic_history(OPS);
    let opts = CheckOptions::default();
    // Only the measurements: the checks are the checker's business; here a
    // planted counterexample with ops spread over the run must all be shown.
    let cx_ops: Vec<u64> = vec![12, 40_001, 40_003, 99_990];
    let cx: Vec<Value> = cx_ops
        .iter()
        .map(|id| {
            let t = *id as f64 * 10.0;
            json!({"op_id": id, "f": "read", "key": "k0", "invoke_ms": t, "complete_ms": t + 2.0, "why": "planted"})
        })
        .collect();
    let mut checks = BTreeMap::new();
    checks.insert(
        "linearizable".to_string(),
        CheckResult::invalid("planted: 4 ops cannot be linearized", cx),
    );
    checks.insert("fencing".to_string(), CheckResult::valid("all fenced"));
    let verdict = Verdict {
        valid: Validity::Invalid,
        checks,
        failover: measure_failover(&events, &opts),
        stats: measure_stats(&events),
    };
    let info = RunInfo {
        id: "synthetic-100k".into(),
        nemesis: "kill-leader".into(),
        workload: "register".into(),
        nodes: vec!["n1".into(), "n2".into(), "n3".into()],
        zk: vec!["n1".into(), "n2".into(), "n3".into()],
        time_limit_s: 1000.0,
        ..RunInfo::default()
    };
    let r = Report::new(info, verdict, vec![]);
    let logs = BTreeMap::new();
    let input = html::HtmlInput {
        report: &r,
        events: &events,
        history_note: None,
        run_json: None,
        logs,
    };
    let started = Instant::now();
    let page = html::render_html(&input);
    let took = started.elapsed();
    eprintln!(
        "report.html of a synthetic {OPS}-operation run: {} bytes, rendered in {took:?}",
        page.len()
    );
    if let Some(out) = std::env::var_os("HARNESS_REPORT_OUT") {
        // To look at it: HARNESS_REPORT_OUT=/tmp cargo test --test reports 100k
        std::fs::write(Path::new(&out).join("synthetic-100k.html"), &page).unwrap();
    }
    assert!(page.len() < 5_000_000, "{} bytes", page.len());
    assert!(page.len() > 50_000);
    // Latency is aggregated, not one dot per op.
    assert!(svg(&page, "latency").contains(r#"data-points="0""#));
    const { assert!(OPS > html::RAW_POINTS_MAX) };
    // Every counterexample op is drawn, however far apart.
    let card = article(&page, "linearizable");
    for id in &cx_ops {
        assert!(
            card.contains(&format!(r#"data-op="{id}""#)),
            "op {id} missing"
        );
    }
    // Every fault is on the timeline.
    assert_readable(&page, &r, &events);
}

#[test]
fn junit_has_one_case_per_check_failures_and_errors() {
    for name in ["valid-run", "lost-write", "incomplete"] {
        let r = fixture_report(name);
        let xml = junit::render_junit(&r);
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(parsed.test_suites.len(), 1);
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.name.as_str(), "rapidstore.kill-leader");
        assert_eq!(suite.test_cases.len(), r.checks.len(), "{name}");
        let count = |v| r.checks.values().filter(|c| c.valid == v).count();
        assert_eq!(suite.failures, count(Validity::Invalid), "{name}");
        assert_eq!(suite.errors, count(Validity::Unknown), "{name}");
        for case in &suite.test_cases {
            let c = &r.checks[case.name.as_str()];
            if let quick_junit::TestCaseStatus::NonSuccess {
                kind: quick_junit::NonSuccessKind::Failure,
                message,
                ..
            } = &case.status
            {
                let m = message.as_ref().unwrap().as_str();
                assert!(m.starts_with(&c.summary), "{m}");
                assert!(m.contains("counterexample: ["), "{m}");
                if let Some(op) = c.counterexample.iter().find_map(|x| x.get("op_id")) {
                    assert!(m.contains(&format!("\"op_id\":{op}")), "{m}");
                }
            }
        }
    }
}

#[test]
fn index_lists_runs_newest_first_with_a_trend_per_nemesis() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (i, (name, nemesis)) in [
        ("valid-run", "kill-leader"),
        ("lost-write", "kill-leader"),
        ("valid-run", "partition-leader"),
        ("incomplete", "kill-leader"),
    ]
    .iter()
    .enumerate()
    {
        let mut r = fixture_report(name);
        r.run.id = format!("2026010{}T000000-{nemesis}", i + 1);
        r.run.nemesis = nemesis.to_string();
        r.run.started_at = format!("2026-01-0{}T00:00:00Z", i + 1);
        let dir = tmp.path().join(&r.run.id);
        std::fs::create_dir_all(&dir).unwrap();
        r.write_json(&dir).unwrap();
        html::write_html(&dir, &r).unwrap();
        ids.push(r.run.id);
    }
    let page = std::fs::read_to_string(index::write_index(tmp.path()).unwrap()).unwrap();
    let pos: Vec<usize> = ids
        .iter()
        .map(|id| page.find(&format!(r#"data-run="{id}""#)).unwrap())
        .collect();
    assert!(
        pos[3] < pos[2] && pos[2] < pos[1] && pos[1] < pos[0],
        "not newest first"
    );
    for id in &ids {
        assert!(page.contains(&format!(r#"href="{id}/report.html""#)));
    }
    assert!(page.contains(r#"<figure class="trend" data-nemesis="kill-leader">"#));
    assert!(page.contains(r#"<figure class="trend" data-nemesis="partition-leader">"#));
    assert!(page.contains(r#"<span class="badge invalid">invalid</span>"#));
}

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.env("HARNESS_HOME", root()).stdin(Stdio::null());
    c
}

#[test]
fn harness_report_regenerates_from_a_stored_run_with_no_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, code) in [("valid-run", 0), ("lost-write", 1), ("incomplete", 2)] {
        let (dir, _) = fixture_run_dir(tmp.path(), name);
        let o = harness().arg("report").arg(&dir).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for f in ["report.html", "junit.xml"] {
            assert!(dir.join(f).is_file(), "{name}: no {f}");
        }
    }
    assert!(tmp.path().join("index.html").is_file());
    std::fs::remove_file(tmp.path().join("index.html")).unwrap();
    let o = harness()
        .args(["report", "--index"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(tmp.path().join("index.html").is_file());

    // A run that died before report.json: its history is checked, never valid.
    let dead = tmp.path().join("dead");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/valid-run.jsonl"),
        dead.join("history.jsonl"),
    )
    .unwrap();
    let o = harness().arg("report").arg(&dead).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(Report::read_json(&dead).unwrap().valid, Validity::Unknown);

    // Usage errors are 64.
    for args in [
        vec!["report"],
        vec!["report", "/nonexistent/run"],
        vec!["run", "--tolerance", "5%"],
        vec!["run", "--baseline", "/nonexistent/run"],
        vec!["run", "--baseline", "auto", "--tolerance", "lots"],
    ] {
        let o = harness().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(64), "{args:?}");
    }
}

#[test]
fn baseline_flags_a_failover_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, r_old) = fixture_run_dir(tmp.path(), "valid-run");
    let p99 = r_old
        .failover
        .p99_ms
        .expect("the fixture measures a failover");
    // An earlier run that failed over twice as fast.
    let mut fast = r_old.clone();
    fast.run.id = "20251231T000000-kill-leader".into();
    fast.run.started_at = "2025-12-31T00:00:00Z".into();
    fast.failover.p99_ms = Some(p99 / 2.0);
    let fast_dir = tmp.path().join(&fast.run.id);
    std::fs::create_dir_all(&fast_dir).unwrap();
    fast.write_json(&fast_dir).unwrap();

    let o = harness()
        .arg("report")
        .arg(&old)
        .args(["--baseline", "auto"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r = Report::read_json(&old).unwrap();
    let c = &r.checks[report::baseline::CHECK];
    assert_eq!(c.valid, Validity::Invalid);
    assert!(c.summary.contains("+100%"), "{}", c.summary);
    let page = std::fs::read_to_string(old.join("report.html")).unwrap();
    assert!(page.contains("decided by") && page.contains("failover-baseline"));

    // Within tolerance: the baseline check passes and the run is valid again.
    let o = harness()
        .arg("report")
        .arg(&old)
        .args(["--baseline"])
        .arg(&fast_dir)
        .args(["--tolerance", "150%"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(Report::read_json(&old).unwrap().valid, Validity::Valid);
}

// ---------------------------------------------------------------- schema

/// The checked-in schemas are what the types generate. Regenerate with
/// `HARNESS_UPDATE_SCHEMA=1 cargo test -p harness --test reports schema`.
#[test]
fn schema_files_match_the_types() {
    for (path, text) in [
        (schema::REPORT_SCHEMA_PATH, schema::report_schema()),
        (schema::HISTORY_SCHEMA_PATH, schema::history_event_schema()),
    ] {
        let file = root().join(path);
        if std::env::var_os("HARNESS_UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            stored == text,
            "{path} is stale: regenerate it with HARNESS_UPDATE_SCHEMA=1 cargo test -p harness --test reports schema"
        );
    }
}

/// A validator for the JSON Schema subset schemars emits. Small on purpose
/// (the `jsonschema` crate is heavy); [`schema_keywords_are_all_understood`]
/// fails if the schema starts using a keyword this does not check.
struct Validator<'a> {
    root: &'a Value,
}

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "title",
    "description",
    "default",
    "examples",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "allOf",
    "format",
    "minimum",
    "maximum",
];

impl Validator<'_> {
    fn check(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errs.push(format!("{at}: false schema")),
            Value::Object(s) => s,
            _ => return errs.push(format!("{at}: bad schema")),
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/$defs/").expect("local $ref");
            self.check(&self.root["$defs"][name], v, at, errs);
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "null" => v.is_null(),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "number" => v.is_number(),
                "integer" => v.is_i64() || v.is_u64(),
                _ => false,
            });
            if !ok {
                errs.push(format!("{at}: {v} is not {types:?}"));
                return;
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                errs.push(format!("{at}: {v} != const {c}"));
            }
        }
        if let Some(Value::Array(e)) = s.get("enum") {
            if !e.contains(v) {
                errs.push(format!("{at}: {v} not in {e:?}"));
            }
        }
        if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
            if x < min {
                errs.push(format!("{at}: {x} < minimum {min}"));
            }
        }
        if let (Some(max), Some(x)) = (s.get("maximum").and_then(Value::as_f64), v.as_f64()) {
            if x > max {
                errs.push(format!("{at}: {x} > maximum {max}"));
            }
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.check(sub, v, at, errs);
            }
        }
        for (kw, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            if let Some(Value::Array(alts)) = s.get(kw) {
                let passing = alts
                    .iter()
                    .filter(|alt| {
                        let mut e = Vec::new();
                        self.check(alt, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                if passing == 0 || (exactly_one && passing > 1) {
                    errs.push(format!(
                        "{at}: {passing} of the {kw} alternatives match {v}"
                    ));
                }
            }
        }
        if let Value::Object(o) = v {
            let props = s.get("properties").and_then(Value::as_object);
            for req in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let k = req.as_str().unwrap();
                if !o.contains_key(k) {
                    errs.push(format!("{at}: missing required {k}"));
                }
            }
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, x, &format!("{at}.{k}"), errs),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => errs.push(format!("{at}: unexpected {k}")),
                        Some(extra) => self.check(extra, x, &format!("{at}.{k}"), errs),
                        None => {}
                    },
                }
            }
        }
        if let Value::Array(a) = v {
            let prefix = s.get("prefixItems").and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let sub = prefix.and_then(|p| p.get(i)).or_else(|| {
                    s.get("items")
                        .filter(|_| prefix.is_none_or(|p| i >= p.len()))
                });
                if let Some(sub) = sub {
                    self.check(sub, x, &format!("{at}[{i}]"), errs);
                }
            }
            let n = a.len() as u64;
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n < m)
                || s.get("maxItems")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| n > m)
            {
                errs.push(format!("{at}: {n} items out of bounds"));
            }
        }
    }

    fn validate(root: &Value, v: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        Validator { root }.check(root, v, "$", &mut errs);
        errs
    }
}

fn keywords(v: &Value, out: &mut Vec<String>, in_props: bool) {
    if let Value::Object(o) = v {
        for (k, x) in o {
            if !in_props {
                out.push(k.clone());
            }
            let props = !in_props && (k == "properties" || k == "$defs");
            keywords(x, out, props);
        }
    } else if let Value::Array(a) = v {
        for x in a {
            keywords(x, out, false);
        }
    }
}

fn load_schema(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

#[test]
fn schema_keywords_are_all_understood() {
    for path in [schema::REPORT_SCHEMA_PATH, schema::HISTORY_SCHEMA_PATH] {
        let mut kws = Vec::new();
        keywords(&load_schema(path), &mut kws, false);
        let unknown: Vec<_> = kws
            .iter()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{path} uses keywords the test validator ignores: {unknown:?}"
        );
    }
}

#[test]
fn real_and_fixture_reports_validate_against_the_schema() {
    let schema = load_schema(schema::REPORT_SCHEMA_PATH);
    let mut reports: Vec<(String, Value)> = Vec::new();
    for dir in std::fs::read_dir(root().join("tests/runs")).unwrap() {
        let p = dir.unwrap().path().join("report.json");
        let text = std::fs::read_to_string(&p).unwrap();
        reports.push((
            p.display().to_string(),
            serde_json::from_str(&text).unwrap(),
        ));
    }
    for name in fixture_names() {
        let mut r = fixture_report(&name);
        report::baseline::apply(&mut r, CheckResult::valid("baseline"));
        reports.push((name, serde_json::to_value(&r).unwrap()));
    }
    assert!(reports.len() >= 2 + 8);
    for (name, v) in &reports {
        let errs = Validator::validate(&schema, v);
        assert!(errs.is_empty(), "{name}:\n{}", errs.join("\n"));
    }
    // And a wrong report does not.
    let mut bad = reports[0].1.clone();
    bad["valid"] = json!("maybe");
    bad["failover"]["faults"] = json!(-1);
    assert_eq!(Validator::validate(&schema, &bad).len(), 2);
}

#[test]
fn every_history_line_validates_against_the_event_schema() {
    let schema = load_schema(schema::HISTORY_SCHEMA_PATH);
    let mut files: Vec<PathBuf> = fixture_names()
        .iter()
        .map(|n| root().join(format!("tests/fixtures/{n}.jsonl")))
        .collect();
    files.push(real_run().join("history.jsonl"));
    for f in files {
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            let errs = Validator::validate(&schema, &v);
            assert!(
                errs.is_empty(),
                "{}:{}: {}",
                f.display(),
                i + 1,
                errs.join("; ")
            );
        }
    }
}

// ---------------------------------------------------------------- browser

/// Headless Chromium, if installed (`apt-get install chromium`).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HARNESS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|b| dirs.iter().map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

/// Load `page` in headless Chromium; the DOM after scripts ran, and stderr.
fn dump_dom(bin: &Path, page: &Path, profile: &Path) -> (String, String) {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {} in 90 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn report_and_index_render_in_headless_chromium() {
    let Some(bin) = chromium() else {
        // Never a silent pass: without a browser this fails unless a person
        // opts out explicitly (CI installs chromium in .ci/run).
        let msg = "chromium is not installed: `apt-get install -y chromium` (Debian), \
                   or set HARNESS_CHROMIUM=/path/to/chrome";
        if std::env::var_os("HARNESS_SKIP_BROWSER").is_none() {
            panic!("{msg} (HARNESS_SKIP_BROWSER=1 skips this test)");
        }
        eprintln!("\n\n!!!!!!!! SKIPPED (HARNESS_SKIP_BROWSER): {msg} !!!!!!!!\n");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, r) = fixture_run_dir(tmp.path(), "stale-read");
    html::write_html(&dir, &r).unwrap();
    let (dir2, r2) = fixture_run_dir(tmp.path(), "valid-run");
    html::write_html(&dir2, &r2).unwrap();
    let index = index::write_index(tmp.path()).unwrap();
    let profile = tempfile::tempdir().unwrap();

    let (dom, log) = dump_dom(&bin, &dir.join("report.html"), profile.path());
    let body = &dom[dom.find("<body").expect("a body")..];
    let body = &body[..body.find('>').unwrap()];
    assert!(
        body.contains(r#"data-js="ok""#),
        "the page script did not run: {body}\n{log}"
    );
    assert!(!body.contains("data-js-errors"), "script errors: {body}");
    assert!(!log.contains("Uncaught"), "console errors:\n{log}");
    for id in ["timeline", "failover-plot", "latency", "throughput"] {
        assert!(
            dom.contains(&format!(r#"<svg id="{id}""#)),
            "no {id} in the DOM"
        );
    }
    assert!(dom.contains(r#"data-node="n3""#) && dom.contains(r#"class="cxop"#));

    let (dom, log) = dump_dom(&bin, &index, profile.path());
    assert!(
        dom.contains(r#"<table id="runs">"#),
        "index did not render:\n{log}"
    );
    assert!(dom.contains(r#"class="plot trend-plot""#));
    assert!(!log.contains("Uncaught"), "console errors:\n{log}");
}
