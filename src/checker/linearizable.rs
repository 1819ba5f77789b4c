//! "linearizable": per key, the client history is linearizable against a
//! register (initially absent) with read, write and compare-and-set.
//!
//! A real search, in the Wing–Gong line with Lowe's memoisation (as in
//! Porcupine and Knossos' `linear`): the history is a doubly linked list of
//! call and return entries in time order; the search repeatedly linearizes
//! a call whose operation applies to the current state, backtracking when it
//! reaches the return of an operation it has not linearized. Every
//! (linearized set, state) configuration it has explored is remembered, so no
//! configuration is explored twice.
//!
//! The memo stores a 128-bit Zobrist fingerprint of the linearized set rather
//! than the set itself (as TLC does with 64-bit fingerprints): each entry costs
//! a constant ~50 bytes whatever the history length, and a step is O(1). Two
//! different sets share a fingerprint with probability 2^-128 per pair; only
//! then could a branch be wrongly pruned.
//!
//! Outcomes: `ok` operations must take effect between invocation and
//! completion; `fail` ones never happened and are dropped; an `info` (or
//! never-completed) write or cas may take effect at any point after its
//! invocation, or never; `info` reads are dropped (they constrain nothing).
//!
//! Keys are independent (P-compositionality), so each key is searched on its
//! own, on up to `available_parallelism` threads. The search gives up with
//! "unknown" past its time budget or its memo budget (the total number of
//! memoised configurations over all keys): it never runs out of memory.

use super::{pair_ops, CheckOptions, CheckResult, Checker, Op};
use crate::history::{Event, OpKind, Outcome};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Per-key register linearizability (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Linearizable {
    /// Wall-clock budget for all keys together.
    pub timeout: Duration,
    /// Memoised configurations allowed over all keys together.
    pub max_memo_entries: usize,
    /// Worker threads (`None`: available parallelism, which also caps it).
    pub threads: Option<usize>,
}

impl Default for Linearizable {
    fn default() -> Self {
        Self::from_options(&CheckOptions::default())
    }
}

impl Linearizable {
    pub fn from_options(opts: &CheckOptions) -> Self {
        Linearizable {
            timeout: opts.timeout,
            max_memo_entries: opts.max_memo_entries,
            threads: opts.threads,
        }
    }
}

/// A register operation, values interned per key (0 = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Read(u32),
    Write(u32),
    Cas { expected: u32, new: u32 },
}

impl Reg {
    /// The state after applying this operation to `state`, if it can apply.
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Reg::Read(v) => (v == state).then_some(state),
            Reg::Write(v) => Some(v),
            Reg::Cas { expected, new } => (expected == state).then_some(new),
        }
    }
    fn writes(self) -> bool {
        !matches!(self, Reg::Read(_))
    }
}

/// One operation of one key's history, ready for the search.
#[derive(Debug, Clone, Copy)]
struct KeyOp<'a> {
    op: Op<'a>,
    reg: Reg,
    call: f64,
    /// Completion time of an `ok` op; `None` (infinitely late) for `info`.
    ret: Option<f64>,
}

impl KeyOp<'_> {
    fn must(&self) -> bool {
        self.ret.is_some()
    }
}

/// One key's history, values interned.
struct KeyHistory<'a> {
    key: &'a str,
    ops: Vec<KeyOp<'a>>,
    /// Interned value -> value (index 0: absent).
    values: Vec<Option<&'a str>>,
    /// Unobserved `info` ops dropped before the search.
    dropped: usize,
}

impl KeyHistory<'_> {
    fn value(&self, v: u32) -> String {
        match self.values[v as usize] {
            Some(s) => format!("{s:?}"),
            None => "absent".into(),
        }
    }
}

