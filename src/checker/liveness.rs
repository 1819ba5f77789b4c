//! "liveness": after the final heal, a leader is elected and writes succeed.
//!
//! The final heal is the last `healing` phase (or, without one, the last
//! `final_reads` phase). After it, some node must claim leadership (a new
//! claim, or a claim standing at the heal that is never withdrawn) and at least
//! one write or cas must complete `ok`.

use super::{event_json, pair_ops, timed, CheckResult, Checker};
use crate::history::{Event, OpKind, Outcome, Role};
use serde_json::json;
use std::collections::BTreeMap;

/// Progress after the final heal (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness;

/// Who claimed leadership after time `t` (first such claim), per Role and
/// ZooKeeper: a claim made after `t`, or a node's claim standing at `t` and
/// never withdrawn.
fn leader_after(events: &[Event], t: f64) -> Option<(f64, String, Option<u64>)> {
    let timed = timed(events);
    let mut role_at: BTreeMap<&str, (Role, Option<u64>)> = BTreeMap::new();
    let mut zk_at: Option<(&str, Option<u64>)> = None;
    for (_, e) in timed.iter().filter(|(time, _)| *time <= t) {
        match e {
            Event::Role {
                node, role, token, ..
            } => {
                role_at.insert(node, (*role, *token));
            }
            Event::ZkLeader { leader, token, .. } => zk_at = leader.as_deref().map(|l| (l, *token)),
            _ => {}
        }
    }
    let after: Vec<&(f64, &Event)> = timed.iter().filter(|(time, _)| *time > t).collect();
    // A new claim after t: a node reporting leadership, or /rapidstore/leader
    // changing. (That znode is persistent: its content at t may name a node
    // that died long ago, so unchanged content proves nothing.)
    let new_claim = after.iter().find_map(|(time, e)| match e {
        Event::Role {
            node,
            role: Role::Leader,
            token,
            ..
        } => Some((*time, node.clone(), *token)),
        Event::ZkLeader {
            leader: Some(l),
            token,
            ..
        } if zk_at != Some((l.as_str(), *token)) => Some((*time, l.clone(), *token)),
        _ => None,
    });
    if new_claim.is_some() {
        return new_claim;
    }
    // A node leading at t that never reported another role afterwards.
    role_at
        .iter()
        .filter(|(_, (r, _))| *r == Role::Leader)
        .find(|(node, _)| {
            !after
                .iter()
                .any(|(_, e)| matches!(e, Event::Role { node: n, .. } if n == *node))
        })
        .map(|(node, (_, token))| (t, node.to_string(), *token))
}

