//! Failover baselines: compare a run's failover p99 with an earlier run
//! (`--baseline RUN_DIR`) or with the median p99 of earlier runs of the same
//! nemesis in the reports folder (`--baseline auto`). A p99 worse than the
//! baseline by more than the tolerance (default 25%) is a regression: the
//! `failover-baseline` check is invalid and the run exits 1, like a missed
//! `--max-failover` target.
//!
//! `auto` takes runs of the same nemesis that started before this one, have a
//! failover p99, and were not themselves invalid (a run that violated safety
//! or already regressed is no baseline). No such run: nothing to compare, the
//! check is valid and says so (the first nightly run must not fail).

use super::index::scan;
use super::Report;
use crate::checker::{CheckResult, Validity};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Name of the check a baseline comparison adds to `report.json`.
pub const CHECK: &str = "failover-baseline";

/// Default `--tolerance`: 25%.
pub const DEFAULT_TOLERANCE: f64 = 0.25;

/// What `--baseline` names.
#[derive(Debug, Clone, PartialEq)]
pub enum BaselineSpec {
    /// The median of earlier runs of the same nemesis in the reports folder.
    Auto,
    /// One stored run.
    Run(PathBuf),
}

impl FromStr for BaselineSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("--baseline needs a run folder or `auto`".into()),
            "auto" => Ok(BaselineSpec::Auto),
            p => Ok(BaselineSpec::Run(PathBuf::from(p))),
        }
    }
}

/// Parse `--tolerance`: a percentage, `25%` or `25`.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v / 100.0),
        _ => Err(format!(
            "invalid tolerance `{s}`: expected a percentage such as 25%"
        )),
    }
}

/// The failover p99 to compare against, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub p99_ms: f64,
    /// `RUN_DIR` or `auto`.
    pub source: String,
    /// Run ids it was taken from.
    pub runs: Vec<String>,
}

/// Why a baseline could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline `{path}` has no readable report.json: {source}\n  hint: pass a run folder such as reports/<run-id>, or `auto`")]
    NoReport {
        path: String,
        source: super::ReportError,
    },
    #[error("baseline run `{path}` has no failover p99 (no leader-affecting fault recovered)\n  hint: pick a run of a nemesis that kills or partitions the leader")]
    NoFailover { path: String },
}

/// The baseline of one stored run.
pub fn load_run(dir: &Path) -> Result<Baseline, BaselineError> {
    let path = dir.display().to_string();
    let r = Report::read_json(dir).map_err(|source| BaselineError::NoReport {
        path: path.clone(),
        source,
    })?;
    let p99 = r
        .failover
        .p99_ms
        .ok_or(BaselineError::NoFailover { path: path.clone() })?;
    Ok(Baseline {
        p99_ms: p99,
        source: path,
        runs: vec![r.run.id],
    })
}

/// The median of a non-empty sample.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `auto`: the median p99 of earlier runs of `current`'s nemesis in
/// `reports_dir` (`None` when there is none).
pub fn auto(reports_dir: &Path, current: &Report) -> Option<Baseline> {
    let key = |r: &Report| (r.run.started_at.clone(), r.run.id.clone());
    let now = key(current);
    let mut runs: Vec<(String, f64)> = scan(reports_dir)
        .into_iter()
        .filter_map(|e| e.report)
        .filter(|r| {
            r.run.nemesis == current.run.nemesis
                && r.run.id != current.run.id
                && key(r) < now
                && r.valid != Validity::Invalid
        })
        .filter_map(|r| Some((r.run.id.clone(), r.failover.p99_ms?)))
        .collect();
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Baseline {
        p99_ms: median(runs.iter().map(|r| r.1).collect()),
        source: "auto".into(),
        runs: runs.into_iter().map(|r| r.0).collect(),
    })
}

/// Judge `report`'s failover p99 against `baseline`.
pub fn compare(report: &Report, baseline: Option<&Baseline>, tolerance: f64) -> CheckResult {
    let pct = tolerance * 100.0;
    let Some(b) = baseline else {
        return CheckResult::valid(format!(
            "no earlier run of nemesis {} to compare with; this run's failover p99 is {}",
            report.run.nemesis,
            super::svg::fmt_ms(report.failover.p99_ms)
        ))
        .with_details(
            json!({"baseline": null, "p99_ms": report.failover.p99_ms, "tolerance_pct": pct}),
        );
    };
    let limit = b.p99_ms * (1.0 + tolerance);
    let details = json!({
        "baseline": b.source,
        "baseline_runs": b.runs,
        "baseline_p99_ms": b.p99_ms,
        "p99_ms": report.failover.p99_ms,
        "tolerance_pct": pct,
        "limit_ms": limit,
    });
    let from = if b.source == "auto" {
        format!("median of {} earlier run(s)", b.runs.len())
    } else {
        format!("run {}", b.runs.join(""))
    };
    match report.failover.p99_ms {
        None if report.failover.faults == 0 => CheckResult::valid(format!(
            "no leader-affecting fault in this run; nothing to compare with the baseline p99 {} ({from})",
            super::svg::fmt_ms(Some(b.p99_ms))
        ))
        .with_details(details),
        None => CheckResult::invalid(
            format!(
                "failover regression: none of {} leader-affecting fault(s) recovered; baseline p99 {} ({from})",
                report.failover.faults,
                super::svg::fmt_ms(Some(b.p99_ms))
            ),
            vec![],
        )
        .with_details(details),
        Some(p99) if p99 > limit => {
            let cx = report
                .failover
                .per_fault
                .iter()
                .filter(|f| f.total_ms.is_none_or(|t| t > limit))
                .map(|f| json!(f))
                .collect();
            CheckResult::invalid(
                format!(
                    "failover regression: p99 {} is {:+.0}% against the baseline {} ({from}); tolerance {pct:.0}%",
                    super::svg::fmt_ms(Some(p99)),
                    (p99 / b.p99_ms - 1.0) * 100.0,
                    super::svg::fmt_ms(Some(b.p99_ms)),
                ),
                cx,
            )
            .with_details(details)
        }
        Some(p99) => CheckResult::valid(format!(
            "failover p99 {} within {pct:.0}% of the baseline {} ({from}; {:+.0}%)",
            super::svg::fmt_ms(Some(p99)),
            super::svg::fmt_ms(Some(b.p99_ms)),
            (p99 / b.p99_ms - 1.0) * 100.0,
        ))
        .with_details(details),
    }
}

