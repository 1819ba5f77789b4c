//! `report.html`: one self-contained page (inline CSS, hand-written SVG, a
//! few lines of JS for highlighting) that a person reads in a minute:
//!
//! 1. the verdict banner and the check(s) that decided it;
//! 2. the run: nemesis, workload, seed, nodes, ZooKeeper, bugs, versions, logs;
//! 3. the role timeline: a lane per node from its own `Role` events with its
//!    election znode beneath, `/rapidstore/leader` as ZooKeeper showed it,
//!    fault windows shaded and labelled with their resolved targets, rejected
//!    fenced writes, windows where two nodes believed they led;
//! 4. failover per fault and its distribution;
//! 5. client latency and throughput over time;
//! 6. every check, and for each failed one its counterexample on a zoomed
//!    timeline with every counterexample operation shown.
//!
//! `report.json` is the source of truth; `history.jsonl` supplies the
//! timeline and `run.json` the versions and schedule. Long runs stay small:
//! latency is aggregated per time bucket past [`RAW_POINTS_MAX`] operations,
//! throughput always is, and counterexamples are never aggregated.

use super::svg::{esc, fmt_ms, n, Linear};
use super::view::{describe, node_order, CxItem, RunView};
use super::{write_atomic, Report};
use crate::checker::Validity;
use crate::history::{read_history, Event, Outcome, Role};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod assets;
mod checks;
mod plots;
mod timeline;

use assets::{CSS, DEFS, JS};
use checks::checks_section;
use plots::{clients_section, failover_section};
use timeline::timeline_section;

/// File name of the HTML report inside a run directory.
pub const REPORT_HTML: &str = "report.html";

/// Past this many operations the latency plot shows per-bucket quantiles
/// instead of one dot per operation.
pub const RAW_POINTS_MAX: usize = 20_000;
/// Time buckets of the aggregated latency plot and of the throughput plot.
const BUCKETS: usize = 300;
/// Rejected writes drawn one by one up to this many; past it, one mark per
/// node and time bucket with a count.
const REJECTED_MAX: usize = 500;
/// Context operations (same key, same window) drawn around a counterexample.
const CONTEXT_OPS_MAX: usize = 400;
/// Rows of fault labels above the timeline.
const FAULT_LABEL_ROWS: usize = 4;
/// The per-fault failover table starts folded past this many faults.
const FAILOVER_ROWS_OPEN: usize = 12;

/// Plot geometry (SVG user units; the SVG scales to the page width).
const W: f64 = 1000.0;
const LEFT: f64 = 118.0;
const RIGHT: f64 = 985.0;

/// What the page is made from.
pub struct HtmlInput<'a> {
    pub report: &'a Report,
    /// The history (empty when it could not be read; see `history_note`).
    pub events: &'a [Event],
    /// Why the history is missing or partial, for people.
    pub history_note: Option<String>,
    /// `run.json`, when there is one.
    pub run_json: Option<&'a Value>,
    /// Log files per node, relative to the run folder (`logs/n1/rapidstore.log`).
    pub logs: BTreeMap<String, Vec<String>>,
}

/// Log files under `run_dir/logs/<node>/`, as relative paths, per node.
pub fn list_logs(run_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(nodes) = std::fs::read_dir(run_dir.join("logs")) else {
        return out;
    };
    for node in nodes.flatten() {
        if !node.path().is_dir() {
            continue;
        }
        let name = node.file_name().to_string_lossy().to_string();
        let mut files: Vec<String> = std::fs::read_dir(node.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|f| f.path().is_file())
            .map(|f| format!("logs/{name}/{}", f.file_name().to_string_lossy()))
            .collect();
        files.sort();
        out.insert(name, files);
    }
    out
}

