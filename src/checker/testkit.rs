//! Test helpers: a small builder for hand-made histories.

use crate::history::{Completion, Event, Invocation, LogEntry, OpKind, Outcome, Role};

/// Builds a history event by event. Client operations get fresh op ids.
#[derive(Default)]
pub struct H {
    pub events: Vec<Event>,
    next_id: u64,
}

/// `Some("v")` for `"v"`, `None` for `""` (absent).
fn val(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

impl H {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, e: Event) -> &mut Self {
        self.events.push(e);
        self
    }

    pub fn phase(&mut self, t: f64, phase: &str) -> &mut Self {
        self.push(Event::Phase {
            time_ms: t,
            phase: phase.into(),
        })
    }

    pub fn role(&mut self, t: f64, node: &str, role: Role, token: Option<u64>) -> &mut Self {
        self.push(Event::Role {
            time_ms: t,
            node: node.into(),
            role,
            token,
        })
    }

    pub fn leader(&mut self, t: f64, node: &str, token: u64) -> &mut Self {
        self.role(t, node, Role::Leader, Some(token))
    }

    pub fn zk_leader(&mut self, t: f64, leader: Option<&str>, token: Option<u64>) -> &mut Self {
        self.push(Event::ZkLeader {
            time_ms: t,
            leader: leader.map(Into::into),
            token,
        })
    }

    pub fn zk_election(&mut self, t: f64, members: &[(u64, &str)]) -> &mut Self {
        self.push(Event::ZkElection {
            time_ms: t,
            members: members.iter().map(|(s, n)| (*s, n.to_string())).collect(),
        })
    }

    pub fn nemesis(&mut self, t: f64, action: &str, targets: &[&str]) -> &mut Self {
        self.push(Event::Nemesis {
            time_ms: t,
            fault: format!("{action}-test"),
            action: action.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            detail: serde_json::Value::Null,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn replica(
        &mut self,
        node: &str,
        seq: u64,
        token: u64,
        index: u64,
        key: &str,
        value: &str,
        accepted: bool,
        highest_seen: u64,
    ) -> &mut Self {
        self.push(Event::Replica {
            node: node.into(),
            seq,
            token,
            index,
            key: key.into(),
            value: value.into(),
            accepted,
            highest_seen,
        })
    }

    /// `entries`: (index, token, key, value).
    pub fn final_log(
        &mut self,
        t: f64,
        node: &str,
        entries: &[(u64, u64, &str, &str)],
    ) -> &mut Self {
        self.push(Event::FinalLog {
            time_ms: t,
            node: node.into(),
            entries: entries
                .iter()
                .map(|(index, token, key, value)| LogEntry {
                    index: *index,
                    token: *token,
                    key: key.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        })
    }

    /// Invoke an operation; returns its op id. `value`/`expected` "" = absent.
    pub fn invoke(
        &mut self,
        p: u64,
        f: OpKind,
        key: &str,
        value: &str,
        expected: Option<&str>,
        t: f64,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.push(Event::Invoke(Invocation {
            op_id: id,
            process: p,
            time_ms: t,
            f,
            key: key.into(),
            value: if f == OpKind::Read { None } else { val(value) },
            expected: expected.map(val),
            node: "n1".into(),
        }));
        id
    }

    /// Complete op `id`. For reads, `value` is what was read ("" = absent).
    pub fn complete(
        &mut self,
        id: u64,
        p: u64,
        outcome: Outcome,
        value: &str,
        t: f64,
        index: Option<u64>,
    ) -> &mut Self {
        self.push(Event::Complete(Completion {
            op_id: id,
            process: p,
            time_ms: t,
            outcome,
            value: val(value),
            token: None,
            index,
            node: None,
            error: None,
        }))
    }

    pub fn write(
        &mut self,
        p: u64,
        key: &str,
        value: &str,
        t0: f64,
        t1: f64,
        outcome: Outcome,
    ) -> u64 {
        let id = self.invoke(p, OpKind::Write, key, value, None, t0);
        self.complete(id, p, outcome, "", t1, None);
        id
    }

    pub fn write_at(
        &mut self,
        p: u64,
        key: &str,
        value: &str,
        t0: f64,
        t1: f64,
        index: u64,
    ) -> u64 {
        let id = self.invoke(p, OpKind::Write, key, value, None, t0);
        self.complete(id, p, Outcome::Ok, "", t1, Some(index));
        id
    }

    pub fn read(&mut self, p: u64, key: &str, value: &str, t0: f64, t1: f64) -> u64 {
        let id = self.invoke(p, OpKind::Read, key, "", None, t0);
        self.complete(id, p, Outcome::Ok, value, t1, None);
        id
    }

    #[allow(clippy::too_many_arguments)]
    pub fn cas(
        &mut self,
        p: u64,
        key: &str,
        expected: &str,
        value: &str,
        t0: f64,
        t1: f64,
        outcome: Outcome,
    ) -> u64 {
        let id = self.invoke(p, OpKind::Cas, key, value, Some(expected), t0);
        self.complete(id, p, outcome, "", t1, None);
        id
    }

    pub fn build(&self) -> Vec<Event> {
        self.events.clone()
    }
}
