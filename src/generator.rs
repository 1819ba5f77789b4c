//! Generators: *what* each client does next and *when*, pure and seeded so a
//! run replays from its seed; the run loop does the waiting.

use crate::history::OpKind;
use crate::workload::Workload;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::Duration;

/// One operation to perform.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOp {
    pub f: OpKind,
    pub key: String,
    pub value: Option<String>,
    pub expected: Option<Option<String>>,
}

/// Per-client operation generator.
pub struct OpGen {
    rng: StdRng,
    process: u64,
    counter: u64,
    keys: Vec<String>,
    weights: [f64; 3],
    /// Mean pause between this client's operations.
    mean_gap: Duration,
    /// Last value this client saw per key: a plausible `if` for cas.
    seen: HashMap<String, Option<String>>,
}

impl OpGen {
    /// A generator for client `process` of `concurrency`, sharing `rate` ops/s.
    pub fn new(
        workload: &Workload,
        seed: u64,
        process: u64,
        rate: f64,
        concurrency: usize,
    ) -> Self {
        OpGen {
            rng: StdRng::seed_from_u64(seed ^ (process.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            process,
            counter: 0,
            keys: workload.key_names(),
            weights: [workload.mix.read, workload.mix.write, workload.mix.cas],
            mean_gap: Duration::from_secs_f64(concurrency as f64 / rate),
            seen: HashMap::new(),
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> PlannedOp {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let total: f64 = self.weights.iter().sum();
        let mut x = self.rng.random_range(0.0..total);
        let mut f = OpKind::Read;
        for (kind, w) in [OpKind::Read, OpKind::Write, OpKind::Cas]
            .into_iter()
            .zip(self.weights)
        {
            if x < w {
                f = kind;
                break;
            }
            x -= w;
        }
        let value = (f != OpKind::Read).then(|| {
            self.counter += 1;
            format!("{}-{}", self.process, self.counter)
        });
        let expected = (f == OpKind::Cas).then(|| self.seen.get(&key).cloned().flatten());
        PlannedOp {
            f,
            key,
            value,
            expected,
        }
    }

    /// Tell the generator what a completed operation showed about `key`.
    pub fn observe(&mut self, key: &str, value: Option<String>) {
        self.seen.insert(key.to_string(), value);
    }

    /// Pause before the next operation: uniform in [0, 2 x mean], so clients
    /// do not march in lockstep and the mean rate holds.
    pub fn gap(&mut self) -> Duration {
        self.mean_gap.mul_f64(self.rng.random_range(0.0..2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Mix;

    fn wl(mix: Mix) -> Workload {
        Workload {
            version: 1,
            description: String::new(),
            keys: 3,
            mix,
            rate: 10.0,
            concurrency: 2,
            name: "t".into(),
        }
    }

    #[test]
    fn same_seed_same_operations() {
        let w = wl(Mix {
            read: 1.0,
            write: 1.0,
            cas: 1.0,
        });
        let a: Vec<_> = {
            let mut g = OpGen::new(&w, 42, 1, 10.0, 2);
            (0..50).map(|_| g.next_op()).collect()
        };
        let mut g = OpGen::new(&w, 42, 1, 10.0, 2);
        let b: Vec<_> = (0..50).map(|_| g.next_op()).collect();
        assert_eq!(a, b);
        let mut other = OpGen::new(&w, 42, 2, 10.0, 2);
        let c: Vec<_> = (0..50).map(|_| other.next_op()).collect();
        assert_ne!(a, c, "processes must differ");
    }

    #[test]
    fn written_values_are_unique_and_mix_is_respected() {
        let w = wl(Mix {
            read: 0.0,
            write: 1.0,
            cas: 0.0,
        });
        let mut g = OpGen::new(&w, 1, 7, 10.0, 2);
        let vals: std::collections::HashSet<_> =
            (0..200).map(|_| g.next_op().value.unwrap()).collect();
        assert_eq!(vals.len(), 200);
        assert!(vals.iter().all(|v| v.starts_with("7-")));
    }

    #[test]
    fn cas_expects_the_last_value_seen() {
        let w = wl(Mix {
            read: 0.0,
            write: 0.0,
            cas: 1.0,
        });
        let mut g = OpGen::new(&w, 3, 0, 10.0, 2);
        for k in ["k0", "k1", "k2"] {
            g.observe(k, Some("seen".into()));
        }
        let op = g.next_op();
        assert_eq!(op.f, OpKind::Cas);
        assert_eq!(op.expected, Some(Some("seen".into())));
    }

    #[test]
    fn gaps_average_to_the_rate() {
        let w = wl(Mix {
            read: 1.0,
            write: 0.0,
            cas: 0.0,
        });
        let mut g = OpGen::new(&w, 9, 0, 10.0, 2);
        let mean = (0..4000).map(|_| g.gap().as_secs_f64()).sum::<f64>() / 4000.0;
        assert!((mean - 0.2).abs() < 0.02, "mean gap {mean}");
    }
}
