//! History preparation as Knossos does it, then model operations per key.
//!
//! - Only client ops (an integer `:process`) count; nemesis ops are ignored.
//! - Each process does one thing at a time: an invocation pairs with the
//!   process's next completion.
//! - `:fail` ops never happened: the pair is dropped.
//! - An `:ok` completion's `:value` replaces its invocation's (a read learns
//!   what it read only when it completes).
//! - `:info` completions and invocations that never complete may take effect
//!   at any point after their invocation, or never; they keep the
//!   invocation's value.
//! - Jepsen's independent keys: when values are `[key value]` tuples, the
//!   history splits into one history per key, each checked on its own.
//!
//! Real time is the order of the file (as in Knossos): op *n* of the file
//! happens at time *n*.

use super::edn::{short, OpType, Process, RawOp, SyntaxError, F};
use crate::checker::models::{
    unobserved_unknowns, Micro, MultiRegister, Mutex, MutexOp, RegOp, Register, NIL,
};
use crate::checker::search::{HistoryOp, Model, Problem};
use edn_format::Value;
use std::collections::{BTreeMap, HashMap};

/// The models a Jepsen history can be checked against (Knossos' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelName {
    /// `:read` and `:write`; a read of nil is legal in any state.
    Register,
    /// `:read`, `:write` and `:cas [from to]`; a read of nil is legal in any state.
    CasRegister,
    /// `:txn` of `[:read k v]` / `[:write k v]`, applied in order; nil reads legal.
    MultiRegister,
    /// `:acquire` and `:release`.
    Mutex,
}

impl ModelName {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Register => "register",
            ModelName::CasRegister => "cas-register",
            ModelName::MultiRegister => "multi-register",
            ModelName::Mutex => "mutex",
        }
    }
    fn fs(self) -> &'static str {
        match self {
            ModelName::Register => ":read and :write",
            ModelName::CasRegister => ":read, :write and :cas",
            ModelName::MultiRegister => ":txn",
            ModelName::Mutex => ":acquire and :release",
        }
    }
}

/// Whether values are Jepsen `[key value]` tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Independent {
    /// Independent if every client op's value is a `[key value]` tuple whose
    /// value fits the model (a plain `:cas [1 2]` is not a tuple).
    #[default]
    Auto,
    /// Values are `[key value]` tuples: one history per key.
    Yes,
    /// One history.
    No,
}

/// One client operation: an invocation and its completion, if any.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub invoke: usize,
    pub complete: Option<usize>,
    /// `Invoke` when the history ends before it completes.
    pub outcome: OpType,
}

/// Counts over the whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryCounts {
    /// Op maps in the file.
    pub ops: usize,
    /// Client operations (invocation + completion pairs).
    pub client_ops: usize,
    pub ok: usize,
    pub fail: usize,
    /// `:info` completions and invocations that never completed.
    pub info: usize,
    /// Ops of non-client processes (the nemesis), ignored.
    pub ignored: usize,
    pub processes: usize,
    /// Values were `[key value]` tuples.
    pub independent: bool,
    pub keys: usize,
    /// Unknown-outcome writes whose value nobody observed, and ops legal in
    /// every state (nil reads): dropped before the search.
    pub dropped: usize,
}

/// Interned values of one key (id 0 is nil).
#[derive(Debug, Clone)]
pub struct Interner {
    ints: HashMap<i64, u32>,
    others: BTreeMap<Value, u32>,
    pub values: Vec<Value>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            ints: HashMap::new(),
            others: BTreeMap::new(),
            values: vec![Value::Nil],
        }
    }
}

impl Interner {
    pub fn id(&mut self, v: &Value) -> u32 {
        let next = self.values.len() as u32;
        let id = match v {
            Value::Nil => return NIL,
            Value::Integer(i) => *self.ints.entry(*i).or_insert(next),
            other => {
                let n = normalize(other);
                *self.others.entry(n).or_insert(next)
            }
        };
        if id == next {
            self.values.push(v.clone());
        }
        id
    }
    pub fn show(&self, id: u32) -> String {
        self.values[id as usize].to_string()
    }
}

/// Clojure's equality on the values histories hold: lists equal vectors,
/// `1N` equals `1`.
fn normalize(v: &Value) -> Value {
    match v {
        Value::List(xs) | Value::Vector(xs) => Value::Vector(xs.iter().map(normalize).collect()),
        Value::BigInt(b) => i64::try_from(b.clone()).map_or_else(|_| v.clone(), Value::Integer),
        Value::TaggedElement(t, x) => Value::TaggedElement(t.clone(), Box::new(normalize(x))),
        other => other.clone(),
    }
}

/// The elements of a vector or list.
fn seq(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Vector(xs) | Value::List(xs) => Some(xs),
        _ => None,
    }
}

