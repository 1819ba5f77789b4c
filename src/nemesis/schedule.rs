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
    /// At most this many faults in a run (default: as many as fit).
    #[serde(default)]
    pub count: Option<usize>,
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
    /// SIGKILL the target's process (RapidStore, or ZooKeeper for `zk-*`
    /// targets); heal starts it again on the same data.
    Kill,
    /// SIGSTOP the target's process; heal sends SIGCONT.
    Pause,
    /// Drop traffic between nodes with iptables, in the `shape` asked for;
    /// heal removes the run's rules.
    Partition,
    /// Move the target's RapidStore wall clock by `offset` (libfaketime),
    /// or flip it between `offset` and zero every `strobe`; heal resets it.
    Clock,
}

/// Whom a fault hits, resolved at the moment of the fault.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The RapidStore leader, as the harness observes it.
    Leader,
    /// One node chosen at random (seeded).
    Random,
    /// Every node.
    All,
    /// The ZooKeeper leader (for kill/pause: its ZooKeeper process).
    ZkLeader,
    /// A random ZooKeeper server (for kill/pause: its ZooKeeper process).
    ZkRandom,
    /// The leader's successor: the follower next in the election order,
    /// which leads if the leader goes.
    Successor,
}

impl Target {
    /// Does this target name ZooKeeper servers rather than RapidStore nodes?
    pub fn is_zookeeper(self) -> bool {
        matches!(self, Target::ZkLeader | Target::ZkRandom)
    }
}

/// How a partition cuts the network.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The target node alone against all others (ZooKeeper included).
    #[default]
    Isolate,
    /// Random majority and minority halves.
    Halves,
    /// Two halves joined by one node that sees both.
    Bridge,
    /// Each node sees a majority, no two the same majority.
    Ring,
    /// A minority of ZooKeeper servers cut off from every other node.
    ZkMinority,
    /// A majority of ZooKeeper servers cut off: ZooKeeper loses quorum.
    ZkMajority,
    /// RapidStore nodes cut from each other; every node still reaches every
    /// ZooKeeper server.
    Stores,
}

/// One fault of a schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Whom it hits (partitions: the node an `isolate` cuts off).
    #[serde(default = "default_target")]
    pub target: Target,
    /// Partitions only.
    #[serde(default)]
    pub shape: Shape,
    /// Clock only: how far to move the clock, e.g. "-30s" or "10s".
    #[serde(default, with = "signed_opt")]
    pub offset: Option<i64>,
    /// Clock only: flip between `offset` and zero this often, e.g. "200ms".
    #[serde(default, with = "humanish_opt")]
    pub strobe: Option<Duration>,
    /// Overrides the schedule's duration for this fault.
    #[serde(default, with = "humanish_opt")]
    pub duration: Option<Duration>,
    /// Overrides the schedule's interval (the quiet time before this fault).
    #[serde(default, with = "humanish_opt")]
    pub after: Option<Duration>,
    /// Faults injected together with this one (and healed with it, in
    /// reverse order); `leader` means the same node throughout the group.
    #[serde(default)]
    pub and: Vec<FaultSpec>,
}

fn default_target() -> Target {
    Target::Leader
}

impl FaultSpec {
    /// A short name for tables and the history, e.g. `partition halves`.
    pub fn label(&self) -> String {
        let t = serde_json::to_value(self.target).ok();
        let t = t.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        let own = match self.kind {
            FaultKind::Partition => {
                let sh = serde_json::to_value(self.shape).ok();
                let sh = sh
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string();
                if self.shape == Shape::Isolate {
                    format!("partition isolate {t}")
                } else {
                    format!("partition {sh}")
                }
            }
            FaultKind::Kill => format!("kill {t}"),
            FaultKind::Pause => format!("pause {t}"),
            FaultKind::Clock if self.strobe.is_some() => format!("clock strobe {t}"),
            FaultKind::Clock => format!("clock bump {t}"),
        };
        own + &self
            .and
            .iter()
            .map(|f| format!(" + {}", f.label()))
            .collect::<String>()
    }

