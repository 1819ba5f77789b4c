//! The cluster of one run: nodes (local network namespaces, [`crate::net`],
//! or hosts over SSH, [`crate::hosts`]), control ([`crate::control`]), the
//! ZooKeeper ensemble and RapidStore on every node ([`crate::db`]).
//!
//! `Cluster::setup` builds it in phases, journaling every step; on failure
//! it rolls back what it built. Over SSH it first checks each host like
//! `harness doctor` does, creates the run's own folder there and uploads the
//! `rapidstore` binary. `Cluster::teardown` stops RapidStore, then
//! ZooKeeper, collects remote logs into the run folder, then replays the
//! run's journal (namespaces, bridge, chains, remote folders, files),
//! collecting errors instead of failing. A cluster dropped without teardown
//! leaves its marker, so `harness clean` removes it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::control::clock::{faketime_env, faketime_file, faketime_set};
use crate::control::ssh::SshTarget;
use crate::control::{argv, Control, NetnsRemote, Remote, SshRemote};
use crate::db::rapidstore::{self, RapidStoreOpts};
use crate::db::zookeeper::{self, ZkServer, ZkTuning, ZooKeeper};
use crate::db::RapidStore;
use crate::hosts::Hosts;
use crate::journal::Undo;
use crate::journal::{Journal, ReplayReport};
use crate::net::iptables::remote_chain_name;
use crate::net::FwNode;
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
    /// Start RapidStore under libfaketime, each node reading its clock
    /// offset from a file of the run's on the node (for clock faults).
    pub faketime: bool,
    /// How long ZooKeeper and RapidStore may take to become ready.
    pub ready_timeout: Duration,
    /// Real hosts over SSH instead of local namespaces (`--hosts FILE`);
    /// `nodes` and `zk` must match it.
    pub hosts: Option<Hosts>,
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
            faketime: false,
            ready_timeout: Duration::from_secs(60),
            hosts: None,
        }
    }

    /// Checks the config before anything is touched.
    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.hosts {
            if h.hosts.len() != self.nodes || h.zk_nodes().len() != self.zk {
                bail!(
                    "{} names {} nodes with {} ZooKeeper servers, not {} with {}",
                    h.path.display(),
                    h.hosts.len(),
                    h.zk_nodes().len(),
                    self.nodes,
                    self.zk
                );
            }
        }
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

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    cfg: ClusterConfig,
    journal: Arc<Journal>,
    /// The local network; `None` over SSH.
    network: Option<Network>,
    /// (node, address) in node order.
    addrs: Vec<(String, Ipv4Addr)>,
    control: Control,
    firewall: Firewall,
    zookeeper: ZooKeeper,
    rapidstore: Option<RapidStore>,
    /// libfaketime offset file of each node, on the node (`faketime`).
    faketime_files: BTreeMap<String, PathBuf>,
    setup_phases: Vec<Phase>,
    torn_down: AtomicBool,
}

/// The servers [`start_dbs`] started.
struct Dbs {
    zookeeper: ZooKeeper,
    rapidstore: Option<RapidStore>,
    faketime_files: BTreeMap<String, PathBuf>,
}