/// Add (or replace) the baseline check and re-merge the verdict.
pub fn apply(report: &mut Report, check: CheckResult) {
    report.checks.insert(CHECK.to_string(), check);
    report.valid = Validity::merge_all(report.checks.values().map(|c| c.valid));
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    fn with_p99(id: &str, started: &str, p99: Option<f64>, valid: Validity) -> Report {
        let mut r = sample();
        r.run.id = id.into();
        r.run.started_at = started.into();
        r.failover.p99_ms = p99;
        r.failover.faults = 2;
        r.valid = valid;
        r
    }

    #[test]
    fn tolerances() {
        assert_eq!(parse_tolerance("25%").unwrap(), 0.25);
        assert_eq!(parse_tolerance("10").unwrap(), 0.10);
        assert!(parse_tolerance("-3%").is_err());
        assert!(parse_tolerance("x").is_err());
        assert_eq!("auto".parse::<BaselineSpec>().unwrap(), BaselineSpec::Auto);
    }

    #[test]
    fn regression_past_tolerance_only() {
        let b = Baseline {
            p99_ms: 4000.0,
            source: "auto".into(),
            runs: vec!["a".into(), "b".into()],
        };
        let ok = with_p99("c", "2026-01-03T00:00:00Z", Some(4900.0), Validity::Valid);
        assert_eq!(compare(&ok, Some(&b), 0.25).valid, Validity::Valid);
        let bad = with_p99("c", "2026-01-03T00:00:00Z", Some(5200.0), Validity::Valid);
        let c = compare(&bad, Some(&b), 0.25);
        assert_eq!(c.valid, Validity::Invalid);
        assert!(c.summary.contains("+30%"), "{}", c.summary);
        let mut r = bad.clone();
        apply(&mut r, c);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(super::super::exit_code(&r), 1);
        // No baseline: nothing to compare, not a failure.
        assert_eq!(compare(&bad, None, 0.25).valid, Validity::Valid);
    }

    #[test]
    fn auto_is_the_median_of_earlier_runs_of_the_same_nemesis() {
        let d = tempfile::tempdir().unwrap();
        let runs = [
            (
                "r1",
                "2026-01-01T00:00:00Z",
                Some(1000.0),
                Validity::Valid,
                "partition-leader",
            ),
            (
                "r2",
                "2026-01-02T00:00:00Z",
                Some(3000.0),
                Validity::Valid,
                "partition-leader",
            ),
            (
                "r3",
                "2026-01-03T00:00:00Z",
                Some(2000.0),
                Validity::Valid,
                "partition-leader",
            ),
            (
                "r4",
                "2026-01-04T00:00:00Z",
                Some(90000.0),
                Validity::Invalid,
                "partition-leader",
            ),
            (
                "r5",
                "2026-01-05T00:00:00Z",
                Some(50.0),
                Validity::Valid,
                "kill-leader",
            ),
            (
                "r7",
                "2026-01-07T00:00:00Z",
                Some(99.0),
                Validity::Valid,
                "partition-leader",
            ),
        ];
        for (id, at, p99, v, nem) in runs {
            let mut r = with_p99(id, at, p99, v);
            r.run.nemesis = nem.into();
            let dir = d.path().join(id);
            std::fs::create_dir_all(&dir).unwrap();
            r.write_json(&dir).unwrap();
        }
        let cur = with_p99("r6", "2026-01-06T00:00:00Z", Some(9000.0), Validity::Valid);
        let b = auto(d.path(), &cur).unwrap();
        assert_eq!(b.runs, ["r1", "r2", "r3"]);
        assert_eq!(b.p99_ms, 2000.0);
        assert_eq!(load_run(&d.path().join("r2")).unwrap().p99_ms, 3000.0);
        assert!(load_run(&d.path().join("nope")).is_err());
    }
}