/// One key's history, ready for the search, and where each op came from.
pub struct KeyHistory<M: Model> {
    /// The independent key (`None`: the history is not split).
    pub key: Option<Value>,
    pub problem: Problem<M>,
    /// For each searched op: its client operation.
    pub source: Vec<Pair>,
    pub values: Interner,
    /// Multi-register: register names by number.
    pub regs: Vec<Value>,
}

/// Pair invocations with completions, per process, in file order.
pub fn pair(ops: &[RawOp], counts: &mut HistoryCounts) -> Result<Vec<Pair>, SyntaxError> {
    // Per process: its pending invocation, and that pair's slot.
    let mut pending: HashMap<i64, (usize, usize)> = HashMap::new();
    let mut pairs: Vec<Pair> = Vec::new();
    counts.ops = ops.len();
    for (i, op) in ops.iter().enumerate() {
        let Process::Client(p) = op.process else {
            counts.ignored += 1;
            continue;
        };
        match op.kind {
            OpType::Invoke => {
                if let Some(&(prev, _)) = pending.get(&p) {
                    return Err(SyntaxError {
                        pos: op.pos,
                        message: format!(
                            "process {p} invokes an op while its op at {} has not completed \
                             (a process does one thing at a time; Jepsen gives a crashed \
                             process a new number)",
                            ops[prev].pos
                        ),
                    });
                }
                pending.insert(p, (i, pairs.len()));
                pairs.push(Pair {
                    invoke: i,
                    complete: None,
                    outcome: OpType::Invoke,
                });
            }
            kind => {
                let Some((inv, slot)) = pending.remove(&p) else {
                    if kind == OpType::Info {
                        // Knossos tolerates a lone :info; it constrains nothing.
                        counts.ignored += 1;
                        continue;
                    }
                    return Err(SyntaxError {
                        pos: op.pos,
                        message: format!(
                            "process {p} completes an op (:{}) it never invoked",
                            kind.as_str()
                        ),
                    });
                };
                if op.f != ops[inv].f {
                    return Err(SyntaxError {
                        pos: op.pos,
                        message: format!(
                            "completion has :f {} but its invocation at {} has :f {}",
                            show_f(&op.f),
                            ops[inv].pos,
                            show_f(&ops[inv].f)
                        ),
                    });
                }
                let pair = &mut pairs[slot];
                pair.complete = Some(i);
                pair.outcome = kind;
            }
        }
    }
    let mut procs: Vec<i64> = ops
        .iter()
        .filter_map(|o| match o.process {
            Process::Client(p) => Some(p),
            Process::Other => None,
        })
        .collect();
    procs.sort_unstable();
    procs.dedup();
    counts.processes = procs.len();
    counts.client_ops = pairs.len();
    for p in &pairs {
        match p.outcome {
            OpType::Ok => counts.ok += 1,
            OpType::Fail => counts.fail += 1,
            OpType::Info | OpType::Invoke => counts.info += 1,
        }
    }
    Ok(pairs)
}

fn show_f(f: &Option<F>) -> String {
    f.as_ref().map_or("nil".into(), F::to_string)
}

/// Is this `[key value]` tuple's value the shape the model expects?
fn fits(model: ModelName, f: &F, v: &Value) -> bool {
    match (model, f) {
        (ModelName::CasRegister, F::Cas) => seq(v).is_some_and(|xs| xs.len() == 2),
        (ModelName::MultiRegister, F::Txn) => seq(v).is_some_and(|xs| xs.iter().all(is_micro)),
        _ => true,
    }
}

fn is_micro(v: &Value) -> bool {
    seq(v).is_some_and(|m| {
        m.len() == 3 && matches!(&m[0], Value::Keyword(k) if matches!(k.name(), "read" | "write"))
    })
}

/// Decide whether the history uses independent keys.
pub fn is_independent(mode: Independent, model: ModelName, ops: &[RawOp], pairs: &[Pair]) -> bool {
    match mode {
        Independent::Yes => true,
        Independent::No => false,
        // Jepsen's independent generator wraps every invocation's value,
        // nil ones included (`[k nil]`), so a bare value means no keys.
        Independent::Auto => {
            let mut any = false;
            for p in pairs {
                let inv = &ops[p.invoke];
                let v = &inv.value;
                let Some([_, x]) = seq(v) else {
                    return false;
                };
                if !fits(model, inv.f.as_ref().expect("client ops have :f"), x) {
                    return false;
                }
                any = true;
            }
            any
        }
    }
}

/// A client operation split into key and value (as checked).
struct Split {
    key: Option<Value>,
    value: Value,
}

