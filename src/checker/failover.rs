//! Failover, measured (and judged only against `--max-failover`).
//!
//! For each leader-affecting fault (a nemesis `kill`, `partition` or `pause`
//! whose targets include a node that, just before the fault, believed it led
//! per its `Role` events or was named in `/rapidstore/leader`):
//!
//! - detection: fault → the old leader's election znode is gone (`ZkElection`);
//! - election: fault → a different node claims leadership (`Role::Leader` with
//!   a higher token, or `/rapidstore/leader` names another node);
//! - recovery: fault → the first acknowledged write completing after that claim
//!   (with no new leader: the first acknowledged write invoked after the fault).
//!
//! Nemesis steps whose `detail` carries an `error` did not apply and are not
//! faults. A fault is followed until the next leader-affecting fault. Faults after
//! which the old leader simply came back have `new_leader: null`. Also measured:
//! windows in which two nodes both believed they led, and windows with no
//! acknowledged write.
//!
//! Event order matters at equal times: the state a fault hits is the one from
//! events strictly before it, so a `Role::Down` recorded at the same instant as
//! the kill does not hide the leader it killed.

use super::{pair_ops, timed, CheckOptions, CheckResult, Percentiles};
use crate::history::{Event, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Failover figures for a whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailoverSummary {
    /// Leader-affecting faults.
    pub faults: usize,
    /// Of those, how many saw acknowledged writes again before the next one.
    pub recovered: usize,
    /// Percentiles of `total_ms` over the recovered faults.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The `--max-failover` target, when one was given.
    #[serde(default)]
    pub target_ms: Option<f64>,
    pub per_fault: Vec<FaultFailover>,
    /// Windows in which two nodes both believed they led.
    pub overlaps: Vec<Overlap>,
    /// Gaps with no acknowledged write longer than the configured threshold.
    pub unavailable: Vec<Window>,
}

/// One leader-affecting fault and what followed it. Durations are from the fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultFailover {
    pub time_ms: f64,
    /// Schedule step name.
    pub fault: String,
    pub action: String,
    pub targets: Vec<String>,
    pub old_leader: String,
    pub old_token: Option<u64>,
    /// `None`: no other node took over (the old leader came back).
    pub new_leader: Option<String>,
    pub new_token: Option<u64>,
    pub detection_ms: Option<f64>,
    pub election_ms: Option<f64>,
    pub recovery_ms: Option<f64>,
    /// The failover figure: equal to `recovery_ms`.
    pub total_ms: Option<f64>,
}

/// Two nodes both believed they were the leader from `start_ms` to `end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Overlap {
    pub start_ms: f64,
    pub end_ms: f64,
    pub duration_ms: f64,
    pub nodes: Vec<String>,
    pub tokens: Vec<Option<u64>>,
}

/// A time window (harness ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Window {
    pub start_ms: f64,
    pub end_ms: f64,
    pub duration_ms: f64,
}

impl Window {
    fn new(start_ms: f64, end_ms: f64) -> Self {
        Window {
            start_ms,
            end_ms,
            duration_ms: end_ms - start_ms,
        }
    }
}

const LEADER_FAULTS: [&str; 3] = ["kill", "partition", "pause"];

/// Who believed they led just before time `f` (events strictly before `f`),
/// with their tokens: nodes whose last role was leader, and the node named in
/// `/rapidstore/leader`.
fn leaders_before<'a>(timed: &[(f64, &'a Event)], f: f64) -> BTreeMap<&'a str, Option<u64>> {
    let end = timed.partition_point(|(t, _)| *t < f);
    let mut roles: BTreeMap<&str, (Role, Option<u64>)> = BTreeMap::new();
    let mut zk: Option<(&str, Option<u64>)> = None;
    let mut seqs: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, e) in &timed[..end] {
        match e {
            Event::Role {
                node, role, token, ..
            } => {
                roles.insert(node, (*role, *token));
                // /rapidstore/leader is persistent: once the node it names
                // reports another role, its content is stale.
                if *role != Role::Leader && zk.is_some_and(|(l, _)| l == node) {
                    zk = None;
                }
            }
            Event::ZkLeader { leader, token, .. } => zk = leader.as_deref().map(|l| (l, *token)),
            Event::ZkElection { members, .. } => {
                seqs = members.iter().map(|(s, n)| (n.as_str(), *s)).collect();
            }
            _ => {}
        }
    }
    let mut out: BTreeMap<&str, Option<u64>> = roles
        .into_iter()
        .filter(|(_, (r, _))| *r == Role::Leader)
        .map(|(n, (_, t))| (n, t))
        .collect();
    if let Some((l, t)) = zk {
        let e = out.entry(l).or_insert(t);
        *e = e.or(t);
    }
    for (n, t) in &mut out {
        *t = t.or_else(|| seqs.get(n).copied());
    }
    out
}

