//! What the HTML report draws, extracted from a history: role segments per
//! node, election znodes, `/rapidstore/leader`, fault windows with their
//! resolved targets, rejected fenced writes, client operations, and each
//! counterexample item placed in time. Pure: no I/O, no markup.

use crate::checker::{pair_ops, Op};
use crate::history::{Event, Outcome, Role};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A node's role from `start_ms` to `end_ms`, as the node reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleSeg {
    pub start_ms: f64,
    pub end_ms: f64,
    pub role: Role,
    pub token: Option<u64>,
}

/// A node's election znode (`/rapidstore/election/node_<seq>`) existed, as
/// the harness's own ZooKeeper watch saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZnodeSeg {
    pub start_ms: f64,
    pub end_ms: f64,
    pub seq: u64,
}

/// What `/rapidstore/leader` held from `start_ms` to `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZkLeaderSeg {
    pub start_ms: f64,
    pub end_ms: f64,
    pub leader: Option<String>,
    pub token: Option<u64>,
}

/// A fault from its injection to its heal (or the end of the history).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultWindow {
    pub start_ms: f64,
    pub end_ms: f64,
    /// Schedule step name.
    pub fault: String,
    /// The verb: partition, kill, pause, skew, ...
    pub action: String,
    /// Resolved targets.
    pub targets: Vec<String>,
    /// How it ended: heal, start, resume, reset_clock, heal-all; `None` if it
    /// was still active when the history ends.
    pub healed_by: Option<String>,
    /// The fault did not apply (the nemesis step recorded an error).
    pub error: Option<String>,
    /// Clock faults: the offset asked for, in ms.
    pub offset_ms: Option<i64>,
    /// Clock faults: how the clock was moved and what each node showed,
    /// e.g. `faketime; shows n2 -29.9 s`.
    pub note: Option<String>,
}

impl FaultWindow {
    /// `partition n3`, `kill n1 n2`, `skew n2 -30 s`.
    pub fn label(&self) -> String {
        let t = if self.targets.is_empty() {
            String::new()
        } else {
            format!(" {}", self.targets.join(" "))
        };
        let offset = self
            .offset_ms
            .map_or(String::new(), |ms| format!(" {}", seconds(ms)));
        format!("{}{t}{offset}", self.action)
    }
}

/// `-30 s`, `+1.5 s`.
fn seconds(ms: i64) -> String {
    let s = format!("{:+.1}", ms as f64 / 1000.0);
    format!("{} s", s.trim_end_matches(".0"))
}

/// A clock fault's offset asked for, and its note: the method and the
/// offset each node's `/health` showed.
fn clock_detail(detail: &serde_json::Value) -> (Option<i64>, Option<String>) {
    let Some(asked) = detail.get("asked_ms").and_then(|v| v.as_i64()) else {
        return (None, None);
    };
    let shown: Vec<String> = detail
        .get("measured_ms")
        .and_then(|m| m.as_object())
        .into_iter()
        .flatten()
        .map(|(n, v)| match v.as_i64() {
            Some(ms) => format!("{n} {:+.1} s", ms as f64 / 1000.0),
            None => format!("{n} did not answer"),
        })
        .collect();
    let mut note = detail
        .get("method")
        .and_then(|m| m.as_str())
        .unwrap_or("clock")
        .to_string();
    if !shown.is_empty() {
        note.push_str(&format!("; shows {}", shown.join(", ")));
    }
    (Some(asked), Some(note))
}

/// A replicated write a replica rejected (its token was below the highest seen).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejected {
    pub node: String,
    /// Earliest time it can have happened (replica events carry no harness
    /// time): see [`RunView::replica_time`].
    pub time_ms: Option<f64>,
    pub token: u64,
    pub highest_seen: u64,
    pub index: u64,
    pub key: String,
    pub value: String,
}

/// Nemesis actions that end a fault window.
const END_ACTIONS: [&str; 5] = ["heal", "start", "resume", "reset_clock", "heal-all"];

