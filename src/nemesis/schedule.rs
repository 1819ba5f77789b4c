//! Nemesis schedules: declarative files in `nemesis/` saying which faults to
//! inject, on whom, for how long and how often; and the pure planner that
//! turns a schedule, a seed and a time limit into a timeline.

use crate::workload::{load_toml, DefinitionError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// A schedule file (`nemesis/NAME.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// File format version; must be 1.
    pub version: u32,
    /// One line for `harness list`.
    pub description: String,
    /// Quiet time before each fault.
    #[serde(with = "humanish")]
    pub interval: Duration,
    /// How long each fault lasts before it is healed.
    #[serde(with = "humanish")]
    pub duration: Duration,
    /// `cycle` through the faults in order, or pick at `random` (seeded).
    #[serde(default)]
    pub order: Order,
    /// The faults. Empty: no faults at all (a baseline run).
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Name (file stem), filled in on load.
    #[serde(skip)]
    pub name: String,
}

/// How faults are picked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    #[default]
    Cycle,
    Random,
}

/// What kind of fault.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the target's RapidStore process; heal restarts it.
    Kill,
    /// SIGSTOP the target's RapidStore process; heal sends SIGCONT.
    Pause,
    /// Drop traffic between the target and other nodes (iptables); heal
    /// removes the run's rules.
    Partition,
}

/// Whom a fault hits, resolved at the moment of the fault.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The RapidStore leader, as the harness observes it.
    Leader,
    /// One node chosen at random (seeded).
    Random,
}

/// One fault of a schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub target: Target,
    /// Overrides the schedule's duration for this fault.
    #[serde(default, with = "humanish_opt")]
    pub duration: Option<Duration>,
}

/// A fault placed on the run's timeline (offsets from the run's start).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub at: Duration,
    pub heal_at: Duration,
    pub spec: FaultSpec,
}

impl Schedule {
    /// Load `nemesis/NAME.toml` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Schedule, DefinitionError> {
        let (mut s, path): (Schedule, _) = load_toml(dir, "nemesis", name)?;
        s.name = name.to_string();
        if s.version != 1 {
            return Err(DefinitionError::Invalid {
                path: path.display().to_string(),
                message: format!("version {} is not supported; use version = 1", s.version),
            });
        }
        if s.duration.is_zero() && !s.faults.is_empty() {
            return Err(DefinitionError::Invalid {
                path: path.display().to_string(),
                message: "duration must be above zero".into(),
            });
        }
        Ok(s)
    }

    /// The timeline within `time_limit`: quiet `interval`, fault, heal after
    /// its duration, repeat. A fault is planned only if it heals in time.
    pub fn plan(&self, seed: u64, time_limit: Duration) -> Vec<PlannedFault> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x006E_656D_6573_6973);
        let mut out = Vec::new();
        if self.faults.is_empty() {
            return out;
        }
        let mut t = Duration::ZERO;
        for i in 0.. {
            let spec = match self.order {
                Order::Cycle => self.faults[i % self.faults.len()].clone(),
                Order::Random => self.faults[rng.random_range(0..self.faults.len())].clone(),
            };
            let at = t + self.interval;
            let heal_at = at + spec.duration.unwrap_or(self.duration);
            if heal_at > time_limit {
                break;
            }
            out.push(PlannedFault { at, heal_at, spec });
            t = heal_at;
        }
        out
    }
}

/// Durations written as "4s", "500ms" or "1.5s".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("`{s}` needs a unit: ms, s or m (e.g. 4s)"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 4s, 500ms)"))?;
    if v.is_nan() || v < 0.0 || !v.is_finite() {
        return Err(format!("`{s}` must be a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

mod humanish {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humanish_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(order: Order, faults: Vec<FaultSpec>) -> Schedule {
        Schedule {
            version: 1,
            description: String::new(),
            interval: Duration::from_secs(2),
            duration: Duration::from_secs(3),
            order,
            faults,
            name: "t".into(),
        }
    }

    fn kill() -> FaultSpec {
        FaultSpec {
            kind: FaultKind::Kill,
            target: Target::Leader,
            duration: None,
        }
    }

    #[test]
    fn plan_alternates_quiet_and_fault_within_the_limit() {
        let p = sched(Order::Cycle, vec![kill()]).plan(1, Duration::from_secs(12));
        let times: Vec<(u64, u64)> = p
            .iter()
            .map(|f| (f.at.as_secs(), f.heal_at.as_secs()))
            .collect();
        assert_eq!(times, vec![(2, 5), (7, 10)]);
        assert!(sched(Order::Cycle, vec![])
            .plan(1, Duration::from_secs(60))
            .is_empty());
    }

    #[test]
    fn random_order_replays_from_the_seed() {
        let mut part = kill();
        part.kind = FaultKind::Partition;
        let s = sched(Order::Random, vec![kill(), part]);
        let a = s.plan(7, Duration::from_secs(300));
        assert_eq!(a, s.plan(7, Duration::from_secs(300)));
        let kinds: std::collections::HashSet<_> = a.iter().map(|f| f.spec.kind).collect();
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn shipped_schedules_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("nemesis");
        let names = crate::workload::names_in(&dir);
        for required in ["kill-leader", "partition-leader", "none"] {
            assert!(names.contains(&required.to_string()), "{names:?}");
        }
        for n in names {
            Schedule::load(&dir, &n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_schedule_names_file_line_and_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("x.toml"),
            "version = 1\ndescription = \"d\"\ninterval = \"2s\"\nduration = \"3 parsecs\"\n",
        )
        .unwrap();
        let err = Schedule::load(d.path(), "x").unwrap_err().to_string();
        assert!(
            err.contains("x.toml") && err.contains("line 4") && err.contains("3 parsecs"),
            "{err}"
        );
        std::fs::write(
            d.path().join("y.toml"),
            "version = 1\ndescription = \"d\"\ninterval = \"2s\"\nduration = \"3s\"\n[[fault]]\nkind = \"explode\"\ntarget = \"leader\"\n",
        )
        .unwrap();
        let err = Schedule::load(d.path(), "y").unwrap_err().to_string();
        assert!(
            err.contains("line 6") && err.contains("explode") && err.contains("kill"),
            "{err}"
        );
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").unwrap_err().contains("unit"));
    }
}
