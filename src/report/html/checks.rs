//! Every check, and for each failed or unknown one a card: its summary, its
//! counterexample on a zoomed timeline (every counterexample operation
//! drawn, context operations on the same keys faint), a readable table of
//! the items, the raw counterexample and details, and the involved nodes' logs.

use super::super::svg::{esc, n, time_axis, Linear};
use super::super::view::{CxItem, Place, RunView};
use super::super::Report;
use super::*;
use crate::checker::Validity;
use crate::history::Outcome;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn checks_section(
    h: &mut String,
    r: &Report,
    view: &RunView,
    failed: &[(&String, Vec<CxItem>)],
    logs: &BTreeMap<String, Vec<String>>,
) {
    h.push_str(r#"<section id="checks"><h2>Checks</h2><table id="checks-table"><tr><th>check</th><th>verdict</th><th>summary</th></tr>"#);
    for (name, c) in &r.checks {
        let cell = if c.valid == Validity::Valid {
            esc(name)
        } else {
            format!(r##"<a href="#{}">{}</a>"##, check_anchor(name), esc(name))
        };
        let _ = write!(
            h,
            r#"<tr data-check="{}"><td>{cell}</td><td>{}</td><td>{}</td></tr>"#,
            esc(name),
            badge(c.valid),
            esc(&c.summary)
        );
    }
    h.push_str("</table>");
    for (name, items) in failed {
        let c = &r.checks[name.as_str()];
        let _ = write!(
            h,
            r#"<article class="check {}" id="{}"><h3>{} {}</h3><p>{}</p>"#,
            verdict_class(c.valid),
            check_anchor(name),
            esc(name),
            badge(c.valid),
            esc(&c.summary)
        );
        if items.is_empty() {
            h.push_str(r#"<p class="note">No counterexample recorded for this check.</p>"#);
        } else {
            zoom(h, name, view, items);
            let _ = write!(
                h,
                r#"<table class="cx"><tr><th>#</th><th>when</th><th>what</th><th>why</th></tr>"#
            );
            for (i, it) in items.iter().enumerate() {
                let id = format!("cx-{}-{i}", check_anchor(name));
                let when = it.span.map_or("-".into(), |(a, b)| {
                    if (b - a).abs() < 0.5 {
                        format!("{a:.0} ms")
                    } else {
                        format!("{a:.0}–{b:.0} ms")
                    }
                });
                let _ = write!(
                    h,
                    r#"<tr id="{id}" data-cx="{id}" class="cx-row"><td>{}</td><td>{when}</td><td>{}</td><td>{}</td></tr>"#,
                    i + 1,
                    esc(&it.text),
                    esc(it.why.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</table>");
            let raw = serde_json::to_string_pretty(&c.counterexample).unwrap_or_default();
            let _ = write!(
                h,
                r#"<details><summary>counterexample as recorded ({} items)</summary><pre>{}</pre></details>"#,
                c.counterexample.len(),
                esc(&raw)
            );
        }
        if !c.details.is_null() {
            let d = serde_json::to_string_pretty(&c.details).unwrap_or_default();
            let d = if d.len() > 20_000 {
                format!(
                    "{}\n… (cut; see report.json)",
                    &d[..floor_boundary(&d, 20_000)]
                )
            } else {
                d
            };
            let _ = write!(
                h,
                r#"<details><summary>details</summary><pre>{}</pre></details>"#,
                esc(&d)
            );
        }
        // Logs of the nodes the counterexample involves (all nodes if none named).
        let mut involved: BTreeSet<&str> = items.iter().filter_map(|i| i.node.as_deref()).collect();
        if involved.is_empty() {
            involved = logs.keys().map(String::as_str).collect();
        }
        let links: Vec<String> = involved
            .iter()
            .filter_map(|node| logs.get(*node))
            .flatten()
            .map(|p| format!(r#"<a href="{}">{}</a>"#, esc(p), esc(p)))
            .collect();
        if !links.is_empty() {
            let _ = write!(h, r#"<p class="logs">Logs: {}</p>"#, links.join(" · "));
        }
        h.push_str("</article>");
    }
    h.push_str("</section>");
}

/// The largest char boundary at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A zoomed timeline around one check's counterexample: node lanes, the
/// ZooKeeper lane, fault windows, every counterexample operation on its
/// process's row (highlighted), and the other operations on the same keys in
/// that window (faint).
fn zoom(h: &mut String, check: &str, view: &RunView, items: &[CxItem]) {
    let spans: Vec<(f64, f64)> = items.iter().filter_map(|i| i.span).collect();
    if spans.is_empty() {
        h.push_str(r#"<p class="note">The counterexample items carry no times, so there is no zoomed timeline.</p>"#);
        return;
    }
    let a = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let b = spans.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((b - a) * 0.1).max(150.0);
    let (wa, wb) = ((a - pad).max(0.0), b + pad);
    let x = Linear::new((wa, wb), (LEFT, RIGHT));
    let anchor = check_anchor(check);
    let cx_id = |i: usize| format!("cx-{anchor}-{i}");

    // Operations: those of the counterexample, then context on the same keys.
    let mut cx_ops: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        if let Place::Op { op_id } = it.place {
            cx_ops.entry(op_id).or_default().push(i);
        }
    }
    let keys: BTreeSet<&str> = items.iter().filter_map(|i| i.key.as_deref()).collect();
    let mut context: Vec<_> = view
        .ops
        .iter()
        .filter(|op| {
            let end = op.end_ms().unwrap_or(view.end_ms);
            !cx_ops.contains_key(&op.invoke.op_id)
                && keys.contains(op.invoke.key.as_str())
                && end >= wa
                && op.invoke.time_ms <= wb
        })
        .collect();
    let crowded = context.len() > CONTEXT_OPS_MAX;
    if crowded {
        // Keep the operations nearest in time to the counterexample.
        let distance = |t: f64| {
            spans
                .iter()
                .map(|(a, b)| {
                    if t < *a {
                        a - t
                    } else if t > *b {
                        t - b
                    } else {
                        0.0
                    }
                })
                .fold(f64::INFINITY, f64::min)
        };
        context.sort_by(|x, y| distance(x.invoke.time_ms).total_cmp(&distance(y.invoke.time_ms)));
        context.truncate(CONTEXT_OPS_MAX);
    }
    let mut processes: BTreeSet<u64> = context.iter().map(|op| op.invoke.process).collect();
    for id in cx_ops.keys() {
        if let Some(op) = view.op(*id) {
            processes.insert(op.invoke.process);
        }
    }
    let lane_h = 13.0;
    let mut y = 6.0;
    let mut body = String::new();
    let mut lane_y: BTreeMap<&str, f64> = BTreeMap::new();
    for node in &view.nodes {
        lane_y.insert(node, y);
        let _ = write!(body, r#"<g class="lane" data-node="{}">"#, esc(node));
        lane_label(&mut body, y, lane_h, node, None);
        let _ = write!(
            body,
            r#"<rect class="lane-bg" x="{}" y="{}" width="{}" height="{}"/>"#,
            n(LEFT),
            n(y),
            n(RIGHT - LEFT),
            n(lane_h)
        );
        role_lane(&mut body, view, node, &x, y, lane_h);
        body.push_str("</g>");
        y += lane_h + 4.0;
    }
    let zk_y = y;
    lane_label(&mut body, y, lane_h, "/rapidstore/leader", None);
    let _ = write!(
        body,
        r#"<rect class="lane-bg" x="{}" y="{}" width="{}" height="{}"/>"#,
        n(LEFT),
        n(y),
        n(RIGHT - LEFT),
        n(lane_h)
    );
    zk_leader_lane(&mut body, view, &x, y, lane_h);
    y += lane_h + 8.0;
    let mut proc_y: BTreeMap<u64, f64> = BTreeMap::new();
    for p in &processes {
        proc_y.insert(*p, y);
        lane_label(&mut body, y, lane_h, &format!("process {p}"), None);
        y += lane_h + 3.0;
    }
    let bottom = y + 2.0;
    // Context operations (faint), then counterexample operations (bold).
    for op in &context {
        let py = proc_y[&op.invoke.process];
        let end = op.end_ms().unwrap_or(view.end_ms);
        let pa = x.clamped(op.invoke.time_ms);
        let pb = x.clamped(end).max(pa + 1.0);
        let _ = write!(
            body,
            r#"<rect class="ctxop {}" x="{}" y="{}" width="{}" height="{}"><title>op {} {:?} {} {:.0}–{:.0} ms ({})</title></rect>"#,
            outcome_class(op.outcome()),
            n(pa),
            n(py + 2.0),
            n(pb - pa),
            n(lane_h - 4.0),
            op.invoke.op_id,
            op.invoke.f,
            esc(&op.invoke.key),
            op.invoke.time_ms,
            end,
            outcome_class(op.outcome())
        );
    }
    for (op_id, idxs) in &cx_ops {
        let ids: Vec<String> = idxs.iter().map(|&i| cx_id(i)).collect();
        let text = &items[idxs[0]].text;
        let Some(op) = view.op(*op_id) else {
            continue;
        };
        let py = proc_y[&op.invoke.process];
        let end = op.end_ms().unwrap_or(view.end_ms);
        let pa = x.clamped(op.invoke.time_ms);
        let pb = x.clamped(end).max(pa + 2.0);
        let short = match op.invoke.f {
            crate::history::OpKind::Read => format!(
                "op {op_id} read {}{}",
                op.invoke.key,
                op.complete.filter(|c| c.outcome == Outcome::Ok).map_or(
                    String::new(),
                    |c| format!("→{}", c.value.as_deref().unwrap_or("∅"))
                )
            ),
            _ => format!(
                "op {op_id} {:?} {}={}",
                op.invoke.f,
                op.invoke.key,
                op.invoke.value.as_deref().unwrap_or("∅")
            )
            .to_lowercase(),
        };
        // Label right of the bar, or left of it when it would run off the plot.
        let label_w = 5.6 * short.chars().count() as f64;
        let (lx, anchor) = if pb + 3.0 + label_w > RIGHT {
            (pa - 3.0, "end")
        } else {
            (pb + 3.0, "start")
        };
        let _ = write!(
            body,
            r#"<g class="cxop {}" data-cx="{}" data-op="{op_id}"><rect x="{}" y="{}" width="{}" height="{}"/><text x="{}" y="{}" text-anchor="{anchor}">{}</text><title>{}</title></g>"#,
            outcome_class(op.outcome()),
            ids.join(" "),
            n(pa),
            n(py),
            n(pb - pa),
            n(lane_h),
            n(lx),
            n(py + lane_h - 3.0),
            esc(&short),
            esc(text)
        );
    }
    // Events of the counterexample.
    for (i, it) in items.iter().enumerate() {
        let id = cx_id(i);
        match &it.place {
            Place::Node { node, time_ms } => {
                if let Some(ly) = lane_y.get(node.as_str()) {
                    let _ = write!(
                        body,
                        r#"<circle class="cxev" data-cx="{id}" cx="{}" cy="{}" r="6"><title>{}</title></circle>"#,
                        n(x.clamped(*time_ms)),
                        n(ly + lane_h / 2.0),
                        esc(&it.text)
                    );
                }
            }
            Place::Zk { time_ms } => {
                let _ = write!(
                    body,
                    r#"<circle class="cxev" data-cx="{id}" cx="{}" cy="{}" r="6"><title>{}</title></circle>"#,
                    n(x.clamped(*time_ms)),
                    n(zk_y + lane_h / 2.0),
                    esc(&it.text)
                );
            }
            Place::Instant { time_ms } => {
                let px = n(x.clamped(*time_ms));
                let _ = write!(
                    body,
                    r#"<line class="cxline" data-cx="{id}" x1="{px}" x2="{px}" y1="2" y2="{}"><title>{}</title></line>"#,
                    n(bottom),
                    esc(&it.text)
                );
            }
            Place::Span { start_ms, end_ms } => {
                let pa = x.clamped(*start_ms);
                let pb = x.clamped(*end_ms).max(pa + 1.0);
                let _ = write!(
                    body,
                    r#"<rect class="cxspan" data-cx="{id}" x="{}" y="2" width="{}" height="{}"><title>{}</title></rect>"#,
                    n(pa),
                    n(pb - pa),
                    n(bottom - 2.0),
                    esc(&it.text)
                );
            }
            Place::Op { .. } | Place::Nowhere => {}
        }
    }
    let height = bottom + 22.0;
    let _ = write!(
        h,
        r#"<svg class="plot zoom" id="zoom-{anchor}" viewBox="0 0 {W} {}" role="img" aria-label="{} counterexample, {:.0}–{:.0} ms">{DEFS}"#,
        n(height),
        esc(check),
        wa,
        wb
    );
    fault_bands(h, view, &x, 2.0, bottom);
    time_axis(h, &x, bottom + 2.0, 2.0);
    h.push_str(&body);
    h.push_str("</svg>");
    let _ = write!(
        h,
        r#"<p class="note">Zoomed to {:.0}–{:.0} ms. Bold: the {} counterexample operation(s); faint: {} other operation(s) on the same key(s) in this window{}.</p>"#,
        wa,
        wb,
        cx_ops.len(),
        context.len(),
        if crowded {
            " (the nearest ones; capped)"
        } else {
            ""
        }
    );
}
