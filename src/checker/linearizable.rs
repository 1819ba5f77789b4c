//! "linearizable": per key, the client history is linearizable against a
//! register (initially absent) with read, write and compare-and-set.
//!
//! The RapidStore front-end of the one [search](super::search) engine, with
//! the [`Register`] model: it pairs the history's client operations, splits
//! them by key, interns values, and turns the search's failure into a
//! counterexample of RapidStore operations (times, nodes, tokens).
//!
//! Outcomes: `ok` operations must take effect between invocation and
//! completion; `fail` ones never happened and are dropped; an `info` (or
//! never-completed) write or cas may take effect at any point after its
//! invocation, or never; `info` reads are dropped (they constrain nothing),
//! and so are `info` writes whose value nobody observed.
//!
//! Keys are independent (P-compositionality), so each key is searched on its
//! own, on up to `available_parallelism` threads. The search gives up with
//! "unknown" past its time budget or its memory budget (the bytes all memo
//! tables may hold at once): it never runs out of memory.

use super::models::{unobserved_unknowns, writers_of, RegOp, Register, NIL};
use super::search::{search_all, Budget, Failure, HistoryOp, Limit, Outcome, Problem};
use super::{pair_ops, CheckOptions, CheckResult, Checker, Op};
use crate::history::{Event, OpKind, Outcome as OpOutcome};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Per-key register linearizability (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Linearizable {
    /// Wall-clock budget for all keys together.
    pub timeout: Duration,
    /// Bytes the memo tables of all keys may hold at once.
    pub max_memo_bytes: usize,
    /// Worker threads (`None`: available parallelism, which also caps it).
    pub threads: Option<usize>,
}

impl Default for Linearizable {
    fn default() -> Self {
        Self::from_options(&CheckOptions::default())
    }
}

impl Linearizable {
    pub fn from_options(opts: &CheckOptions) -> Self {
        Linearizable {
            timeout: opts.timeout,
            max_memo_bytes: opts.max_memo_bytes,
            threads: opts.threads,
        }
    }
}

/// Worker threads: `wanted` (default all cores), capped by the cores and the
/// number of independent histories.
pub(crate) fn thread_count(wanted: Option<usize>, histories: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    wanted
        .unwrap_or(cores)
        .min(cores)
        .clamp(1, histories.max(1))
}

/// One key's history: the searched ops and, beside each, the client
/// operation it came from.
struct KeyHistory<'a> {
    key: &'a str,
    ops: Vec<HistoryOp<RegOp>>,
    source: Vec<Op<'a>>,
    /// Interned value -> value (index 0: absent).
    values: Vec<Option<&'a str>>,
    /// Unobserved `info` ops dropped before the search.
    dropped: usize,
}

impl KeyHistory<'_> {
    fn value(&self, v: u32) -> String {
        match self.values[v as usize] {
            Some(s) => format!("{s:?}"),
            None => "absent".into(),
        }
    }
}

/// Split the client operations by key, dropping what constrains nothing.
fn key_histories<'a>(ops: &[Op<'a>]) -> Vec<KeyHistory<'a>> {
    let mut keys: BTreeMap<&str, KeyHistory> = BTreeMap::new();
    let mut interned: HashMap<(&str, &str), u32> = HashMap::new();
    for op in ops {
        let i = op.invoke;
        let outcome = op.outcome();
        if outcome == OpOutcome::Fail || (i.f == OpKind::Read && outcome == OpOutcome::Info) {
            continue;
        }
        let h = keys.entry(&i.key).or_insert_with(|| KeyHistory {
            key: &i.key,
            ops: Vec::new(),
            source: Vec::new(),
            values: vec![None],
            dropped: 0,
        });
        let mut intern = |v: Option<&'a str>| -> u32 {
            let Some(v) = v else { return NIL };
            *interned.entry((&i.key, v)).or_insert_with(|| {
                h.values.push(Some(v));
                (h.values.len() - 1) as u32
            })
        };
        let reg = match i.f {
            OpKind::Read => RegOp::Read(intern(op.complete.and_then(|c| c.value.as_deref()))),
            OpKind::Write => RegOp::Write(intern(i.value.as_deref())),
            OpKind::Cas => RegOp::Cas {
                from: intern(i.expected.as_ref().and_then(|e| e.as_deref())),
                to: intern(i.value.as_deref()),
            },
        };
        let ret = (outcome == OpOutcome::Ok).then(|| op.end_ms()).flatten();
        h.ops.push(HistoryOp {
            op: reg,
            call: i.time_ms,
            ret,
        });
        h.source.push(*op);
    }
    for h in keys.values_mut() {
        let drop = unobserved_unknowns(&Register::KV, &h.ops);
        let mut it = drop.iter();
        h.ops.retain(|_| !it.next().copied().unwrap_or(false));
        let mut it = drop.iter();
        h.source.retain(|_| !it.next().copied().unwrap_or(false));
        h.dropped = drop.iter().filter(|&&d| d).count();
    }
    keys.into_values().collect()
}

/// The counterexample ops of a failure, in invocation order, each annotated.
fn failure_ops(h: &KeyHistory, f: &Failure<u32>) -> Vec<Value> {
    let mut picked: Vec<(usize, &str)> = vec![(f.blocked, "cannot be linearized")];
    if let Some(w) = f.last_change {
        picked.push((w, "set the state of the longest linearizable prefix"));
    }
    // Who wrote what the blocked op needed (a read's value, a cas's expected value).
    if let Some(v) = h.ops[f.blocked].op.observes().filter(|&v| v != NIL) {
        for i in writers_of(&h.ops, v).take(2) {
            picked.push((i, "wrote the value the blocked op needed"));
        }
    }
    for &c in &f.concurrent {
        picked.push((c, "concurrent, not linearized"));
    }
    let mut seen = HashSet::new();
    picked.retain(|(i, _)| seen.insert(*i));
    picked.sort_by(|a, b| h.ops[a.0].call.total_cmp(&h.ops[b.0].call));
    picked
        .into_iter()
        .map(|(i, why)| {
            let mut v = h.source[i].to_json();
            v["why"] = json!(why);
            v
        })
        .collect()
}

