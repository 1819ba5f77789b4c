//! "fencing": every replica accepted writes in non-decreasing token order, and
//! none with a token below the highest it had already seen.
//!
//! Works on the `Replica` events each node logged, per node in `seq` order. The
//! highest token a replica has seen is persisted (DESIGN.md), so it must never
//! go back, even across restarts: a write is stale if its token is below the
//! replica's reported `highest_seen`, or below any token the same replica
//! accepted or reported seeing earlier.

use super::{event_json, CheckResult, Checker};
use crate::history::Event;
use serde_json::json;
use std::collections::BTreeMap;

/// Replica fencing (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fencing;

/// One stale acceptance: the event and the earlier event (if any) that
/// established the higher token.
struct Violation<'a> {
    stale: &'a Event,
    token: u64,
    highest: u64,
    because: Option<&'a Event>,
}

impl Checker for Fencing {
    fn name(&self) -> &'static str {
        "fencing"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let mut by_node: BTreeMap<&str, Vec<(u64, &Event)>> = BTreeMap::new();
        for e in events {
            if let Event::Replica { node, seq, .. } = e {
                by_node.entry(node).or_default().push((*seq, e));
            }
        }
        let mut accepted = 0usize;
        let mut rejected = 0usize;
        let mut first: BTreeMap<&str, Violation> = BTreeMap::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (node, evs) in &mut by_node {
            evs.sort_by_key(|(seq, _)| *seq);
            // Highest token known so far on this node, and the event that showed it.
            let mut high: Option<(u64, &Event)> = None;
            for &(_, e) in evs.iter() {
                let Event::Replica {
                    token,
                    accepted: acc,
                    highest_seen,
                    ..
                } = e
                else {
                    continue;
                };
                if !acc {
                    rejected += 1;
                } else {
                    accepted += 1;
                    let earlier = high.map_or(0, |(t, _)| t);
                    if *token < earlier.max(*highest_seen) {
                        *counts.entry(node).or_default() += 1;
                        first.entry(node).or_insert(Violation {
                            stale: e,
                            token: *token,
                            highest: earlier.max(*highest_seen),
                            because: high.filter(|(t, _)| *t > *token).map(|(_, e)| e),
                        });
                    }
                }
                // What this event teaches about the highest token: an accepted
                // write's token, and the highest the replica says it had seen.
                let learned = if *acc {
                    (*token).max(*highest_seen)
                } else {
                    *highest_seen
                };
                if high.is_none_or(|(t, _)| learned > t) {
                    high = Some((learned, e));
                }
            }
        }
        let details = json!({
            "replicas": by_node.len(),
            "accepted": accepted,
            "rejected": rejected,
            "stale_acceptances": counts,
        });
        if first.is_empty() {
            return CheckResult::valid(format!(
                "{accepted} accepted and {rejected} rejected writes on {} replicas, all fenced",
                by_node.len()
            ))
            .with_details(details);
        }
        let total: usize = counts.values().sum();
        let (node, v) = first.iter().next().expect("not empty");
        let mut cx = Vec::new();
        for v in first.values() {
            if let Some(b) = v.because {
                cx.push(event_json(b));
            }
            cx.push(event_json(v.stale));
        }
        CheckResult::invalid(
            format!(
                "{node} accepted a write with token {} after seeing token {} ({total} stale acceptance(s) on {} replica(s))",
                v.token,
                v.highest,
                first.len()
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

    fn healthy() -> H {
        let mut h = H::new();
        h.replica("n2", 1, 3, 1, "k", "a", true, 3)
            .replica("n2", 2, 3, 2, "k", "b", true, 3)
            .replica("n2", 3, 5, 3, "k", "c", true, 3)
            .replica("n2", 4, 3, 3, "k", "x", false, 5)
            .replica("n3", 1, 3, 1, "k", "a", true, 0);
        h
    }

    #[test]
    fn fenced_replicas_pass() {
        let r = Fencing.check(&healthy().build());
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["rejected"], 1);
    }

    #[test]
    fn accepting_below_highest_seen_is_caught() {
        let mut h = healthy();
        h.replica("n3", 2, 2, 2, "k", "old", true, 3);
        let r = Fencing.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        // The earlier event establishing token 3, then the stale acceptance.
        assert_eq!(r.counterexample.len(), 2);
        assert_eq!(r.counterexample[0]["seq"], 1);
        assert_eq!(r.counterexample[1]["value"], "old");
        assert!(r
            .summary
            .starts_with("n3 accepted a write with token 2 after seeing token 3"));
    }

    #[test]
    fn accepted_tokens_going_down_is_caught_even_if_highest_seen_forgot() {
        // A replica that lost its persisted highest token (reports 0) accepts
        // token 3 after having accepted token 5.
        let mut h = healthy();
        h.replica("n2", 5, 3, 4, "k", "stale", true, 0);
        let r = Fencing.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample[0]["token"], 5);
        assert_eq!(r.counterexample[1]["value"], "stale");
    }

    #[test]
    fn seq_order_not_file_order() {
        let mut h = H::new();
        h.replica("n1", 2, 5, 2, "k", "b", true, 4)
            .replica("n1", 1, 4, 1, "k", "a", true, 4);
        assert_eq!(Fencing.check(&h.build()).valid, Validity::Valid);
    }
}
