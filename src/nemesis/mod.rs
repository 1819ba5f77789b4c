//! Nemeses: faults and their heals. Schedules (`schedule`) say what and
//! when; [`Nemesis`] applies a planned fault to the live cluster, resolving
//! its target at that moment and recording every step in the history.

pub mod clock;
pub mod schedule;

use crate::client::NodeClient;
use crate::cluster::Cluster;
use crate::control::Remote;
use crate::db::{Kill, Pause};
use crate::history::{Clock, Event, HistoryWriter, Role};
use crate::net::grudge;
use crate::observe::{self, Topology};
use anyhow::{Context, Result};
use clock::Clocks;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use schedule::{FaultKind, FaultSpec, Shape, Target};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;

/// Which server a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Db {
    RapidStore,
    ZooKeeper,
}

/// A fault that is in force, to be healed.
#[derive(Debug)]
pub struct ActiveFault {
    pub spec: FaultSpec,
    pub targets: Vec<String>,
    db: Db,
    /// Clock strobe: the flipping task and its stop switch.
    strobe: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

/// One step the nemesis actually carried out, for `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutedStep {
    pub time_ms: f64,
    pub fault: String,
    pub action: String,
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Injects and heals faults on a cluster.
pub struct Nemesis<'a> {
    cluster: &'a Cluster,
    topo: Topology,
    client: NodeClient,
    clock: Clock,
    history: HistoryWriter,
    rng: StdRng,
    /// Schedule name, recorded as the fault's name.
    name: String,
    /// Nodes the nemesis killed or paused and has not yet brought back.
    killed: BTreeSet<(Db, String)>,
    paused: BTreeSet<(Db, String)>,
    /// How clocks move, when the schedule has clock faults.
    clocks: Option<Clocks>,
    /// Nodes whose clock the nemesis moved and has not reset.
    skewed: BTreeSet<String>,
    /// ZooKeeper session timeout of the nodes (for the quorum-loss record).
    session_timeout_ms: u64,
    /// While a group is injected: the leader it resolved, used throughout.
    pinned_leader: Option<String>,
    pub executed: Vec<ExecutedStep>,
}

impl PartialOrd for Db {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Db {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a Cluster,
        topo: Topology,
        clock: Clock,
        history: HistoryWriter,
        seed: u64,
        name: &str,
    ) -> Self {
        Nemesis {
            cluster,
            topo,
            client: NodeClient::new(),
            clock,
            history,
            rng: StdRng::seed_from_u64(seed ^ 0x7461_7267_6574),
            name: name.to_string(),
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            clocks: None,
            skewed: BTreeSet::new(),
            session_timeout_ms: 0,
            pinned_leader: None,
            executed: Vec::new(),
        }
    }

    /// Move clocks this way for clock faults.
    pub fn with_clocks(mut self, clocks: Option<Clocks>) -> Self {
        self.clocks = clocks;
        self
    }

    /// The nodes' ZooKeeper session timeout, recorded with quorum losses.
    pub fn with_session_timeout(mut self, ms: u64) -> Self {
        self.session_timeout_ms = ms;
        self
    }

    fn record(
        &mut self,
        action: &str,
        targets: &[String],
        detail: serde_json::Value,
        error: Option<String>,
    ) {
        let time_ms = self.clock.now_ms();
        let mut detail = detail;
        if let Some(e) = &error {
            detail = serde_json::json!({ "error": e, "detail": detail });
        }
        self.history.record(&Event::Nemesis {
            time_ms,
            fault: self.name.clone(),
            action: action.to_string(),
            targets: targets.to_vec(),
            detail,
        });
        self.executed.push(ExecutedStep {
            time_ms,
            fault: self.name.clone(),
            action: action.to_string(),
            targets: targets.to_vec(),
            error,
        });
    }