impl Cluster {
    /// Builds the cluster: subnet, bridge, namespaces, partition chains,
    /// ZooKeeper serving, RapidStore answering `/health`. On failure, what
    /// was built is rolled back (the error says if that failed too).
    pub async fn setup(cfg: ClusterConfig, journal: Arc<Journal>) -> Result<Cluster> {
        cfg.validate()?;
        let mark = journal.mark();
        let built = match cfg.hosts.clone() {
            Some(hosts) => Self::build_ssh(cfg, journal.clone(), hosts).await,
            None => Self::build(cfg, journal.clone()).await,
        };
        match built {
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
        let bin = locate_bin(&cfg)?;

        let t = Instant::now();
        let network = Network::setup(&journal, cfg.nodes).await?;
        let control = Control::Local(Arc::new(NetnsRemote::new(
            journal.clone(),
            network.namespaces(),
        )));
        phase(&mut phases, "network", t);

        let t = Instant::now();
        let firewall = Firewall::local(control.clone(), &network);
        firewall.install(&journal).await?;
        phase(&mut phases, "iptables chains", t);

        let addrs: Vec<(String, Ipv4Addr)> = network
            .nodes()
            .iter()
            .map(|n| (n.id.clone(), n.ip))
            .collect();
        let zk_nodes: Vec<String> = addrs[..cfg.zk].iter().map(|(n, _)| n.clone()).collect();
        let dbs = start_dbs(&cfg, &control, &addrs, &zk_nodes, bin, &mut phases).await?;
        phase(&mut phases, "setup total", total);
        Ok(Cluster {
            cfg,
            journal,
            network: Some(network),
            addrs,
            control,
            firewall,
            zookeeper: dbs.zookeeper,
            rapidstore: dbs.rapidstore,
            faketime_files: dbs.faketime_files,
            setup_phases: phases,
            torn_down: AtomicBool::new(false),
        })
    }

    /// Over SSH: connect, check each host, create the run's folder on it,
    /// upload `rapidstore`, install the run's chain, start the servers.
    async fn build_ssh(cfg: ClusterConfig, journal: Arc<Journal>, hosts: Hosts) -> Result<Cluster> {
        let total = Instant::now();
        let mut phases = Vec::new();
        let bin = locate_bin(&cfg)?;

        let t = Instant::now();
        let remote = Arc::new(SshRemote::connect(journal.clone(), &hosts).await?);
        let control = Control::Ssh(remote.clone());
        phase(&mut phases, "ssh connect", t);

        let prepared =
            Self::prepare_hosts(&cfg, &journal, &hosts, &control, bin, &mut phases).await;
        let (addrs, firewall, dbs) = match prepared {
            Ok(parts) => parts,
            Err(e) => {
                // Fetch the logs before the rollback removes the run's folders:
                // they say why a server did not come up.
                let addrs: Vec<(String, Ipv4Addr)> = hosts
                    .hosts
                    .iter()
                    .map(|h| (h.node.clone(), h.address))
                    .collect();
                for w in collect_logs(&control, &addrs, &cfg.run_dir).await {
                    tracing::warn!("log collection: {w}");
                }
                remote.close_masters().await;
                return Err(e);
            }
        };
        phase(&mut phases, "setup total", total);
        Ok(Cluster {
            cfg,
            journal,
            network: None,
            addrs,
            control,
            firewall,
            zookeeper: dbs.zookeeper,
            rapidstore: dbs.rapidstore,
            faketime_files: dbs.faketime_files,
            setup_phases: phases,
            torn_down: AtomicBool::new(false),
        })
    }

    #[allow(clippy::type_complexity)]
    async fn prepare_hosts(
        cfg: &ClusterConfig,
        journal: &Arc<Journal>,
        hosts: &Hosts,
        control: &Control,
        bin: Option<PathBuf>,
        phases: &mut Vec<Phase>,
    ) -> Result<(Vec<(String, Ipv4Addr)>, Firewall, Dbs)> {
        let Control::Ssh(remote) = control else {
            bail!("not an SSH control");
        };
        let t = Instant::now();
        crate::doctor::check_hosts(control, hosts).await?;
        phase(phases, "remote doctor", t);

        let t = Instant::now();
        let binary = match &bin {
            Some(b) => Some(Arc::new(
                tokio::fs::read(b)
                    .await
                    .with_context(|| format!("cannot read `{}`", b.display()))?,
            )),
            None => None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for h in &hosts.hosts {
            let (control, journal, binary) = (control.clone(), journal.clone(), binary.clone());
            let target = remote.target(&h.node)?.clone();
            let dir = h.run_dir(journal.run_id());
            tasks.spawn(async move {
                create_remote_run_dir(&control, &journal, &target, &dir).await?;
                if let Some(bytes) = binary {
                    control
                        .write_file(
                            &target.node,
                            &rapidstore::remote_binary(&dir),
                            bytes.to_vec(),
                            Some("755"),
                        )
                        .await?;
                }
                Ok::<(), anyhow::Error>(())
            });
        }
        let mut errors = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(format!("task failed: {e}")),
            }
        }
        if !errors.is_empty() {
            bail!("cannot prepare the hosts: {}", errors.join("; "));
        }
        phase(phases, "run folders and upload", t);

        let addrs: Vec<(String, Ipv4Addr)> = hosts
            .hosts
            .iter()
            .map(|h| (h.node.clone(), h.address))
            .collect();
        let t = Instant::now();
        let firewall = Firewall::new(
            control.clone(),
            remote_chain_name(journal.run_id()),
            addrs
                .iter()
                .map(|(id, ip)| FwNode {
                    id: id.clone(),
                    ip: *ip,
                })
                .collect(),
        );
        firewall.install(journal).await?;
        phase(phases, "iptables chains", t);

        let dbs = start_dbs(cfg, control, &addrs, &hosts.zk_nodes(), bin, phases).await?;
        Ok((addrs, firewall, dbs))
    }
}