/// Measure failover, overlaps, unavailability (see the module docs).
pub fn measure_failover(events: &[Event], opts: &CheckOptions) -> FailoverSummary {
    let timed = timed(events);
    let history_end = timed.last().map_or(0.0, |(t, _)| *t);
    let ops = pair_ops(events);
    let mut ok_writes: Vec<(f64, f64)> = ops
        .ops
        .iter()
        .filter(|o| o.is_ok_write())
        .filter_map(|o| o.end_ms().map(|end| (o.invoke.time_ms, end)))
        .collect();
    ok_writes.sort_by(|a, b| a.1.total_cmp(&b.1));

    // Leader-affecting faults, with the leader each took out.
    let mut faults: Vec<(f64, &Event, &str, Option<u64>)> = Vec::new();
    for (t, e) in &timed {
        let Event::Nemesis {
            action,
            targets,
            detail,
            ..
        } = e
        else {
            continue;
        };
        // A step that failed to apply (the nemesis records its error) took nobody out.
        let failed = detail.get("error").is_some_and(|e| !e.is_null());
        if !LEADER_FAULTS.contains(&action.as_str()) || failed {
            continue;
        }
        let leaders = leaders_before(&timed, *t);
        // The highest-token leader among the targets.
        let hit = targets
            .iter()
            .filter_map(|n| leaders.get_key_value(n.as_str()))
            .max_by_key(|(_, tok)| **tok);
        if let Some((node, tok)) = hit {
            faults.push((*t, e, node, *tok));
        }
    }

    let mut per_fault = Vec::new();
    for (i, &(f, e, old, old_token)) in faults.iter().enumerate() {
        let end = faults.get(i + 1).map_or(f64::INFINITY, |n| n.0);
        let window = &timed
            [timed.partition_point(|(t, _)| *t < f)..timed.partition_point(|(t, _)| *t < end)];
        let detection = window.iter().find_map(|(t, e)| match e {
            Event::ZkElection { members, .. } => {
                let present = members.iter().any(|(s, n)| match old_token {
                    Some(tok) => *s == tok,
                    None => n == old,
                });
                (!present).then_some(*t)
            }
            _ => None,
        });
        let higher = |tok: &Option<u64>| match (old_token, tok) {
            (Some(o), Some(n)) => *n > o,
            _ => true,
        };
        let election = window.iter().find_map(|(t, e)| match e {
            Event::Role {
                node,
                role: Role::Leader,
                token,
                ..
            } if node != old && higher(token) => Some((*t, node.clone(), *token)),
            Event::ZkLeader {
                leader: Some(l),
                token,
                ..
            } if l != old && higher(token) => Some((*t, l.clone(), *token)),
            _ => None,
        });
        let recovery = match &election {
            Some((claim, _, _)) => ok_writes
                .iter()
                .find(|(_, done)| *done >= *claim && *done < end)
                .map(|w| w.1),
            None => ok_writes
                .iter()
                .find(|(inv, done)| *inv >= f && *done < end)
                .map(|w| w.1),
        };
        let Event::Nemesis {
            fault,
            action,
            targets,
            ..
        } = e
        else {
            unreachable!("faults are nemesis events")
        };
        per_fault.push(FaultFailover {
            time_ms: f,
            fault: fault.clone(),
            action: action.clone(),
            targets: targets.clone(),
            old_leader: old.to_string(),
            old_token,
            new_leader: election.as_ref().map(|e| e.1.clone()),
            new_token: election.as_ref().and_then(|e| e.2),
            detection_ms: detection.map(|t| t - f),
            election_ms: election.as_ref().map(|e| e.0 - f),
            recovery_ms: recovery.map(|t| t - f),
            total_ms: recovery.map(|t| t - f),
        });
    }

    let totals: Vec<f64> = per_fault.iter().filter_map(|f| f.total_ms).collect();
    let pct = Percentiles::of(totals.clone());
    FailoverSummary {
        faults: per_fault.len(),
        recovered: totals.len(),
        p50_ms: pct.p50_ms,
        p90_ms: pct.p90_ms,
        p99_ms: pct.p99_ms,
        max_ms: pct.max_ms,
        target_ms: opts.max_failover_ms,
        per_fault,
        overlaps: overlaps(&timed, history_end),
        unavailable: unavailable(&ops.ops, &ok_writes, opts.unavailable_gap_ms),
    }
}

