//! Failover per fault and its distribution; client latency and throughput
//! over time (aggregated per time bucket on long runs).

use super::super::svg::{esc, fmt_ms, ms_label, n, time_axis, value_axis, Linear, Log};
use super::super::view::RunView;
use super::super::Report;
use super::*;
use crate::history::Outcome;

pub(super) fn failover_section(h: &mut String, r: &Report) {
    let f = &r.failover;
    h.push_str(r#"<section id="failover"><h2>Failover</h2>"#);
    let target = f
        .target_ms
        .map_or(String::new(), |t| format!(", target {}", fmt_ms(Some(t))));
    let _ = write!(
        h,
        r#"<p>{} leader-affecting fault(s), {} recovered. Failover (fault → first acknowledged write after a new leader): p50 <b>{}</b>, p90 {}, p99 <b>{}</b>, max {}{target}.</p>"#,
        f.faults,
        f.recovered,
        fmt_ms(f.p50_ms),
        fmt_ms(f.p90_ms),
        fmt_ms(f.p99_ms),
        fmt_ms(f.max_ms),
    );
    if let Some(b) = r.checks.get(crate::report::baseline::CHECK) {
        let _ = write!(
            h,
            r#"<p>Baseline: {} {}</p>"#,
            badge(b.valid),
            esc(&b.summary)
        );
    }
    if f.per_fault.is_empty() {
        h.push_str("</section>");
        return;
    }
    let _ = write!(
        h,
        r#"<details{}><summary>Per fault ({})</summary>"#,
        if f.per_fault.len() <= FAILOVER_ROWS_OPEN {
            " open"
        } else {
            ""
        },
        f.per_fault.len()
    );
    h.push_str(r#"<table id="failover-table"><tr><th>#</th><th>fault</th><th>at</th><th>targets</th><th>old leader</th><th>new leader</th><th>detection</th><th>election</th><th>recovery</th><th>total</th></tr>"#);
    for (i, x) in f.per_fault.iter().enumerate() {
        let leader = |node: &str, t: Option<u64>| {
            format!(
                "{}{}",
                esc(node),
                t.map_or(String::new(), |t| format!(" ·{t}"))
            )
        };
        let slow = match (x.total_ms, f.target_ms) {
            (Some(t), Some(target)) if t > target => " class=\"bad\"",
            (None, _) => " class=\"bad\"",
            _ => "",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} {}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{slow}><b>{}</b></td></tr>",
            i + 1,
            esc(&x.fault),
            esc(&x.action),
            x.time_ms / 1000.0,
            esc(&x.targets.join(" ")),
            leader(&x.old_leader, x.old_token),
            x.new_leader
                .as_deref()
                .map_or("none".into(), |n| leader(n, x.new_token)),
            fmt_ms(x.detection_ms),
            fmt_ms(x.election_ms),
            fmt_ms(x.recovery_ms),
            fmt_ms(x.total_ms),
        );
    }
    h.push_str("</table></details>");

    // Distribution: one stacked bar per fault (detection, election, recovery),
    // with the percentiles and the target as vertical lines.
    let max = f
        .per_fault
        .iter()
        .filter_map(|x| x.total_ms.or(x.election_ms).or(x.detection_ms))
        .chain(f.target_ms)
        .fold(1.0_f64, f64::max)
        * 1.08;
    let rows = f.per_fault.len();
    let bar_h = (220.0 / rows as f64).clamp(3.0, 14.0);
    let gap = (bar_h * 0.35).max(1.0);
    let top = 12.0;
    let height = top + rows as f64 * (bar_h + gap) + 26.0;
    let x = Linear::new((0.0, max), (LEFT, RIGHT));
    let _ = write!(h, r#"<h3>Distribution</h3>"#);
    legend(
        h,
        &[
            ("fo-d", "fault → old leader's znode gone (detection)"),
            ("fo-e", "→ new leader claims (election)"),
            ("fo-r", "→ first acknowledged write (recovery)"),
        ],
    );
    let _ = write!(
        h,
        r#"<svg id="failover-plot" class="plot" viewBox="0 0 {W} {}" role="img" aria-label="failover distribution">"#,
        n(height)
    );
    let ax_y = height - 20.0;
    let mut axis = String::new();
    let step = crate::report::svg::nice_step(max, 8);
    let mut t = 0.0;
    while t <= max {
        let px = n(x.at(t));
        let _ = write!(
            axis,
            r#"<line class="grid" x1="{px}" x2="{px}" y1="{}" y2="{}"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"#,
            n(top),
            n(ax_y),
            n(ax_y + 12.0),
            ms_label(t)
        );
        t += step;
    }
    let _ = write!(h, r#"<g class="axis">{axis}</g>"#);
    for (i, fx) in f.per_fault.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        if bar_h >= 8.0 {
            lane_label(
                h,
                y,
                bar_h,
                &format!("#{} {}", i + 1, fx.targets.join(" ")),
                None,
            );
        }
        let d = fx.detection_ms;
        let e = fx.election_ms;
        let rcv = fx.recovery_ms.or(fx.total_ms);
        let mut from = 0.0;
        for (v, cls) in [(d, "fo-d"), (e, "fo-e"), (rcv, "fo-r")] {
            if let Some(v) = v {
                if v >= from {
                    let _ = write!(
                        h,
                        r#"<rect class="{cls}" x="{}" y="{}" width="{}" height="{}"/>"#,
                        n(x.at(from)),
                        n(y),
                        n((x.at(v) - x.at(from)).max(0.5)),
                        n(bar_h)
                    );
                    from = v;
                }
            }
        }
        let _ = write!(
            h,
            r#"<rect class="hit" x="{}" y="{}" width="{}" height="{}"><title>#{} {} {} at {:.1} s: detection {}, election {}, recovery {}</title></rect>"#,
            n(LEFT),
            n(y),
            n(RIGHT - LEFT),
            n(bar_h),
            i + 1,
            esc(&fx.action),
            esc(&fx.targets.join(" ")),
            fx.time_ms / 1000.0,
            fmt_ms(d),
            fmt_ms(e),
            fmt_ms(rcv)
        );
    }
    for (v, label, cls, anchor, dx) in [
        (f.p50_ms, "p50", "pline", "end", -3.0),
        (f.p99_ms, "p99", "pline p99", "start", 3.0),
        (f.target_ms, "target", "pline target", "start", 3.0),
    ] {
        if let Some(v) = v {
            let px = x.at(v);
            let _ = write!(
                h,
                r#"<line class="{cls}" x1="{}" x2="{}" y1="{}" y2="{}"/><text class="plabel" x="{}" y="{}" text-anchor="{anchor}">{label}</text>"#,
                n(px),
                n(px),
                n(top - 6.0),
                n(ax_y),
                n(px + dx),
                n(top - 0.5),
            );
        }
    }
    h.push_str("</svg>");
    if !f.unavailable.is_empty() {
        let total: f64 = f.unavailable.iter().map(|w| w.duration_ms).sum();
        let _ = write!(
            h,
            r#"<p class="note">Unavailable (no acknowledged write for longer than the threshold): {} window(s), {} in all: {}</p>"#,
            f.unavailable.len(),
            fmt_ms(Some(total)),
            f.unavailable
                .iter()
                .take(10)
                .map(|w| format!("{:.1}–{:.1} s", w.start_ms / 1000.0, w.end_ms / 1000.0))
                .chain((f.unavailable.len() > 10).then(|| "…".to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    h.push_str("</section>");
}

/// Nearest-rank quantile of a sorted, non-empty slice.
fn q(sorted: &[f64], p: f64) -> f64 {
    let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

pub(super) fn clients_section(h: &mut String, r: &Report, view: &RunView) {
    h.push_str(r#"<section id="clients"><h2>Clients</h2>"#);
    // Op stats table.
    h.push_str(r#"<table class="small"><tr><th>op</th><th>ok</th><th>fail</th><th>info</th><th>latency p50</th><th>p90</th><th>p99</th><th>max</th></tr>"#);
    for (k, s) in &r.stats.ops {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k),
            s.ok,
            s.fail,
            s.info,
            fmt_ms(s.latency.p50_ms),
            fmt_ms(s.latency.p90_ms),
            fmt_ms(s.latency.p99_ms),
            fmt_ms(s.latency.max_ms)
        );
    }
    h.push_str("</table>");
    if view.ops.is_empty() {
        h.push_str(r#"<p class="note">No client operations in the history.</p></section>"#);
        return;
    }
    let x = full_x(view);
    // Latency over time.
    let lat: Vec<(f64, f64, Outcome)> = view
        .ops
        .iter()
        .map(|op| {
            let end = op.end_ms().unwrap_or(view.end_ms);
            (
                op.invoke.time_ms,
                (end - op.invoke.time_ms).max(0.01),
                op.outcome(),
            )
        })
        .collect();
    let max_lat = lat.iter().map(|l| l.1).fold(1.0_f64, f64::max) * 1.3;
    let min_lat = lat
        .iter()
        .map(|l| l.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.1);
    let (top, plot_h) = (10.0, 200.0);
    let y = Log::new((min_lat.min(1.0), max_lat), (top + plot_h, top));
    let aggregated = lat.len() > RAW_POINTS_MAX;
    let _ = write!(
        h,
        r#"<h3>Latency over time</h3><p class="note">{}</p>"#,
        if aggregated {
            format!("{} operations, aggregated into {BUCKETS} time buckets: lines are each bucket's p50 (solid) and p99 (dashed) of ok operations, dots the bucket's slowest fail and info operations. Operations that never completed are drawn at the end of the history.", lat.len())
        } else {
            format!("{} operations, one dot each at its invocation time (log scale). Operations that never completed are drawn as info, up to the end of the history.", lat.len())
        }
    );
    legend(
        h,
        &[
            ("ok", "ok"),
            ("fail", "fail"),
            ("info", "info (unknown)"),
            ("band", "fault window"),
        ],
    );
    let height = top + plot_h + 22.0;
    let _ = write!(
        h,
        r#"<svg id="latency" class="plot" viewBox="0 0 {W} {}" role="img" aria-label="latency over time" data-points="{}">"#,
        n(height),
        if aggregated { 0 } else { lat.len() }
    );
    fault_bands(h, view, &x, top, top + plot_h);
    let yt: Vec<(f64, String)> = y
        .ticks()
        .into_iter()
        .map(|v| (y.clamped(v), ms_label(v)))
        .collect();
    value_axis(h, &yt, LEFT, RIGHT, "latency", top - 1.0);
    time_axis(h, &x, top + plot_h + 8.0, top + plot_h);
    if !aggregated {
        // One path per outcome, each point a zero-length round-capped segment.
        for o in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
            let mut d = String::new();
            for (t, l, oc) in &lat {
                if *oc == o {
                    let _ = write!(d, "M{} {}h0", n(x.clamped(*t)), n(y.clamped(*l)));
                }
            }
            if !d.is_empty() {
                let _ = write!(h, r#"<path class="dots {}" d="{d}"/>"#, outcome_class(o));
            }
        }
    } else {
        let (d0, d1) = x.domain();
        let bw = (d1 - d0) / BUCKETS as f64;
        let mut buckets: Vec<[Vec<f64>; 3]> = (0..BUCKETS).map(|_| Default::default()).collect();
        for (t, l, o) in &lat {
            let b = (((t - d0) / bw) as usize).min(BUCKETS - 1);
            let k = match o {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            };
            buckets[b][k].push(*l);
        }
        let mut p50 = String::new();
        let mut p99 = String::new();
        let mut dots = [String::new(), String::new()];
        for (i, b) in buckets.iter_mut().enumerate() {
            let px = n(x.at(d0 + (i as f64 + 0.5) * bw));
            for s in b.iter_mut() {
                s.sort_by(f64::total_cmp);
            }
            if !b[0].is_empty() {
                let cmd = |s: &String| if s.is_empty() { "M" } else { "L" };
                let _ = write!(p50, "{}{px} {}", cmd(&p50), n(y.clamped(q(&b[0], 0.5))));
                let _ = write!(p99, "{}{px} {}", cmd(&p99), n(y.clamped(q(&b[0], 0.99))));
            }
            for k in 1..3 {
                if let Some(m) = b[k].last() {
                    let _ = write!(dots[k - 1], "M{px} {}h0", n(y.clamped(*m)));
                }
            }
        }
        let _ = write!(
            h,
            r#"<path class="qline ok" d="{p50}"/><path class="qline ok p99" d="{p99}"/><path class="dots fail" d="{}"/><path class="dots info" d="{}"/>"#,
            dots[0], dots[1]
        );
    }
    h.push_str("</svg>");

    // Throughput over time.
    let (d0, d1) = x.domain();
    let bw = ((d1 - d0) / BUCKETS as f64).max(250.0);
    let nb = (((d1 - d0) / bw).ceil() as usize).max(1);
    let mut counts = vec![[0usize; 3]; nb];
    for op in &view.ops {
        if let Some(end) = op.end_ms() {
            let b = (((end - d0) / bw) as usize).min(nb - 1);
            let k = match op.outcome() {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            };
            counts[b][k] += 1;
        }
    }
    let per_s = |c: usize| c as f64 / (bw / 1000.0);
    let max_rate = counts
        .iter()
        .flat_map(|c| c.iter().map(|&v| per_s(v)))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let (top, plot_h) = (10.0, 140.0);
    let yl = Linear::new((0.0, max_rate), (top + plot_h, top));
    let _ = write!(
        h,
        r#"<h3>Throughput over time</h3><p class="note">Completions per second in {} buckets; grey: windows with no acknowledged write.</p>"#,
        fmt_ms(Some(bw))
    );
    legend(
        h,
        &[
            ("ok", "ok"),
            ("fail", "fail"),
            ("info", "info"),
            ("unavail", "unavailable"),
        ],
    );
    let height = top + plot_h + 22.0;
    let _ = write!(
        h,
        r#"<svg id="throughput" class="plot" viewBox="0 0 {W} {}" role="img" aria-label="throughput over time">"#,
        n(height)
    );
    fault_bands(h, view, &x, top, top + plot_h);
    for w in &r.failover.unavailable {
        let a = x.clamped(w.start_ms);
        let b = x.clamped(w.end_ms);
        let _ = write!(
            h,
            r#"<rect class="unavail" x="{}" y="{}" width="{}" height="{}"><title>no acknowledged write {:.0}–{:.0} ms</title></rect>"#,
            n(a),
            n(top),
            n((b - a).max(0.5)),
            n(plot_h),
            w.start_ms,
            w.end_ms
        );
    }
    let yt: Vec<(f64, String)> = crate::report::svg::ticks(0.0, max_rate, 4)
        .into_iter()
        .map(|v| (yl.at(v), n(v)))
        .collect();
    value_axis(h, &yt, LEFT, RIGHT, "ops/s", top - 1.0);
    time_axis(h, &x, top + plot_h + 8.0, top + plot_h);
    for (k, cls) in [(1, "fail"), (2, "info"), (0, "ok")] {
        let mut d = String::new();
        for (i, c) in counts.iter().enumerate() {
            let a = x.at(d0 + i as f64 * bw);
            let b = x.at(d0 + (i as f64 + 1.0) * bw).min(RIGHT);
            let py = n(yl.at(per_s(c[k])));
            let _ = write!(
                d,
                "{}{} {py}H{}",
                if i == 0 { "M" } else { "L" },
                n(a),
                n(b)
            );
        }
        let _ = write!(h, r#"<path class="tline {cls}" d="{d}"/>"#);
    }
    h.push_str("</svg></section>");
}