impl Checker for Liveness {
    fn name(&self) -> &'static str {
        "liveness"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let phase = |name: &str| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Phase { phase, .. } if phase == name))
                .max_by(|a, b| {
                    a.time_ms()
                        .unwrap_or(0.0)
                        .total_cmp(&b.time_ms().unwrap_or(0.0))
                })
        };
        let Some(heal) = phase("healing").or_else(|| phase("final_reads")) else {
            return CheckResult::unknown("history incomplete: no healing or final_reads phase");
        };
        let t = heal.time_ms().unwrap_or(0.0);
        let leader = leader_after(events, t);
        let ops = pair_ops(events);
        let writes_after: Vec<_> = ops
            .ops
            .iter()
            .filter(|o| matches!(o.invoke.f, OpKind::Write | OpKind::Cas))
            .filter(|o| o.invoke.time_ms >= t || o.end_ms().is_some_and(|e| e >= t))
            .collect();
        let ok_after: Vec<_> = writes_after
            .iter()
            .filter(|o| o.outcome() == Outcome::Ok && o.end_ms().is_some_and(|e| e >= t))
            .collect();
        let first_ok = ok_after
            .iter()
            .filter_map(|o| o.end_ms())
            .min_by(f64::total_cmp);
        let details = json!({
            "heal_ms": t,
            "leader": leader.as_ref().map(|(at, node, token)| json!({"node": node, "token": token, "at_ms": at})),
            "writes_attempted_after": writes_after.len(),
            "ok_writes_after": ok_after.len(),
            "first_ok_write_after_ms": first_ok.map(|f| f - t),
        });
        if let (Some((at, node, token)), Some(first)) = (&leader, first_ok) {
            let token = token.map_or(String::new(), |t| format!(" (token {t})"));
            return CheckResult::valid(format!(
                "after the final heal at {t:.0} ms, {node}{token} led from {:.0} ms and {} writes succeeded, the first after {:.0} ms",
                at,
                ok_after.len(),
                first - t
            ))
            .with_details(details);
        }
        if leader.is_some() && writes_after.is_empty() {
            return CheckResult::unknown(format!(
                "no write was attempted after the final heal at {t:.0} ms"
            ))
            .with_details(details);
        }
        // Evidence: the heal, each node's last role, the first failed writes.
        let mut cx = vec![event_json(heal)];
        let mut last_role: BTreeMap<&str, &Event> = BTreeMap::new();
        for (_, e) in timed(events) {
            if let Event::Role { node, .. } = e {
                last_role.insert(node, e);
            }
        }
        cx.extend(last_role.values().map(|e| event_json(e)));
        cx.extend(
            writes_after
                .iter()
                .filter(|o| o.outcome() != Outcome::Ok)
                .take(3)
                .map(|o| o.to_json()),
        );
        let summary = match leader {
            None => format!(
                "no node claimed leadership after the final heal at {t:.0} ms ({} writes attempted, {} ok)",
                writes_after.len(),
                ok_after.len()
            ),
            Some((_, node, _)) => format!(
                "{node} led after the final heal at {t:.0} ms but none of {} writes attempted succeeded",
                writes_after.len()
            ),
        };
        CheckResult::invalid(summary, cx).with_details(details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::H;
    use crate::checker::Validity;

    fn run() -> H {
        let mut h = H::new();
        h.phase(0.0, "running").leader(10.0, "n1", 3);
        h.write(0, "k", "a", 20.0, 30.0, Outcome::Ok);
        h.nemesis(100.0, "kill", &["n1"])
            .role(100.0, "n1", Role::Down, None)
            .phase(5000.0, "healing");
        h
    }

    #[test]
    fn no_phase_is_unknown() {
        let mut h = H::new();
        h.leader(1.0, "n1", 1);
        let r = Liveness.check(&h.build());
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.summary.contains("no healing"));
    }

    #[test]
    fn new_leader_and_write_after_heal_is_valid() {
        let mut h = run();
        h.leader(5200.0, "n2", 4);
        h.write(1, "k", "b", 5300.0, 5350.0, Outcome::Ok);
        let r = Liveness.check(&h.build());
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["leader"]["node"], "n2");
    }

    #[test]
    fn standing_leader_counts() {
        let mut h = H::new();
        h.phase(0.0, "running")
            .leader(10.0, "n1", 3)
            .phase(100.0, "healing");
        h.write(1, "k", "b", 200.0, 210.0, Outcome::Ok);
        assert_eq!(Liveness.check(&h.build()).valid, Validity::Valid);
    }

    #[test]
    fn no_leader_after_heal_is_invalid() {
        let mut h = run();
        h.write(1, "k", "b", 5300.0, 6300.0, Outcome::Info);
        h.write(2, "k", "c", 6400.0, 7400.0, Outcome::Fail);
        let r = Liveness.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert!(
            r.summary.starts_with("no node claimed leadership"),
            "{}",
            r.summary
        );
        assert_eq!(r.counterexample[0]["phase"], "healing");
        assert_eq!(r.counterexample[1]["role"], "down");
        assert_eq!(r.counterexample.len(), 4);
    }

    #[test]
    fn leader_but_no_successful_write_is_invalid() {
        let mut h = run();
        h.leader(5200.0, "n2", 4);
        h.write(1, "k", "b", 5300.0, 6300.0, Outcome::Fail);
        let r = Liveness.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.summary.contains("none of 1 writes"), "{}", r.summary);
    }
}
