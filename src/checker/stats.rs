//! Run statistics: operation counts, latency percentiles per operation kind,
//! throughput of acknowledged operations.

use super::pair_ops;
use crate::history::{Event, OpKind, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nearest-rank percentiles of a sample (all `None` when it is empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Percentiles {
    pub fn of(mut sample: Vec<f64>) -> Self {
        sample.retain(|x| x.is_finite());
        sample.sort_by(f64::total_cmp);
        let rank = |p: f64| -> Option<f64> {
            if sample.is_empty() {
                return None;
            }
            let k = ((p / 100.0) * sample.len() as f64).ceil() as usize;
            Some(sample[k.clamp(1, sample.len()) - 1])
        };
        Percentiles {
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: sample.last().copied(),
        }
    }
}

/// Counts and latency (invocation → completion, ok operations only) of one
/// operation kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpStats {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub latency: Percentiles,
}

/// Run statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stats {
    /// From the first invocation to the last completion, seconds.
    pub duration_s: f64,
    pub ok_ops: usize,
    /// Acknowledged operations per second over `duration_s`.
    pub ok_per_s: f64,
    /// Per operation kind: `read`, `write`, `cas`.
    pub ops: BTreeMap<String, OpStats>,
}

/// Measure [`Stats`] over a history.
pub fn measure_stats(events: &[Event]) -> Stats {
    let ops = pair_ops(events);
    let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut out = Stats::default();
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for op in &ops.ops {
        let kind = match op.invoke.f {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Cas => "cas",
        };
        let s = out.ops.entry(kind.to_string()).or_default();
        first = first.min(op.invoke.time_ms);
        if let Some(end) = op.end_ms() {
            last = last.max(end);
        }
        match op.outcome() {
            Outcome::Ok => {
                s.ok += 1;
                out.ok_ops += 1;
                if let Some(end) = op.end_ms() {
                    latencies
                        .entry(kind)
                        .or_default()
                        .push(end - op.invoke.time_ms);
                }
            }
            Outcome::Fail => s.fail += 1,
            Outcome::Info => s.info += 1,
        }
    }
    for (kind, l) in latencies {
        if let Some(s) = out.ops.get_mut(kind) {
            s.latency = Percentiles::of(l);
        }
    }
    if last > first {
        out.duration_s = (last - first) / 1000.0;
        out.ok_per_s = out.ok_ops as f64 / out.duration_s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::H;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (Some(50.0), Some(90.0), Some(99.0), Some(100.0))
        );
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7.0]).p50_ms, Some(7.0));
    }

    #[test]
    fn counts_latency_and_throughput() {
        let mut h = H::new();
        h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
        h.write(1, "k", "b", 0.0, 30.0, Outcome::Info);
        h.read(2, "k", "a", 500.0, 520.0);
        h.write(0, "k", "c", 900.0, 1000.0, Outcome::Ok);
        let s = measure_stats(&h.build());
        assert_eq!(s.ok_ops, 3);
        assert_eq!(s.duration_s, 1.0);
        assert_eq!(s.ok_per_s, 3.0);
        assert_eq!(s.ops["write"].info, 1);
        assert_eq!(s.ops["write"].latency.max_ms, Some(100.0));
        assert_eq!(s.ops["read"].latency.p50_ms, Some(20.0));
    }
}
