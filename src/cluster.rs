//! The local cluster of one run: network ([`crate::net`]), control
//! ([`crate::control`]), the ZooKeeper ensemble on n1..nZ and RapidStore on
//! n1..nN ([`crate::db`]).
//!
//! `Cluster::setup` builds it in phases, journaling every step; on failure
//! it rolls back what it built. `Cluster::teardown` stops RapidStore, then
//! ZooKeeper, then replays the run's journal (namespaces, bridge, chains,
//! files), collecting errors instead of failing. A cluster dropped without
//! teardown leaves its marker, so `harness clean` removes it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::control::{Control, NetnsRemote};
use crate::db::rapidstore::{self, RapidStoreOpts};
use crate::db::zookeeper::{self, ZkServer, ZkTuning, ZooKeeper};
use crate::db::RapidStore;
use crate::journal::{Journal, ReplayReport};
use crate::net::{Firewall, Network, Subnet};

/// How long servers get to exit on SIGTERM at teardown before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What cluster to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub run_id: String,
    pub run_dir: PathBuf,
    /// RapidStore nodes n1..nN (1 to 9).
    pub nodes: usize,
    /// ZooKeeper servers on n1..nZ (1, 3 or 5; at most `nodes`).
    pub zk: usize,
    pub session_timeout_ms: u64,
    /// Planted RapidStore bugs to switch on.
    pub bugs: Vec<String>,
    /// `None`: [`rapidstore::locate_binary`].
    pub rapidstore_bin: Option<PathBuf>,
    /// Whether to start RapidStore at all (false: network and ZooKeeper only).
    pub start_rapidstore: bool,
    /// Extra environment per node for RapidStore (libfaketime).
    pub node_env: BTreeMap<String, Vec<(String, String)>>,
    /// How long ZooKeeper and RapidStore may take to become ready.
    pub ready_timeout: Duration,
}

impl ClusterConfig {
    /// 5 RapidStore nodes, 3 ZooKeeper servers, 4 s sessions.
    pub fn new(run_id: impl Into<String>, run_dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            run_id: run_id.into(),
            run_dir: run_dir.into(),
            nodes: 5,
            zk: 3,
            session_timeout_ms: 4000,
            bugs: Vec::new(),
            rapidstore_bin: None,
            start_rapidstore: true,
            node_env: BTreeMap::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// Checks the config before anything is touched.
    pub fn validate(&self) -> Result<()> {
        if !(1..=crate::net::bridge::MAX_NODES).contains(&self.nodes) {
            bail!(
                "a local cluster has 1 to {} nodes, not {}",
                crate::net::bridge::MAX_NODES,
                self.nodes
            );
        }
        if !zookeeper::SIZES.contains(&self.zk) || self.zk > self.nodes {
            bail!(
                "ZooKeeper ensemble size must be 1, 3 or 5 and at most the node count ({}), not {}",
                self.nodes,
                self.zk
            );
        }
        let tick = u64::from(ZkTuning::default().tick_ms);
        let max = u64::from(ZkTuning::default().max_session_ms);
        if self.session_timeout_ms < 2 * tick || self.session_timeout_ms > max {
            bail!(
                "session timeout must be within [{} ms, {max} ms], not {} ms",
                2 * tick,
                self.session_timeout_ms
            );
        }
        for node in self.node_env.keys() {
            let ok = node
                .strip_prefix('n')
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| (1..=self.nodes).contains(&k));
            if !ok {
                bail!("environment given for unknown node `{node}`");
            }
        }
        Ok(())
    }
}

/// Time taken by one phase of setup or teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: &'static str,
    pub elapsed: Duration,
}

fn phase(phases: &mut Vec<Phase>, name: &'static str, started: Instant) {
    let elapsed = started.elapsed();
    tracing::info!(
        phase = name,
        elapsed_ms = elapsed.as_millis() as u64,
        "cluster"
    );
    phases.push(Phase { name, elapsed });
}

/// What teardown did.
#[derive(Debug, Clone, Default)]
pub struct TeardownReport {
    /// Failures while stopping servers or replaying the journal.
    pub errors: Vec<String>,
    pub replay: ReplayReport,
    pub phases: Vec<Phase>,
}