/// Split the client operations by key, dropping what constrains nothing.
fn key_histories<'a>(ops: &[Op<'a>]) -> Vec<KeyHistory<'a>> {
    let mut keys: BTreeMap<&str, KeyHistory> = BTreeMap::new();
    let mut interned: HashMap<(&str, &str), u32> = HashMap::new();
    for op in ops {
        let i = op.invoke;
        let outcome = op.outcome();
        if outcome == Outcome::Fail || (i.f == OpKind::Read && outcome == Outcome::Info) {
            continue;
        }
        let h = keys.entry(&i.key).or_insert_with(|| KeyHistory {
            key: &i.key,
            ops: Vec::new(),
            values: vec![None],
            dropped: 0,
        });
        let mut intern = |v: Option<&'a str>| -> u32 {
            let Some(v) = v else { return 0 };
            *interned.entry((&i.key, v)).or_insert_with(|| {
                h.values.push(Some(v));
                (h.values.len() - 1) as u32
            })
        };
        let reg = match i.f {
            OpKind::Read => Reg::Read(intern(op.complete.and_then(|c| c.value.as_deref()))),
            OpKind::Write => Reg::Write(intern(i.value.as_deref())),
            OpKind::Cas => Reg::Cas {
                expected: intern(i.expected.as_ref().and_then(|e| e.as_deref())),
                new: intern(i.value.as_deref()),
            },
        };
        let ret = (outcome == Outcome::Ok).then(|| op.end_ms()).flatten();
        h.ops.push(KeyOp {
            op: *op,
            reg,
            call: i.time_ms,
            ret,
        });
    }
    for h in keys.values_mut() {
        drop_unobserved(h);
    }
    keys.into_values().collect()
}

/// Drop `info` writes and cas whose value nobody observed (no `ok` read
/// returned it, no cas expected it). Sound and complete: in any linearization
/// containing such an op, no op linearized while the register held its value
/// depends on the state, so removing it leaves a linearization. This keeps the
/// common case (timed-out writes of unique values) from multiplying the search.
fn drop_unobserved(h: &mut KeyHistory) {
    let observed: HashSet<u32> = h
        .ops
        .iter()
        .filter_map(|o| match o.reg {
            Reg::Read(v) | Reg::Cas { expected: v, .. } => Some(v),
            Reg::Write(_) => None,
        })
        .collect();
    let before = h.ops.len();
    h.ops.retain(|o| {
        o.must()
            || match o.reg {
                Reg::Write(v) | Reg::Cas { new: v, .. } => observed.contains(&v),
                Reg::Read(_) => true,
            }
    });
    h.dropped = before - h.ops.len();
}

/// Shared limits of one check.
struct Budget {
    deadline: Instant,
    max_memo: usize,
    memo_used: AtomicUsize,
    /// Set when some key is invalid: the others need not finish.
    stop: AtomicBool,
}

/// Why the search gave up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GaveUp {
    Time,
    Memo,
}

/// Where the search got furthest before finding no extension.
#[derive(Debug, Clone)]
struct Failure {
    /// `ok` operations linearized at that point.
    depth: usize,
    /// The op whose completion was reached without it being linearizable.
    blocked: usize,
    /// Register state after the longest linearizable prefix.
    state: u32,
    /// The op that set that state (last write/cas of the prefix).
    last_writer: Option<usize>,
    /// Ops invoked before the blocked op completed but not linearized.
    concurrent: Vec<usize>,
}

#[derive(Debug)]
enum SearchOutcome {
    Valid,
    Invalid(Failure),
    GaveUp(GaveUp),
    Cancelled,
}

#[derive(Debug)]
struct KeyResult {
    outcome: SearchOutcome,
    memo: usize,
    elapsed: Duration,
}

const NONE: usize = usize::MAX;

/// A call or return in the doubly linked history list (index 0 is the head).
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    call: bool,
    /// For a call: its return entry (`NONE` for info ops).
    ret: usize,
    prev: usize,
    next: usize,
}

fn build_list(ops: &[KeyOp]) -> Vec<Entry> {
    let mut raw: Vec<(f64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        raw.push((op.call, false, i));
        if let Some(r) = op.ret {
            raw.push((r, true, i));
        }
    }
    // Calls before returns at equal times: simultaneous means concurrent.
    raw.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let n = raw.len();
    let mut list = Vec::with_capacity(n + 1);
    list.push(Entry {
        op: NONE,
        call: false,
        ret: NONE,
        prev: NONE,
        next: if n == 0 { NONE } else { 1 },
    });
    let mut ret_of = vec![NONE; ops.len()];
    for (k, &(_, is_ret, op)) in raw.iter().enumerate() {
        let ix = k + 1;
        if is_ret {
            ret_of[op] = ix;
        }
        list.push(Entry {
            op,
            call: !is_ret,
            ret: NONE,
            prev: ix - 1,
            next: if ix == n { NONE } else { ix + 1 },
        });
    }
    for e in list.iter_mut().skip(1).filter(|e| e.call) {
        e.ret = ret_of[e.op];
    }
    list
}