    /// This fault and those injected with it.
    pub fn group(&self) -> impl Iterator<Item = &FaultSpec> {
        std::iter::once(self).chain(self.and.iter().flat_map(|f| f.group().collect::<Vec<_>>()))
    }

    /// What is wrong with this fault (or one injected with it), if anything.
    fn problem(&self) -> Option<String> {
        if let Some(p) = self.and.iter().find_map(|f| f.problem()) {
            return Some(p);
        }
        match self.kind {
            FaultKind::Clock if self.offset.is_none() => {
                Some("a clock fault needs an offset, e.g. offset = \"-30s\"".into())
            }
            FaultKind::Clock if self.target.is_zookeeper() => {
                Some("clock faults move RapidStore clocks; use target leader, random or all".into())
            }
            k if k != FaultKind::Clock && (self.offset.is_some() || self.strobe.is_some()) => {
                Some("offset and strobe only apply to kind = \"clock\"".into())
            }
            k if k != FaultKind::Partition && self.shape != Shape::Isolate => {
                Some("shape only applies to kind = \"partition\"".into())
            }
            _ => None,
        }
    }
}

/// A fault placed on the run's timeline (offsets from the run's start).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub at: Duration,
    pub heal_at: Duration,
    pub spec: FaultSpec,
}

impl Schedule {
    /// Does any fault of the schedule (or of its groups) have this kind?
    pub fn uses(&self, kind: FaultKind) -> bool {
        self.faults
            .iter()
            .flat_map(|f| f.group())
            .any(|f| f.kind == kind)
    }

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
        if let Some((i, p)) = s
            .faults
            .iter()
            .enumerate()
            .find_map(|(i, f)| f.problem().map(|p| (i, p)))
        {
            return Err(DefinitionError::Invalid {
                path: path.display().to_string(),
                message: format!("fault {} ([[fault]] number {}): {p}", i + 1, i + 1),
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
            let at = t + spec.after.unwrap_or(self.interval);
            let heal_at = at + spec.duration.unwrap_or(self.duration);
            if heal_at > time_limit || self.count.is_some_and(|c| out.len() >= c) {
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

/// Signed durations in milliseconds: "-30s", "+5s", "250ms".
pub fn parse_signed_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = parse_duration(rest)?;
    let ms = d.as_millis() as i64;
    Ok(if neg { -ms } else { ms })
}

mod signed_opt {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_signed_ms(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
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
            count: None,
            faults,
            name: "t".into(),
        }
    }

    fn kill() -> FaultSpec {
        FaultSpec {
            kind: FaultKind::Kill,
            target: Target::Leader,
            shape: Shape::Isolate,
            offset: None,
            strobe: None,
            duration: None,
            after: None,
            and: Vec::new(),
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
    fn groups_parse_and_validate_their_members() {
        let d = tempfile::tempdir().unwrap();
        let head = "version = 1\ndescription = \"d\"\ninterval = \"2s\"\nduration = \"3s\"\n";
        std::fs::write(
            d.path().join("g.toml"),
            format!("{head}[[fault]]\nkind = \"clock\"\noffset = \"-30s\"\n[[fault.and]]\nkind = \"partition\"\n"),
        )
        .unwrap();
        let s = Schedule::load(d.path(), "g").unwrap();
        assert_eq!(s.faults[0].group().count(), 2);
        assert!(s.uses(FaultKind::Partition) && s.uses(FaultKind::Clock));
        assert_eq!(
            s.faults[0].label(),
            "clock bump leader + partition isolate leader"
        );
        std::fs::write(
            d.path().join("b.toml"),
            format!("{head}[[fault]]\nkind = \"kill\"\n[[fault.and]]\nkind = \"clock\"\n"),
        )
        .unwrap();
        let err = Schedule::load(d.path(), "b").unwrap_err().to_string();
        assert!(err.contains("needs an offset"), "{err}");
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").unwrap_err().contains("unit"));
    }
}
