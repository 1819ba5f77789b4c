//! `reports/index.html`: every run in a reports folder, newest first
//! (verdict, nemesis, workload, bug, failover p50/p99, duration, link), and
//! a failover trend per nemesis across runs so a nightly regression shows.
//! Runs with no `report.json` yet (running, or the harness died) are listed
//! from their `run.json`.

use super::svg::{esc, fmt_ms, ms_label, n, ticks, Linear};
use super::{write_atomic, Report};
use crate::checker::Validity;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File name of the run index inside a reports folder.
pub const INDEX_HTML: &str = "index.html";

/// One run folder.
#[derive(Debug, Clone)]
pub struct RunEntry {
    /// Folder name (the run id).
    pub id: String,
    pub started_at: String,
    pub nemesis: String,
    /// The checked report, when there is one.
    pub report: Option<Report>,
    /// Why there is no report (or it did not parse).
    pub note: Option<String>,
    pub has_html: bool,
}

/// The runs in `dir`, newest first. Symlinks (`latest`), hidden entries and
/// folders that hold neither `report.json` nor `run.json` are skipped.
pub fn scan(dir: &Path) -> Vec<RunEntry> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let has_report = path.join(super::json::REPORT_JSON).is_file();
        let run_json: Option<Value> = std::fs::read_to_string(path.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if !has_report && run_json.is_none() {
            continue;
        }
        let from_run = |k: &[&str]| -> String {
            let mut v = run_json.as_ref();
            for p in k {
                v = v.and_then(|v| v.get(p));
            }
            v.and_then(Value::as_str).unwrap_or_default().to_string()
        };
        let (report, note) = if has_report {
            match Report::read_json(&path) {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            let err = from_run(&["error"]);
            (
                None,
                Some(if err.is_empty() {
                    "no report.json (still running, or the harness died)".into()
                } else {
                    err
                }),
            )
        };
        let (started_at, nemesis) = match &report {
            Some(r) => (r.run.started_at.clone(), r.run.nemesis.clone()),
            None => (from_run(&["started_at"]), from_run(&["options", "nemesis"])),
        };
        out.push(RunEntry {
            id: name,
            started_at,
            nemesis,
            report,
            note,
            has_html: path.join(super::html::REPORT_HTML).is_file(),
        });
    }
    out.sort_by(|a, b| (&b.started_at, &b.id).cmp(&(&a.started_at, &a.id)));
    out
}

/// Rebuild `dir/index.html`.
pub fn write_index(dir: &Path) -> std::io::Result<PathBuf> {
    let runs = scan(dir);
    let title = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string();
    let path = dir.join(INDEX_HTML);
    write_atomic(&path, render_index(&title, &runs).as_bytes())?;
    Ok(path)
}

fn verdict(r: &RunEntry) -> (&'static str, &'static str) {
    match r.report.as_ref().map(|r| r.valid) {
        Some(Validity::Valid) => ("valid", "valid"),
        Some(Validity::Invalid) => ("invalid", "invalid"),
        Some(Validity::Unknown) => ("unknown", "unknown"),
        None => ("none", "no report"),
    }
}

fn link(r: &RunEntry) -> String {
    let file = if r.has_html {
        "report.html"
    } else if r.report.is_some() {
        "report.json"
    } else {
        ""
    };
    format!("{}/{file}", esc(&r.id))
}