    fn all_nodes(&self) -> Vec<String> {
        self.topo.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Resolve a target now, from the harness's own observation.
    async fn resolve(&mut self, target: Target) -> Vec<String> {
        let down: BTreeSet<String> = self
            .killed
            .iter()
            .chain(&self.paused)
            .map(|(_, n)| n.clone())
            .collect();
        let pick = |rng: &mut StdRng, from: Vec<String>| -> Vec<String> {
            let live: Vec<String> = from.into_iter().filter(|n| !down.contains(n)).collect();
            live.choose(rng).cloned().into_iter().collect()
        };
        let all = self.all_nodes();
        match target {
            Target::Leader if self.pinned_leader.is_some() => {
                self.pinned_leader.clone().into_iter().collect()
            }
            Target::Leader => {
                let l = observe::wait_for_leader(&self.topo, &self.client, Duration::from_secs(5))
                    .await
                    .map(|(n, _)| n);
                self.pinned_leader = l.clone();
                l.into_iter().collect()
            }
            Target::Successor => observe::successor(&self.topo, &self.client)
                .await
                .into_iter()
                .collect(),
            Target::Random => pick(&mut self.rng, all),
            Target::All => all,
            Target::ZkLeader => self
                .cluster
                .zookeeper()
                .leader()
                .await
                .into_iter()
                .collect(),
            Target::ZkRandom => {
                let zk = self.cluster.zk_nodes();
                pick(&mut self.rng, zk)
            }
        }
    }

    /// The grudge for a partition shape, and the nodes it singles out.
    async fn grudge_for(&mut self, spec: &FaultSpec) -> Option<(grudge::Grudge, Vec<String>)> {
        let mut all = self.all_nodes();
        let zk = self.cluster.zk_nodes();
        let alone = |cut: &[String], all: &[String]| {
            let rest: Vec<String> = all.iter().filter(|n| !cut.contains(n)).cloned().collect();
            let mut comps: Vec<Vec<String>> = cut.iter().map(|n| vec![n.clone()]).collect();
            comps.push(rest);
            grudge::complete(&comps)
        };
        Some(match spec.shape {
            Shape::Isolate => {
                let t = self.resolve(spec.target).await.into_iter().next()?;
                (grudge::isolate(&t, &all), vec![t])
            }
            Shape::Halves => {
                all.shuffle(&mut self.rng);
                let (small, _) = grudge::bisect(&all);
                (
                    grudge::complete(&[small.clone(), all[small.len()..].to_vec()]),
                    small,
                )
            }
            Shape::Bridge => {
                all.shuffle(&mut self.rng);
                let g = grudge::bridge(&all);
                let hub = all
                    .iter()
                    .find(|n| g.get(*n).is_none_or(|d| d.is_empty()))
                    .cloned();
                (g, hub.into_iter().collect())
            }
            Shape::Ring => {
                all.shuffle(&mut self.rng);
                (grudge::majorities_ring(&all), Vec::new())
            }
            Shape::ZkMinority | Shape::ZkMajority => {
                let n = if spec.shape == Shape::ZkMinority {
                    (zk.len() - 1) / 2
                } else {
                    zk.len() / 2 + 1
                };
                if n == 0 {
                    return None;
                }
                let mut z = zk.clone();
                z.shuffle(&mut self.rng);
                let cut: Vec<String> = z.into_iter().take(n).collect();
                (alone(&cut, &all), cut)
            }
            Shape::Stores => {
                let comps: Vec<Vec<String>> = all.iter().map(|n| vec![n.clone()]).collect();
                (grudge::complete(&comps), Vec::new())
            }
        })
    }

    /// Has ZooKeeper lost (`serving == false`) or regained quorum? Waits up
    /// to 15 s and records the moment it saw it.
    async fn await_zk_quorum(&mut self, serving: bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let modes = self.cluster.zookeeper().modes().await;
            let any = modes.iter().any(|(_, m)| m.is_serving());
            if any == serving {
                let action = if serving {
                    "zk-quorum-restored"
                } else {
                    "zk-quorum-lost"
                };
                let detail = serde_json::json!({
                    "modes": modes.iter().map(|(n, m)| (n.clone(), format!("{m:?}"))).collect::<Vec<_>>(),
                    "session_timeout_ms": self.session_timeout_ms,
                });
                self.record(action, &[], detail, None);
                return;
            }
            if tokio::time::Instant::now() >= end {
                self.record(
                    if serving {
                        "zk-quorum-restored"
                    } else {
                        "zk-quorum-lost"
                    },
                    &[],
                    serde_json::Value::Null,
                    Some("not observed within 15 s".into()),
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn signal_db(&self, db: Db, node: &str, action: &str) -> Result<()> {
        match (db, action) {
            (Db::RapidStore, "kill") => self.rapidstore()?.kill(node).await,
            (Db::RapidStore, "start") => self.rapidstore()?.start(node).await,
            (Db::RapidStore, "pause") => self.rapidstore()?.pause(node).await,
            (Db::RapidStore, "resume") => self.rapidstore()?.resume(node).await,
            (Db::ZooKeeper, "kill") => Kill::kill(self.cluster.zookeeper(), node).await,
            (Db::ZooKeeper, "start") => Kill::start(self.cluster.zookeeper(), node).await,
            (Db::ZooKeeper, "pause") => Pause::pause(self.cluster.zookeeper(), node).await,
            (Db::ZooKeeper, "resume") => Pause::resume(self.cluster.zookeeper(), node).await,
            _ => unreachable!("unknown process action {action}"),
        }
    }

    fn rapidstore(&self) -> Result<&crate::db::RapidStore> {
        self.cluster
            .rapidstore()
            .context("the cluster runs no RapidStore servers")
    }

    /// Set clock offsets and measure what the nodes show.
    async fn set_clocks(&mut self, nodes: &[String], ms: i64) -> Result<serde_json::Value> {
        let clocks = self
            .clocks
            .clone()
            .context("clock faults need the nodes started under libfaketime, or hosts with `clock = \"settime\"`")?;
        let mut measured = serde_json::Map::new();
        for n in nodes {
            clocks
                .set(self.cluster.control(), self.cluster.journal(), n, ms)
                .await?;
            if ms == 0 {
                self.skewed.remove(n);
            } else {
                self.skewed.insert(n.clone());
            }
            if let Some(addr) = self.topo.addr_of(n) {
                let m = clock::measure(&self.client, addr).await;
                measured.insert(n.clone(), m.map_or(serde_json::Value::Null, Into::into));
            }
        }
        Ok(serde_json::json!({
            "asked_ms": ms,
            "measured_ms": measured,
            "method": clocks.method(),
        }))
    }

    /// Inject `spec` and the faults grouped with it, all at once.
    pub async fn inject_group(&mut self, spec: &FaultSpec) -> Vec<ActiveFault> {
        let mut active = Vec::new();
        for f in spec.group() {
            let mut single = f.clone();
            single.and.clear();
            active.extend(self.inject(&single).await);
        }
        self.pinned_leader = None;
        active
    }

    /// Heal a group, last fault first.
    pub async fn heal_group(&mut self, active: Vec<ActiveFault>) {
        for a in active.into_iter().rev() {
            self.heal(a).await;
        }
    }

    /// Inject `spec`; `None` if its target could not be resolved (recorded).
    pub async fn inject(&mut self, spec: &FaultSpec) -> Option<ActiveFault> {
        let label = spec.label();
        let db = if spec.target.is_zookeeper() {
            Db::ZooKeeper
        } else {
            Db::RapidStore
        };
        let (targets, result, detail, strobe) = match spec.kind {
            FaultKind::Partition => {
                let Some((g, singled)) = self.grudge_for(spec).await else {
                    self.skip(&label);
                    return None;
                };
                let r = if spec.shape == Shape::Stores {
                    let ports: Vec<u16> = self
                        .topo
                        .nodes
                        .iter()
                        .filter_map(|(_, a)| a.rsplit(':').next()?.parse().ok())
                        .collect::<BTreeSet<u16>>()
                        .into_iter()
                        .collect();
                    self.cluster.firewall().partition_ports(&g, &ports).await
                } else {
                    self.cluster.firewall().partition(&g).await
                };
                let detail = serde_json::json!({ "shape": spec.shape, "grudge": g });
                (singled, r, detail, None)
            }
            FaultKind::Kill | FaultKind::Pause => {
                let targets = self.resolve(spec.target).await;
                if targets.is_empty() {
                    self.skip(&label);
                    return None;
                }
                let action = if spec.kind == FaultKind::Kill {
                    "kill"
                } else {
                    "pause"
                };
                let mut r = Ok(());
                for t in &targets {
                    let one = self.signal_db(db, t, action).await;
                    if one.is_ok() {
                        if spec.kind == FaultKind::Kill {
                            self.killed.insert((db, t.clone()));
                        } else {
                            self.paused.insert((db, t.clone()));
                        }
                    }
                    r = r.and(one);
                }
                (targets, r, serde_json::json!({ "db": db }), None)
            }
            FaultKind::Clock => {
                let targets = self.resolve(spec.target).await;
                if targets.is_empty() {
                    self.skip(&label);
                    return None;
                }
                let ms = spec.offset.unwrap_or(0);
                let r = self.set_clocks(&targets, ms).await;
                let (detail, r) = match r {
                    Ok(d) => (d, Ok(())),
                    Err(e) => (serde_json::Value::Null, Err(e)),
                };
                let strobe = match (spec.strobe, &r, &self.clocks) {
                    (Some(period), Ok(()), Some(clocks)) => {
                        let (tx, mut rx) = watch::channel(false);
                        let (clocks, control, journal, nodes) = (
                            clocks.clone(),
                            self.cluster.control().clone(),
                            self.cluster.journal().clone(),
                            targets.clone(),
                        );
                        let task = tokio::spawn(async move {
                            let mut on = true;
                            loop {
                                tokio::select! {
                                    _ = tokio::time::sleep(period) => {}
                                    _ = rx.changed() => return,
                                }
                                on = !on;
                                for n in &nodes {
                                    let off = if on { ms } else { 0 };
                                    let _ = clocks.set(&control, &journal, n, off).await;
                                }
                            }
                        });
                        Some((tx, task))
                    }
                    _ => None,
                };
                (targets, r, detail, strobe)
            }
        };
        let action = match spec.kind {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Clock if spec.strobe.is_some() => "strobe",
            FaultKind::Clock => "skew",
        };
        let error = result.err().map(|e| format!("{e:#}"));
        let ok = error.is_none();
        let mut detail = detail;
        if let serde_json::Value::Object(m) = &mut detail {
            m.insert("fault".into(), label.into());
        }
        self.record(action, &targets, detail, error);
        if ok && spec.kind == FaultKind::Kill && db == Db::RapidStore {
            // After the fault itself, so "who led when the fault hit" sees the leader.
            for t in &targets {
                self.history.record(&Event::Role {
                    time_ms: self.clock.now_ms(),
                    node: t.clone(),
                    role: Role::Down,
                    token: None,
                });
            }
        }
        if ok && spec.kind == FaultKind::Partition && spec.shape == Shape::ZkMajority {
            self.await_zk_quorum(false).await;
        }
        ok.then_some(ActiveFault {
            spec: spec.clone(),
            targets,
            db,
            strobe,
        })
    }

    fn skip(&mut self, label: &str) {
        self.record(
            "skip",
            &[],
            serde_json::json!({ "fault": label, "reason": "no target could be resolved" }),
            None,
        );
    }

    /// Undo one fault.
    pub async fn heal(&mut self, fault: ActiveFault) {
        let ActiveFault {
            spec,
            targets,
            db,
            strobe,
        } = fault;
        match spec.kind {
            FaultKind::Partition => {
                let r = self.cluster.firewall().heal().await;
                let error = r.err().map(|e| format!("{e:#}"));
                self.record(
                    "heal",
                    &targets,
                    serde_json::json!({ "fault": spec.label() }),
                    error,
                );
                if spec.shape == Shape::ZkMajority {
                    self.await_zk_quorum(true).await;
                }
            }
            FaultKind::Kill | FaultKind::Pause => {
                let undo = if spec.kind == FaultKind::Kill {
                    "start"
                } else {
                    "resume"
                };
                for t in &targets {
                    let r = self.signal_db(db, t, undo).await;
                    if r.is_ok() {
                        if spec.kind == FaultKind::Kill {
                            self.killed.remove(&(db, t.clone()));
                        } else {
                            self.paused.remove(&(db, t.clone()));
                        }
                    }
                    let error = r.err().map(|e| format!("{e:#}"));
                    self.record(
                        undo,
                        std::slice::from_ref(t),
                        serde_json::json!({ "db": db }),
                        error,
                    );
                }
            }
            FaultKind::Clock => {
                if let Some((stop, task)) = strobe {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
                let r = self.set_clocks(&targets, 0).await;
                let (detail, error) = match r {
                    Ok(d) => (d, None),
                    Err(e) => (serde_json::Value::Null, Some(format!("{e:#}"))),
                };
                self.record("reset_clock", &targets, detail, error);
            }
        }
    }

    /// Heal everything the nemesis may have left (final heal) and verify it:
    /// no rule of the run in any namespace, no process down or stopped, every
    /// clock back at zero offset. Returns what could not be healed.
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.cluster.firewall().heal().await {
            problems.push(format!("heal partitions: {e:#}"));
        }
        for (db, node) in std::mem::take(&mut self.paused) {
            let r = self.signal_db(db, &node, "resume").await;
            let error = r.err().map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                problems.push(format!("resume {node}: {e}"));
            }
            self.record(
                "resume",
                std::slice::from_ref(&node),
                serde_json::json!({ "db": db }),
                error,
            );
        }
        for (db, node) in std::mem::take(&mut self.killed) {
            let r = self.signal_db(db, &node, "start").await;
            let error = r.err().map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                problems.push(format!("restart {node}: {e}"));
            }
            self.record(
                "start",
                std::slice::from_ref(&node),
                serde_json::json!({ "db": db }),
                error,
            );
        }
        if self.clocks.is_some() {
            let all = self.all_nodes();
            match self.set_clocks(&all, 0).await {
                Ok(detail) => {
                    // What the nodes show after the reset: allow for request time.
                    for (n, m) in detail["measured_ms"].as_object().into_iter().flatten() {
                        if m.as_i64().is_none_or(|ms| ms.abs() > 1000) {
                            problems.push(format!("clock of {n} still off after reset: {m} ms"));
                        }
                    }
                    self.record("reset_clock", &all, detail, None);
                }
                Err(e) => problems.push(format!("reset clocks: {e:#}")),
            }
        }
        match self.cluster.firewall().rules_left().await {
            Ok(left) if left.is_empty() => {}
            Ok(left) => problems.push(format!("partition rules left after heal: {left:?}")),
            Err(e) => problems.push(format!("cannot list partition rules: {e:#}")),
        }
        let procs = [
            (Db::ZooKeeper, Some(self.cluster.zookeeper().procs())),
            (Db::RapidStore, self.cluster.rapidstore().map(|r| r.procs())),
        ];
        for (db, procs) in procs {
            let Some(procs) = procs else { continue };
            // Read on the node through the control: over SSH the PIDs are the host's.
            let control = self.cluster.control();
            for h in procs.handles() {
                if !control.is_alive(&h).await {
                    problems.push(format!("{db:?} on {} is not running after heal", h.node));
                } else if control.is_stopped(&h).await {
                    problems.push(format!("{db:?} on {} is still stopped after heal", h.node));
                }
            }
        }
        self.record(
            "heal-all",
            &[],
            serde_json::json!({ "problems": problems }),
            None,
        );
        problems
    }
}