/// The value of a client operation as checked: an `:ok` completion's, else
/// the invocation's, unwrapped from its `[key value]` tuple.
pub fn checked_value(ops: &[RawOp], p: &Pair, independent: bool) -> Value {
    split(ops, p, independent).map_or(Value::Nil, |s| s.value)
}

fn split(ops: &[RawOp], p: &Pair, independent: bool) -> Result<Split, SyntaxError> {
    let inv = &ops[p.invoke];
    let comp = p.complete.map(|c| &ops[c]);
    let chosen = match (p.outcome, comp) {
        (OpType::Ok, Some(c)) => c,
        _ => inv,
    };
    if !independent {
        return Ok(Split {
            key: None,
            value: (*chosen.value).clone(),
        });
    }
    let tuple = |op: &RawOp| -> Option<(Value, Value)> {
        match seq(&op.value) {
            Some([k, v]) => Some((normalize(k), v.clone())),
            _ => None,
        }
    };
    let (key, inv_value) = tuple(inv).ok_or_else(|| SyntaxError {
        pos: inv.pos,
        message: format!(
            "expected a [key value] tuple (independent keys), got `{}`",
            short(&inv.value)
        ),
    })?;
    let value = if std::ptr::eq(chosen, inv) {
        inv_value
    } else {
        match tuple(chosen) {
            Some((k, v)) if k == key => v,
            Some((k, _)) => {
                return Err(SyntaxError {
                    pos: chosen.pos,
                    message: format!(
                        "completion is for key {k} but its invocation at {} is for key {key}",
                        inv.pos
                    ),
                })
            }
            // Not a tuple (e.g. nil): Knossos keeps it as it is.
            None => (*chosen.value).clone(),
        }
    };
    Ok(Split {
        key: Some(key),
        value,
    })
}

/// Turns values into one model's operations.
pub trait Convert: Model + Sized {
    /// The model of one key's history, given its ops (to size the state).
    fn model(
        name: ModelName,
        init: &Value,
        values: &mut Interner,
        regs: &mut Interner,
    ) -> Result<Self, String>;
    fn op(
        name: ModelName,
        f: &F,
        value: &Value,
        values: &mut Interner,
        regs: &mut Interner,
    ) -> Result<Self::Op, String>;
    /// Resize the model now that every op is converted.
    fn finish(&mut self, _regs: &Interner) {}
    /// Ops to drop before the search, beyond the model's free ones.
    fn droppable(&self, _ops: &[HistoryOp<Self::Op>]) -> Vec<bool> {
        Vec::new()
    }
}

impl Convert for Register {
    fn model(
        _: ModelName,
        init: &Value,
        values: &mut Interner,
        _: &mut Interner,
    ) -> Result<Self, String> {
        Ok(Register {
            init: values.id(init),
            nil_reads_free: true,
        })
    }
    fn op(
        name: ModelName,
        f: &F,
        v: &Value,
        values: &mut Interner,
        _: &mut Interner,
    ) -> Result<RegOp, String> {
        Ok(match f {
            F::Read => RegOp::Read(values.id(v)),
            F::Write => RegOp::Write(values.id(v)),
            F::Cas if name == ModelName::CasRegister => match seq(v) {
                Some([from, to]) => RegOp::Cas {
                    from: values.id(from),
                    to: values.id(to),
                },
                _ => {
                    return Err(format!(
                        "expected a :cas value [from to], got `{}`",
                        short(v)
                    ))
                }
            },
            F::Cas => {
                return Err("the register model has no :cas (use --model cas-register)".into())
            }
            other => return Err(unknown_f(name, other)),
        })
    }
    fn droppable(&self, ops: &[HistoryOp<RegOp>]) -> Vec<bool> {
        unobserved_unknowns(self, ops)
    }
}

impl Convert for MultiRegister {
    fn model(
        _: ModelName,
        init: &Value,
        values: &mut Interner,
        regs: &mut Interner,
    ) -> Result<Self, String> {
        let mut init_ids = Vec::new();
        match init {
            Value::Nil => {}
            Value::Map(m) => {
                for (k, v) in m {
                    let r = regs.id(k) as usize;
                    if init_ids.len() <= r {
                        init_ids.resize(r + 1, NIL);
                    }
                    init_ids[r] = values.id(v);
                }
            }
            other => {
                return Err(format!(
                    "--init for multi-register is a map of register to value, like {{:x 0, :y 0}}; got `{}`",
                    short(other)
                ))
            }
        }
        Ok(MultiRegister {
            init: init_ids.into(),
        })
    }
    fn op(
        name: ModelName,
        f: &F,
        v: &Value,
        values: &mut Interner,
        regs: &mut Interner,
    ) -> Result<Box<[Micro]>, String> {
        if *f != F::Txn {
            return Err(unknown_f(name, f));
        }
        let expected = || {
            format!(
                "expected a :txn value like [[:read :x nil] [:write :y 1]], got `{}`",
                short(v)
            )
        };
        let micro = seq(v).ok_or_else(expected)?;
        micro
            .iter()
            .map(|m| match seq(m) {
                Some([Value::Keyword(k), reg, value]) if matches!(k.name(), "read" | "write") => {
                    Ok(Micro {
                        write: k.name() == "write",
                        reg: regs.id(reg),
                        value: values.id(value),
                    })
                }
                _ => Err(expected()),
            })
            .collect()
    }
    fn finish(&mut self, regs: &Interner) {
        let mut init = self.init.to_vec();
        init.resize(regs.values.len(), NIL);
        self.init = init.into();
    }
}