fn unlink(list: &mut [Entry], e: usize) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = n;
    if n != NONE {
        list[n].prev = p;
    }
}

fn relink(list: &mut [Entry], e: usize) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = e;
    if n != NONE {
        list[n].prev = e;
    }
}

/// Remove a call and its return from the list.
fn lift(list: &mut [Entry], call: usize) {
    unlink(list, call);
    if list[call].ret != NONE {
        unlink(list, list[call].ret);
    }
}

/// Undo [`lift`] (in reverse order).
fn unlift(list: &mut [Entry], call: usize) {
    if list[call].ret != NONE {
        relink(list, list[call].ret);
    }
    relink(list, call);
}

/// FxHash (as in rustc): memo keys are already random, SipHash is needlessly slow.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, w: u128) {
        self.write_u64(w as u64);
        self.write_u64((w >> 64) as u64);
    }
    fn write_u32(&mut self, w: u32) {
        self.write_u64(u64::from(w));
    }
    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}

/// Memoised configurations: (fingerprint of the linearized set, state).
type Memo = HashSet<(u128, u32), BuildHasherDefault<Fx>>;

/// SplitMix64: a fixed pseudo-random sequence, so checks are deterministic.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Zobrist keys: a random 128-bit value per op; a set's fingerprint is the
/// XOR of its members' keys, updated in O(1) as ops are linearized and undone.
fn zobrist(n: usize) -> Vec<u128> {
    (0..n as u64)
        .map(|i| (u128::from(splitmix64(2 * i)) << 64) | u128::from(splitmix64(2 * i + 1)))
        .collect()
}

/// Search one key's history for a linearization.
fn search(h: &KeyHistory, budget: &Budget) -> KeyResult {
    let started = Instant::now();
    let ops = &h.ops;
    let must_total = ops.iter().filter(|o| o.must()).count();
    let mut list = build_list(ops);
    let keys = zobrist(ops.len());
    let mut lin: u128 = 0;
    let mut memo = Memo::default();
    // (call entry linearized, state before it, pass it was tried in)
    let mut stack: Vec<(usize, u32, bool)> = Vec::new();
    let mut state = 0u32;
    let mut must_done = 0usize;
    let mut best: Option<Failure> = None;
    let mut cur = list[0].next;
    // Candidates are the calls before the first return in the list. They are
    // tried in two passes: `ok` ops first, then (only when stuck) `info` ops,
    // so an operation that may never have happened is linearized only when
    // something needs it. Both passes cover all candidates: still complete.
    let mut info_pass = false;
    let mut iter: u64 = 0;
    let result = |outcome, memo: &Memo| KeyResult {
        outcome,
        memo: memo.len(),
        elapsed: started.elapsed(),
    };
    loop {
        if must_done == must_total {
            return result(SearchOutcome::Valid, &memo);
        }
        if iter & 0xff == 0 {
            if budget.stop.load(Ordering::Relaxed) {
                return result(SearchOutcome::Cancelled, &memo);
            }
            if Instant::now() >= budget.deadline {
                return result(SearchOutcome::GaveUp(GaveUp::Time), &memo);
            }
        }
        iter += 1;
        if cur != NONE && list[cur].call {
            let i = list[cur].op;
            if ops[i].must() != info_pass {
                if let Some(next_state) = ops[i].reg.step(state) {
                    if memo.insert((lin ^ keys[i], next_state)) {
                        if budget.memo_used.fetch_add(1, Ordering::Relaxed) >= budget.max_memo {
                            return result(SearchOutcome::GaveUp(GaveUp::Memo), &memo);
                        }
                        stack.push((cur, state, info_pass));
                        lin ^= keys[i];
                        state = next_state;
                        must_done += usize::from(ops[i].must());
                        lift(&mut list, cur);
                        cur = list[0].next;
                        info_pass = false;
                        continue;
                    }
                }
            }
            cur = list[cur].next;
            continue;
        }
        // A return of an op not linearized yet (or, defensively, the end of
        // the list): no candidate of this pass extends the prefix.
        if !info_pass {
            info_pass = true;
            cur = list[0].next;
            continue;
        }
        // No candidate at all: remember the deepest such point for the
        // counterexample, then backtrack.
        if cur != NONE && best.as_ref().is_none_or(|b| must_done > b.depth) {
            best = Some(failure_at(&list, ops, &stack, cur, state, must_done));
        }
        let Some((call, prev_state, pass)) = stack.pop() else {
            let failure = best.expect("a return entry was reached before the stack emptied");
            return result(SearchOutcome::Invalid(failure), &memo);
        };
        let i = list[call].op;
        lin ^= keys[i];
        state = prev_state;
        must_done -= usize::from(ops[i].must());
        unlift(&mut list, call);
        cur = list[call].next;
        info_pass = pass;
    }
}

