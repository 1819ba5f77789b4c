//! Synthetic histories for property tests and benchmarks.
//!
//! Clients run operations against a simulated object that applies each one
//! atomically at a random moment between its invocation and completion, so
//! every history is linearizable by construction. Some operations time out
//! (`info`): they may have taken effect before, take effect later, or never.
//! Processes that time out continue under a new number, as in Jepsen. Every
//! random choice comes from the seed.
//!
//! [`simulate`] gives model-neutral events; [`to_events`] renders them as a
//! RapidStore history, [`to_edn`] as a Jepsen `history.edn`.

use crate::history::{Event, Invocation, OpKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;

/// The object the clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthModel {
    /// Reads and writes.
    Register,
    /// Reads, writes and compare-and-set.
    CasRegister,
    /// Transactions of reads and writes over registers 0..3.
    MultiRegister,
    /// Acquire and release (releases never time out, so that two acquires
    /// with no release between them are certainly a violation).
    Mutex,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub model: SynthModel,
    /// Client operations to invoke.
    pub ops: usize,
    /// Concurrent clients.
    pub processes: usize,
    /// Independent keys (objects).
    pub keys: usize,
    /// Fraction of operations whose outcome is unknown (`info`).
    pub info_rate: f64,
    /// Values written are drawn from `0..n`; `None`: every value is unique.
    pub values: Option<u32>,
    pub seed: u64,
}

impl SynthConfig {
    pub fn new(model: SynthModel, ops: usize, processes: usize, keys: usize) -> Self {
        SynthConfig {
            model,
            ops,
            processes,
            keys,
            info_rate: 0.0,
            values: None,
            seed: 1,
        }
    }
}

/// How an event ends an operation (or that it starts one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One micro-operation of a transaction: (write?, register, value).
pub type SynthMicro = (bool, u8, Option<i64>);

/// An operation with its arguments and (in a completion) its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthOp {
    Read(Option<i64>),
    Write(i64),
    Cas(Option<i64>, i64),
    Txn(Vec<SynthMicro>),
    Acquire,
    Release,
}

/// One event of a synthetic history. `time` is the simulation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthEvent {
    pub process: u64,
    pub kind: SynthType,
    pub key: u32,
    pub op: SynthOp,
    pub time: u64,
}

/// The true state of one object.
#[derive(Debug, Clone, Default)]
struct Object {
    reg: Option<i64>,
    regs: [Option<i64>; 3],
    locked: bool,
}

/// Apply `op` to `obj`: the completion's op, or `None` if it cannot apply.
fn apply(obj: &mut Object, op: &SynthOp) -> Option<SynthOp> {
    match op {
        SynthOp::Read(_) => Some(SynthOp::Read(obj.reg)),
        SynthOp::Write(v) => {
            obj.reg = Some(*v);
            Some(op.clone())
        }
        SynthOp::Cas(from, to) => (obj.reg == *from).then(|| {
            obj.reg = Some(*to);
            op.clone()
        }),
        SynthOp::Txn(ms) => Some(SynthOp::Txn(
            ms.iter()
                .map(|&(w, r, v)| {
                    if w {
                        obj.regs[r as usize] = v;
                        (w, r, v)
                    } else {
                        (w, r, obj.regs[r as usize])
                    }
                })
                .collect(),
        )),
        SynthOp::Acquire => (!obj.locked).then(|| {
            obj.locked = true;
            SynthOp::Acquire
        }),
        SynthOp::Release => obj.locked.then(|| {
            obj.locked = false;
            SynthOp::Release
        }),
    }
}

/// A client's operation in flight.
struct Active {
    key: u32,
    op: SynthOp,
    /// Set once it took effect: the completion's op (`None`: could not apply).
    done: Option<Option<SynthOp>>,
}

