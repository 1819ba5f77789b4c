//! "no-lost-writes": every acknowledged write or cas is in the final committed
//! log (read from the leader after the final heal) at the index it was
//! acknowledged with, with the same key and value.
//!
//! An acknowledged write without an index can only be looked for by key and
//! value anywhere in the log. Without a final log the answer is unknown.

use super::{event_json, pair_ops, CheckResult, Checker, Op};
use crate::history::{Event, LogEntry};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// Acknowledged writes survive (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLostWrites;

/// One acknowledged write missing from the final log.
struct Lost<'a> {
    op: Op<'a>,
    /// What the final log holds at the write's index (`None`: nothing, or the
    /// write had no index).
    found: Option<&'a LogEntry>,
}

impl Checker for NoLostWrites {
    fn name(&self) -> &'static str {
        "no-lost-writes"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        // The last final log read wins (a retry after a failed read).
        let Some((final_event, node, entries)) = events.iter().rev().find_map(|e| match e {
            Event::FinalLog { node, entries, .. } => Some((e, node, entries)),
            _ => None,
        }) else {
            return CheckResult::unknown("history incomplete: no final log");
        };
        let by_index: HashMap<u64, &LogEntry> = entries.iter().map(|e| (e.index, e)).collect();
        let present: HashSet<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let ops = pair_ops(events);
        let mut acked = 0usize;
        let mut lost: Vec<Lost> = Vec::new();
        for op in ops.ops.iter().filter(|o| o.is_ok_write()) {
            acked += 1;
            let (key, value) = (
                op.invoke.key.as_str(),
                op.invoke.value.as_deref().unwrap_or(""),
            );
            match op.complete.and_then(|c| c.index) {
                Some(ix) => {
                    let at = by_index.get(&ix).copied();
                    if at.is_none_or(|e| e.key != key || e.value != value) {
                        lost.push(Lost { op: *op, found: at });
                    }
                }
                None if !present.contains(&(key, value)) => lost.push(Lost {
                    op: *op,
                    found: None,
                }),
                None => {}
            }
        }
        let details = json!({
            "acknowledged": acked,
            "final_log_node": node,
            "final_log_entries": entries.len(),
            "lost": lost.len(),
            "lost_op_ids": lost.iter().take(100).map(|l| l.op.invoke.op_id).collect::<Vec<_>>(),
        });
        let Some(first) = lost.first() else {
            return CheckResult::valid(format!(
                "all {acked} acknowledged writes are in the final log ({} entries, read from {node})",
                entries.len()
            ))
            .with_details(details);
        };
        let ix = first.op.complete.and_then(|c| c.index);
        let at = match (ix, first.found) {
            (Some(ix), Some(e)) => {
                format!("index {ix} holds {}={} (token {})", e.key, e.value, e.token)
            }
            (Some(ix), None) => format!("index {ix} is not in the final log"),
            (None, _) => "no entry has that key and value".into(),
        };
        let mut cx: Vec<Value> = events
            .iter()
            .filter(|e| match e {
                Event::Invoke(i) => i.op_id == first.op.invoke.op_id,
                Event::Complete(c) => c.op_id == first.op.invoke.op_id,
                _ => false,
            })
            .map(event_json)
            .collect();
        cx.push(json!({
            "final_log": {"node": node, "time_ms": final_event.time_ms()},
            "index": ix,
            "entry": first.found,
        }));
        CheckResult::invalid(
            format!(
                "acknowledged write {}={} (op {}) is lost: {at} ({} lost of {acked})",
                first.op.invoke.key,
                first.op.invoke.value.as_deref().unwrap_or("<absent>"),
                first.op.invoke.op_id,
                lost.len()
            ),
            cx,
        )
        .with_details(details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::H;
    use crate::checker::Validity;
    use crate::history::Outcome;

    fn writes() -> H {
        let mut h = H::new();
        h.write_at(0, "k", "a", 0.0, 1.0, 1);
        h.write_at(1, "j", "b", 0.5, 2.0, 2);
        h.write(2, "k", "c", 3.0, 4.0, Outcome::Info); // may be lost
        h.write(3, "k", "d", 3.0, 4.0, Outcome::Fail);
        h
    }

    #[test]
    fn no_final_log_is_unknown() {
        let r = NoLostWrites.check(&writes().build());
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.summary, "history incomplete: no final log");
    }

    #[test]
    fn all_acknowledged_writes_present_is_valid() {
        let mut h = writes();
        h.final_log(10.0, "n1", &[(1, 3, "k", "a"), (2, 3, "j", "b")]);
        let r = NoLostWrites.check(&h.build());
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["acknowledged"], 2);
    }

    #[test]
    fn overwritten_index_is_a_lost_write() {
        let mut h = writes();
        // A new leader without sync overwrote index 2.
        h.final_log(10.0, "n1", &[(1, 3, "k", "a"), (2, 4, "k", "z")]);
        let r = NoLostWrites.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample.len(), 3);
        assert_eq!(r.counterexample[0]["type"], "invoke");
        assert_eq!(r.counterexample[0]["value"], "b");
        assert_eq!(r.counterexample[1]["type"], "complete");
        assert_eq!(r.counterexample[2]["entry"]["value"], "z");
        assert!(r.summary.contains("index 2 holds k=z"), "{}", r.summary);
    }

    #[test]
    fn missing_index_is_a_lost_write() {
        let mut h = writes();
        h.final_log(10.0, "n1", &[(1, 3, "k", "a")]);
        let r = NoLostWrites.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.counterexample[2]["entry"].is_null());
    }
}