fn describe_failure(h: &KeyHistory, f: &Failure<u32>) -> String {
    let op = &h.ops[f.blocked];
    let src = &h.source[f.blocked];
    let i = src.invoke;
    let when = format!(
        "op {} by process {} on {} at {:.0}-{:.0} ms",
        i.op_id,
        i.process,
        src.complete
            .and_then(|c| c.node.as_deref())
            .unwrap_or(&i.node),
        op.call,
        op.ret.unwrap_or(f64::INFINITY)
    );
    let held = h.value(f.state);
    let prefix = format!(
        "after the longest linearizable prefix ({} ok ops) the register held {held}",
        f.linearized
    );
    match op.op {
        RegOp::Read(v) => format!(
            "key {:?}: read ({when}) returned {} but {prefix}",
            h.key,
            h.value(v)
        ),
        RegOp::Cas { from, .. } => format!(
            "key {:?}: cas ({when}) succeeded expecting {} but {prefix}",
            h.key,
            h.value(from)
        ),
        RegOp::Write(_) => format!(
            "key {:?}: no order of the concurrent operations explains write ({when}); {prefix}",
            h.key
        ),
    }
}

impl Checker for Linearizable {
    fn name(&self) -> &'static str {
        "linearizable"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let started = Instant::now();
        let all = pair_ops(events);
        if !all.is_well_formed() {
            return CheckResult::unknown(format!(
                "malformed history: {}",
                all.problems.first().map_or("", String::as_str)
            ))
            .with_details(json!({ "problems": all.problems.iter().take(20).collect::<Vec<_>>() }));
        }
        let mut keys = key_histories(&all.ops);
        // Biggest keys first, so the long pole starts early.
        keys.sort_by(|a, b| b.ops.len().cmp(&a.ops.len()).then(a.key.cmp(b.key)));
        let problems: Vec<Problem<Register>> = keys
            .iter_mut()
            .map(|h| Problem {
                model: Register::KV,
                ops: std::mem::take(&mut h.ops),
            })
            .collect();
        let budget = Budget::new(self.timeout, self.max_memo_bytes);
        let threads = thread_count(self.threads, keys.len());
        let results = search_all(&problems, &budget, threads);
        for (h, p) in keys.iter_mut().zip(problems) {
            h.ops = p.ops;
        }

        let mut invalid: Vec<(&KeyHistory, &Failure<u32>)> = Vec::new();
        let mut gave_up: Vec<(&KeyHistory, Limit)> = Vec::new();
        let mut per_key = serde_json::Map::new();
        for (h, r) in keys.iter().zip(&results) {
            let status = match &r.outcome {
                Outcome::Valid => "valid",
                Outcome::Invalid(f) => {
                    invalid.push((h, f));
                    "invalid"
                }
                Outcome::GaveUp(g) => {
                    gave_up.push((h, *g));
                    "unknown"
                }
                Outcome::Cancelled => "cancelled",
            };
            if status != "valid" || per_key.len() < 50 {
                per_key.insert(
                    h.key.to_string(),
                    json!({
                        "ops": h.ops.len(),
                        "result": status,
                        "memo_entries": r.memo_entries,
                        "memo_bytes": r.memo_bytes,
                        "ms": r.elapsed.as_millis(),
                    }),
                );
            }
        }
        let op_count: usize = keys.iter().map(|k| k.ops.len()).sum();
        let dropped: usize = keys.iter().map(|k| k.dropped).sum();
        let details = json!({
            "keys": keys.len(),
            "ops": op_count,
            "unobserved_info_ops_dropped": dropped,
            "threads": threads,
            "memo_entries": results.iter().map(|r| r.memo_entries).sum::<usize>(),
            "memo_peak_bytes": budget.peak_bytes(),
            "memo_budget_bytes": budget.max_bytes(),
            "elapsed_ms": started.elapsed().as_millis(),
            "per_key": per_key,
        });
        invalid.sort_by(|a, b| a.0.key.cmp(b.0.key));
        if let Some((h, f)) = invalid.first() {
            return CheckResult::invalid(describe_failure(h, f), failure_ops(h, f))
                .with_details(details);
        }
        gave_up.sort_by(|a, b| a.0.key.cmp(b.0.key));
        if let Some((h, why)) = gave_up.first() {
            return CheckResult::unknown(format!(
                "gave up on key {:?} ({} ops) and {} other key(s): {}",
                h.key,
                h.ops.len(),
                gave_up.len() - 1,
                limit_reason(*why, self.timeout, self.max_memo_bytes)
            ))
            .with_details(details);
        }
        CheckResult::valid(format!(
            "{op_count} operations on {} keys are linearizable",
            keys.len()
        ))
        .with_details(details)
    }
}

/// Why a search gave up, for people.
pub(crate) fn limit_reason(limit: Limit, timeout: Duration, max_bytes: usize) -> String {
    match limit {
        Limit::Time => format!("time budget of {timeout:?} exhausted"),
        Limit::Memory => format!(
            "memory budget of {} for the search memo exhausted",
            human_bytes(max_bytes as u64)
        ),
    }
}

/// `512 MiB`, `1.5 GiB`, `12 KiB`, `100 B`.
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 || x.fract() == 0.0 {
        format!("{x:.0} {}", UNITS[u])
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests;
