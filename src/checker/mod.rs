//! The checker: reads a history and answers valid / invalid / unknown, with
//! counterexamples, and measures failover.
//!
//! Each safety or liveness property is one [`Checker`] in its own file;
//! [`check_all`] runs them all (a panicking checker becomes
//! [`Validity::Unknown`], never a crash), merges their verdicts by priority
//! (valid < unknown < invalid) and adds the measured [`FailoverSummary`] and
//! [`Stats`]. Everything here is pure: no cluster, no I/O, so `harness check`
//! can re-check a stored history offline.
//!
//! The linearizability search is one engine with models plugged in:
//! `search` (the engine, its [`search::Model`] trait and budget), `models`
//! (register, multi-register, mutex), `linearizable` (the RapidStore front
//! end) and `jepsen` (Jepsen `history.edn` files with Knossos' models, for
//! `harness check --format edn`). `synth` generates linearizable histories
//! for property tests and benchmarks; `resources` reads the process's memory.

mod election;
mod failover;
mod fencing;
pub mod jepsen;
mod linearizable;
mod liveness;
mod lost_writes;
pub mod models;
mod ops;
mod quorum;
pub mod resources;
pub mod search;
mod stats;
pub mod synth;
mod validity;

pub use election::{OneLeaderPerToken, TokensGrow};
pub use failover::{
    failover_gate, measure_failover, FailoverSummary, FaultFailover, Overlap, Window,
};
pub use fencing::Fencing;
pub use linearizable::Linearizable;
pub use liveness::Liveness;
pub use lost_writes::NoLostWrites;
pub use ops::{pair_ops, Op, Ops};
pub use quorum::NoWritesWithoutQuorum;
pub use stats::{measure_stats, OpStats, Percentiles, Stats};
pub use validity::Validity;

use crate::history::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub valid: Validity,
    /// One line for people.
    pub summary: String,
    /// Check-specific figures (counts, per-key results, ...).
    #[serde(default)]
    pub details: serde_json::Value,
    /// The smallest set of events found that shows the violation (history
    /// events as they appear in `history.jsonl`, or small annotated objects).
    #[serde(default)]
    pub counterexample: Vec<serde_json::Value>,
}

impl CheckResult {
    pub fn valid(summary: impl Into<String>) -> Self {
        Self::new(Validity::Valid, summary)
    }
    pub fn invalid(summary: impl Into<String>, counterexample: Vec<serde_json::Value>) -> Self {
        CheckResult {
            counterexample,
            ..Self::new(Validity::Invalid, summary)
        }
    }
    pub fn unknown(summary: impl Into<String>) -> Self {
        Self::new(Validity::Unknown, summary)
    }
    fn new(valid: Validity, summary: impl Into<String>) -> Self {
        CheckResult {
            valid,
            summary: summary.into(),
            details: serde_json::Value::Null,
            counterexample: Vec::new(),
        }
    }
    /// Attach check-specific figures.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// One property checked over a whole history.
pub trait Checker: Send + Sync {
    /// Stable name, used as the key in `report.json` (e.g. `"fencing"`).
    fn name(&self) -> &'static str;
    /// Check the history. Must not panic on any well-formed history; if it does,
    /// [`run_checker`] turns the panic into [`Validity::Unknown`].
    fn check(&self, events: &[Event]) -> CheckResult;
}

/// Budgets and targets for [`check_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Wall-clock budget for the linearizability search (all keys together).
    pub timeout: Duration,
    /// Memory budget for the linearizability search: bytes the memo tables of
    /// all keys may hold at once (charged before a table grows, so it holds at
    /// the peak). About 25 bytes per memoised configuration.
    pub max_memo_bytes: usize,
    /// Threads for the linearizability search (`None`: available parallelism).
    pub threads: Option<usize>,
    /// Failover target (`--max-failover`): when set, a `failover` check fails
    /// if any leader-affecting fault took longer than this to recover.
    pub max_failover_ms: Option<f64>,
    /// A gap with no acknowledged write longer than this is an unavailability window.
    pub unavailable_gap_ms: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            timeout: Duration::from_secs(60),
            max_memo_bytes: 512 << 20,
            threads: None,
            max_failover_ms: None,
            unavailable_gap_ms: 1000.0,
        }
    }
}