/// Run the simulation (see the module docs).
pub fn simulate(cfg: &SynthConfig) -> Vec<SynthEvent> {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let procs = cfg.processes.max(1);
    let keys = cfg.keys.max(1) as u32;
    let mut objects = vec![Object::default(); keys as usize];
    let mut ids: Vec<u64> = (0..procs as u64).collect();
    let mut holds = vec![false; procs];
    let mut active: Vec<Option<Active>> = (0..procs).map(|_| None).collect();
    let mut floating: Vec<(u32, SynthOp)> = Vec::new();
    let mut out = Vec::with_capacity(cfg.ops * 2);
    let (mut invoked, mut time, mut next_value) = (0usize, 0u64, 0i64);
    let mut value = |rng: &mut SmallRng| match cfg.values {
        Some(n) => i64::from(rng.random_range(0..n.max(1))),
        None => {
            next_value += 1;
            next_value
        }
    };
    while invoked < cfg.ops || active.iter().any(Option::is_some) {
        time += 1;
        // Now and then an operation that timed out takes effect late, or never.
        if !floating.is_empty() && rng.random_bool(0.05) {
            let (key, op) = floating.swap_remove(rng.random_range(0..floating.len()));
            if rng.random_bool(0.5) {
                apply(&mut objects[key as usize], &op);
            }
        }
        let p = rng.random_range(0..procs);
        let Some(a) = active[p].as_mut() else {
            if invoked == cfg.ops {
                continue;
            }
            invoked += 1;
            let key = rng.random_range(0..keys);
            let op = match cfg.model {
                SynthModel::Register | SynthModel::CasRegister => {
                    let cas = cfg.model == SynthModel::CasRegister;
                    match rng.random_range(0..if cas { 3 } else { 2 }) {
                        0 => SynthOp::Read(None),
                        1 => SynthOp::Write(value(&mut rng)),
                        _ => {
                            let from = if rng.random_bool(0.5) {
                                objects[key as usize].reg
                            } else {
                                Some(value(&mut rng))
                            };
                            SynthOp::Cas(from, value(&mut rng))
                        }
                    }
                }
                SynthModel::MultiRegister => SynthOp::Txn(
                    (0..rng.random_range(1..=3))
                        .map(|_| {
                            let w = rng.random_bool(0.5);
                            let r = rng.random_range(0..3u8);
                            (w, r, if w { Some(value(&mut rng)) } else { None })
                        })
                        .collect(),
                ),
                SynthModel::Mutex => {
                    if holds[p] {
                        SynthOp::Release
                    } else {
                        SynthOp::Acquire
                    }
                }
            };
            out.push(SynthEvent {
                process: ids[p],
                kind: SynthType::Invoke,
                key,
                op: op.clone(),
                time,
            });
            active[p] = Some(Active {
                key,
                op,
                done: None,
            });
            continue;
        };
        let may_time_out = !(cfg.model == SynthModel::Mutex && a.op == SynthOp::Release);
        let timeout = may_time_out && rng.random_bool(cfg.info_rate.clamp(0.0, 1.0) / 2.0);
        let (kind, op) = match &a.done {
            None if timeout => {
                // Timed out before taking effect: it may still, later.
                if rng.random_bool(0.5) {
                    floating.push((a.key, a.op.clone()));
                }
                (SynthType::Info, a.op.clone())
            }
            None if a.op != SynthOp::Read(None) && rng.random_bool(0.02) => {
                // Refused: never happened.
                (SynthType::Fail, a.op.clone())
            }
            None => {
                a.done = Some(apply(&mut objects[a.key as usize], &a.op));
                continue;
            }
            Some(_) if timeout => (SynthType::Info, a.op.clone()),
            Some(Some(done)) => (SynthType::Ok, done.clone()),
            Some(None) => (SynthType::Fail, a.op.clone()),
        };
        if cfg.model == SynthModel::Mutex && kind == SynthType::Ok {
            holds[p] = op == SynthOp::Acquire;
        }
        out.push(SynthEvent {
            process: ids[p],
            kind,
            key: a.key,
            op,
            time,
        });
        if kind == SynthType::Info {
            // A crashed process comes back under a new number.
            ids[p] += procs as u64;
            if cfg.model == SynthModel::Mutex {
                holds[p] = false;
            }
        }
        active[p] = None;
    }
    out
}

/// Change one `ok` read (the `pick`-th, modulo their number) to a value no
/// operation wrote; for a mutex, append two `ok` acquires in a row by new
/// processes. Either way the history is no longer linearizable. Returns the
/// index of the changed (or first appended) event, or `None` if there was
/// nothing to change.
pub fn corrupt(events: &mut Vec<SynthEvent>, pick: usize) -> Option<usize> {
    if events
        .iter()
        .any(|e| matches!(e.op, SynthOp::Acquire | SynthOp::Release))
    {
        let t = events.last().map_or(0, |e| e.time);
        let p = events.iter().map(|e| e.process).max().unwrap_or(0);
        let at = events.len();
        for (i, kind) in [SynthType::Invoke, SynthType::Ok]
            .repeat(2)
            .into_iter()
            .enumerate()
        {
            events.push(SynthEvent {
                process: p + 1 + (i as u64 / 2),
                kind,
                key: 0,
                op: SynthOp::Acquire,
                time: t + 1 + i as u64,
            });
        }
        return Some(at);
    }
    let reads: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.kind == SynthType::Ok
                && match &e.op {
                    SynthOp::Read(_) => true,
                    SynthOp::Txn(ms) => ms.iter().any(|m| !m.0),
                    _ => false,
                }
        })
        .map(|(i, _)| i)
        .collect();
    let &i = reads.get(pick % reads.len().max(1))?;
    match &mut events[i].op {
        SynthOp::Read(v) => *v = Some(-1),
        SynthOp::Txn(ms) => {
            if let Some(m) = ms.iter_mut().find(|m| !m.0) {
                m.2 = Some(-1);
            }
        }
        _ => unreachable!("picked a read"),
    }
    Some(i)
}