/// Render `run_dir/report.html` from `report` and the run's stored files.
pub fn write_html(run_dir: &Path, report: &Report) -> std::io::Result<PathBuf> {
    let (events, history_note) = match read_history(&run_dir.join("history.jsonl")) {
        Ok(e) => (e, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let run_json: Option<Value> = std::fs::read_to_string(run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let input = HtmlInput {
        report,
        events: &events,
        history_note,
        run_json: run_json.as_ref(),
        logs: list_logs(run_dir),
    };
    let path = run_dir.join(REPORT_HTML);
    write_atomic(&path, render_html(&input).as_bytes())?;
    Ok(path)
}

fn verdict_class(v: Validity) -> &'static str {
    v.as_str()
}

fn badge(v: Validity) -> String {
    format!(
        r#"<span class="badge {}">{}</span>"#,
        verdict_class(v),
        v.as_str()
    )
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Disconnected => "disconnected",
        Role::Down => "down",
    }
}

/// Element id of a check's card.
fn check_anchor(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("check-{slug}")
}

/// Render the whole page.
pub fn render_html(input: &HtmlInput) -> String {
    let r = input.report;
    let view = RunView::new(input.events, &r.run.nodes);
    // Counterexamples, placed once, used by the timeline marks and the cards.
    let failed: Vec<(&String, Vec<CxItem>)> = r
        .checks
        .iter()
        .filter(|(_, c)| c.valid != Validity::Valid)
        .map(|(name, c)| {
            (
                name,
                c.counterexample
                    .iter()
                    .map(|raw| describe(&view, raw))
                    .collect(),
            )
        })
        .collect();

    let mut h = String::with_capacity(256 * 1024);
    let title = format!(
        "{} · {} · {}",
        r.valid.as_str().to_uppercase(),
        r.run.nemesis,
        r.run.id
    );
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{}</title><style>{CSS}</style></head><body>"#,
        esc(&title)
    );
    banner(&mut h, r);
    h.push_str("<main>");
    run_section(&mut h, input);
    timeline_section(&mut h, r, &view, &failed, input.history_note.as_deref());
    failover_section(&mut h, r);
    clients_section(&mut h, r, &view);
    checks_section(&mut h, r, &view, &failed, &input.logs);
    let _ = write!(
        h,
        r#"</main><footer>harness {} · report.json version {} · generated from <a href="report.json">report.json</a>{}</footer><script>{JS}</script></body></html>"#,
        env!("CARGO_PKG_VERSION"),
        r.version,
        if input.events.is_empty() {
            ""
        } else {
            r#" and <a href="history.jsonl">history.jsonl</a>"#
        }
    );
    h
}