/// Render the index page for `runs` (newest first).
pub fn render_index(title: &str, runs: &[RunEntry]) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>harness runs · {}</title><style>{CSS}</style></head><body><main><h1>Runs in <code>{}</code></h1>"#,
        esc(title),
        esc(title)
    );
    let count = |v: Validity| {
        runs.iter()
            .filter(|r| r.report.as_ref().is_some_and(|x| x.valid == v))
            .count()
    };
    let _ = write!(
        h,
        r#"<p class="totals">{} runs: <span class="badge valid">{} valid</span> <span class="badge invalid">{} invalid</span> <span class="badge unknown">{} unknown</span> <span class="badge none">{} without report</span></p>"#,
        runs.len(),
        count(Validity::Valid),
        count(Validity::Invalid),
        count(Validity::Unknown),
        runs.iter().filter(|r| r.report.is_none()).count()
    );

    // Failover trend per nemesis, oldest to newest.
    let mut by_nemesis: BTreeMap<&str, Vec<&RunEntry>> = BTreeMap::new();
    for r in runs.iter().rev() {
        if r.report
            .as_ref()
            .is_some_and(|x| x.failover.p99_ms.is_some())
        {
            by_nemesis.entry(r.nemesis.as_str()).or_default().push(r);
        }
    }
    h.push_str(r#"<h2>Failover trend per nemesis</h2>"#);
    if by_nemesis.is_empty() {
        h.push_str(r#"<p class="note">No run with a measured failover yet.</p>"#);
    }
    h.push_str(r#"<div class="trends">"#);
    for (nemesis, rs) in &by_nemesis {
        trend(&mut h, nemesis, rs);
    }
    h.push_str("</div>");

    h.push_str(r#"<h2>Runs, newest first</h2><div class="scroll"><table id="runs"><tr><th>started (UTC)</th><th>run</th><th>verdict</th><th>nemesis</th><th>workload</th><th>bug</th><th>faults</th><th>failover p50</th><th>p99</th><th>duration</th><th>ok ops</th><th>decided by</th></tr>"#);
    for r in runs {
        let (cls, word) = verdict(r);
        let rep = r.report.as_ref();
        let cell = |f: &dyn Fn(&Report) -> String| rep.map_or("-".into(), f);
        let decided = match rep {
            Some(x) => esc(&x.deciding_checks().join(", ")),
            None => format!(
                r#"<span class="note">{}</span>"#,
                esc(r.note.as_deref().unwrap_or(""))
            ),
        };
        let href = link(r);
        let _ = write!(
            h,
            r#"<tr data-run="{id}"><td>{}</td><td><a href="{href}">{id}</a></td><td><span class="badge {cls}">{word}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{decided}</td></tr>"#,
            esc(&r.started_at.replace('T', " ").replace('Z', "")),
            esc(&r.nemesis),
            cell(&|x| esc(&x.run.workload)),
            cell(&|x| esc(&x.run.bug.join(", "))),
            cell(&|x| x.failover.faults.to_string()),
            cell(&|x| fmt_ms(x.failover.p50_ms)),
            cell(&|x| fmt_ms(x.failover.p99_ms)),
            cell(&|x| format!("{:.1} s", x.stats.duration_s)),
            cell(&|x| x.stats.ok_ops.to_string()),
            id = esc(&r.id),
        );
    }
    h.push_str("</table></div></main></body></html>");
    h
}

/// One nemesis's failover p50/p99 across runs, oldest to newest; each dot
/// links to its run.
fn trend(h: &mut String, nemesis: &str, runs: &[&RunEntry]) {
    let (w, top, plot_h, left, right) = (560.0, 12.0, 130.0, 52.0, 545.0);
    let pts: Vec<(&RunEntry, &Report)> = runs
        .iter()
        .filter_map(|r| Some((*r, r.report.as_ref()?)))
        .collect();
    let max = pts
        .iter()
        .filter_map(|(_, r)| r.failover.p99_ms.or(r.failover.max_ms))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let x = Linear::new(
        (0.0, (pts.len() as f64 - 1.0).max(1.0)),
        (left + 10.0, right - 10.0),
    );
    let y = Linear::new((0.0, max), (top + plot_h, top));
    let _ = write!(
        h,
        r#"<figure class="trend" data-nemesis="{}"><figcaption><b>{}</b> · {} run(s) · latest p99 {}</figcaption><svg class="plot trend-plot" viewBox="0 0 {w} {}" role="img" aria-label="failover trend {}">"#,
        esc(nemesis),
        esc(nemesis),
        pts.len(),
        fmt_ms(pts.last().and_then(|(_, r)| r.failover.p99_ms)),
        n(top + plot_h + 20.0),
        esc(nemesis)
    );
    for t in ticks(0.0, max, 4) {
        let py = n(y.at(t));
        let _ = write!(
            h,
            r#"<line class="grid" x1="{left}" x2="{right}" y1="{py}" y2="{py}"/><text class="ax" x="{}" y="{}" text-anchor="end">{}</text>"#,
            n(left - 4.0),
            n(y.at(t) + 3.5),
            ms_label(t)
        );
    }
    for (series, cls) in [(0, "p50"), (1, "p99")] {
        let mut d = String::new();
        for (i, (_, r)) in pts.iter().enumerate() {
            let v = if series == 0 {
                r.failover.p50_ms
            } else {
                r.failover.p99_ms
            };
            if let Some(v) = v {
                let _ = write!(
                    d,
                    "{}{} {}",
                    if d.is_empty() { "M" } else { "L" },
                    n(x.at(i as f64)),
                    n(y.at(v))
                );
            }
        }
        let _ = write!(h, r#"<path class="tl {cls}" d="{d}"/>"#);
    }
    for (i, (e, r)) in pts.iter().enumerate() {
        let Some(p99) = r.failover.p99_ms else {
            continue;
        };
        let (cls, word) = verdict(e);
        let _ = write!(
            h,
            r#"<a href="{}"><circle class="dot {cls}" cx="{}" cy="{}" r="4"><title>{} ({word}): p50 {}, p99 {}, {} fault(s)</title></circle></a>"#,
            link(e),
            n(x.at(i as f64)),
            n(y.at(p99)),
            esc(&e.id),
            fmt_ms(r.failover.p50_ms),
            fmt_ms(Some(p99)),
            r.failover.faults
        );
    }
    let _ = write!(
        h,
        r#"<text class="ax" x="{left}" y="{}">oldest</text><text class="ax" x="{right}" y="{}" text-anchor="end">newest</text></svg><div class="key"><i class="k p99"></i>p99 <i class="k p50"></i>p50 · dots: p99, coloured by verdict</div></figure>"#,
        n(top + plot_h + 14.0),
        n(top + plot_h + 14.0),
    );
}

const CSS: &str = r#"
:root{--valid:#1a7f37;--invalid:#c62828;--unknown:#b26a00}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}
main{max-width:1300px;margin:0 auto;padding:8px 16px 24px}
h1{font-size:20px}h2{font-size:17px;margin-top:22px}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;white-space:nowrap}th{background:#f0f2f4}
td:last-child{white-space:normal}.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 7px;border-radius:10px;color:#fff;font-size:12px;font-weight:700}
.badge.valid{background:var(--valid)}.badge.invalid{background:var(--invalid)}.badge.unknown{background:var(--unknown)}.badge.none{background:#8c959f}
.note{color:#57606a;font-size:12px}
.trends{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px}
figure.trend{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px}
svg.plot{width:100%;height:auto;display:block}
.grid{stroke:#eaeef2}.ax{fill:#57606a;font-size:10px}
.tl{fill:none;stroke-width:1.6}.tl.p99{stroke:#c62828}.tl.p50{stroke:#1f77b4;stroke-dasharray:4 3}
.dot{stroke:#fff;stroke-width:1.2}.dot.valid{fill:var(--valid)}.dot.invalid{fill:var(--invalid)}.dot.unknown{fill:var(--unknown)}
.key{font-size:12px;color:#57606a}.k{display:inline-block;width:16px;height:2px;vertical-align:3px;margin:0 4px 0 8px}.k.p99{background:#c62828}.k.p50{background:#1f77b4}
"#;

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn lists_runs_newest_first_and_skips_latest_link() {
        let d = tempfile::tempdir().unwrap();
        for (id, at, p99) in [
            ("old", "2026-01-01T00:00:00Z", 4000.0),
            ("new", "2026-01-02T00:00:00Z", 6000.0),
        ] {
            let mut r = sample();
            r.run.id = id.into();
            r.run.started_at = at.into();
            r.failover.p99_ms = Some(p99);
            let dir = d.path().join(id);
            std::fs::create_dir_all(&dir).unwrap();
            r.write_json(&dir).unwrap();
        }
        let crashed = d.path().join("crashed");
        std::fs::create_dir_all(&crashed).unwrap();
        std::fs::write(
            crashed.join("run.json"),
            r#"{"id":"crashed","started_at":"2026-01-03T00:00:00Z","options":{"nemesis":"kill-leader"}}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink("new", d.path().join("latest")).unwrap();
        let runs = scan(d.path());
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["crashed", "new", "old"]);
        let html = render_index("reports", &runs);
        assert!(html.contains(r#"data-nemesis="partition-leader""#));
        assert!(html.contains("no report"));
        let new_at = html.find(r#"data-run="new""#).unwrap();
        let old_at = html.find(r#"data-run="old""#).unwrap();
        assert!(new_at < old_at);
    }
}