/// A RapidStore history (register models only): keys `k<n>`, values `v<n>`
/// (`-1` becomes a value nobody wrote), one millisecond per step.
pub fn to_events(events: &[SynthEvent]) -> Vec<Event> {
    let val = |v: i64| format!("v{v}");
    let mut open: std::collections::HashMap<u64, Invocation> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    let mut next_id = 0u64;
    for e in events {
        let t = e.time as f64;
        if e.kind == SynthType::Invoke {
            next_id += 1;
            let (f, value, expected) = match &e.op {
                SynthOp::Read(_) => (OpKind::Read, None, None),
                SynthOp::Write(v) => (OpKind::Write, Some(val(*v)), None),
                SynthOp::Cas(from, to) => (OpKind::Cas, Some(val(*to)), Some(from.map(val))),
                other => panic!("to_events: {other:?} is not a register op"),
            };
            let inv = Invocation {
                op_id: next_id,
                process: e.process,
                time_ms: t,
                f,
                key: format!("k{}", e.key),
                value,
                expected,
                node: format!("n{}", e.process % 3 + 1),
            };
            out.push(Event::Invoke(inv.clone()));
            open.insert(e.process, inv);
            continue;
        }
        let inv = open
            .remove(&e.process)
            .expect("a completion follows its invocation");
        let c = match (e.kind, &e.op) {
            (SynthType::Ok, SynthOp::Read(v)) => inv.ok(t, v.map(val)),
            (SynthType::Ok, _) => inv.ok(t, None),
            (SynthType::Fail, _) => inv.fail(t, "refused"),
            _ => inv.info(t, "timeout"),
        };
        out.push(Event::Complete(c));
    }
    out
}

fn edn_value(v: Option<i64>) -> String {
    v.map_or("nil".into(), |v| v.to_string())
}

/// A Jepsen `history.edn`: one op map per line with `:index` and `:time`
/// (nanoseconds), a nemesis op every 1000 lines, and `[key value]` tuples
/// when `independent`.
pub fn to_edn(events: &[SynthEvent], independent: bool) -> String {
    let mut out = String::with_capacity(events.len() * 80);
    let mut index = 0u64;
    for e in events {
        if index % 1000 == 999 {
            let _ = writeln!(
                out,
                "{{:type :info, :f :start, :value nil, :process :nemesis, :time {}, :index {index}}}",
                e.time * 1000
            );
            index += 1;
        }
        let (f, value) = match &e.op {
            SynthOp::Read(v) => ("read", edn_value(*v)),
            SynthOp::Write(v) => ("write", v.to_string()),
            SynthOp::Cas(from, to) => ("cas", format!("[{} {to}]", edn_value(*from))),
            SynthOp::Txn(ms) => (
                "txn",
                format!(
                    "[{}]",
                    ms.iter()
                        .map(|&(w, r, v)| format!(
                            "[:{} {r} {}]",
                            if w { "write" } else { "read" },
                            edn_value(v)
                        ))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            SynthOp::Acquire => ("acquire", "nil".into()),
            SynthOp::Release => ("release", "nil".into()),
        };
        let value = if independent {
            format!("[{} {value}]", e.key)
        } else {
            value
        };
        let kind = match e.kind {
            SynthType::Invoke => "invoke",
            SynthType::Ok => "ok",
            SynthType::Fail => "fail",
            SynthType::Info => "info",
        };
        let _ = writeln!(
            out,
            "{{:type :{kind}, :f :{f}, :value {value}, :process {}, :time {}, :index {index}}}",
            e.process,
            e.time * 1000
        );
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulations_are_seeded_and_complete() {
        let mut cfg = SynthConfig::new(SynthModel::CasRegister, 200, 5, 3);
        cfg.info_rate = 0.2;
        let a = simulate(&cfg);
        assert_eq!(a, simulate(&cfg));
        let invokes = a.iter().filter(|e| e.kind == SynthType::Invoke).count();
        assert_eq!(invokes, 200);
        assert_eq!(a.len(), 400, "every op completes");
        assert!(a.iter().any(|e| e.kind == SynthType::Info));
        assert!(a.iter().any(|e| e.kind == SynthType::Fail));
        cfg.seed = 2;
        assert_ne!(a, simulate(&cfg));
    }

    #[test]
    fn renders_both_formats() {
        let cfg = SynthConfig::new(SynthModel::Register, 50, 3, 2);
        let events = simulate(&cfg);
        assert_eq!(to_events(&events).len(), 100);
        let edn = to_edn(&events, true);
        assert_eq!(edn.lines().count(), 100);
        assert!(edn.starts_with("{:type :invoke"), "{edn}");
    }
}
