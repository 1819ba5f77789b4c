//! The report of a run: `report.json` is the source of truth; the terminal
//! table (and later HTML and JUnit) only render it.
//!
//! - `json`: write and read `report.json`
//! - `table`: the terminal summary

mod json;
mod table;

pub use json::ReportError;
pub use table::render_table;

use crate::checker::{CheckResult, FailoverSummary, Stats, Validity, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Version of the `report.json` shape.
pub const REPORT_VERSION: u32 = 1;

/// Exit code: every check valid (and any failover target met).
pub const EXIT_VALID: i32 = 0;
/// Exit code: a safety or liveness violation, or a missed failover target.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the checker could not decide (budget exhausted, history incomplete).
pub const EXIT_UNKNOWN: i32 = 2;

/// What ran: enough to recognise and replay the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    /// All checks merged (valid < unknown < invalid).
    pub valid: Validity,
    pub run: RunInfo,
    pub checks: BTreeMap<String, CheckResult>,
    pub failover: FailoverSummary,
    pub stats: Stats,
    /// Heal or teardown steps that failed. Reported beside the verdict, never
    /// part of it.
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

    /// True when a `--max-failover` target was given and some fault missed it.
    pub fn missed_failover_target(&self) -> bool {
        self.checks
            .get("failover")
            .is_some_and(|c| c.valid == Validity::Invalid)
    }
}

/// The process exit code for a checked run: 0 valid, 1 invalid or a missed
/// failover target, 2 unknown. (3 and 64 belong to the CLI: the run could not
/// be carried out, usage error.)
pub fn exit_code(report: &Report) -> i32 {
    if report.missed_failover_target() {
        return EXIT_INVALID;
    }
    match report.valid {
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
        // A missed target is 1 even if something else is unknown.
        r.valid = Validity::Unknown;
        r.checks
            .insert("failover".into(), CheckResult::invalid("missed", vec![]));
        assert_eq!(exit_code(&r), 1);
    }
}