impl Convert for Mutex {
    fn model(
        _: ModelName,
        init: &Value,
        _: &mut Interner,
        _: &mut Interner,
    ) -> Result<Self, String> {
        match init {
            Value::Nil | Value::Boolean(false) => Ok(Mutex { locked: false }),
            Value::Boolean(true) => Ok(Mutex { locked: true }),
            other => Err(format!(
                "--init for mutex is true (held) or false (free); got `{}`",
                short(other)
            )),
        }
    }
    fn op(
        name: ModelName,
        f: &F,
        _: &Value,
        _: &mut Interner,
        _: &mut Interner,
    ) -> Result<MutexOp, String> {
        match f {
            F::Acquire => Ok(MutexOp::Acquire),
            F::Release => Ok(MutexOp::Release),
            other => Err(unknown_f(name, other)),
        }
    }
}

fn unknown_f(name: ModelName, f: &F) -> String {
    format!(
        "the {} model has no :f {f}; it knows {}",
        name.as_str(),
        name.fs()
    )
}

/// One history per key, with model ops, for model `M`.
pub fn key_histories<M: Convert>(
    name: ModelName,
    init: &Value,
    ops: &[RawOp],
    pairs: &[Pair],
    independent: bool,
    counts: &mut HistoryCounts,
) -> Result<Vec<KeyHistory<M>>, String> {
    // The model check of `--init` comes first: a usage error, not a history one.
    M::model(
        name,
        init,
        &mut Interner::default(),
        &mut Interner::default(),
    )?;
    let mut by_key: BTreeMap<Option<Value>, usize> = BTreeMap::new();
    let mut keys: Vec<KeyHistory<M>> = Vec::new();
    let mut regs_of: Vec<Interner> = Vec::new();
    for p in pairs.iter().filter(|p| p.outcome != OpType::Fail) {
        let s = split(ops, p, independent).map_err(|e| format!("{}: {}", e.pos, e.message))?;
        let k = *by_key.entry(s.key.clone()).or_insert_with(|| {
            let mut values = Interner::default();
            let mut regs = Interner::default();
            let model = M::model(name, init, &mut values, &mut regs).expect("checked above");
            keys.push(KeyHistory {
                key: s.key.clone(),
                problem: Problem {
                    model,
                    ops: Vec::new(),
                },
                source: Vec::new(),
                values,
                regs: Vec::new(),
            });
            regs_of.push(regs);
            keys.len() - 1
        });
        let h = &mut keys[k];
        let inv = &ops[p.invoke];
        let f = inv.f.as_ref().expect("client ops have :f");
        let at = match (p.outcome, p.complete) {
            (OpType::Ok, Some(c)) => ops[c].pos,
            _ => inv.pos,
        };
        let op = M::op(name, f, &s.value, &mut h.values, &mut regs_of[k])
            .map_err(|e| format!("{at}: {e}"))?;
        h.problem.ops.push(HistoryOp {
            op,
            call: p.invoke as f64,
            ret: match (p.outcome, p.complete) {
                (OpType::Ok, Some(c)) => Some(c as f64),
                _ => None,
            },
        });
        h.source.push(*p);
    }
    for (h, regs) in keys.iter_mut().zip(regs_of) {
        h.problem.model.finish(&regs);
        h.regs = regs.values.into_iter().skip(1).collect();
        let mut drop = h.problem.model.droppable(&h.problem.ops);
        drop.resize(h.problem.ops.len(), false);
        for (d, o) in drop.iter_mut().zip(&h.problem.ops) {
            *d |= h.problem.model.is_free(&o.op);
        }
        counts.dropped += drop.iter().filter(|&&d| d).count();
        let mut keep = drop.iter().map(|d| !d);
        h.problem.ops.retain(|_| keep.next().unwrap_or(true));
        let mut keep = drop.iter().map(|d| !d);
        h.source.retain(|_| keep.next().unwrap_or(true));
    }
    counts.independent = independent;
    counts.keys = keys.len();
    Ok(keys)
}