impl TeardownReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct Cluster {
    cfg: ClusterConfig,
    journal: Arc<Journal>,
    network: Network,
    control: Control,
    firewall: Firewall,
    zookeeper: ZooKeeper,
    rapidstore: Option<RapidStore>,
    setup_phases: Vec<Phase>,
    torn_down: AtomicBool,
}

impl Cluster {
    /// Builds the cluster: subnet, bridge, namespaces, partition chains,
    /// ZooKeeper serving, RapidStore answering `/health`. On failure, what
    /// was built is rolled back (the error says if that failed too).
    pub async fn setup(cfg: ClusterConfig, journal: Arc<Journal>) -> Result<Cluster> {
        cfg.validate()?;
        let mark = journal.mark();
        match Self::build(cfg, journal.clone()).await {
            Ok(cluster) => Ok(cluster),
            Err(e) => {
                tracing::warn!("cluster setup failed, rolling back: {e:#}");
                let j = journal.clone();
                let report = tokio::task::spawn_blocking(move || j.rollback(mark))
                    .await
                    .unwrap_or_else(|err| ReplayReport {
                        errors: vec![format!("rollback task failed: {err}")],
                        ..Default::default()
                    });
                if report.is_clean() {
                    Err(e)
                } else {
                    Err(e.context(format!(
                        "cluster setup failed and so did part of its rollback: {}\nhint: run `harness clean`",
                        report.errors.join("; ")
                    )))
                }
            }
        }
    }

