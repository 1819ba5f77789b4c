//! The terminal summary: one row per check, one row per leader-affecting
//! fault, then the failover percentiles and throughput.

use super::Report;
use crate::checker::Validity;
use std::fmt::Write as _;
use tabled::builder::Builder;
use tabled::settings::{object::Columns, Modify};
use tabled::settings::{Style, Width};

/// Width the summary column is wrapped to.
const SUMMARY_WIDTH: usize = 90;

fn verdict(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "unknown",
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.0} ms"))
}

/// Render the report for a terminal.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let bugs = if r.run.bug.is_empty() {
        String::new()
    } else {
        format!(", bugs {}", r.run.bug.join(","))
    };
    let _ = writeln!(
        out,
        "run {}: nemesis {}, workload {}, seed {}{bugs}",
        r.run.id, r.run.nemesis, r.run.workload, r.run.seed
    );

    let mut checks = Builder::default();
    checks.push_record(["check", "verdict", "summary"]);
    for (name, c) in &r.checks {
        checks.push_record([name.as_str(), verdict(c.valid), c.summary.as_str()]);
    }
    let mut t = checks.build();
    t.with(Style::rounded())
        .with(Modify::new(Columns::new(2..)).with(Width::wrap(SUMMARY_WIDTH).keep_words(true)));
    let _ = writeln!(out, "{t}");

    if r.failover.per_fault.is_empty() {
        let _ = writeln!(out, "failover: no leader-affecting faults");
    } else {
        let mut f = Builder::default();
        f.push_record([
            "fault",
            "at",
            "old leader",
            "new leader",
            "detection",
            "election",
            "recovery",
        ]);
        for x in &r.failover.per_fault {
            let leader = |n: &str, t: Option<u64>| match t {
                Some(t) => format!("{n} ({t})"),
                None => n.to_string(),
            };
            f.push_record([
                format!("{} {}", x.fault, x.action),
                format!("{:.1} s", x.time_ms / 1000.0),
                leader(&x.old_leader, x.old_token),
                x.new_leader
                    .as_deref()
                    .map_or("none".into(), |n| leader(n, x.new_token)),
                ms(x.detection_ms),
                ms(x.election_ms),
                ms(x.recovery_ms),
            ]);
        }
        let mut t = f.build();
        t.with(Style::rounded());
        let _ = writeln!(out, "{t}");
        let target = r
            .failover
            .target_ms
            .map_or(String::new(), |t| format!("; target {t:.0} ms"));
        let _ = writeln!(
            out,
            "failover: p50 {}, p99 {}, max {} ({} faults, {} recovered{target})",
            ms(r.failover.p50_ms),
            ms(r.failover.p99_ms),
            ms(r.failover.max_ms),
            r.failover.faults,
            r.failover.recovered,
        );
    }
    if !r.failover.overlaps.is_empty() {
        let longest = r
            .failover
            .overlaps
            .iter()
            .map(|o| o.duration_ms)
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "two nodes believed they led: {} window(s), longest {longest:.0} ms",
            r.failover.overlaps.len()
        );
    }
    if !r.failover.unavailable.is_empty() {
        let total: f64 = r.failover.unavailable.iter().map(|w| w.duration_ms).sum();
        let _ = writeln!(
            out,
            "unavailable (no acknowledged write): {} window(s), {total:.0} ms in all",
            r.failover.unavailable.len()
        );
    }
    let _ = writeln!(
        out,
        "throughput: {:.1} ok ops/s over {:.1} s ({} ok)",
        r.stats.ok_per_s, r.stats.duration_s, r.stats.ok_ops
    );
    for e in &r.teardown_errors {
        let _ = writeln!(out, "teardown error: {e}");
    }
    let _ = writeln!(out, "verdict: {}", verdict(r.valid));
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use crate::checker::FaultFailover;

    #[test]
    fn renders_checks_faults_and_figures() {
        let mut r = sample();
        r.failover.per_fault.push(FaultFailover {
            time_ms: 12_000.0,
            fault: "partition-leader".into(),
            action: "partition".into(),
            targets: vec!["n1".into()],
            old_leader: "n1".into(),
            old_token: Some(3),
            new_leader: Some("n2".into()),
            new_token: Some(4),
            detection_ms: Some(4100.0),
            election_ms: Some(4300.0),
            recovery_ms: Some(4500.0),
            total_ms: Some(4500.0),
        });
        r.failover.faults = 1;
        r.failover.max_ms = Some(4500.0);
        r.teardown_errors.push("heal: iptables exited 1".into());
        let s = render_table(&r);
        for want in [
            "no-lost-writes",
            "history incomplete: no final log",
            "n2 (4)",
            "4500 ms",
            "max 4500 ms",
            "teardown error: heal: iptables exited 1",
            "verdict: unknown",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }
}
