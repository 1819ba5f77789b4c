//! "no-writes-without-quorum": while ZooKeeper has no quorum no new leader
//! can be elected, so no node may acknowledge a write it cannot fence. The
//! nemesis records when it saw ZooKeeper lose quorum (`zk-quorum-lost`) and
//! regain it (`zk-quorum-restored`); a write invoked after the loss (plus
//! the time a client needs to notice it, 2/5 of the session timeout) and
//! acknowledged before the recovery is a violation. Writes in flight at the
//! loss are counted and reported, not judged.

use super::{event_json, pair_ops, CheckResult, Checker};
use crate::history::Event;
use serde_json::json;

/// Slack for the harness noticing the loss after it happened.
const MARGIN_MS: f64 = 200.0;

/// No write acknowledged while ZooKeeper had no quorum (see module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWritesWithoutQuorum;

/// Windows in which ZooKeeper had no quorum: (lost, grace end, restored).
fn windows(events: &[Event]) -> Vec<(f64, f64, f64)> {
    let mut out = Vec::new();
    let mut open: Option<(f64, f64)> = None;
    let end = events.iter().filter_map(Event::time_ms).fold(0.0, f64::max);
    for e in events {
        if let Event::Nemesis {
            time_ms,
            action,
            detail,
            ..
        } = e
        {
            match action.as_str() {
                "zk-quorum-lost" if detail.get("error").is_none() => {
                    let session = detail["session_timeout_ms"].as_f64().unwrap_or(0.0);
                    open = Some((*time_ms, *time_ms + session * 2.0 / 5.0 + MARGIN_MS));
                }
                "zk-quorum-restored" => {
                    if let Some((lost, grace)) = open.take() {
                        out.push((lost, grace, *time_ms));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some((lost, grace)) = open {
        out.push((lost, grace, end));
    }
    out
}

impl Checker for NoWritesWithoutQuorum {
    fn name(&self) -> &'static str {
        "no-writes-without-quorum"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let wins = windows(events);
        if wins.is_empty() {
            return CheckResult::valid("ZooKeeper never lost quorum");
        }
        let ops = pair_ops(events);
        let mut in_flight = 0;
        let mut violations = Vec::new();
        for op in ops.ops.iter().filter(|o| o.is_ok_write()) {
            let (Some(c), inv) = (op.complete, op.invoke) else {
                continue;
            };
            for &(lost, grace, restored) in &wins {
                if c.time_ms > lost && c.time_ms < restored {
                    if inv.time_ms > grace {
                        violations.push((op, lost, restored));
                    } else {
                        in_flight += 1;
                    }
                }
            }
        }
        let total: f64 = wins.iter().map(|(l, _, r)| r - l).sum();
        let details = json!({
            "windows": wins.iter().map(|(l, g, r)| json!({"lost_ms": l, "grace_until_ms": g, "restored_ms": r})).collect::<Vec<_>>(),
            "no_quorum_ms": total,
            "acknowledged_in_flight_at_loss": in_flight,
            "acknowledged_after_loss": violations.len(),
        });
        if violations.is_empty() {
            return CheckResult::valid(format!(
                "ZooKeeper had no quorum for {total:.0} ms in {} window(s); no write invoked in that time was acknowledged ({in_flight} in flight at the loss completed)",
                wins.len()
            ))
            .with_details(details);
        }
        let (op, lost, restored) = violations[0];
        let mut cx = vec![json!({"no_quorum_from_ms": lost, "until_ms": restored})];
        cx.push(event_json(&Event::Invoke(op.invoke.clone())));
        if let Some(c) = op.complete {
            cx.push(event_json(&Event::Complete(c.clone())));
        }
        CheckResult::invalid(
            format!(
                "write {}={} was acknowledged at {:.0} ms while ZooKeeper had no quorum ({} such write(s))",
                op.invoke.key,
                op.invoke.value.as_deref().unwrap_or(""),
                op.complete.map_or(0.0, |c| c.time_ms),
                violations.len()
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

    fn nemesis(t: f64, action: &str) -> Event {
        Event::Nemesis {
            time_ms: t,
            fault: "partition-zk-majority".into(),
            action: action.into(),
            targets: vec![],
            detail: json!({ "session_timeout_ms": 2000 }),
        }
    }

    #[test]
    fn no_window_is_valid() {
        let h = H::new();
        assert_eq!(
            NoWritesWithoutQuorum.check(&h.events).valid,
            Validity::Valid
        );
    }

    #[test]
    fn a_write_invoked_after_the_loss_and_acknowledged_is_caught() {
        let mut h = H::new();
        h.events.push(nemesis(1000.0, "zk-quorum-lost"));
        // In flight at the loss: reported, not judged.
        h.write_at(0, "k", "a", 990.0, 1100.0, 1);
        let ok = NoWritesWithoutQuorum.check(&h.events);
        assert_eq!(ok.valid, Validity::Valid, "{}", ok.summary);
        h.write_at(1, "k", "b", 2500.0, 2510.0, 2);
        h.events.push(nemesis(4000.0, "zk-quorum-restored"));
        let r = NoWritesWithoutQuorum.check(&h.events);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.summary);
        assert!(r.summary.contains("k=b"), "{}", r.summary);
        // After the recovery, writes are fine again.
        let mut h2 = H::new();
        h2.events.push(nemesis(1000.0, "zk-quorum-lost"));
        h2.events.push(nemesis(4000.0, "zk-quorum-restored"));
        h2.write_at(0, "k", "c", 4100.0, 4200.0, 1);
        assert_eq!(
            NoWritesWithoutQuorum.check(&h2.events).valid,
            Validity::Valid
        );
    }
}