    async fn build(cfg: ClusterConfig, journal: Arc<Journal>) -> Result<Cluster> {
        let total = Instant::now();
        let mut phases = Vec::new();
        let bin = if cfg.start_rapidstore {
            Some(match &cfg.rapidstore_bin {
                Some(b) if b.is_file() => b.clone(),
                Some(b) => bail!("rapidstore binary `{}` not found", b.display()),
                None => rapidstore::locate_binary()?,
            })
        } else {
            None
        };

        let t = Instant::now();
        let network = Network::setup(&journal, cfg.nodes).await?;
        let control = Control::Local(Arc::new(NetnsRemote::new(
            journal.clone(),
            network.namespaces(),
        )));
        phase(&mut phases, "network", t);

        let t = Instant::now();
        let firewall = Firewall::new(control.clone(), &network);
        firewall.install(&journal).await?;
        phase(&mut phases, "iptables chains", t);

        let t = Instant::now();
        let servers: Vec<ZkServer> = network.nodes()[..cfg.zk]
            .iter()
            .enumerate()
            .map(|(i, n)| ZkServer {
                id: i as u32 + 1,
                node: n.id.clone(),
                ip: n.ip,
            })
            .collect();
        let zookeeper = ZooKeeper::new(control.clone(), servers, &cfg.run_dir, ZkTuning::default());
        zookeeper.install().await?;
        zookeeper.start_all().await?;
        phase(&mut phases, "zookeeper start", t);
        let t = Instant::now();
        zookeeper
            .wait_ready(Instant::now() + cfg.ready_timeout)
            .await?;
        phase(&mut phases, "zookeeper ready", t);

        let rapidstore = match bin {
            Some(bin) => {
                let t = Instant::now();
                let rs = RapidStore::new(
                    control.clone(),
                    network
                        .nodes()
                        .iter()
                        .map(|n| (n.id.clone(), n.ip))
                        .collect(),
                    &cfg.run_dir,
                    RapidStoreOpts {
                        bin,
                        session_timeout_ms: cfg.session_timeout_ms,
                        bugs: cfg.bugs.clone(),
                        zk: zookeeper.connect_string(),
                    },
                    cfg.node_env.clone(),
                )?;
                rs.start_all().await?;
                rs.wait_healthy(Instant::now() + cfg.ready_timeout).await?;
                phase(&mut phases, "rapidstore healthy", t);
                Some(rs)
            }
            None => None,
        };
        phase(&mut phases, "setup total", total);
        Ok(Cluster {
            cfg,
            journal,
            network,
            control,
            firewall,
            zookeeper,
            rapidstore,
            setup_phases: phases,
            torn_down: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn subnet(&self) -> Subnet {
        self.network.subnet()
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    pub fn zookeeper(&self) -> &ZooKeeper {
        &self.zookeeper
    }

    /// `None` if the config said not to start RapidStore.
    pub fn rapidstore(&self) -> Option<&RapidStore> {
        self.rapidstore.as_ref()
    }

    /// How long each setup phase took.
    pub fn setup_phases(&self) -> &[Phase] {
        &self.setup_phases
    }

    /// Node ids `n1..nN`.
    pub fn nodes(&self) -> Vec<String> {
        self.network.nodes().iter().map(|n| n.id.clone()).collect()
    }

    /// Nodes running a ZooKeeper server.
    pub fn zk_nodes(&self) -> Vec<String> {
        self.zookeeper.nodes()
    }

    pub fn ip(&self, node: &str) -> Result<Ipv4Addr> {
        self.network
            .ip(node)
            .ok_or_else(|| anyhow!("unknown node `{node}`"))
    }

    /// The address of `node`'s RapidStore HTTP API.
    pub fn http_addr(&self, node: &str) -> Result<SocketAddr> {
        Ok(SocketAddr::from((self.ip(node)?, rapidstore::HTTP_PORT)))
    }

    /// ZooKeeper connect string, usable from the root namespace (the harness
    /// sits on the bridge).
    pub fn zk_connect(&self) -> String {
        self.zookeeper.connect_string()
    }

    /// The harness's own address on the bridge.
    pub fn harness_ip(&self) -> Ipv4Addr {
        self.subnet().bridge_ip()
    }

    /// What this run created that still exists (empty after teardown).
    pub fn leftovers(&self) -> Vec<String> {
        crate::journal::leftovers(self.journal.path()).unwrap_or_else(|e| vec![format!("{e:#}")])
    }

    /// Stops RapidStore (SIGTERM, SIGKILL after a grace period), then
    /// ZooKeeper, then replays the whole run journal. Never fails: errors are
    /// collected. The run marker goes only if everything was undone. A
    /// second call does nothing.
    pub async fn teardown(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return report;
        }
        let total = Instant::now();
        if let Some(rs) = &self.rapidstore {
            let t = Instant::now();
            report.errors.extend(rs.stop_all(STOP_GRACE).await);
            phase(&mut report.phases, "stop rapidstore", t);
        }
        let t = Instant::now();
        report
            .errors
            .extend(self.zookeeper.stop_all(STOP_GRACE).await);
        phase(&mut report.phases, "stop zookeeper", t);

        let t = Instant::now();
        let journal = self.journal.clone();
        report.replay = tokio::task::spawn_blocking(move || journal.teardown())
            .await
            .unwrap_or_else(|e| ReplayReport {
                errors: vec![format!("journal replay task failed: {e}")],
                ..Default::default()
            });
        report.errors.extend(report.replay.errors.iter().cloned());
        phase(&mut report.phases, "replay journal", t);
        phase(&mut report.phases, "teardown total", total);
        if !report.is_clean() {
            tracing::warn!(errors = ?report.errors, "teardown incomplete; `harness clean` retries");
        }
        report
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.torn_down.load(Ordering::SeqCst) {
            tracing::warn!(
                run_id = %self.cfg.run_id,
                "cluster dropped without teardown; `harness clean` will remove it once this process exits"
            );
        }
    }
}

/// Runs `Cluster::setup` under the default journal for `cfg` (creating
/// `run_dir/cleanup.journal` and the run marker).
pub async fn setup_with_new_journal(cfg: ClusterConfig) -> Result<Cluster> {
    let journal = Arc::new(
        Journal::create(&cfg.run_dir, &cfg.run_id).context("cannot start the cleanup journal")?,
    );
    let result = Cluster::setup(cfg, journal.clone()).await;
    if result.is_err() {
        // Rolled back already; only the (empty) journal's marker is left.
        let j = journal.clone();
        let _ = tokio::task::spawn_blocking(move || j.teardown()).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_before_touching_anything() {
        let ok = ClusterConfig::new("r", "/tmp/r");
        assert!(ok.validate().is_ok());
        for bad in [
            ClusterConfig {
                nodes: 0,
                ..ok.clone()
            },
            ClusterConfig {
                nodes: 10,
                ..ok.clone()
            },
            ClusterConfig {
                zk: 2,
                ..ok.clone()
            },
            ClusterConfig {
                nodes: 3,
                zk: 5,
                ..ok.clone()
            },
            ClusterConfig {
                session_timeout_ms: 100,
                ..ok.clone()
            },
            ClusterConfig {
                node_env: [("n9".to_string(), vec![])].into_iter().collect(),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
