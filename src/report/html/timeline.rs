//! The role timeline: fault labels, failover per fault, two-leader windows,
//! counterexample marks, a lane per node (its roles, its election znode,
//! rejected fenced writes), `/rapidstore/leader`, phase changes.

use super::super::svg::{esc, fmt_ms, n, time_axis};
use super::super::view::{CxItem, RunView};
use super::super::Report;
use super::*;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn timeline_section(
    h: &mut String,
    r: &Report,
    view: &RunView,
    failed: &[(&String, Vec<CxItem>)],
    history_note: Option<&str>,
) {
    h.push_str(r#"<section id="timeline-section"><h2>Roles, ZooKeeper and faults</h2>"#);
    if let Some(note) = history_note {
        let _ = write!(
            h,
            r#"<p class="note">History unavailable, so no timeline: {}</p></section>"#,
            esc(note)
        );
        return;
    }
    legend(
        h,
        &[
            ("r-leader", "leader"),
            ("r-follower", "follower"),
            ("r-candidate", "candidate"),
            ("r-disconnected", "disconnected"),
            ("r-down", "down (killed/paused)"),
            ("znode", "election znode (ZooKeeper)"),
            ("zkl", "/rapidstore/leader"),
            ("band", "fault window"),
            ("ovl", "two leaders"),
            ("rej", "fenced write rejected"),
        ],
    );
    let x = full_x(view);
    let mut body = String::new();
    let mut y = 4.0;

    // Fault labels, stacked so they do not overlap.
    let mut levels: Vec<f64> = Vec::new();
    let mut labels = String::new();
    for w in &view.faults {
        let a = x.clamped(w.start_ms);
        let label = format!(
            "{}{}",
            w.label(),
            if w.error.is_some() { " (failed)" } else { "" }
        );
        let width = 6.2 * label.chars().count() as f64 + 6.0;
        let level = levels.iter().position(|&end| end < a).or_else(|| {
            (levels.len() < FAULT_LABEL_ROWS).then(|| {
                levels.push(0.0);
                levels.len() - 1
            })
        });
        // Past FAULT_LABEL_ROWS crowded labels, the band's tooltip names it.
        let text = match level {
            Some(level) => {
                levels[level] = a + width;
                format!(
                    r#"<text x="{}" y="{}">{}</text>"#,
                    n(a + 2.0),
                    n(y + 11.0 + 13.0 * level as f64),
                    esc(&label)
                )
            }
            None => String::new(),
        };
        let _ = write!(
            labels,
            r#"<g class="fault" data-fault="{}" data-action="{}" data-targets="{}">{text}<title>{} {} {}: {:.0}–{:.0} ms, ended by {}</title></g>"#,
            esc(&w.fault),
            esc(&w.action),
            esc(&w.targets.join(" ")),
            esc(&w.fault),
            esc(&w.action),
            esc(&w.targets.join(" ")),
            w.start_ms,
            w.end_ms,
            esc(w.healed_by.as_deref().unwrap_or("end of history")),
        );
    }
    let fault_rows = levels.len().max(1) as f64;
    lane_label(&mut body, y, 13.0 * fault_rows, "faults", None);
    body.push_str(&labels);
    y += 13.0 * fault_rows + 6.0;

    // Failover per fault: fault → detection → election → recovery.
    if !r.failover.per_fault.is_empty() {
        lane_label(&mut body, y, 12.0, "failover", None);
        for (i, f) in r.failover.per_fault.iter().enumerate() {
            let a = x.clamped(f.time_ms);
            let end = f.total_ms.map_or(view.end_ms, |t| f.time_ms + t);
            let b = x.clamped(end).max(a + 1.0);
            let _ = write!(
                body,
                r#"<g class="fo"><rect class="{}" x="{}" y="{}" width="{}" height="6"/>"#,
                if f.total_ms.is_some() {
                    "fo-bar"
                } else {
                    "fo-bar open"
                },
                n(a),
                n(y + 3.0),
                n(b - a)
            );
            for (ms, cls) in [(f.detection_ms, "fo-d"), (f.election_ms, "fo-e")] {
                if let Some(ms) = ms {
                    let px = x.clamped(f.time_ms + ms);
                    let _ = write!(
                        body,
                        r#"<rect class="{cls}" x="{}" y="{}" width="2" height="12"/>"#,
                        n(px - 1.0),
                        n(y)
                    );
                }
            }
            let _ = write!(
                body,
                r#"<title>fault {}: {} {} at {:.0} ms; old leader {}{}; new leader {}; detection {}, election {}, recovery {}</title></g>"#,
                i + 1,
                esc(&f.fault),
                esc(&f.action),
                f.time_ms,
                esc(&f.old_leader),
                f.old_token
                    .map_or(String::new(), |t| format!(" (token {t})")),
                esc(f.new_leader.as_deref().unwrap_or("none")),
                fmt_ms(f.detection_ms),
                fmt_ms(f.election_ms),
                fmt_ms(f.recovery_ms)
            );
        }
        y += 16.0;
    }

    // Two-leader windows.
    if !r.failover.overlaps.is_empty() {
        lane_label(&mut body, y, 10.0, "two leaders", None);
        for o in &r.failover.overlaps {
            let a = x.clamped(o.start_ms);
            let b = x.clamped(o.end_ms).max(a + 2.0);
            let _ = write!(
                body,
                r#"<rect class="ovl-bar" x="{}" y="{}" width="{}" height="10"><title>{} all believed they led, {:.0}–{:.0} ms ({:.0} ms)</title></rect>"#,
                n(a),
                n(y),
                n(b - a),
                esc(&o.nodes.join(" and ")),
                o.start_ms,
                o.end_ms,
                o.duration_ms
            );
        }
        y += 14.0;
    }

    // Where each failed check's counterexample lies.
    if !failed.is_empty() {
        lane_label(&mut body, y, 10.0, "counterexamples", None);
        for (name, items) in failed {
            let _ = write!(body, r##"<a href="#{}">"##, check_anchor(name));
            for it in items {
                if let Some((a, b)) = it.span {
                    let pa = x.clamped(a);
                    let pb = x.clamped(b).max(pa + 2.0);
                    let _ = write!(
                        body,
                        r#"<rect class="cx-mark" x="{}" y="{}" width="{}" height="10"><title>{}: {}</title></rect>"#,
                        n(pa),
                        n(y),
                        n(pb - pa),
                        esc(name),
                        esc(&it.text)
                    );
                }
            }
            body.push_str("</a>");
        }
        y += 14.0;
    }

    let lanes_top = y;
    let lane_h = 16.0;
    let zk: BTreeSet<&str> = r.run.zk.iter().map(String::as_str).collect();
    let mut lane_y: BTreeMap<&str, f64> = BTreeMap::new();
    let mut lanes = String::new();
    for node in &view.nodes {
        lane_y.insert(node, y);
        let _ = write!(lanes, r#"<g class="lane" data-node="{}">"#, esc(node));
        lane_label(
            &mut lanes,
            y,
            lane_h,
            node,
            zk.contains(node.as_str()).then_some("zk"),
        );
        let _ = write!(
            lanes,
            r#"<rect class="lane-bg" x="{}" y="{}" width="{}" height="{}"/>"#,
            n(LEFT),
            n(y),
            n(RIGHT - LEFT),
            n(lane_h)
        );
        role_lane(&mut lanes, view, node, &x, y, lane_h);
        if let Some(zs) = view.znodes.get(node) {
            for z in zs {
                let a = x.clamped(z.start_ms);
                let b = x.clamped(z.end_ms).max(a + 0.5);
                let _ = write!(
                    lanes,
                    r#"<rect class="znode" x="{}" y="{}" width="{}" height="4"><title>{node}: election znode node_{:010} {:.0}–{:.0} ms</title></rect>"#,
                    n(a),
                    n(y + lane_h + 1.0),
                    n(b - a),
                    z.seq,
                    z.start_ms,
                    z.end_ms
                );
            }
        }
        lanes.push_str("</g>");
        y += lane_h + 10.0;
    }
    // Overlaps hatched over the lanes of the nodes that believed they led.
    for o in &r.failover.overlaps {
        for node in &o.nodes {
            if let Some(&ly) = lane_y.get(node.as_str()) {
                let a = x.clamped(o.start_ms);
                let b = x.clamped(o.end_ms).max(a + 2.0);
                let _ = write!(
                    lanes,
                    r#"<rect class="ovl" x="{}" y="{}" width="{}" height="{}"><title>two leaders: {} ({:.0}–{:.0} ms)</title></rect>"#,
                    n(a),
                    n(ly - 2.0),
                    n(b - a),
                    n(lane_h + 4.0),
                    esc(&o.nodes.join(", ")),
                    o.start_ms,
                    o.end_ms
                );
            }
        }
    }
    // Rejected fenced writes.
    let placed: Vec<_> = view
        .rejected
        .iter()
        .filter_map(|rj| Some((rj, rj.time_ms?, *lane_y.get(rj.node.as_str())?)))
        .collect();
    if placed.len() <= REJECTED_MAX {
        for (rj, t, ly) in &placed {
            let px = x.clamped(*t);
            let cy = ly + lane_h / 2.0;
            let _ = write!(
                lanes,
                r#"<path class="rej" d="M{} {}l7 7m0-7l-7 7"><title>{} rejected {}={} (token {} &lt; highest seen {}, index {}), at or after {:.0} ms</title></path>"#,
                n(px - 3.5),
                n(cy - 3.5),
                esc(&rj.node),
                esc(&rj.key),
                esc(&rj.value),
                rj.token,
                rj.highest_seen,
                rj.index,
                t
            );
        }
    } else {
        let bucket = (view.end_ms / BUCKETS as f64).max(1.0);
        let mut agg: BTreeMap<(&str, i64), (usize, f64)> = BTreeMap::new();
        for (rj, t, ly) in &placed {
            let e = agg
                .entry((rj.node.as_str(), (t / bucket) as i64))
                .or_insert((0, *ly));
            e.0 += 1;
        }
        for ((node, b), (count, ly)) in agg {
            let px = x.clamped((b as f64 + 0.5) * bucket);
            let cy = ly + lane_h / 2.0;
            let _ = write!(
                lanes,
                r#"<path class="rej" d="M{} {}l7 7m0-7l-7 7"><title>{node}: {count} fenced writes rejected around {:.0} ms</title></path>"#,
                n(px - 3.5),
                n(cy - 3.5),
                (b as f64 + 0.5) * bucket
            );
        }
    }
    // ZooKeeper's view.
    lane_label(&mut lanes, y, lane_h, "/rapidstore/leader", None);
    let _ = write!(
        lanes,
        r#"<g class="lane" data-lane="zk-leader"><rect class="lane-bg" x="{}" y="{}" width="{}" height="{}"/>"#,
        n(LEFT),
        n(y),
        n(RIGHT - LEFT),
        n(lane_h)
    );
    zk_leader_lane(&mut lanes, view, &x, y, lane_h);
    lanes.push_str("</g>");
    y += lane_h + 8.0;

    // Phase changes: a dashed line each, labels under the axis where they fit.
    let mut phases = String::new();
    let mut label_end = f64::NEG_INFINITY;
    for (t, p) in &view.phases {
        if p == "running" {
            continue;
        }
        let px = x.clamped(*t);
        let _ = write!(
            phases,
            r#"<line class="phase" x1="{}" x2="{}" y1="{}" y2="{}"><title>phase {} at {:.0} ms</title></line>"#,
            n(px),
            n(px),
            n(lanes_top),
            n(y - 6.0),
            esc(p),
            t,
        );
        let text = p.replace('_', " ");
        let width = 5.5 * text.len() as f64 + 8.0;
        let (anchor, start) = if px + width > RIGHT + 10.0 {
            ("end", px - width)
        } else {
            ("start", px)
        };
        if start > label_end {
            let _ = write!(
                phases,
                r#"<text class="phase-label" x="{}" y="{}" text-anchor="{anchor}">▴{}</text>"#,
                n(px),
                n(y + 26.0),
                esc(&text)
            );
            label_end = start + width;
        }
    }
    let height = y + 32.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="timeline" class="plot" viewBox="0 0 {W} {}" role="img" aria-label="role timeline">{DEFS}"#,
        n(height)
    );
    fault_bands(&mut svg, view, &x, 2.0, y - 4.0);
    time_axis(&mut svg, &x, y + 2.0, lanes_top);
    svg.push_str(&body);
    svg.push_str(&lanes);
    svg.push_str(&phases);
    svg.push_str("</svg>");
    h.push_str(&svg);

    let unplaced = view.rejected.iter().filter(|r| r.time_ms.is_none()).count();
    let _ = write!(
        h,
        r#"<p class="note">{} fault window(s); {} fenced write(s) rejected{}; {} window(s) where two nodes believed they led. Lanes show what each node reported about itself; the thin bar under a lane is its election znode, and the last lane is <code>/rapidstore/leader</code>, as the harness's own ZooKeeper watch saw them. Hover for details.</p>"#,
        view.faults.len(),
        view.rejected.len(),
        if unplaced > 0 {
            format!(" ({unplaced} with no matching client write, not drawn)")
        } else {
            String::new()
        },
        r.failover.overlaps.len()
    );
    if !view.rejected.is_empty() {
        let _ = write!(
            h,
            r#"<details><summary>Rejected fenced writes ({})</summary><table class="small"><tr><th>replica</th><th>key=value</th><th>token</th><th>highest seen</th><th>index</th><th>at or after</th></tr>"#,
            view.rejected.len()
        );
        for rj in view.rejected.iter().take(2000) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}={}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&rj.node),
                esc(&rj.key),
                esc(&rj.value),
                rj.token,
                rj.highest_seen,
                rj.index,
                rj.time_ms.map_or("-".into(), |t| format!("{t:.0} ms"))
            );
        }
        if view.rejected.len() > 2000 {
            let _ = write!(
                h,
                r#"<tr><td colspan="6">… {} more in history.jsonl</td></tr>"#,
                view.rejected.len() - 2000
            );
        }
        h.push_str("</table></details>");
    }
    h.push_str("</section>");
}