/// Intervals in which two nodes both believed they led, from `Role` events: a
/// node leads from a leader report until its next non-leader report (or the end).
fn overlaps(timed: &[(f64, &Event)], history_end: f64) -> Vec<Overlap> {
    let mut open: BTreeMap<&str, (f64, Option<u64>)> = BTreeMap::new();
    let mut terms: Vec<(&str, f64, f64, Option<u64>)> = Vec::new();
    for (t, e) in timed {
        let Event::Role {
            node, role, token, ..
        } = e
        else {
            continue;
        };
        match (role, open.get(node.as_str()).copied()) {
            (Role::Leader, Some((_, tok))) if tok == *token => {}
            (Role::Leader, prev) => {
                if let Some((start, tok)) = prev {
                    terms.push((node, start, *t, tok));
                }
                open.insert(node, (*t, *token));
            }
            (_, Some((start, tok))) => {
                terms.push((node, start, *t, tok));
                open.remove(node.as_str());
            }
            (_, None) => {}
        }
    }
    terms.extend(
        open.into_iter()
            .map(|(n, (s, tok))| (n, s, history_end, tok)),
    );
    terms.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = Vec::new();
    for (i, a) in terms.iter().enumerate() {
        for b in &terms[i + 1..] {
            let (start, end) = (a.1.max(b.1), a.2.min(b.2));
            if a.0 != b.0 && end > start {
                out.push(Overlap {
                    start_ms: start,
                    end_ms: end,
                    duration_ms: end - start,
                    nodes: vec![a.0.to_string(), b.0.to_string()],
                    tokens: vec![a.3, b.3],
                });
            }
        }
    }
    out.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    out
}

/// Windows longer than `gap_ms` in which clients were trying to write but no
/// write was acknowledged: from the first write in flight after an
/// acknowledgement (or the first write) to the next acknowledgement (or the
/// last write attempt). Gaps in which nobody tried to write are not counted.
fn unavailable(ops: &[super::Op], ok_writes: &[(f64, f64)], gap_ms: f64) -> Vec<Window> {
    // (invoke, end) of every write attempt; end is infinite if it never completed.
    let attempts: Vec<(f64, f64)> = ops
        .iter()
        .filter(|o| {
            matches!(
                o.invoke.f,
                crate::history::OpKind::Write | crate::history::OpKind::Cas
            )
        })
        .map(|o| (o.invoke.time_ms, o.end_ms().unwrap_or(f64::INFINITY)))
        .collect();
    let Some(start) = attempts.iter().map(|a| a.0).min_by(f64::total_cmp) else {
        return Vec::new();
    };
    let last = attempts
        .iter()
        .map(|a| if a.1.is_finite() { a.1 } else { a.0 })
        .fold(start, f64::max);
    let mut points = vec![start];
    points.extend(ok_writes.iter().map(|w| w.1));
    points.push(last);
    let mut out = Vec::new();
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b - a <= gap_ms {
            continue;
        }
        // The first moment in (a, b) a write was in flight.
        let first = attempts
            .iter()
            .filter(|(inv, end)| *inv < b && *end > a)
            .map(|(inv, _)| inv.max(a))
            .min_by(f64::total_cmp);
        if let Some(s) = first.filter(|s| b - s > gap_ms) {
            out.push(Window::new(s, b));
        }
    }
    out
}