fn banner(h: &mut String, r: &Report) {
    let deciding = r.deciding_checks();
    let why = if deciding.is_empty() {
        format!("all {} checks valid", r.checks.len())
    } else {
        let names: Vec<String> = deciding
            .iter()
            .map(|d| format!(r##"<a href="#{}">{}</a>"##, check_anchor(d), esc(d)))
            .collect();
        format!("decided by {}", names.join(", "))
    };
    let _ = write!(
        h,
        r#"<header id="verdict" class="banner {cls}" data-verdict="{v}"><div class="word">{V}</div><div class="why"><div class="deciding">{why}</div>"#,
        cls = verdict_class(r.valid),
        v = r.valid.as_str(),
        V = r.valid.as_str().to_uppercase(),
    );
    for d in &deciding {
        if let Some(c) = r.checks.get(*d) {
            let _ = write!(
                h,
                r#"<div class="summary"><b>{}</b>: {}</div>"#,
                esc(d),
                esc(&c.summary)
            );
        }
    }
    let f = &r.failover;
    let _ = write!(
        h,
        r#"<div class="figures">{} · {} · {} faults, failover p50 {} p99 {} max {} · {} ok ops, {:.1} ops/s over {:.1} s</div>"#,
        esc(&r.run.nemesis),
        esc(&r.run.workload),
        f.faults,
        fmt_ms(f.p50_ms),
        fmt_ms(f.p99_ms),
        fmt_ms(f.max_ms),
        r.stats.ok_ops,
        r.stats.ok_per_s,
        r.stats.duration_s,
    );
    if !r.teardown_errors.is_empty() {
        let _ = write!(
            h,
            r#"<div class="teardown">⚠ {} heal/teardown problem(s), not part of the verdict: {}</div>"#,
            r.teardown_errors.len(),
            esc(&r.teardown_errors.join("; "))
        );
    }
    h.push_str("</div></header>");
}

fn run_section(h: &mut String, input: &HtmlInput) {
    let r = input.report;
    let run = &r.run;
    let rj = input.run_json;
    let get = |path: &[&str]| -> Option<&Value> {
        let mut v = rj?;
        for p in path {
            v = v.get(p)?;
        }
        Some(v)
    };
    let text = |v: Option<&Value>| -> String {
        match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(v) => v.to_string(),
        }
    };
    h.push_str(r#"<section id="run"><h2>Run</h2><dl class="grid">"#);
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    row("run", esc(&run.id));
    row("started", esc(&run.started_at));
    row("nemesis", esc(&run.nemesis));
    row("workload", esc(&run.workload));
    row("seed", run.seed.to_string());
    row("nodes", esc(&run.nodes.join(" ")));
    row("ZooKeeper", esc(&run.zk.join(" ")));
    row(
        "bug",
        if run.bug.is_empty() {
            "none".into()
        } else {
            format!("<b>{}</b>", esc(&run.bug.join(", ")))
        },
    );
    row(
        "time limit",
        format!(
            "{} s (ran {:.1} s)",
            n(run.time_limit_s),
            r.stats.duration_s
        ),
    );
    if rj.is_some() {
        row(
            "rate / concurrency",
            format!(
                "{} ops/s, {} clients",
                esc(&text(get(&["rate"]))),
                esc(&text(get(&["concurrency"])))
            ),
        );
        row(
            "session timeout",
            format!("{} ms", esc(&text(get(&["options", "session_timeout_ms"])))),
        );
        if let Some(Value::Object(vs)) = get(&["versions"]) {
            let v: Vec<String> = vs
                .iter()
                .map(|(k, v)| format!("{k} {}", text(Some(v))))
                .collect();
            row("versions", esc(&v.join(", ")));
        }
        let ending = text(get(&["ending"]));
        let error = text(get(&["error"]));
        row(
            "ending",
            if error == "-" {
                esc(&ending)
            } else {
                format!("{} — <b>{}</b>", esc(&ending), esc(&error))
            },
        );
    }
    let mut replay = format!(
        "harness run --nemesis {} --workload {} --nodes {} --zk {} --seed {} --time-limit {}",
        run.nemesis,
        run.workload,
        run.nodes.len(),
        run.zk.len(),
        run.seed,
        n(run.time_limit_s)
    );
    for b in &run.bug {
        let _ = write!(replay, " --bug {b}");
    }
    row("replay", format!("<code>{}</code>", esc(&replay)));
    let files = ["report.json", "history.jsonl", "run.json", "junit.xml"]
        .iter()
        .map(|f| format!(r#"<a href="{f}">{f}</a>"#))
        .collect::<Vec<_>>()
        .join(" · ");
    row("files", files);
    if !input.logs.is_empty() {
        let mut nodes: Vec<&String> = input.logs.keys().collect();
        nodes.sort_by(|a, b| node_order(a, b));
        let mut s = String::from(r#"<ul class="logs">"#);
        for node in nodes {
            let links: Vec<String> = input.logs[node]
                .iter()
                .map(|p| {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    format!(r#"<a href="{}">{}</a>"#, esc(p), esc(name))
                })
                .collect();
            let _ = write!(s, "<li><b>{}</b> {}</li>", esc(node), links.join(" "));
        }
        s.push_str("</ul>");
        row("logs", s);
    }
    h.push_str("</dl>");
    if !r.teardown_errors.is_empty() {
        h.push_str(
            r#"<h3>Heal and teardown problems (not part of the verdict)</h3><ul class="problems">"#,
        );
        for e in &r.teardown_errors {
            let _ = write!(h, "<li>{}</li>", esc(e));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
}

/// Time scale of the full-run plots.
fn full_x(view: &RunView) -> Linear {
    Linear::new((0.0, view.end_ms.max(1000.0)), (LEFT, RIGHT))
}

/// Shaded fault windows from `y0` to `y1`, clipped to the x domain.
fn fault_bands(h: &mut String, view: &RunView, x: &Linear, y0: f64, y1: f64) {
    let (d0, d1) = x.domain();
    for (i, w) in view.faults.iter().enumerate() {
        if w.end_ms < d0 || w.start_ms > d1 {
            continue;
        }
        let a = x.clamped(w.start_ms);
        let b = x.clamped(w.end_ms).max(a + 1.0);
        let _ = write!(
            h,
            r#"<rect class="band{}" data-fault-index="{i}" x="{}" y="{}" width="{}" height="{}"><title>{} ({}) {:.0}–{:.0} ms{}{}</title></rect>"#,
            if w.error.is_some() { " failed" } else { "" },
            n(a),
            n(y0),
            n(b - a),
            n(y1 - y0),
            esc(&w.label()),
            esc(&w.fault),
            w.start_ms,
            w.end_ms,
            w.note
                .as_ref()
                .map_or(String::new(), |note| format!(" — {}", esc(note))),
            w.error
                .as_ref()
                .map_or(String::new(), |e| format!(" — did not apply: {}", esc(e)))
        );
    }
}

/// Role segments of one node in `[x domain]` as rects in a lane at `y`.
fn role_lane(h: &mut String, view: &RunView, node: &str, x: &Linear, y: f64, lane_h: f64) {
    let (d0, d1) = x.domain();
    let Some(segs) = view.roles.get(node) else {
        return;
    };
    for s in segs {
        if s.end_ms < d0 || s.start_ms > d1 {
            continue;
        }
        let a = x.clamped(s.start_ms);
        let b = x.clamped(s.end_ms);
        if b - a < 0.05 {
            continue;
        }
        let role = role_name(s.role);
        let tok = s.token.map_or(String::new(), |t| format!(" token {t}"));
        let _ = write!(
            h,
            r#"<rect class="r-{role}" x="{}" y="{}" width="{}" height="{}"><title>{node} {role}{tok}, {:.0}–{:.0} ms</title></rect>"#,
            n(a),
            n(y),
            n(b - a),
            n(lane_h),
            s.start_ms,
            s.end_ms
        );
        if s.role == Role::Leader && b - a > 34.0 {
            let _ = write!(
                h,
                r#"<text class="inlane" x="{}" y="{}">leader{}</text>"#,
                n(a + 3.0),
                n(y + lane_h - 4.5),
                s.token.map_or(String::new(), |t| format!(" ·{t}"))
            );
        }
    }
}

fn zk_leader_lane(h: &mut String, view: &RunView, x: &Linear, y: f64, lane_h: f64) {
    let (d0, d1) = x.domain();
    for s in &view.zk_leader {
        if s.end_ms < d0 || s.start_ms > d1 {
            continue;
        }
        let a = x.clamped(s.start_ms);
        let b = x.clamped(s.end_ms);
        if b - a < 0.05 {
            continue;
        }
        let label = match &s.leader {
            Some(l) => format!("{l}{}", s.token.map_or(String::new(), |t| format!(" ·{t}"))),
            None => "(empty)".into(),
        };
        let _ = write!(
            h,
            r#"<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>/rapidstore/leader = {}, {:.0}–{:.0} ms</title></rect>"#,
            if s.leader.is_some() {
                "zkl"
            } else {
                "zkl none"
            },
            n(a),
            n(y),
            n(b - a),
            n(lane_h),
            esc(&label),
            s.start_ms,
            s.end_ms
        );
        if b - a > 8.0 * label.len() as f64 {
            let _ = write!(
                h,
                r#"<text class="inlane" x="{}" y="{}">{}</text>"#,
                n(a + 3.0),
                n(y + lane_h - 4.5),
                esc(&label)
            );
        }
    }
}

fn lane_label(h: &mut String, y: f64, lane_h: f64, text: &str, sub: Option<&str>) {
    let _ = write!(
        h,
        r#"<text class="lane-label" x="{}" y="{}" text-anchor="end">{}{}</text>"#,
        n(LEFT - 6.0),
        n(y + lane_h / 2.0 + 4.0),
        esc(text),
        sub.map_or(String::new(), |s| format!(
            r#"<tspan class="sub"> {}</tspan>"#,
            esc(s)
        ))
    );
}

fn legend(h: &mut String, items: &[(&str, &str)]) {
    h.push_str(r#"<div class="legend">"#);
    for (cls, label) in items {
        let _ = write!(h, r#"<span><i class="sw {cls}"></i>{}</span>"#, esc(label));
    }
    h.push_str("</div>");
}

fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
    }
}
