//! The report of a run: `report.json` is the source of truth; the terminal
//! table, `report.html`, `junit.xml` and the run index only render it (the
//! HTML also reads `history.jsonl` and `run.json` for the timeline).
//!
//! - `json`: write and read `report.json`
//! - `table`: the terminal summary
//! - `html`: `report.html`, one self-contained page (hand-written SVG)
//! - `index`: `reports/index.html`, every run newest first, failover trends
//! - `junit`: `junit.xml`, one test case per check
//! - `baseline`: failover p99 against an earlier run or the median of earlier runs
//! - `schema`: the JSON Schema of `report.json`, generated from these types
//! - `progress`: what a run is doing, while it goes

pub mod baseline;
pub mod html;
pub mod index;
mod json;
pub mod junit;
pub mod progress;
pub mod schema;
mod svg;
mod table;
mod view;

pub use json::ReportError;
pub use progress::Progress;
pub use table::render_table;

use crate::checker::{CheckResult, FailoverSummary, Stats, Validity, Verdict};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Version of the `report.json` shape.
pub const REPORT_VERSION: u32 = 1;

/// Exit code: every check valid (and any failover target met).
pub const EXIT_VALID: i32 = 0;
/// Exit code: a safety or liveness violation, or a missed failover target.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the checker could not decide (budget exhausted, history incomplete).
pub const EXIT_UNKNOWN: i32 = 2;
/// Exit code: the run could not be carried out, or a valid run could not be
/// healed or torn down completely (something may be left; see the report).
pub const EXIT_NOT_RUN: i32 = 3;

/// What ran: enough to recognise and replay the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunInfo {
    /// Run id (the folder name under `reports/`).
    pub id: String,
    /// Nemesis schedule name (`--nemesis`).
    pub nemesis: String,
    /// Workload name (`--workload`).
    pub workload: String,
    pub seed: u64,
    /// RapidStore nodes.
    pub nodes: Vec<String>,
    /// ZooKeeper servers.
    pub zk: Vec<String>,
    pub time_limit_s: f64,
    /// Planted bugs enabled (`--bug`).
    #[serde(default)]
    pub bug: Vec<String>,
    /// Wall-clock start, RFC 3339 UTC (see [`rfc3339`]).
    pub started_at: String,
}

/// The report of one run, as written to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub version: u32,
    /// All checks merged (valid < unknown < invalid).
    pub valid: Validity,
    pub run: RunInfo,
    pub checks: BTreeMap<String, CheckResult>,
    pub failover: FailoverSummary,
    pub stats: Stats,
    /// Heal or teardown steps that failed. Reported beside the verdict, never
    /// part of it; a valid run with any exits 3, not 0.
    #[serde(default)]
    pub teardown_errors: Vec<String>,
}

impl Report {
    pub fn new(run: RunInfo, verdict: Verdict, teardown_errors: Vec<String>) -> Self {
        Report {
            version: REPORT_VERSION,
            valid: verdict.valid,
            run,
            checks: verdict.checks,
            failover: verdict.failover,
            stats: verdict.stats,
            teardown_errors,
        }
    }

    /// True when a `--max-failover` target was given and some fault missed it,
    /// or a `--baseline` comparison found a failover regression.
    pub fn missed_failover_target(&self) -> bool {
        ["failover", baseline::CHECK].iter().any(|name| {
            self.checks
                .get(*name)
                .is_some_and(|c| c.valid == Validity::Invalid)
        })
    }

    /// The checks that decided the overall verdict: those whose answer is the
    /// merged one (none when the run is valid).
    pub fn deciding_checks(&self) -> Vec<&str> {
        if self.valid == Validity::Valid {
            return Vec::new();
        }
        self.checks
            .iter()
            .filter(|(_, c)| c.valid == self.valid)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Write what renders `report.json` beside it: `report.html`, `junit.xml`,
/// and the run index of the reports folder (the run folder's parent).
/// Returns problems for people; none of them changes the verdict.
pub fn write_artifacts(run_dir: &Path, report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = html::write_html(run_dir, report) {
        problems.push(format!("report.html not written: {e}"));
    }
    if let Err(e) = junit::write_junit(run_dir, report) {
        problems.push(format!("junit.xml not written: {e}"));
    }
    if let Some(parent) = run_dir.parent().filter(|p| p.is_dir()) {
        if let Err(e) = index::write_index(parent) {
            problems.push(format!("index.html not written: {e}"));
        }
    }
    problems
}

/// Write a file atomically (temporary file in the same folder, then rename),
/// so a reader never sees half a page.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// The process exit code for a checked run: 0 valid, 1 invalid or a missed
/// failover target, 2 unknown, 3 valid but not healed or torn down cleanly
/// (CI must not call that a pass: something may be left on the nodes). A
/// finding (1) or an unknown (2) wins over teardown problems. (64 belongs to
/// the CLI: usage error.)
pub fn exit_code(report: &Report) -> i32 {
    if report.missed_failover_target() {
        return EXIT_INVALID;
    }
    match report.valid {
        Validity::Valid if !report.teardown_errors.is_empty() => EXIT_NOT_RUN,
        Validity::Valid => EXIT_VALID,
        Validity::Invalid => EXIT_INVALID,
        Validity::Unknown => EXIT_UNKNOWN,
    }
}

/// `t` as RFC 3339 UTC with second precision, e.g. `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check_all, CheckOptions};
    use std::time::Duration;

    pub(crate) fn sample() -> Report {
        let run = RunInfo {
            id: "20240501-120000-partition-leader".into(),
            nemesis: "partition-leader".into(),
            workload: "register".into(),
            seed: 42,
            nodes: vec!["n1".into(), "n2".into(), "n3".into()],
            zk: vec!["n1".into(), "n2".into(), "n3".into()],
            time_limit_s: 60.0,
            bug: vec![],
            started_at: rfc3339(UNIX_EPOCH + Duration::from_secs(1_714_564_800)),
        };
        Report::new(run, check_all(&[], &CheckOptions::default()), vec![])
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3661);
        assert_eq!(rfc3339(t), "2024-05-01T13:01:01Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn exit_codes() {
        let mut r = sample();
        r.valid = Validity::Valid;
        r.checks.clear();
        assert_eq!(exit_code(&r), 0);
        r.valid = Validity::Unknown;
        assert_eq!(exit_code(&r), 2);
        r.valid = Validity::Invalid;
        assert_eq!(exit_code(&r), 1);
        // Heal or teardown problems: a valid run is not a pass; a finding
        // or an unknown keeps its own code.
        r.teardown_errors
            .push("heal: RapidStore on n2 is still stopped".into());
        assert_eq!(exit_code(&r), 1);
        r.valid = Validity::Unknown;
        assert_eq!(exit_code(&r), 2);
        r.valid = Validity::Valid;
        assert_eq!(exit_code(&r), 3);
        r.teardown_errors.clear();
        // A missed target is 1 even if something else is unknown.
        r.valid = Validity::Unknown;
        r.checks
            .insert("failover".into(), CheckResult::invalid("missed", vec![]));
        assert_eq!(exit_code(&r), 1);
    }
}