/// The `failover` check, present only with `--max-failover`: every
/// leader-affecting fault recovered within `target_ms`.
pub fn failover_gate(
    summary: &FailoverSummary,
    target_ms: f64,
    history_end_ms: f64,
) -> CheckResult {
    let missed: Vec<&FaultFailover> = summary
        .per_fault
        .iter()
        .filter(|f| match f.total_ms {
            Some(total) => total > target_ms,
            None => history_end_ms - f.time_ms > target_ms,
        })
        .collect();
    let pending: Vec<&FaultFailover> = summary
        .per_fault
        .iter()
        .filter(|f| f.total_ms.is_none() && history_end_ms - f.time_ms <= target_ms)
        .collect();
    let details = json!({
        "target_ms": target_ms,
        "faults": summary.faults,
        "max_ms": summary.max_ms,
        "missed": missed.len(),
    });
    let cx = |fs: &[&FaultFailover]| fs.iter().map(|f| json!(f)).collect::<Vec<_>>();
    if let Some(first) = missed.first() {
        let took = first
            .total_ms
            .map_or("never recovered".to_string(), |t| format!("took {t:.0} ms"));
        return CheckResult::invalid(
            format!(
                "{} of {} faults missed the failover target of {target_ms:.0} ms; {} at {:.0} ms {took}",
                missed.len(),
                summary.faults,
                first.fault,
                first.time_ms
            ),
            cx(&missed),
        )
        .with_details(details);
    }
    if !pending.is_empty() {
        return CheckResult {
            counterexample: cx(&pending),
            ..CheckResult::unknown(format!(
                "{} fault(s) had not recovered when the history ended, less than {target_ms:.0} ms later",
                pending.len()
            ))
        }
        .with_details(details);
    }
    if summary.faults == 0 {
        return CheckResult::valid("no leader-affecting faults to measure").with_details(details);
    }
    CheckResult::valid(format!(
        "all {} faults recovered within {target_ms:.0} ms (max {:.0} ms)",
        summary.faults,
        summary.max_ms.unwrap_or(0.0)
    ))
    .with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::H;
    use crate::checker::Validity;
    use crate::history::Outcome;

    /// n1 leads with token 3; killed at 1000; its znode goes at 5000; n2 claims
    /// token 4 at 5200; writes resume at 5400.
    fn kill_leader() -> H {
        let mut h = H::new();
        h.zk_election(0.0, &[(3, "n1"), (4, "n2"), (5, "n3")])
            .leader(10.0, "n1", 3)
            .zk_leader(11.0, Some("n1"), Some(3));
        h.write(0, "k", "a", 100.0, 110.0, Outcome::Ok);
        h.write(0, "k", "b", 900.0, 990.0, Outcome::Ok);
        h.nemesis(1000.0, "kill", &["n1"]);
        h.role(1000.0, "n1", Role::Down, None);
        h.write(1, "k", "c", 1000.0, 3000.0, Outcome::Info);
        h.zk_election(5000.0, &[(4, "n2"), (5, "n3")]);
        h.leader(5200.0, "n2", 4)
            .zk_leader(5210.0, Some("n2"), Some(4));
        h.write(2, "k", "d", 5300.0, 5400.0, Outcome::Ok);
        h.write(2, "k", "e", 5500.0, 5600.0, Outcome::Ok);
        h
    }

    #[test]
    fn measures_each_phase_of_a_failover() {
        let s = measure_failover(&kill_leader().build(), &CheckOptions::default());
        assert_eq!(s.faults, 1);
        let f = &s.per_fault[0];
        assert_eq!(f.old_leader, "n1");
        assert_eq!(f.old_token, Some(3));
        assert_eq!(f.new_leader.as_deref(), Some("n2"));
        assert_eq!(f.new_token, Some(4));
        assert_eq!(f.detection_ms, Some(4000.0));
        assert_eq!(f.election_ms, Some(4200.0));
        assert_eq!(f.recovery_ms, Some(4400.0));
        assert_eq!(s.max_ms, Some(4400.0));
        assert_eq!(s.p50_ms, Some(4400.0));
        // Writes in flight from 1000, none acknowledged until 5400.
        assert_eq!(s.unavailable, vec![Window::new(1000.0, 5400.0)]);
        assert!(s.overlaps.is_empty(), "{:?}", s.overlaps);
    }

    #[test]
    fn idle_gaps_are_not_unavailability() {
        let mut h = H::new();
        h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
        h.write(0, "k", "b", 5000.0, 5010.0, Outcome::Ok);
        h.write(0, "k", "c", 6000.0, 9000.0, Outcome::Fail);
        h.write(0, "k", "d", 9000.0, 9010.0, Outcome::Ok);
        let s = measure_failover(&h.build(), &CheckOptions::default());
        assert_eq!(s.unavailable, vec![Window::new(6000.0, 9010.0)]);
    }

    #[test]
    fn a_fault_that_failed_to_apply_is_not_a_failover() {
        let mut h = H::new();
        h.leader(10.0, "n1", 3).push(Event::Nemesis {
            time_ms: 100.0,
            fault: "kill-leader".into(),
            action: "kill".into(),
            targets: vec!["n1".into()],
            detail: json!({"error": "no such process", "detail": null}),
        });
        assert_eq!(
            measure_failover(&h.build(), &CheckOptions::default()).faults,
            0
        );
    }

    #[test]
    fn a_fault_on_a_follower_is_not_a_failover() {
        let mut h = H::new();
        h.leader(10.0, "n1", 3)
            .role(11.0, "n2", Role::Follower, None);
        h.nemesis(100.0, "kill", &["n2"])
            .nemesis(200.0, "skew", &["n1"]);
        assert_eq!(
            measure_failover(&h.build(), &CheckOptions::default()).faults,
            0
        );
    }

    #[test]
    fn leader_that_came_back_has_no_new_leader() {
        let mut h = H::new();
        h.zk_election(0.0, &[(3, "n1"), (4, "n2")])
            .leader(10.0, "n1", 3);
        h.write(0, "k", "a", 20.0, 30.0, Outcome::Ok);
        h.nemesis(100.0, "pause", &["n1"]);
        h.write(0, "k", "b", 110.0, 1600.0, Outcome::Ok); // in flight, done after resume
        h.nemesis(1500.0, "resume", &["n1"]);
        h.write(0, "k", "c", 1610.0, 1700.0, Outcome::Ok);
        let s = measure_failover(&h.build(), &CheckOptions::default());
        let f = &s.per_fault[0];
        assert_eq!(f.new_leader, None);
        assert_eq!(f.detection_ms, None);
        assert_eq!(f.recovery_ms, Some(1500.0));
    }

    #[test]
    fn overlapping_leaders_are_reported() {
        let mut h = H::new();
        h.leader(10.0, "n1", 3)
            .nemesis(100.0, "partition", &["n1"])
            .leader(4000.0, "n2", 4)
            .role(4500.0, "n1", Role::Disconnected, None);
        let s = measure_failover(&h.build(), &CheckOptions::default());
        assert_eq!(s.overlaps.len(), 1);
        let o = &s.overlaps[0];
        assert_eq!((o.start_ms, o.end_ms), (4000.0, 4500.0));
        assert_eq!(o.nodes, vec!["n1", "n2"]);
        assert_eq!(o.tokens, vec![Some(3), Some(4)]);
    }

    #[test]
    fn gate_judges_against_the_target() {
        let events = kill_leader().build();
        let s = measure_failover(&events, &CheckOptions::default());
        assert_eq!(failover_gate(&s, 5000.0, 5600.0).valid, Validity::Valid);
        let r = failover_gate(&s, 4000.0, 5600.0);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample[0]["old_leader"], "n1");
    }

    #[test]
    fn gate_on_an_unrecovered_fault() {
        let mut h = H::new();
        h.leader(10.0, "n1", 3)
            .nemesis(100.0, "kill", &["n1"])
            .phase(2000.0, "healing");
        let s = measure_failover(&h.build(), &CheckOptions::default());
        assert_eq!(failover_gate(&s, 1000.0, 2000.0).valid, Validity::Invalid);
        assert_eq!(failover_gate(&s, 5000.0, 2000.0).valid, Validity::Unknown);
    }
}
