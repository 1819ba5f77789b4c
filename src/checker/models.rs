//! The sequential models the [search](super::search) checks histories
//! against: a register with read, write and compare-and-set (RapidStore's
//! keys, and Knossos' `register` and `cas-register`), Knossos'
//! `multi-register` and `mutex`.
//!
//! Values are interned to `u32` by the caller; [`NIL`] (0) is absent / `nil`.

use super::search::{HistoryOp, Model};
use std::collections::HashSet;

/// The interned absent / `nil` value.
pub const NIL: u32 = 0;

/// A register operation; a read carries the value it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegOp {
    Read(u32),
    Write(u32),
    Cas { from: u32, to: u32 },
}

impl RegOp {
    /// The value a read returned or a cas expected: what the op observes.
    pub fn observes(self) -> Option<u32> {
        match self {
            RegOp::Read(v) | RegOp::Cas { from: v, .. } => Some(v),
            RegOp::Write(_) => None,
        }
    }
    /// The value a write or cas stores.
    pub fn stores(self) -> Option<u32> {
        match self {
            RegOp::Write(v) | RegOp::Cas { to: v, .. } => Some(v),
            RegOp::Read(_) => None,
        }
    }
}

/// A register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// Initial value.
    pub init: u32,
    /// Knossos' semantics: a read of `nil` means "we don't know what was
    /// read" and is legal in any state. RapidStore's: a read of absent means
    /// the key was absent.
    pub nil_reads_free: bool,
}

impl Register {
    /// RapidStore's key: initially absent, a read of absent is a real read.
    pub const KV: Register = Register {
        init: NIL,
        nil_reads_free: false,
    };
}

impl Model for Register {
    type State = u32;
    type Op = RegOp;
    fn init(&self) -> u32 {
        self.init
    }
    fn step(&self, &state: &u32, &op: &RegOp) -> Option<u32> {
        match op {
            RegOp::Read(v) => (v == state).then_some(state),
            RegOp::Write(v) => Some(v),
            RegOp::Cas { from, to } => (from == state).then_some(to),
        }
    }
    fn is_free(&self, &op: &RegOp) -> bool {
        self.nil_reads_free && op == RegOp::Read(NIL)
    }
    fn is_read_only(&self, &op: &RegOp) -> bool {
        match op {
            RegOp::Read(_) => true,
            RegOp::Cas { from, to } => from == to,
            RegOp::Write(_) => false,
        }
    }
}

/// Which ops are unknown-outcome writes or cas whose value nobody observed
/// (no read returned it, no cas expected it): they can be dropped. Sound and
/// complete: in a linearization containing such an op, no op linearized while
/// the register held its value depends on the state (free reads aside), so
/// removing it leaves a linearization. This keeps the common case (timed-out
/// writes of unique values) from multiplying the search.
pub fn unobserved_unknowns(register: &Register, ops: &[HistoryOp<RegOp>]) -> Vec<bool> {
    let observed: HashSet<u32> = ops
        .iter()
        .filter(|o| !register.is_free(&o.op))
        .filter_map(|o| o.op.observes())
        .collect();
    ops.iter()
        .map(|o| o.ret.is_none() && o.op.stores().is_some_and(|v| !observed.contains(&v)))
        .collect()
}

/// Ops that store `value`, in slice order.
pub fn writers_of(ops: &[HistoryOp<RegOp>], value: u32) -> impl Iterator<Item = usize> + '_ {
    ops.iter()
        .enumerate()
        .filter(move |(_, o)| o.op.stores() == Some(value))
        .map(|(i, _)| i)
}

/// One micro-operation of a multi-register transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Micro {
    pub write: bool,
    /// Register number (the caller interns register names).
    pub reg: u32,
    pub value: u32,
}

/// Knossos' `multi-register`: transactions of reads and writes over named
/// registers, applied in order; a read of `nil` is legal in any state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiRegister {
    /// Initial value of each register (`NIL` for those not given).
    pub init: Box<[u32]>,
}