/// The `rapidstore` binary to run, if the config starts RapidStore.
fn locate_bin(cfg: &ClusterConfig) -> Result<Option<PathBuf>> {
    if !cfg.start_rapidstore {
        return Ok(None);
    }
    Ok(Some(match &cfg.rapidstore_bin {
        Some(b) if b.is_file() => b.clone(),
        Some(b) => bail!("rapidstore binary `{}` not found", b.display()),
        None => rapidstore::locate_binary()?,
    }))
}

/// Creates the run's own folder on a host, journaled first. The folder must
/// not exist yet (`mkdir` without `-p` for the last step), so teardown only
/// ever removes what the run created.
async fn create_remote_run_dir(
    control: &Control,
    journal: &Journal,
    target: &SshTarget,
    dir: &Path,
) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let id = journal.push(Undo::RemoteRemoveDir {
        host: target.clone(),
        path: dir.to_path_buf(),
    })?;
    let out = control
        .exec(
            &target.node,
            &argv(&[
                "sh",
                "-c",
                r#"mkdir -p "$1" && mkdir "$2""#,
                "mkdir",
                &parent.display().to_string(),
                &dir.display().to_string(),
            ]),
        )
        .await;
    match out {
        Ok(o) if o.success() => Ok(()),
        other => {
            // Not created by us (it existed, or mkdir failed): never remove it.
            journal.resolve(id)?;
            let why = match other {
                Ok(o) => o.stderr.trim().to_string(),
                Err(e) => format!("{e:#}"),
            };
            bail!(
                "cannot create the run folder {} on {}: {why}",
                dir.display(),
                target.describe()
            )
        }
    }
}

/// Starts the ZooKeeper ensemble on `zk_nodes` and, with a binary,
/// RapidStore on every node (under libfaketime with `cfg.faketime`); waits
/// for both. Shared by both modes.
async fn start_dbs(
    cfg: &ClusterConfig,
    control: &Control,
    addrs: &[(String, Ipv4Addr)],
    zk_nodes: &[String],
    bin: Option<PathBuf>,
    phases: &mut Vec<Phase>,
) -> Result<Dbs> {
    {
        let t = Instant::now();
        let servers: Vec<ZkServer> = zk_nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let ip = addrs
                    .iter()
                    .find(|(n, _)| n == node)
                    .map(|(_, ip)| *ip)
                    .ok_or_else(|| anyhow!("ZooKeeper node {node} is not a node"))?;
                Ok(ZkServer {
                    id: i as u32 + 1,
                    node: node.clone(),
                    ip,
                })
            })
            .collect::<Result<_>>()?;
        let zookeeper = ZooKeeper::new(control.clone(), servers, &cfg.run_dir, ZkTuning::default());
        zookeeper.install().await?;
        zookeeper.start_all().await?;
        phase(phases, "zookeeper start", t);
        let t = Instant::now();
        zookeeper
            .wait_ready(Instant::now() + cfg.ready_timeout)
            .await?;
        phase(phases, "zookeeper ready", t);

        let mut node_env: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let faketime_files = if cfg.faketime && bin.is_some() {
            let files = create_faketime_files(cfg, control, addrs).await?;
            let lib = crate::doctor::libfaketime();
            for (node, file) in &files {
                node_env
                    .entry(node.clone())
                    .or_default()
                    .extend(faketime_env(&lib, file));
            }
            files
        } else {
            BTreeMap::new()
        };
        let rapidstore = match bin {
            Some(bin) => {
                let t = Instant::now();
                let rs = RapidStore::new(
                    control.clone(),
                    addrs.to_vec(),
                    &cfg.run_dir,
                    RapidStoreOpts {
                        bin,
                        session_timeout_ms: cfg.session_timeout_ms,
                        bugs: cfg.bugs.clone(),
                        zk: zookeeper.connect_string(),
                    },
                    node_env,
                )?;
                rs.start_all().await?;
                rs.wait_healthy(Instant::now() + cfg.ready_timeout).await?;
                phase(phases, "rapidstore healthy", t);
                Some(rs)
            }
            None => None,
        };
        Ok(Dbs {
            zookeeper,
            rapidstore,
            faketime_files,
        })
    }
}

