//! Election safety: "one-leader-per-token" and "tokens-grow".
//!
//! A leadership claim is a node reporting `Role::Leader` with its token, or the
//! harness's ZooKeeper watch seeing `/rapidstore/leader` name a node with a
//! token. Both sources are combined: ZooKeeper's decision and each node's belief
//! must agree.

use super::{event_json, timed, CheckResult, Checker};
use crate::history::{Event, Role};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

/// One leadership claim, in harness time.
#[derive(Debug, Clone, Copy)]
struct Claim<'a> {
    node: &'a str,
    token: u64,
    event: &'a Event,
    /// Same node, same token, and that node never stopped claiming it in
    /// between (a repeated report, not a new term).
    repeat: bool,
}

/// Leadership claims with a token, in harness-time order, and how many leader
/// reports carried no token at all.
fn claims(events: &[Event]) -> (Vec<Claim<'_>>, usize) {
    let mut out = Vec::new();
    let mut untokened = 0;
    // Last role each node reported, and the last content of /rapidstore/leader.
    let mut last_role: HashMap<&str, (Role, Option<u64>)> = HashMap::new();
    let mut last_zk: Option<(Option<&str>, Option<u64>)> = None;
    for (_, e) in timed(events) {
        match e {
            Event::Role {
                node, role, token, ..
            } => {
                let prev = last_role.insert(node, (*role, *token));
                if *role != Role::Leader {
                    continue;
                }
                match token {
                    Some(t) => out.push(Claim {
                        node,
                        token: *t,
                        event: e,
                        repeat: prev == Some((Role::Leader, Some(*t))),
                    }),
                    None => untokened += 1,
                }
            }
            Event::ZkLeader { leader, token, .. } => {
                let cur = (leader.as_deref(), *token);
                let prev = last_zk.replace(cur);
                if let (Some(node), Some(t)) = cur {
                    out.push(Claim {
                        node,
                        token: t,
                        event: e,
                        repeat: prev == Some(cur),
                    });
                }
            }
            _ => {}
        }
    }
    (out, untokened)
}

/// No two different nodes ever claimed leadership with the same token.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneLeaderPerToken;

impl Checker for OneLeaderPerToken {
    fn name(&self) -> &'static str {
        "one-leader-per-token"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let (claims, untokened) = claims(events);
        // First claimant of each token, and the first conflicting claim per token.
        let mut first: HashMap<u64, Claim> = HashMap::new();
        let mut conflicts: BTreeMap<u64, (Claim, Claim)> = BTreeMap::new();
        let mut order: Vec<u64> = Vec::new();
        for c in &claims {
            let f = *first.entry(c.token).or_insert(*c);
            if f.node != c.node && !conflicts.contains_key(&c.token) {
                conflicts.insert(c.token, (f, *c));
                order.push(c.token);
            }
        }
        let details = json!({
            "claims": claims.len(),
            "tokens": first.len(),
            "leader_reports_without_token": untokened,
            "conflicting_tokens": conflicts
                .iter()
                .map(|(t, (a, b))| json!({"token": t, "nodes": [a.node, b.node]}))
                .collect::<Vec<_>>(),
        });
        let Some(&token) = order.first() else {
            return CheckResult::valid(format!(
                "{} leadership claims over {} tokens, each token held by one node",
                claims.len(),
                first.len()
            ))
            .with_details(details);
        };
        let (a, b) = conflicts[&token];
        CheckResult::invalid(
            format!(
                "token {token} claimed by both {} and {} ({} conflicting token(s))",
                a.node,
                b.node,
                conflicts.len()
            ),
            vec![event_json(a.event), event_json(b.event)],
        )
        .with_details(details)
    }
}

/// Successive distinct leadership claims, in harness time order, have strictly
/// increasing tokens. A node repeating its own current token (a re-report, or
/// resuming with the same election node when nobody else led in between) is fine.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokensGrow;

impl Checker for TokensGrow {
    fn name(&self) -> &'static str {
        "tokens-grow"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let (claims, _) = claims(events);
        let mut max: Option<Claim> = None;
        let mut terms = 0usize;
        let mut violations: Vec<(Claim, Claim)> = Vec::new();
        for c in claims.iter().filter(|c| !c.repeat) {
            match max {
                Some(m) if c.token < m.token || (c.token == m.token && c.node != m.node) => {
                    violations.push((m, *c));
                }
                Some(m) if c.token == m.token => {}
                _ => {
                    terms += 1;
                    max = Some(*c);
                }
            }
        }
        let details = json!({
            "claims": claims.len(),
            "terms": terms,
            "highest_token": max.map(|m| m.token),
            "violations": violations.len(),
        });
        let Some((m, c)) = violations.first() else {
            return CheckResult::valid(format!(
                "{terms} successive leadership terms, tokens strictly increasing"
            ))
            .with_details(details);
        };
        CheckResult::invalid(
            format!(
                "{} claimed leadership with token {} after {} had claimed token {} ({} violation(s))",
                c.node,
                c.token,
                m.node,
                m.token,
                violations.len()
            ),
            vec![event_json(m.event), event_json(c.event)],
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
        h.leader(10.0, "n1", 3)
            .zk_leader(11.0, Some("n1"), Some(3))
            .role(12.0, "n2", Role::Follower, None)
            .leader(15.0, "n1", 3) // a re-report
            .role(100.0, "n1", Role::Down, None)
            .leader(4000.0, "n2", 4)
            .zk_leader(4001.0, Some("n2"), Some(4))
            .role(5000.0, "n1", Role::Follower, None);
        h
    }

    #[test]
    fn healthy_elections_pass_both() {
        let events = healthy().build();
        assert_eq!(OneLeaderPerToken.check(&events).valid, Validity::Valid);
        let r = TokensGrow.check(&events);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["terms"], 2);
    }

    #[test]
    fn resuming_own_token_when_nobody_else_led_is_fine() {
        let mut h = H::new();
        h.leader(1.0, "n1", 3)
            .role(2.0, "n1", Role::Disconnected, None)
            .leader(3.0, "n1", 3);
        assert_eq!(TokensGrow.check(&h.build()).valid, Validity::Valid);
    }

    #[test]
    fn two_nodes_with_one_token_are_caught() {
        let mut h = healthy();
        h.leader(6000.0, "n3", 4);
        let events = h.build();
        let r = OneLeaderPerToken.check(&events);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample.len(), 2);
        assert_eq!(r.counterexample[0]["node"], "n2");
        assert_eq!(r.counterexample[1]["node"], "n3");
        assert!(r.summary.contains("token 4"), "{}", r.summary);
    }

    #[test]
    fn zookeeper_disagreeing_with_a_node_is_caught() {
        let mut h = H::new();
        h.leader(1.0, "n1", 7).zk_leader(2.0, Some("n2"), Some(7));
        let r = OneLeaderPerToken.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample[1]["type"], "zk_leader");
    }

    #[test]
    fn token_going_back_is_caught() {
        let mut h = healthy();
        // n1 comes back claiming its old token after n2 led with 4.
        h.leader(6000.0, "n1", 3);
        let r = TokensGrow.check(&h.build());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexample[0]["token"], 4);
        assert_eq!(r.counterexample[1]["token"], 3);
        assert_eq!(r.counterexample[1]["node"], "n1");
    }

    #[test]
    fn events_are_taken_in_time_order_not_file_order() {
        let mut h = H::new();
        h.leader(20.0, "n2", 5).leader(10.0, "n1", 4);
        assert_eq!(TokensGrow.check(&h.build()).valid, Validity::Valid);
    }
}