fn failure_at(
    list: &[Entry],
    ops: &[KeyOp],
    stack: &[(usize, u32, bool)],
    ret: usize,
    state: u32,
    depth: usize,
) -> Failure {
    let blocked = list[ret].op;
    let last_writer = stack
        .iter()
        .rev()
        .map(|&(call, _, _)| list[call].op)
        .find(|&i| ops[i].reg.writes());
    let mut concurrent = Vec::new();
    let mut e = list[0].next;
    while e != ret && e != NONE && concurrent.len() < 6 {
        if list[e].call && list[e].op != blocked {
            concurrent.push(list[e].op);
        }
        e = list[e].next;
    }
    Failure {
        depth,
        blocked,
        state,
        last_writer,
        concurrent,
    }
}

/// The counterexample ops of a failure, in invocation order, each annotated.
fn failure_ops(h: &KeyHistory, f: &Failure) -> Vec<Value> {
    let mut picked: Vec<(usize, &str)> = vec![(f.blocked, "cannot be linearized")];
    if let Some(w) = f.last_writer {
        picked.push((w, "set the state of the longest linearizable prefix"));
    }
    // Who wrote what the blocked op needed (a read's value, a cas's expected value).
    let needed = match h.ops[f.blocked].reg {
        Reg::Read(v) => Some(v),
        Reg::Cas { expected, .. } => Some(expected),
        Reg::Write(_) => None,
    };
    if let Some(v) = needed.filter(|&v| v != 0) {
        let writers = h.ops.iter().enumerate().filter(|(_, o)| match o.reg {
            Reg::Write(w) | Reg::Cas { new: w, .. } => w == v,
            Reg::Read(_) => false,
        });
        for (i, _) in writers.take(2) {
            picked.push((i, "wrote the value the blocked op needed"));
        }
    }
    for &c in &f.concurrent {
        picked.push((c, "concurrent, not linearized"));
    }
    let mut seen = HashSet::new();
    picked.retain(|(i, _)| seen.insert(*i));
    picked.sort_by(|a, b| h.ops[a.0].call.total_cmp(&h.ops[b.0].call));
    picked
        .into_iter()
        .map(|(i, why)| {
            let mut v = h.ops[i].op.to_json();
            v["why"] = json!(why);
            v
        })
        .collect()
}

fn describe_failure(h: &KeyHistory, f: &Failure) -> String {
    let op = &h.ops[f.blocked];
    let i = op.op.invoke;
    let when = format!(
        "op {} by process {} on {} at {:.0}-{:.0} ms",
        i.op_id,
        i.process,
        op.op
            .complete
            .and_then(|c| c.node.as_deref())
            .unwrap_or(&i.node),
        op.call,
        op.ret.unwrap_or(f64::INFINITY)
    );
    let held = h.value(f.state);
    let prefix = format!(
        "after the longest linearizable prefix ({} ok ops) the register held {held}",
        f.depth
    );
    match op.reg {
        Reg::Read(v) => format!(
            "key {:?}: read ({when}) returned {} but {prefix}",
            h.key,
            h.value(v)
        ),
        Reg::Cas { expected, .. } => format!(
            "key {:?}: cas ({when}) succeeded expecting {} but {prefix}",
            h.key,
            h.value(expected)
        ),
        Reg::Write(_) => format!(
            "key {:?}: no order of the concurrent operations explains write ({when}); {prefix}",
            h.key
        ),
    }
}