/// Writes each node's libfaketime offset file (`+0`) on the node, in the
/// run's folder there (locally: the run folder), before RapidStore starts:
/// the files go with the run's folder at teardown.
async fn create_faketime_files(
    cfg: &ClusterConfig,
    control: &Control,
    addrs: &[(String, Ipv4Addr)],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    for (node, _) in addrs {
        let dir = control
            .node_dir(node)
            .unwrap_or_else(|| cfg.run_dir.clone());
        let file = faketime_file(&dir, node);
        control
            .exec(node, &faketime_set(&file, 0))
            .await?
            .check(&format!("creating the clock offset file on {node}"))?;
        files.insert(node.clone(), file);
    }
    Ok(files)
}

impl Cluster {
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Each node's libfaketime offset file, on the node (empty unless the
    /// config asked for `faketime`).
    pub fn faketime_files(&self) -> &BTreeMap<String, PathBuf> {
        &self.faketime_files
    }

    /// The local network; `None` for a cluster of hosts over SSH.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// The local run's subnet; `None` over SSH.
    pub fn subnet(&self) -> Option<Subnet> {
        self.network.as_ref().map(Network::subnet)
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
        self.addrs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Nodes running a ZooKeeper server.
    pub fn zk_nodes(&self) -> Vec<String> {
        self.zookeeper.nodes()
    }

    pub fn ip(&self, node: &str) -> Result<Ipv4Addr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, ip)| *ip)
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

    /// The harness's own address on the local bridge; `None` over SSH.
    pub fn harness_ip(&self) -> Option<Ipv4Addr> {
        self.subnet().map(|s| s.bridge_ip())
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

        if self.control.is_remote() {
            let t = Instant::now();
            // Failures here are warnings: they must never hide the verdict.
            for w in self.collect_logs().await {
                tracing::warn!("log collection: {w}");
            }
            phase(&mut report.phases, "collect logs", t);
            if let Control::Ssh(r) = &self.control {
                // Before the journal removes their sockets' folder.
                r.close_masters().await;
            }
        }

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

impl Cluster {
    /// Copies every node's `logs/` from its run folder on the host into
    /// `RUN_DIR/logs/` (same layout as a local run). Returns what failed.
    pub async fn collect_logs(&self) -> Vec<String> {
        collect_logs(&self.control, &self.addrs, &self.cfg.run_dir).await
    }
}

/// [`Cluster::collect_logs`], usable before the cluster is whole.
async fn collect_logs(
    control: &Control,
    addrs: &[(String, Ipv4Addr)],
    run_dir: &Path,
) -> Vec<String> {
    {
        let mut problems = Vec::new();
        for (node, _) in addrs {
            let Some(dir) = control.node_dir(node) else {
                continue;
            };
            let logs = dir.join("logs");
            let list = control
                .exec(
                    node,
                    &argv(&[
                        "sh",
                        "-c",
                        r#"cd "$1" 2>/dev/null || exit 0; find . -type f"#,
                        "logs",
                        &logs.display().to_string(),
                    ]),
                )
                .await;
            let files = match list {
                Ok(o) if o.success() => o.stdout,
                Ok(o) => {
                    problems.push(format!("{node}: listing logs: {}", o.stderr.trim()));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{node}: listing logs: {e:#}"));
                    continue;
                }
            };
            for rel in files.lines() {
                let rel = rel.trim_start_matches("./");
                let rel_path = Path::new(rel);
                if rel.is_empty()
                    || rel_path
                        .components()
                        .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    continue;
                }
                let src = logs.join(rel_path);
                let dst = run_dir.join("logs").join(rel_path);
                let r = async {
                    let o = control
                        .exec(node, &argv(&["cat", &src.display().to_string()]))
                        .await?
                        .check(&format!("cat {}", src.display()))?;
                    if let Some(parent) = dst.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    tokio::fs::write(&dst, o.stdout).await?;
                    Ok::<(), anyhow::Error>(())
                }
                .await;
                if let Err(e) = r {
                    problems.push(format!("{node}: {e:#}"));
                }
            }
        }
        problems
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
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
