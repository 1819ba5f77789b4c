//! Client operations: each invocation paired with its completion (if any).

use crate::history::{Completion, Event, Invocation, OpKind, Outcome};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// One client operation: an invocation and, unless the history ends first, its
/// completion.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub invoke: &'a Invocation,
    pub complete: Option<&'a Completion>,
}

impl Op<'_> {
    /// How it ended; an operation still pending when the history ends is `Info`.
    pub fn outcome(&self) -> Outcome {
        self.complete.map_or(Outcome::Info, |c| c.outcome)
    }

    /// Completion time, if it completed.
    pub fn end_ms(&self) -> Option<f64> {
        self.complete.map(|c| c.time_ms)
    }

    /// An acknowledged write or cas.
    pub fn is_ok_write(&self) -> bool {
        matches!(self.invoke.f, OpKind::Write | OpKind::Cas) && self.outcome() == Outcome::Ok
    }

    /// A compact description for counterexamples: what was asked, what came
    /// back, when (harness ms) and where.
    pub fn to_json(&self) -> Value {
        let i = self.invoke;
        let mut m = Map::new();
        m.insert("op_id".into(), json!(i.op_id));
        m.insert("process".into(), json!(i.process));
        m.insert("f".into(), json!(i.f));
        m.insert("key".into(), json!(i.key));
        match i.f {
            OpKind::Read => {
                if self.outcome() == Outcome::Ok {
                    m.insert(
                        "value".into(),
                        json!(self.complete.and_then(|c| c.value.clone())),
                    );
                }
            }
            OpKind::Write => {
                m.insert("value".into(), json!(i.value));
            }
            OpKind::Cas => {
                m.insert("expected".into(), json!(i.expected.clone().flatten()));
                m.insert("value".into(), json!(i.value));
            }
        }
        m.insert("outcome".into(), json!(self.outcome()));
        m.insert("invoke_ms".into(), json!(i.time_ms));
        m.insert("complete_ms".into(), json!(self.end_ms()));
        m.insert("node".into(), json!(i.node));
        if let Some(c) = self.complete {
            if let Some(n) = &c.node {
                m.insert("served_by".into(), json!(n));
            }
            if let Some(t) = c.token {
                m.insert("token".into(), json!(t));
            }
            if let Some(x) = c.index {
                m.insert("index".into(), json!(x));
            }
            if let Some(e) = &c.error {
                m.insert("error".into(), json!(e));
            }
        }
        Value::Object(m)
    }
}

/// The client operations of a history, and what did not pair up.
#[derive(Debug, Clone, Default)]
pub struct Ops<'a> {
    /// In invocation-time order.
    pub ops: Vec<Op<'a>>,
    /// Completions with no invocation, and other malformations, for people.
    pub problems: Vec<String>,
}

impl Ops<'_> {
    /// No orphan completions, duplicate ids, or completions before invocations.
    pub fn is_well_formed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Pair every invocation with its completion by `op_id`.
pub fn pair_ops(events: &[Event]) -> Ops<'_> {
    let mut ops: Vec<Op> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut problems = Vec::new();
    for e in events {
        match e {
            Event::Invoke(i) => {
                if by_id.insert(i.op_id, ops.len()).is_some() {
                    problems.push(format!("op {} invoked twice", i.op_id));
                }
                ops.push(Op {
                    invoke: i,
                    complete: None,
                });
            }
            Event::Complete(c) => match by_id.get(&c.op_id) {
                Some(&ix) if ops[ix].complete.is_none() => {
                    let i = ops[ix].invoke;
                    if c.time_ms < i.time_ms {
                        problems.push(format!(
                            "op {} completed at {} ms before its invocation at {} ms",
                            c.op_id, c.time_ms, i.time_ms
                        ));
                    }
                    if c.process != i.process {
                        problems.push(format!(
                            "op {} invoked by process {} but completed by {}",
                            c.op_id, i.process, c.process
                        ));
                    }
                    ops[ix].complete = Some(c);
                }
                Some(_) => problems.push(format!("op {} completed twice", c.op_id)),
                None => problems.push(format!("op {} completed but never invoked", c.op_id)),
            },
            _ => {}
        }
    }
    ops.sort_by(|a, b| a.invoke.time_ms.total_cmp(&b.invoke.time_ms));
    Ops { ops, problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;

    #[test]
    fn pairs_and_reports_orphans() {
        let mut h = H::new();
        h.write_at(0, "k", "a", 0.0, 1.0, 1);
        h.invoke(1, OpKind::Read, "k", "", None, 2.0);
        h.complete(99, 2, Outcome::Ok, "", 3.0, None);
        let events = h.build();
        let ops = pair_ops(&events);
        assert_eq!(ops.ops.len(), 2);
        assert!(ops.ops[0].is_ok_write());
        assert_eq!(ops.ops[1].outcome(), Outcome::Info);
        assert_eq!(ops.problems.len(), 1, "{:?}", ops.problems);
        assert!(!ops.is_well_formed());
    }
}