/// Everything the timeline and plots need from a history.
pub(crate) struct RunView<'a> {
    pub end_ms: f64,
    pub nodes: Vec<String>,
    pub roles: BTreeMap<String, Vec<RoleSeg>>,
    pub znodes: BTreeMap<String, Vec<ZnodeSeg>>,
    pub zk_leader: Vec<ZkLeaderSeg>,
    pub faults: Vec<FaultWindow>,
    pub rejected: Vec<Rejected>,
    /// Phase changes after the run's clock started: (time, phase).
    pub phases: Vec<(f64, String)>,
    /// Client operations in invocation order.
    pub ops: Vec<Op<'a>>,
    /// Invocation time of the client write that wrote (key, value).
    write_times: HashMap<(&'a str, &'a str), f64>,
    /// First time a node holding each token reported itself candidate or
    /// leader (or `/rapidstore/leader` named it).
    token_claims: BTreeMap<u64, f64>,
    op_index: HashMap<u64, usize>,
}

/// `n2` before `n10`.
pub(crate) fn node_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let digits = s.trim_start_matches(|c: char| !c.is_ascii_digit());
        (
            s[..s.len() - digits.len()].to_string(),
            digits.parse::<u64>().ok(),
        )
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

impl<'a> RunView<'a> {
    pub fn new(events: &'a [Event], known_nodes: &[String]) -> Self {
        let end_ms = events
            .iter()
            .filter_map(Event::time_ms)
            .fold(0.0_f64, f64::max);
        let mut timed: Vec<(f64, &Event)> = events
            .iter()
            .filter_map(|e| e.time_ms().map(|t| (t, e)))
            .collect();
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));

        let mut nodes: BTreeSet<String> = known_nodes.iter().cloned().collect();
        let mut roles: BTreeMap<String, Vec<RoleSeg>> = BTreeMap::new();
        let mut znodes: BTreeMap<String, Vec<ZnodeSeg>> = BTreeMap::new();
        let mut zk_leader: Vec<ZkLeaderSeg> = Vec::new();
        let mut faults: Vec<FaultWindow> = Vec::new();
        let mut phases = Vec::new();
        let mut open_znodes: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        let mut token_claims: BTreeMap<u64, f64> = BTreeMap::new();

        for (t, e) in &timed {
            let t = *t;
            match e {
                Event::Role {
                    node, role, token, ..
                } => {
                    nodes.insert(node.clone());
                    if let (Some(tk), Role::Candidate | Role::Leader) = (token, role) {
                        token_claims.entry(*tk).or_insert(t);
                    }
                    let segs = roles.entry(node.clone()).or_default();
                    if let Some(last) = segs.last_mut() {
                        last.end_ms = t;
                    }
                    segs.push(RoleSeg {
                        start_ms: t,
                        end_ms,
                        role: *role,
                        token: *token,
                    });
                }
                Event::ZkElection { members, .. } => {
                    let now: BTreeMap<&str, u64> =
                        members.iter().map(|(s, n)| (n.as_str(), *s)).collect();
                    // Close znodes that vanished or changed sequence.
                    let gone: Vec<String> = open_znodes
                        .iter()
                        .filter(|(n, (_, seq))| now.get(n.as_str()) != Some(seq))
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in gone {
                        if let Some((start, seq)) = open_znodes.remove(&n) {
                            znodes.entry(n).or_default().push(ZnodeSeg {
                                start_ms: start,
                                end_ms: t,
                                seq,
                            });
                        }
                    }
                    for (n, seq) in now {
                        nodes.insert(n.to_string());
                        open_znodes.entry(n.to_string()).or_insert((t, seq));
                    }
                }
                Event::ZkLeader { leader, token, .. } => {
                    if let Some(tk) = token {
                        token_claims.entry(*tk).or_insert(t);
                    }
                    if let Some(last) = zk_leader.last_mut() {
                        last.end_ms = t;
                    }
                    zk_leader.push(ZkLeaderSeg {
                        start_ms: t,
                        end_ms,
                        leader: leader.clone(),
                        token: *token,
                    });
                }
                Event::Nemesis {
                    fault,
                    action,
                    targets,
                    detail,
                    ..
                } => {
                    let error = detail
                        .get("error")
                        .filter(|e| !e.is_null())
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string));
                    if action == "heal-all" {
                        for w in faults.iter_mut().filter(|w| w.healed_by.is_none()) {
                            w.end_ms = t;
                            w.healed_by = Some(action.clone());
                        }
                    } else if END_ACTIONS.contains(&action.as_str()) {
                        let same_targets = |w: &&mut FaultWindow| {
                            w.healed_by.is_none() && w.fault == *fault && w.targets == *targets
                        };
                        let w = match faults.iter_mut().find(same_targets) {
                            Some(w) => Some(w),
                            None => faults
                                .iter_mut()
                                .find(|w| w.healed_by.is_none() && w.fault == *fault),
                        };
                        if let Some(w) = w {
                            w.end_ms = t;
                            w.healed_by = Some(action.clone());
                        }
                    } else {
                        let (offset_ms, note) = clock_detail(detail);
                        faults.push(FaultWindow {
                            start_ms: t,
                            end_ms,
                            fault: fault.clone(),
                            action: action.clone(),
                            targets: targets.clone(),
                            healed_by: None,
                            error,
                            offset_ms,
                            note,
                        });
                    }
                }
                Event::Phase { phase, .. } => phases.push((t, phase.clone())),
                _ => {}
            }
        }
        for (n, (start, seq)) in open_znodes {
            znodes.entry(n).or_default().push(ZnodeSeg {
                start_ms: start,
                end_ms,
                seq,
            });
        }
        for segs in znodes.values_mut() {
            segs.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        }

        let ops = pair_ops(events).ops;
        let mut write_times = HashMap::new();
        let mut op_index = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            op_index.insert(op.invoke.op_id, i);
            if let Some(v) = &op.invoke.value {
                write_times
                    .entry((op.invoke.key.as_str(), v.as_str()))
                    .or_insert(op.invoke.time_ms);
            }
        }
        let mut view = RunView {
            end_ms,
            nodes: Vec::new(),
            roles,
            znodes,
            zk_leader,
            faults,
            rejected: Vec::new(),
            phases,
            ops,
            write_times,
            token_claims,
            op_index,
        };
        for e in events {
            if let Event::Replica {
                node,
                token,
                index,
                key,
                value,
                accepted: false,
                highest_seen,
                ..
            } = e
            {
                nodes.insert(node.clone());
                let time_ms = view.replica_time(key, value, *highest_seen);
                view.rejected.push(Rejected {
                    node: node.clone(),
                    time_ms,
                    token: *token,
                    highest_seen: *highest_seen,
                    index: *index,
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        let mut nodes: Vec<String> = nodes.into_iter().collect();
        nodes.sort_by(|a, b| node_order(a, b));
        view.nodes = nodes;
        view
    }

    /// The operation with this id.
    pub fn op(&self, op_id: u64) -> Option<&Op<'a>> {
        self.op_index.get(&op_id).map(|&i| &self.ops[i])
    }

    /// When the client wrote `value` to `key`.
    pub fn write_time(&self, key: &str, value: &str) -> Option<f64> {
        self.write_times.get(&(key, value)).copied()
    }

    /// The earliest a replica can have decided on `key=value` having seen
    /// token `highest_seen`: not before the client wrote the value, nor before
    /// a node holding `highest_seen` first claimed leadership (a replica
    /// learns a token from its holder). Replica events carry no harness time,
    /// and a stale leader's write is often rejected long after its client
    /// sent it (when a partition heals), so the second bound matters.
    pub fn replica_time(&self, key: &str, value: &str, highest_seen: u64) -> Option<f64> {
        let written = self.write_time(key, value);
        let claimed = self.token_claims.get(&highest_seen).copied();
        match (written, claimed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Where a counterexample item sits in the picture.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    /// A client operation (drawn as a bar on its process's row).
    Op { op_id: u64 },
    /// A point on a node's lane.
    Node { node: String, time_ms: f64 },
    /// A point on the ZooKeeper lane.
    Zk { time_ms: f64 },
    /// A span across every lane (a fault and its failover, a window).
    Span { start_ms: f64, end_ms: f64 },
    /// A moment across every lane (a phase change, the final log).
    Instant { time_ms: f64 },
    /// No time is known.
    Nowhere,
}

/// One counterexample item, made readable.
#[derive(Debug, Clone)]
pub(crate) struct CxItem {
    pub place: Place,
    /// One line for people.
    pub text: String,
    /// Why the checker picked it, when it said.
    pub why: Option<String>,
    /// Earliest and latest time it covers.
    pub span: Option<(f64, f64)>,
    /// The key it is about, for context operations.
    pub key: Option<String>,
    /// The node it is about, for log links.
    pub node: Option<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

fn tok(t: Option<u64>) -> String {
    t.map_or(String::new(), |t| format!(" (token {t})"))
}

/// Describe an operation (from the view, falling back to the item's fields).
fn op_text(
    view: &RunView,
    op_id: u64,
    raw: &Value,
) -> (String, Option<(f64, f64)>, Option<String>) {
    if let Some(op) = view.op(op_id) {
        let i = op.invoke;
        let what = match i.f {
            crate::history::OpKind::Read => format!("read {}", i.key),
            crate::history::OpKind::Write => {
                format!("write {}={}", i.key, i.value.as_deref().unwrap_or("∅"))
            }
            crate::history::OpKind::Cas => format!(
                "cas {} {}→{}",
                i.key,
                i.expected.clone().flatten().as_deref().unwrap_or("∅"),
                i.value.as_deref().unwrap_or("∅")
            ),
        };
        let outcome = match op.outcome() {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        let got = match (i.f, op.complete) {
            (crate::history::OpKind::Read, Some(c)) if c.outcome == Outcome::Ok => {
                format!(" → {}", c.value.as_deref().unwrap_or("∅"))
            }
            _ => String::new(),
        };
        let end = op.end_ms();
        let when = match end {
            Some(e) => format!("{:.0}–{:.0} ms", i.time_ms, e),
            None => format!("{:.0} ms–(never completed)", i.time_ms),
        };
        let served = op
            .complete
            .and_then(|c| c.node.as_deref())
            .map_or(String::new(), |n| format!(", served by {n}"));
        let token = tok(op.complete.and_then(|c| c.token));
        let err = op
            .complete
            .and_then(|c| c.error.as_deref())
            .map_or(String::new(), |e| format!(" [{e}]"));
        (
            format!(
                "op {op_id} p{} {what}{got} {outcome}, {when} via {}{served}{token}{err}",
                i.process, i.node
            ),
            Some((i.time_ms, end.unwrap_or(view.end_ms))),
            Some(i.key.clone()),
        )
    } else {
        let a = f(raw, "invoke_ms").or(f(raw, "time_ms"));
        let b = f(raw, "complete_ms").or(a);
        (
            format!("op {op_id}: {}", compact(raw)),
            a.map(|a| (a, b.unwrap_or(a))),
            s(raw, "key"),
        )
    }
}

/// Compact JSON, cut at `max` characters.
pub(crate) fn compact_max(v: &Value, max: usize) -> String {
    let t = v.to_string();
    if t.chars().count() > max {
        let cut: String = t.chars().take(max).collect();
        format!("{cut}…")
    } else {
        t
    }
}

fn compact(v: &Value) -> String {
    compact_max(v, 300)
}

/// Make a counterexample item readable and place it in time.
pub(crate) fn describe(view: &RunView, raw: &Value) -> CxItem {
    let why = s(raw, "why");
    let mut item = CxItem {
        place: Place::Nowhere,
        text: compact(raw),
        why,
        span: None,
        key: s(raw, "key"),
        node: None,
    };
    let point = |t: f64| Some((t, t));
    // An operation as the checkers describe it (`Op::to_json`).
    if let (Some(op_id), true) = (u(raw, "op_id"), raw.get("invoke_ms").is_some()) {
        let (text, span, key) = op_text(view, op_id, raw);
        item.place = Place::Op { op_id };
        item.text = text;
        item.span = span;
        item.key = key;
        item.node = s(raw, "served_by").or_else(|| s(raw, "node"));
        return item;
    }
    match raw.get("type").and_then(Value::as_str) {
        Some(kind @ ("invoke" | "complete")) => {
            let op_id = u(raw, "op_id").unwrap_or(u64::MAX);
            let (text, span, key) = op_text(view, op_id, raw);
            item.place = Place::Op { op_id };
            item.text = format!("{kind}: {text}");
            item.span = span;
            item.key = key;
            item.node = s(raw, "node");
        }
        Some("role") => {
            let node = s(raw, "node").unwrap_or_default();
            let t = f(raw, "time_ms").unwrap_or(0.0);
            item.text = format!(
                "{node} reported {} at {t:.0} ms{}",
                s(raw, "role").unwrap_or_default(),
                tok(u(raw, "token"))
            );
            item.place = Place::Node {
                node: node.clone(),
                time_ms: t,
            };
            item.span = point(t);
            item.node = Some(node);
        }
        Some("zk_leader") => {
            let t = f(raw, "time_ms").unwrap_or(0.0);
            item.text = format!(
                "/rapidstore/leader = {} at {t:.0} ms{}",
                s(raw, "leader").unwrap_or_else(|| "(none)".into()),
                tok(u(raw, "token"))
            );
            item.place = Place::Zk { time_ms: t };
            item.span = point(t);
            item.node = s(raw, "leader");
        }
        Some("zk_election") => {
            let t = f(raw, "time_ms").unwrap_or(0.0);
            let members = raw
                .get("members")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(|p| Some(format!("{}:{}", p.get(0)?, p.get(1)?.as_str()?)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            item.text = format!("election znodes at {t:.0} ms: {members}");
            item.place = Place::Zk { time_ms: t };
            item.span = point(t);
        }
        Some("nemesis") => {
            let t = f(raw, "time_ms").unwrap_or(0.0);
            let targets = raw
                .get("targets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            item.text = format!(
                "nemesis {} {} {targets} at {t:.0} ms",
                s(raw, "fault").unwrap_or_default(),
                s(raw, "action").unwrap_or_default()
            );
            item.place = Place::Instant { time_ms: t };
            item.span = point(t);
        }
        Some("phase") => {
            let t = f(raw, "time_ms").unwrap_or(0.0);
            item.text = format!(
                "phase {} began at {t:.0} ms",
                s(raw, "phase").unwrap_or_default()
            );
            item.place = Place::Instant { time_ms: t };
            item.span = point(t);
        }
        Some("replica") => {
            let node = s(raw, "node").unwrap_or_default();
            let key = s(raw, "key").unwrap_or_default();
            let value = s(raw, "value").unwrap_or_default();
            let accepted = raw.get("accepted").and_then(Value::as_bool) == Some(true);
            let t = view.replica_time(&key, &value, u(raw, "highest_seen").unwrap_or(0));
            item.text = format!(
                "{node} {} {key}={value} with token {} at index {} (highest token seen {}; seq {}){}",
                if accepted { "accepted" } else { "rejected" },
                u(raw, "token").unwrap_or(0),
                u(raw, "index").unwrap_or(0),
                u(raw, "highest_seen").unwrap_or(0),
                u(raw, "seq").unwrap_or(0),
                match (view.write_time(&key, &value), t) {
                    (Some(w), Some(t)) if t > w => format!(
                        ", written by a client at {w:.0} ms, decided at or after {t:.0} ms"
                    ),
                    (Some(w), _) => format!(", written by a client at {w:.0} ms"),
                    (None, Some(t)) => format!(
                        " (no client write of that value; decided at or after {t:.0} ms)"
                    ),
                    (None, None) => " (no client write of that value)".into(),
                },
            );
            if let Some(t) = t {
                item.place = Place::Node {
                    node: node.clone(),
                    time_ms: t,
                };
                item.span = point(t);
            }
            item.key = Some(key);
            item.node = Some(node);
        }
        Some("final_log") => {
            let t = f(raw, "time_ms").unwrap_or(0.0);
            let entries = raw
                .get("entries")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            item.text = format!(
                "final log read from {} at {t:.0} ms ({entries} entries)",
                s(raw, "node").unwrap_or_default()
            );
            item.place = Place::Instant { time_ms: t };
            item.span = point(t);
        }
        _ => {
            if let Some(fl) = raw.get("final_log") {
                // no-lost-writes: where the final log was read and what the index held.
                let t = f(fl, "time_ms");
                let entry = raw.get("entry").filter(|e| !e.is_null());
                item.text = format!(
                    "final log from {}: index {} {}",
                    s(fl, "node").unwrap_or_default(),
                    u(raw, "index").map_or("-".into(), |i| i.to_string()),
                    match entry {
                        Some(e) => format!(
                            "holds {}={} (token {})",
                            s(e, "key").unwrap_or_default(),
                            s(e, "value").unwrap_or_default(),
                            u(e, "token").unwrap_or(0)
                        ),
                        None => "holds nothing with that key and value".into(),
                    }
                );
                if let Some(t) = t {
                    item.place = Place::Instant { time_ms: t };
                    item.span = point(t);
                }
                item.node = s(fl, "node");
            } else if let (Some(t), Some(old)) = (f(raw, "time_ms"), s(raw, "old_leader")) {
                // A fault and its failover (the failover gate).
                let total = f(raw, "total_ms");
                let end = total.map_or(view.end_ms, |d| t + d);
                item.text = format!(
                    "{} {} at {t:.0} ms: old leader {old}, new leader {}, recovered after {}",
                    s(raw, "fault").unwrap_or_default(),
                    s(raw, "action").unwrap_or_default(),
                    s(raw, "new_leader").unwrap_or_else(|| "none".into()),
                    super::svg::fmt_ms(total)
                );
                item.place = Place::Span {
                    start_ms: t,
                    end_ms: end,
                };
                item.span = Some((t, end));
                item.node = Some(old);
            } else if let (Some(a), Some(b)) = (f(raw, "start_ms"), f(raw, "end_ms")) {
                item.place = Place::Span {
                    start_ms: a,
                    end_ms: b,
                };
                item.span = Some((a, b));
            } else if let Some(t) = f(raw, "time_ms") {
                item.place = Place::Instant { time_ms: t };
                item.span = point(t);
            }
        }
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::read_history;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<Event> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{name}.jsonl"));
        read_history(&p).unwrap()
    }

    #[test]
    fn lanes_faults_and_rejections_from_a_fixture() {
        let events = fixture("valid-run");
        let v = RunView::new(&events, &[]);
        assert_eq!(v.nodes, ["n1", "n2", "n3"]);
        for n in &v.nodes {
            assert!(!v.roles[n].is_empty(), "{n} has no role segments");
        }
        assert!(!v.faults.is_empty());
        let kill = &v.faults[0];
        assert_eq!(kill.action, "kill");
        assert!(kill.healed_by.is_some(), "{kill:?}");
        assert!(kill.end_ms > kill.start_ms);
        // The fixture's stale token-1 write rejected by n3: no client wrote
        // that value, so it is placed when token 2 was first claimed.
        assert!(v
            .rejected
            .iter()
            .any(|r| r.node == "n3" && r.token == 1 && r.time_ms == Some(7200.0)));
        assert!(!v.zk_leader.is_empty());
    }

    #[test]
    fn clock_faults_show_the_offset_asked_and_shown() {
        let mut h = crate::checker::testkit::H::new();
        h.nemesis(1000.0, "partition", &["n1"]);
        h.push(Event::Nemesis {
            time_ms: 1000.0,
            fault: "clock-skew".into(),
            action: "skew".into(),
            targets: vec!["n1".into()],
            detail: serde_json::json!({
                "asked_ms": -30000,
                "measured_ms": { "n1": -29940, "n2": null },
                "method": "settime",
            }),
        });
        let events = h.build();
        let v = RunView::new(&events, &[]);
        assert_eq!(v.faults[0].label(), "partition n1");
        assert_eq!(v.faults[0].note, None);
        let skew = &v.faults[1];
        assert_eq!(skew.label(), "skew n1 -30 s");
        assert_eq!(
            skew.note.as_deref(),
            Some("settime; shows n1 -29.9 s, n2 did not answer")
        );
        assert_eq!(seconds(1500), "+1.5 s");
    }

    #[test]
    fn nodes_sort_numerically() {
        let mut v = vec!["n10", "n2", "n1", "zk"];
        v.sort_by(|a, b| node_order(a, b));
        assert_eq!(v, ["n1", "n2", "n10", "zk"]);
    }

    #[test]
    fn counterexample_items_are_placed() {
        let events = fixture("valid-run");
        let v = RunView::new(&events, &[]);
        let op = v.ops[0];
        let d = describe(
            &v,
            &serde_json::json!({"op_id": op.invoke.op_id, "invoke_ms": op.invoke.time_ms, "f": "write"}),
        );
        assert_eq!(
            d.place,
            Place::Op {
                op_id: op.invoke.op_id
            }
        );
        assert!(
            d.text.starts_with(&format!("op {}", op.invoke.op_id)),
            "{}",
            d.text
        );
        let d = describe(
            &v,
            &serde_json::json!({"type": "role", "time_ms": 5.0, "node": "n2", "role": "leader", "token": 2}),
        );
        assert_eq!(d.text, "n2 reported leader at 5 ms (token 2)");
        assert!(matches!(d.place, Place::Node { .. }));
        let d = describe(&v, &serde_json::json!({"whatever": 1}));
        assert_eq!(d.place, Place::Nowhere);
    }
}
