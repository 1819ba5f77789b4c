//! The linearizability search: one engine, models plugged in.
//!
//! A [`Model`] is a sequential specification (as in stateright's
//! `SequentialSpec` or Knossos' `Model`): a state and a partial `step`
//! function. The search decides whether a history of concurrent operations,
//! each an [`HistoryOp`] with an invocation time and (unless its outcome is
//! unknown) a completion time, has a linearization: a total order consistent
//! with real time in which every operation steps the model legally.
//!
//! It is a search in the Wing–Gong line with Lowe's memoisation (as in
//! Porcupine and Knossos' `wgl`): calls and returns form a doubly linked list
//! in time order; the search repeatedly linearizes a call whose operation
//! applies to the current state and backtracks when it reaches the return of
//! an operation it has not linearized. Every (linearized set, state)
//! configuration explored is remembered, so none is explored twice. The memo
//! stores a 96-bit Zobrist fingerprint of the linearized set rather than the
//! set (as TLC does with its 64-bit fingerprints): an entry costs a constant
//! 16 bytes (with a register's state) whatever the history length (known
//! checkers keep a bitset of the whole history per entry, which is how they
//! run out of memory on long single-key histories). Two different sets share
//! a fingerprint with probability 2^-96 per pair (for ten million entries,
//! about 10^-15 that any pair does); only then could a branch be wrongly
//! pruned.
//!
//! Operations whose outcome is unknown (`info`, or never completed) may take
//! effect at any point after their invocation, or never: they have no return
//! entry, and the search is done once every *certain* operation is linearized.
//! They live on a list of their own, so the common path never walks over
//! them, and are tried only when no certain operation can go next: first those
//! after which some pending certain operation can step, then the rest. Of
//! several pending unknown operations equal to each other only the earliest
//! invoked is tried (they are interchangeable), and one that would leave the
//! state as it is is never tried (linearizing it cannot help: the same
//! sequence without it is as good). A certain operation the model declares
//! read-only (it never changes the state) is linearized without branching
//! when it applies: it can always go first, since moving it to the front of a
//! linearization changes no state and breaks no real-time order (nothing
//! pending completed before it was invoked). That must hold in every state:
//! a write of the value already held changes nothing here but does where it
//! belongs. Operations a model
//! declares free (legal in every state, changing nothing, like a Knossos read
//! of `nil`) are dropped before the search. None of this loses completeness.
//!
//! Budgets: the search gives up ([`Outcome::GaveUp`]) past a deadline or when
//! the memo tables of all searches running under one [`Budget`] would exceed
//! its byte limit. Table growth is charged before it happens (old and new
//! table both), so the limit holds at the peak. Everything else the search
//! holds is linear in the history.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A sequential specification: a state machine the history is checked against.
pub trait Model {
    /// The state of the object. Stored in the memo: keep it small.
    type State: Clone + Eq + Hash;
    /// One operation with its arguments and, for a completed operation, what it
    /// returned (a read's value is part of the operation).
    type Op: Eq + Hash;

    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op`, or `None` if `op` cannot happen in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// True if `op` is legal in every state and changes nothing (it constrains
    /// nothing, so the search drops it).
    fn is_free(&self, _op: &Self::Op) -> bool {
        false
    }
    /// True if `op` never changes the state, in any state (a read). The
    /// search then linearizes it, when it applies, without branching.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }
    /// Bytes a state holds on the heap, beyond `size_of::<State>()`, for the
    /// memory budget.
    fn heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }
}

/// One operation of a history, ready for the search. Times are any totally
/// ordered clock (harness milliseconds, positions in a file); a call and a
/// return at the same time are concurrent.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryOp<O> {
    pub op: O,
    /// When it was invoked.
    pub call: f64,
    /// When it certainly completed; `None` if its outcome is unknown (it may
    /// take effect at any point after `call`, or never).
    pub ret: Option<f64>,
}

/// Limits shared by every search of one check.
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    max_bytes: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    stop: AtomicBool,
}

impl Budget {
    /// Give up after `timeout`, or when memo tables would exceed `max_bytes`.
    pub fn new(timeout: Duration, max_bytes: usize) -> Self {
        let now = Instant::now();
        Budget {
            deadline: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(1 << 40)),
            max_bytes,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }
    /// The byte limit.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
    /// The most memo bytes held at once so far.
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    /// Ask every search under this budget to stop ([`Outcome::Cancelled`]).
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    fn try_charge(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max_bytes {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.peak.fetch_max(before + bytes, Ordering::Relaxed);
        true
    }
    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Which limit the search hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Time,
    Memory,
}

/// Where the search got furthest before finding no extension: the
/// counterexample's raw material. Op numbers index the searched slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure<S> {
    /// Certain operations in the longest linearizable prefix found.
    pub linearized: usize,
    /// The operation whose completion was reached without it being linearizable.
    pub blocked: usize,
    /// The state after that prefix.
    pub state: S,
    /// The operation of the prefix that last changed the state.
    pub last_change: Option<usize>,
    /// Operations invoked before the blocked one completed and not linearized
    /// (at most [`Failure::MAX_CONCURRENT`]).
    pub concurrent: Vec<usize>,
}

impl<S> Failure<S> {
    pub const MAX_CONCURRENT: usize = 6;
}

/// What the search concluded about one history.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    Valid,
    Invalid(Failure<S>),
    GaveUp(Limit),
    /// [`Budget::cancel`] was called (another key was invalid).
    Cancelled,
}

/// The outcome of one search and what it cost.
#[derive(Debug, Clone)]
pub struct Search<S> {
    pub outcome: Outcome<S>,
    /// Configurations memoised.
    pub memo_entries: usize,
    /// Most bytes its memo held at once.
    pub memo_bytes: usize,
    pub elapsed: Duration,
}

/// One history and the model it is checked against.
pub struct Problem<M: Model> {
    pub model: M,
    pub ops: Vec<HistoryOp<M::Op>>,
}

/// Search every problem on up to `threads` workers (each pulls the next
/// problem; put the biggest first). When one is invalid the rest are cancelled.
pub fn search_all<M>(
    problems: &[Problem<M>],
    budget: &Budget,
    threads: usize,
) -> Vec<Search<M::State>>
where
    M: Model + Sync,
    M::Op: Sync,
    M::State: Send,
{
    let work = |i: usize| {
        let p = &problems[i];
        let r = search(&p.model, &p.ops, budget);
        if matches!(r.outcome, Outcome::Invalid(_)) {
            budget.cancel();
        }
        r
    };
    let threads = threads.clamp(1, problems.len().max(1));
    if threads == 1 {
        return (0..problems.len()).map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, Search<M::State>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= problems.len() {
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

/// An entry of the lists: `u32`, so an entry is 20 bytes (histories of more
/// than 2^31 operations per key are refused).
type Ix = u32;
const NONE: Ix = Ix::MAX;
/// Sentinel heads of the two lists.
const OK_HEAD: Ix = 0;
const INFO_HEAD: Ix = 1;

/// A call or return in one of the two linked lists.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index into the searched ops (`NONE` for a head).
    op: Ix,
    /// For a call: its return entry (`NONE` for unknown outcomes).
    ret: Ix,
    prev: Ix,
    next: Ix,
    call: bool,
}

/// The entries, indexed by [`Ix`].
struct List(Vec<Entry>);

impl std::ops::Index<Ix> for List {
    type Output = Entry;
    fn index(&self, e: Ix) -> &Entry {
        &self.0[e as usize]
    }
}

impl std::ops::IndexMut<Ix> for List {
    fn index_mut(&mut self, e: Ix) -> &mut Entry {
        &mut self.0[e as usize]
    }
}

/// The two lists: certain calls and returns from `OK_HEAD`, calls of unknown
/// outcome from `INFO_HEAD`, each in time order.
fn build_lists<O>(ops: &[HistoryOp<O>], keep: &[usize]) -> List {
    let mut raw: Vec<(f64, bool, Ix)> = Vec::with_capacity(keep.len() * 2);
    for &i in keep {
        raw.push((ops[i].call, false, i as Ix));
        if let Some(r) = ops[i].ret {
            raw.push((r, true, i as Ix));
        }
    }
    // Calls before returns at equal times: simultaneous means concurrent.
    raw.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let head = Entry {
        op: NONE,
        ret: NONE,
        prev: NONE,
        next: NONE,
        call: false,
    };
    let mut list = List(Vec::with_capacity(raw.len() + 2));
    list.0.extend([head, head]);
    let mut tail = [OK_HEAD, INFO_HEAD];
    let mut call_entry = vec![NONE; ops.len()];
    for &(_, is_ret, op) in &raw {
        let ix = list.0.len() as Ix;
        let which = usize::from(!is_ret && ops[op as usize].ret.is_none());
        list.0.push(Entry {
            op,
            ret: NONE,
            prev: tail[which],
            next: NONE,
            call: !is_ret,
        });
        list[tail[which]].next = ix;
        tail[which] = ix;
        if is_ret {
            list[call_entry[op as usize]].ret = ix;
        } else {
            call_entry[op as usize] = ix;
        }
    }
    list
}

fn unlink(list: &mut List, e: Ix) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = n;
    if n != NONE {
        list[n].prev = p;
    }
}

fn relink(list: &mut List, e: Ix) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = e;
    if n != NONE {
        list[n].prev = e;
    }
}

/// Remove a call and its return from the lists.
fn lift(list: &mut List, call: Ix) {
    unlink(list, call);
    if list[call].ret != NONE {
        unlink(list, list[call].ret);
    }
}

/// Undo [`lift`] (in reverse order).
fn unlift(list: &mut List, call: Ix) {
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
    fn write_u32(&mut self, w: u32) {
        self.write_u64(u64::from(w));
    }
    fn write_u8(&mut self, w: u8) {
        self.write_u64(u64::from(w));
    }
    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}

/// A memoised configuration: the 96-bit fingerprint of the linearized set,
/// and the state. 16 bytes with a `u32` state (a `u128` would make it 32).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Config<S> {
    lo: u64,
    hi: u32,
    state: S,
}

type Memo<S> = HashSet<Config<S>, BuildHasherDefault<Fx>>;

/// Bytes a hash set of this capacity allocates (hashbrown: a power-of-two
/// number of buckets at most 7/8 full, one control byte each plus a group).
fn table_bytes<K>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (std::mem::size_of::<K>() + 1) + 16
}

/// SplitMix64: a fixed pseudo-random sequence, so checks are deterministic.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which candidates a scan is trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Calls of certain operations before the first return.
    Certain,
    /// Unknown-outcome calls before the first return after which some pending
    /// certain operation can step.
    Enabling,
    /// The other unknown-outcome calls before the first return.
    Rest,
}

/// One linearized call, to undo on backtracking.
struct Frame<S> {
    entry: Ix,
    prev_state: S,
    pass: Pass,
    /// The first return entry when the call was linearized.
    first_ret: Ix,
    /// Linearized without branching (a read-only certain op): on
    /// backtracking, no alternative is tried at this point.
    forced: bool,
}

/// The memo and its share of the budget.
struct MemoTable<'b, S> {
    set: Memo<S>,
    budget: &'b Budget,
    /// Bytes charged: the table plus the states' heap bytes.
    charged: usize,
    peak: usize,
}

impl<S: Eq + Hash> MemoTable<'_, S> {
    /// Insert; `Ok(false)` if already present, `Err` if over budget.
    fn insert(&mut self, key: Config<S>, heap: usize) -> Result<bool, Limit> {
        if self.set.len() == self.set.capacity() {
            // Growth: the old table and the new one are both alive during the
            // copy, so charge the new one before it is allocated.
            let old = table_bytes::<Config<S>>(self.set.capacity());
            let want = table_bytes::<Config<S>>((self.set.capacity() * 2).max(4));
            if !self.budget.try_charge(want) {
                return Err(Limit::Memory);
            }
            self.peak = self.peak.max(self.charged + want);
            self.set.reserve(self.set.capacity().max(4));
            let now = table_bytes::<Config<S>>(self.set.capacity());
            // From `charged + want` down to `charged - old + now`.
            if now > want && !self.budget.try_charge(now - want) {
                self.budget.release(want);
                return Err(Limit::Memory);
            }
            self.budget.release(want.saturating_sub(now) + old);
            self.charged = self.charged - old + now;
        }
        if !self.set.insert(key) {
            return Ok(false);
        }
        if heap > 0 {
            if !self.budget.try_charge(heap) {
                return Err(Limit::Memory);
            }
            self.charged += heap;
        }
        self.peak = self.peak.max(self.charged);
        Ok(true)
    }
}

impl<S> Drop for MemoTable<'_, S> {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

/// Search one history for a linearization (see the module docs).
pub fn search<M: Model>(model: &M, ops: &[HistoryOp<M::Op>], budget: &Budget) -> Search<M::State> {
    let started = Instant::now();
    if ops.len() >= (Ix::MAX / 2) as usize {
        // Two list entries per op must fit an `Ix`.
        return Search {
            outcome: Outcome::GaveUp(Limit::Memory),
            memo_entries: 0,
            memo_bytes: 0,
            elapsed: started.elapsed(),
        };
    }
    let keep: Vec<usize> = (0..ops.len())
        .filter(|&i| !model.is_free(&ops[i].op))
        .collect();
    let must = |i: usize| ops[i].ret.is_some();
    let must_total = keep.iter().filter(|&&i| must(i)).count();
    let mut list = build_lists(ops, &keep);
    // Zobrist keys: a random 96-bit value per op; a set's fingerprint is the
    // XOR of its members' keys, updated in O(1).
    let zobrist = |i: usize| {
        (
            splitmix64(2 * i as u64),
            splitmix64(2 * i as u64 + 1) as u32,
        )
    };
    // For each unknown-outcome op, the previous one (by invocation) equal to it.
    let mut twin_prev = vec![usize::MAX; ops.len()];
    {
        let mut last: HashMap<&M::Op, usize> = HashMap::new();
        let mut e = list[INFO_HEAD].next;
        while e != NONE {
            let i = list[e].op as usize;
            if let Some(p) = last.insert(&ops[i].op, i) {
                twin_prev[i] = p;
            }
            e = list[e].next;
        }
    }
    let mut linearized = vec![false; ops.len()];
    let mut memo = MemoTable {
        set: Memo::default(),
        budget,
        charged: 0,
        peak: 0,
    };
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init();
    let (mut lo, mut hi) = (0u64, 0u32);
    let mut must_done = 0usize;
    let mut best: Option<Failure<M::State>> = None;
    let mut pass = Pass::Certain;
    let mut cur = list[OK_HEAD].next;
    let mut first_ret = NONE;
    let mut iter: u64 = 0;
    let finish = |outcome, memo: &MemoTable<M::State>| Search {
        outcome,
        memo_entries: memo.set.len(),
        memo_bytes: memo.peak,
        elapsed: started.elapsed(),
    };
    loop {
        if must_done == must_total {
            return finish(Outcome::Valid, &memo);
        }
        if iter & 0xff == 0 {
            if budget.stop.load(Ordering::Relaxed) {
                return finish(Outcome::Cancelled, &memo);
            }
            if Instant::now() >= budget.deadline {
                return finish(Outcome::GaveUp(Limit::Time), &memo);
            }
        }
        iter += 1;
        // Find the next candidate of this pass, if any.
        let candidate = match pass {
            Pass::Certain => {
                if cur != NONE && list[cur].call {
                    Some(cur)
                } else {
                    first_ret = cur;
                    pass = Pass::Enabling;
                    cur = list[INFO_HEAD].next;
                    continue;
                }
            }
            Pass::Enabling | Pass::Rest => {
                // Invoked before the first return (at the same time counts:
                // simultaneous means concurrent).
                let limit = if first_ret == NONE {
                    f64::INFINITY
                } else {
                    ops[list[first_ret].op as usize]
                        .ret
                        .unwrap_or(f64::INFINITY)
                };
                if cur != NONE && ops[list[cur].op as usize].call <= limit {
                    Some(cur)
                } else if pass == Pass::Enabling {
                    pass = Pass::Rest;
                    cur = list[INFO_HEAD].next;
                    continue;
                } else {
                    None
                }
            }
        };
        if let Some(e) = candidate {
            let i = list[e].op as usize;
            let twin_pending = twin_prev[i] != usize::MAX && !linearized[twin_prev[i]];
            let next_state = if twin_pending {
                None
            } else {
                model.step(&state, &ops[i].op)
            };
            let next_state = next_state.filter(|s| match pass {
                Pass::Certain => true,
                Pass::Enabling => *s != state && enables(model, &list, ops, s),
                Pass::Rest => *s != state && !enables(model, &list, ops, s),
            });
            if let Some(next_state) = next_state {
                let forced = pass == Pass::Certain && model.is_read_only(&ops[i].op);
                let (zl, zh) = zobrist(i);
                let heap = model.heap_bytes(&next_state);
                let key = Config {
                    lo: lo ^ zl,
                    hi: hi ^ zh,
                    state: next_state,
                };
                match memo.insert(key.clone(), heap) {
                    Err(limit) => return finish(Outcome::GaveUp(limit), &memo),
                    // Explored before, and it failed: so does this
                    // configuration, since the op could go first.
                    Ok(false) if forced => cur = NONE,
                    Ok(false) => {}
                    Ok(true) => {
                        stack.push(Frame {
                            entry: e,
                            prev_state: std::mem::replace(&mut state, key.state),
                            pass,
                            first_ret,
                            forced,
                        });
                        lo = key.lo;
                        hi = key.hi;
                        must_done += usize::from(must(i));
                        linearized[i] = true;
                        lift(&mut list, e);
                        pass = Pass::Certain;
                        cur = list[OK_HEAD].next;
                        continue;
                    }
                }
            }
            if cur != NONE {
                cur = list[e].next;
                continue;
            }
        } else if first_ret != NONE && best.as_ref().is_none_or(|b| must_done > b.linearized) {
            // No candidate at all: remember the deepest such point for the
            // counterexample.
            best = Some(failure_at(&list, ops, &stack, first_ret, &state, must_done));
        }
        // Backtrack: undo linearized calls up to one with alternatives left.
        loop {
            let Some(frame) = stack.pop() else {
                let failure = best.expect("a return entry was reached before the stack emptied");
                return finish(Outcome::Invalid(failure), &memo);
            };
            let i = list[frame.entry].op as usize;
            let (zl, zh) = zobrist(i);
            lo ^= zl;
            hi ^= zh;
            state = frame.prev_state;
            must_done -= usize::from(must(i));
            linearized[i] = false;
            unlift(&mut list, frame.entry);
            pass = frame.pass;
            first_ret = frame.first_ret;
            cur = list[frame.entry].next;
            if !frame.forced {
                break;
            }
        }
    }
}

/// Whether some pending certain operation invoked before the first return
/// (the blocked one included) can step from `state`.
fn enables<M: Model>(model: &M, list: &List, ops: &[HistoryOp<M::Op>], state: &M::State) -> bool {
    let mut e = list[OK_HEAD].next;
    while e != NONE && list[e].call {
        if model.step(state, &ops[list[e].op as usize].op).is_some() {
            return true;
        }
        e = list[e].next;
    }
    false
}

fn failure_at<O, S: Clone + Eq>(
    list: &List,
    ops: &[HistoryOp<O>],
    stack: &[Frame<S>],
    first_ret: Ix,
    state: &S,
    linearized: usize,
) -> Failure<S> {
    let blocked = list[first_ret].op as usize;
    // The last frame whose op changed the state.
    let mut after = state;
    let mut last_change = None;
    for f in stack.iter().rev() {
        if f.prev_state != *after {
            last_change = Some(list[f.entry].op as usize);
            break;
        }
        after = &f.prev_state;
    }
    // Pending certain calls before the blocked return, then unknown-outcome
    // calls invoked before it.
    let limit = ops[blocked].ret.unwrap_or(f64::INFINITY);
    let mut concurrent = Vec::new();
    for head in [OK_HEAD, INFO_HEAD] {
        let mut e = list[head].next;
        while e != NONE
            && list[e].call
            && ops[list[e].op as usize].call <= limit
            && concurrent.len() < Failure::<S>::MAX_CONCURRENT
        {
            if list[e].op as usize != blocked {
                concurrent.push(list[e].op as usize);
            }
            e = list[e].next;
        }
    }
    Failure {
        linearized,
        blocked,
        state: state.clone(),
        last_change,
        concurrent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter: `Add` always applies, `Get(v)` only when the counter is `v`.
    struct Counter;
    #[derive(Debug, PartialEq, Eq, Hash)]
    enum C {
        Add,
        Get(u32),
    }
    impl Model for Counter {
        type State = u32;
        type Op = C;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, op: &C) -> Option<u32> {
            match op {
                C::Add => Some(s + 1),
                C::Get(v) => (v == s).then_some(*s),
            }
        }
        fn is_read_only(&self, op: &C) -> bool {
            matches!(op, C::Get(_))
        }
    }

    fn op(op: C, call: f64, ret: Option<f64>) -> HistoryOp<C> {
        HistoryOp { op, call, ret }
    }

    fn budget() -> Budget {
        Budget::new(Duration::from_secs(10), 1 << 30)
    }

    #[test]
    fn a_generic_model_is_searched() {
        let ops = vec![
            op(C::Add, 0.0, Some(10.0)),
            op(C::Add, 1.0, Some(11.0)),
            op(C::Get(1), 2.0, Some(3.0)),
            op(C::Get(2), 12.0, Some(13.0)),
        ];
        assert_eq!(search(&Counter, &ops, &budget()).outcome, Outcome::Valid);
        let ops = vec![op(C::Add, 0.0, Some(1.0)), op(C::Get(0), 2.0, Some(3.0))];
        let Outcome::Invalid(f) = search(&Counter, &ops, &budget()).outcome else {
            panic!("invalid expected")
        };
        assert_eq!(
            (f.blocked, f.state, f.last_change, f.linearized),
            (1, 1, Some(0), 1)
        );
    }

    #[test]
    fn unknown_ops_may_apply_late_or_never() {
        let ops = vec![
            op(C::Add, 0.0, None),
            op(C::Add, 0.5, None),
            op(C::Get(0), 1.0, Some(2.0)),
            op(C::Get(1), 3.0, Some(4.0)),
        ];
        assert_eq!(search(&Counter, &ops, &budget()).outcome, Outcome::Valid);
        let mut ops = ops;
        ops.push(op(C::Get(3), 5.0, Some(6.0)));
        assert!(matches!(
            search(&Counter, &ops, &budget()).outcome,
            Outcome::Invalid(_)
        ));
    }

    #[test]
    fn the_memory_budget_is_charged_and_released() {
        // 18 identical pending adds would be 2^18 subsets without the twin
        // rule; with it the search is linear.
        let mut ops: Vec<_> = (0..18).map(|i| op(C::Add, f64::from(i), None)).collect();
        ops.push(op(C::Get(17), 100.0, Some(101.0)));
        ops.push(op(C::Get(99), 102.0, Some(103.0)));
        let b = budget();
        let r = search(&Counter, &ops, &b);
        assert!(matches!(r.outcome, Outcome::Invalid(_)), "{:?}", r.outcome);
        assert!(r.memo_entries < 200, "{}", r.memo_entries);
        assert_eq!(b.used.load(Ordering::Relaxed), 0, "released at the end");
        assert!(b.peak_bytes() > 0 && b.peak_bytes() >= r.memo_bytes);
        let tiny = Budget::new(Duration::from_secs(10), 64);
        assert_eq!(
            search(&Counter, &ops, &tiny).outcome,
            Outcome::GaveUp(Limit::Memory)
        );
    }

    #[test]
    fn table_bytes_cover_the_entries() {
        for n in [1usize, 3, 7, 14, 28, 100, 10_000] {
            let mut s: HashSet<u64> = HashSet::new();
            s.reserve(n);
            assert!(table_bytes::<u64>(s.capacity()) > s.capacity() * 9, "{n}");
        }
        assert_eq!(table_bytes::<u64>(0), 0);
    }
}