impl Model for MultiRegister {
    type State = Box<[u32]>;
    type Op = Box<[Micro]>;
    fn init(&self) -> Box<[u32]> {
        self.init.clone()
    }
    fn step(&self, state: &Box<[u32]>, txn: &Box<[Micro]>) -> Option<Box<[u32]>> {
        let mut next: Option<Box<[u32]>> = None;
        for m in txn.iter() {
            let cur = next.as_deref().unwrap_or(state);
            let r = m.reg as usize;
            if m.write {
                if cur[r] != m.value {
                    next.get_or_insert_with(|| state.clone())[r] = m.value;
                }
            } else if m.value != NIL && cur[r] != m.value {
                return None;
            }
        }
        Some(next.unwrap_or_else(|| state.clone()))
    }
    fn is_free(&self, txn: &Box<[Micro]>) -> bool {
        txn.iter().all(|m| !m.write && m.value == NIL)
    }
    fn is_read_only(&self, txn: &Box<[Micro]>) -> bool {
        txn.iter().all(|m| !m.write)
    }
    fn heap_bytes(&self, state: &Box<[u32]>) -> usize {
        // The allocation plus the allocator's bookkeeping.
        state.len() * 4 + 16
    }
}

/// A mutex operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutexOp {
    Acquire,
    Release,
}

/// Knossos' `mutex`: acquire when free, release when held (by anyone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutex {
    /// Initially held.
    pub locked: bool,
}

impl Model for Mutex {
    type State = bool;
    type Op = MutexOp;
    fn init(&self) -> bool {
        self.locked
    }
    fn step(&self, &locked: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!locked).then_some(true),
            MutexOp::Release => locked.then_some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_semantics() {
        let kv = Register::KV;
        assert_eq!(kv.step(&NIL, &RegOp::Read(NIL)), Some(NIL));
        assert_eq!(kv.step(&1, &RegOp::Read(NIL)), None);
        assert!(!kv.is_free(&RegOp::Read(NIL)));
        let knossos = Register {
            init: 3,
            nil_reads_free: true,
        };
        assert!(knossos.is_free(&RegOp::Read(NIL)));
        assert_eq!(knossos.init(), 3);
        assert_eq!(knossos.step(&3, &RegOp::Cas { from: 3, to: 4 }), Some(4));
        assert_eq!(knossos.step(&3, &RegOp::Cas { from: 2, to: 4 }), None);
    }

    #[test]
    fn multi_register_applies_in_order() {
        let m = MultiRegister {
            init: vec![NIL, 5].into(),
        };
        let txn = |ms: &[(bool, u32, u32)]| -> Box<[Micro]> {
            ms.iter()
                .map(|&(write, reg, value)| Micro { write, reg, value })
                .collect()
        };
        let s = m.init();
        // Read y=5, write x=1, read x=1.
        let s2 = m
            .step(&s, &txn(&[(false, 1, 5), (true, 0, 1), (false, 0, 1)]))
            .unwrap();
        assert_eq!(&*s2, &[1, 5]);
        // A read before the write in the same txn sees the old value.
        assert_eq!(m.step(&s, &txn(&[(false, 0, 1), (true, 0, 1)])), None);
        assert!(m.is_free(&txn(&[(false, 0, NIL)])));
        assert!(!m.is_free(&txn(&[(true, 0, NIL)])));
    }

    #[test]
    fn mutex_semantics() {
        let m = Mutex::default();
        assert_eq!(m.step(&false, &MutexOp::Acquire), Some(true));
        assert_eq!(m.step(&true, &MutexOp::Acquire), None);
        assert_eq!(m.step(&false, &MutexOp::Release), None);
    }

    #[test]
    fn unobserved_unknown_writes_are_marked() {
        let op = |op, ret| HistoryOp { op, call: 0.0, ret };
        let ops = [
            op(RegOp::Write(1), None),
            op(RegOp::Write(2), None),
            op(RegOp::Cas { from: 2, to: 3 }, None),
            op(RegOp::Write(4), Some(1.0)),
            op(RegOp::Read(NIL), Some(1.0)),
        ];
        let free = Register {
            init: NIL,
            nil_reads_free: true,
        };
        // 1 and 3 unobserved; 2 expected by the cas; 4 certain.
        assert_eq!(
            unobserved_unknowns(&free, &ops),
            [true, false, true, false, false]
        );
    }
}
