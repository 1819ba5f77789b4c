//! Nemeses: faults and their heals. Schedules (`schedule`) say what and
//! when; [`Nemesis`] applies a planned fault to the live cluster, resolving
//! its target at that moment and recording every step in the history.

pub mod schedule;

use crate::client::NodeClient;
use crate::cluster::Cluster;
use crate::db::{Kill, Pause};
use crate::history::{Clock, Event, HistoryWriter, Role};
use crate::net::grudge;
use crate::observe::{self, Topology};
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schedule::{FaultKind, FaultSpec, Target};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// A fault that is in force, to be healed.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    pub kind: FaultKind,
    pub targets: Vec<String>,
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
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
    pub executed: Vec<ExecutedStep>,
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
            executed: Vec::new(),
        }
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

    /// Resolve a target now, from the harness's own observation.
    async fn resolve(&mut self, target: Target) -> Option<String> {
        match target {
            Target::Leader => {
                observe::wait_for_leader(&self.topo, &self.client, Duration::from_secs(5))
                    .await
                    .map(|(n, _)| n)
            }
            Target::Random => {
                let nodes: Vec<&String> = self
                    .topo
                    .nodes
                    .iter()
                    .map(|(n, _)| n)
                    .filter(|n| !self.killed.contains(*n) && !self.paused.contains(*n))
                    .collect();
                (!nodes.is_empty()).then(|| nodes[self.rng.random_range(0..nodes.len())].clone())
            }
        }
    }

    fn rapidstore(&self) -> Result<&crate::db::RapidStore> {
        self.cluster
            .rapidstore()
            .context("the cluster runs no RapidStore servers")
    }

    /// Inject `spec`; `None` if its target could not be resolved (recorded).
    pub async fn inject(&mut self, spec: &FaultSpec) -> Option<ActiveFault> {
        let Some(node) = self.resolve(spec.target).await else {
            self.record(
                "skip",
                &[],
                serde_json::json!({ "reason": format!("no {:?} target could be resolved", spec.target) }),
                None,
            );
            return None;
        };
        let targets = vec![node.clone()];
        let (action, result, detail) = match spec.kind {
            FaultKind::Kill => {
                let r = match self.rapidstore() {
                    Ok(db) => db.kill(&node).await,
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    self.killed.insert(node.clone());
                }
                ("kill", r, serde_json::Value::Null)
            }
            FaultKind::Pause => {
                let r = match self.rapidstore() {
                    Ok(db) => db.pause(&node).await,
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    self.paused.insert(node.clone());
                }
                ("pause", r, serde_json::Value::Null)
            }
            FaultKind::Partition => {
                let all: Vec<String> = self.topo.nodes.iter().map(|(n, _)| n.clone()).collect();
                let g = grudge::isolate(&node, &all);
                let r = self.cluster.firewall().partition(&g).await;
                ("partition", r, serde_json::to_value(&g).unwrap_or_default())
            }
        };
        let error = result.err().map(|e| format!("{e:#}"));
        let ok = error.is_none();
        self.record(action, &targets, detail, error);
        if ok && spec.kind == FaultKind::Kill {
            // After the fault itself, so "who led when the fault hit" sees the leader.
            self.history.record(&Event::Role {
                time_ms: self.clock.now_ms(),
                node: node.clone(),
                role: Role::Down,
                token: None,
            });
        }
        ok.then_some(ActiveFault {
            kind: spec.kind,
            targets,
        })
    }

    /// Undo one fault.
    pub async fn heal(&mut self, fault: &ActiveFault) {
        for node in &fault.targets {
            let (action, r) = match fault.kind {
                FaultKind::Kill => {
                    let r = match self.rapidstore() {
                        Ok(db) => db.start(node).await,
                        Err(e) => Err(e),
                    };
                    if r.is_ok() {
                        self.killed.remove(node);
                    }
                    ("start", r)
                }
                FaultKind::Pause => {
                    let r = match self.rapidstore() {
                        Ok(db) => db.resume(node).await,
                        Err(e) => Err(e),
                    };
                    if r.is_ok() {
                        self.paused.remove(node);
                    }
                    ("resume", r)
                }
                FaultKind::Partition => ("heal", self.cluster.firewall().heal().await),
            };
            let error = r.err().map(|e| format!("{e:#}"));
            self.record(
                action,
                std::slice::from_ref(node),
                serde_json::Value::Null,
                error,
            );
            if fault.kind == FaultKind::Partition {
                break;
            }
        }
    }

    /// Heal everything the nemesis may have left (final heal) and verify it:
    /// no rule of the run in any namespace, no node down or stopped.
    /// Returns what could not be healed.
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.cluster.firewall().heal().await {
            problems.push(format!("heal partitions: {e:#}"));
        }
        for node in std::mem::take(&mut self.paused) {
            let r = match self.rapidstore() {
                Ok(db) => db.resume(&node).await,
                Err(e) => Err(e),
            };
            let error = r.err().map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                problems.push(format!("resume {node}: {e}"));
            }
            self.record(
                "resume",
                std::slice::from_ref(&node),
                serde_json::Value::Null,
                error,
            );
        }
        for node in std::mem::take(&mut self.killed) {
            let r = match self.rapidstore() {
                Ok(db) => db.start(&node).await,
                Err(e) => Err(e),
            };
            let error = r.err().map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                problems.push(format!("restart {node}: {e}"));
            }
            self.record(
                "start",
                std::slice::from_ref(&node),
                serde_json::Value::Null,
                error,
            );
        }
        match self.cluster.firewall().rules_left().await {
            Ok(left) if left.is_empty() => {}
            Ok(left) => problems.push(format!("partition rules left after heal: {left:?}")),
            Err(e) => problems.push(format!("cannot list partition rules: {e:#}")),
        }
        if let Ok(db) = self.rapidstore() {
            for (node, _) in &self.topo.nodes {
                if !db.procs().is_alive(node).await {
                    problems.push(format!("RapidStore on {node} is not running after heal"));
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