/// Everything the checker concluded about one history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// All checks merged by priority (valid < unknown < invalid).
    pub valid: Validity,
    pub checks: BTreeMap<String, CheckResult>,
    pub failover: FailoverSummary,
    pub stats: Stats,
}

/// The checkers [`check_all`] runs, configured from `opts`.
pub fn checkers(opts: &CheckOptions) -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(OneLeaderPerToken),
        Box::new(TokensGrow),
        Box::new(Fencing),
        Box::new(NoLostWrites),
        Box::new(Linearizable::from_options(opts)),
        Box::new(Liveness),
        Box::new(NoWritesWithoutQuorum),
    ]
}

/// Run one checker, turning a panic into [`Validity::Unknown`].
pub fn run_checker(checker: &dyn Checker, events: &[Event]) -> CheckResult {
    catch_unwind(AssertUnwindSafe(|| checker.check(events))).unwrap_or_else(|panic| {
        CheckResult::unknown(format!("checker panicked: {}", panic_message(&panic)))
    })
}

/// Run every check, measure failover and stats, merge the verdicts.
pub fn check_all(events: &[Event], opts: &CheckOptions) -> Verdict {
    let mut checks = BTreeMap::new();
    for c in checkers(opts) {
        checks.insert(c.name().to_string(), run_checker(c.as_ref(), events));
    }
    let failover = match catch_unwind(AssertUnwindSafe(|| measure_failover(events, opts))) {
        Ok(f) => f,
        Err(panic) => {
            checks.insert(
                "failover".into(),
                CheckResult::unknown(format!(
                    "failover measurement panicked: {}",
                    panic_message(&panic)
                )),
            );
            FailoverSummary::default()
        }
    };
    if let Some(target) = opts.max_failover_ms {
        checks
            .entry("failover".into())
            .or_insert_with(|| failover_gate(&failover, target, history_end_ms(events)));
    }
    let stats = catch_unwind(AssertUnwindSafe(|| measure_stats(events))).unwrap_or_default();
    Verdict {
        valid: Validity::merge_all(checks.values().map(|c| c.valid)),
        checks,
        failover,
        stats,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Events with a harness time, stably sorted by it (the history is written in
/// observation order, but several watchers feed it, so do not trust the order).
pub(crate) fn timed(events: &[Event]) -> Vec<(f64, &Event)> {
    let mut v: Vec<(f64, &Event)> = events
        .iter()
        .filter_map(|e| e.time_ms().map(|t| (t, e)))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Time of the last timed event (0 for an empty history).
pub(crate) fn history_end_ms(events: &[Event]) -> f64 {
    events.iter().filter_map(Event::time_ms).fold(0.0, f64::max)
}

/// An event as it appears in `history.jsonl`, for counterexamples.
pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    serde_json::to_value(e).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;
    impl Checker for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn check(&self, _: &[Event]) -> CheckResult {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_checker_is_unknown_not_a_crash() {
        let r = run_checker(&Panics, &[]);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.summary.contains("boom"), "{}", r.summary);
    }

    #[test]
    fn empty_history_is_not_valid() {
        let v = check_all(&[], &CheckOptions::default());
        assert_eq!(v.valid, Validity::Unknown);
        assert_eq!(v.checks["no-lost-writes"].valid, Validity::Unknown);
        assert_eq!(v.checks["liveness"].valid, Validity::Unknown);
    }

    #[test]
    fn gate_appears_only_with_a_target() {
        let v = check_all(&[], &CheckOptions::default());
        assert!(!v.checks.contains_key("failover"));
        let opts = CheckOptions {
            max_failover_ms: Some(1000.0),
            ..CheckOptions::default()
        };
        assert!(check_all(&[], &opts).checks.contains_key("failover"));
    }
}