impl Checker for Linearizable {
    fn name(&self) -> &'static str {
        "linearizable"
    }

    fn check(&self, events: &[Event]) -> CheckResult {
        let started = Instant::now();
        let all = pair_ops(events);
        if !all.is_well_formed() {
            return CheckResult::unknown(format!(
                "malformed history: {}",
                all.problems.first().map_or("", String::as_str)
            ))
            .with_details(json!({ "problems": all.problems.iter().take(20).collect::<Vec<_>>() }));
        }
        let mut keys = key_histories(&all.ops);
        // Biggest keys first, so the long pole starts early.
        keys.sort_by(|a, b| b.ops.len().cmp(&a.ops.len()).then(a.key.cmp(b.key)));
        let budget = Budget {
            deadline: started + self.timeout,
            max_memo: self.max_memo_entries,
            memo_used: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = self
            .threads
            .unwrap_or(cores)
            .min(cores)
            .clamp(1, keys.len().max(1));
        let results = run_keys(&keys, &budget, threads);

        let mut invalid: Vec<(&KeyHistory, &Failure)> = Vec::new();
        let mut gave_up: Vec<(&KeyHistory, GaveUp)> = Vec::new();
        let mut per_key = serde_json::Map::new();
        for (h, r) in keys.iter().zip(&results) {
            let status = match &r.outcome {
                SearchOutcome::Valid => "valid",
                SearchOutcome::Invalid(f) => {
                    invalid.push((h, f));
                    "invalid"
                }
                SearchOutcome::GaveUp(g) => {
                    gave_up.push((h, *g));
                    "unknown"
                }
                SearchOutcome::Cancelled => "cancelled",
            };
            if status != "valid" || per_key.len() < 50 {
                per_key.insert(
                    h.key.to_string(),
                    json!({
                        "ops": h.ops.len(),
                        "result": status,
                        "memo_entries": r.memo,
                        "ms": r.elapsed.as_millis(),
                    }),
                );
            }
        }
        let op_count: usize = keys.iter().map(|k| k.ops.len()).sum();
        let dropped: usize = keys.iter().map(|k| k.dropped).sum();
        let details = json!({
            "keys": keys.len(),
            "ops": op_count,
            "unobserved_info_ops_dropped": dropped,
            "threads": threads,
            "memo_entries": budget.memo_used.load(Ordering::Relaxed),
            "elapsed_ms": started.elapsed().as_millis(),
            "per_key": per_key,
        });
        invalid.sort_by(|a, b| a.0.key.cmp(b.0.key));
        if let Some((h, f)) = invalid.first() {
            return CheckResult::invalid(describe_failure(h, f), failure_ops(h, f))
                .with_details(details);
        }
        gave_up.sort_by(|a, b| a.0.key.cmp(b.0.key));
        if let Some((h, why)) = gave_up.first() {
            let why = match why {
                GaveUp::Time => format!("time budget of {:?} exhausted", self.timeout),
                GaveUp::Memo => {
                    format!("memo budget of {} entries exhausted", self.max_memo_entries)
                }
            };
            return CheckResult::unknown(format!(
                "gave up on key {:?} ({} ops) and {} other key(s): {why}",
                h.key,
                h.ops.len(),
                gave_up.len() - 1
            ))
            .with_details(details);
        }
        CheckResult::valid(format!(
            "{op_count} operations on {} keys are linearizable",
            keys.len()
        ))
        .with_details(details)
    }
}

/// Search every key, on `threads` workers pulling keys in order.
fn run_keys(keys: &[KeyHistory], budget: &Budget, threads: usize) -> Vec<KeyResult> {
    let work = |i: usize| {
        let r = search(&keys[i], budget);
        if matches!(r.outcome, SearchOutcome::Invalid(_)) {
            budget.stop.store(true, Ordering::Relaxed);
        }
        r
    };
    if threads <= 1 {
        return (0..keys.len()).map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, KeyResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= keys.len() {
                            return mine;
                        }
                        mine.push((i, work(i)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests;
