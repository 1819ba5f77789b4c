//! RapidStore servers (the system under test), one per node, each in its
//! node's namespace on port 7000, with `RUN_DIR/data/nK` as data directory
//! and `RUN_DIR/logs/nK/rapidstore.log` for its stdout and stderr.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use super::{Kill, Pause, Primary, Procs};
use crate::control::{Control, Remote, SpawnSpec};

pub const HTTP_PORT: u16 = 7000;
/// Overrides where the `rapidstore` binary is looked for.
pub const BIN_ENV: &str = "RAPIDSTORE_BIN";

pub use crate::client::{Health, Role};

/// Finds the `rapidstore` binary: `$RAPIDSTORE_BIN`, else beside the
/// running executable, else in its parent directory (test binaries live in
/// `target/debug/deps`, the server in `target/debug`).
pub fn locate_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{BIN_ENV}={} is not a file", p.display());
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let candidate = d.join("rapidstore");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find the `rapidstore` binary next to {}\nhint: run `cargo build -p rapidstore`, or set {BIN_ENV}",
        exe.display()
    )
}

/// Where the run uploads the `rapidstore` binary in its folder on a host.
pub fn remote_binary(node_run_dir: &Path) -> PathBuf {
    node_run_dir.join("bin").join("rapidstore")
}

/// `4s` or `2500ms`, as the `rapidstore` CLI takes it.
pub fn duration_arg(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// How every RapidStore server of a run is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RapidStoreOpts {
    pub bin: PathBuf,
    pub session_timeout_ms: u64,
    pub bugs: Vec<String>,
    /// ZooKeeper connect string.
    pub zk: String,
}

/// The RapidStore servers of one run.
#[derive(Debug)]
pub struct RapidStore {
    control: Control,
    /// (node, ip) in node order.
    nodes: Vec<(String, Ipv4Addr)>,
    run_dir: PathBuf,
    opts: RapidStoreOpts,
    env: Mutex<BTreeMap<String, Vec<(String, String)>>>,
    procs: Procs,
    http: reqwest::Client,
}

impl RapidStore {
    pub fn new(
        control: Control,
        nodes: Vec<(String, Ipv4Addr)>,
        run_dir: &Path,
        opts: RapidStoreOpts,
        env: BTreeMap<String, Vec<(String, String)>>,
    ) -> Result<RapidStore> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build HTTP client")?;
        Ok(RapidStore {
            procs: Procs::new(control.clone()),
            control,
            nodes,
            run_dir: run_dir.to_path_buf(),
            opts,
            env: Mutex::new(env),
            http,
        })
    }

    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn procs(&self) -> &Procs {
        &self.procs
    }

    fn ip(&self, node: &str) -> Result<Ipv4Addr> {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, ip)| *ip)
            .with_context(|| format!("no RapidStore node {node}"))
    }

    pub fn http_addr(&self, node: &str) -> Result<SocketAddr> {
        Ok(SocketAddr::from((self.ip(node)?, HTTP_PORT)))
    }

    /// The run's folder as `node` sees it: the run folder itself locally,
    /// `base_dir/<run-id>` on a remote host.
    fn node_root(&self, node: &str) -> PathBuf {
        self.control
            .node_dir(node)
            .unwrap_or_else(|| self.run_dir.clone())
    }

    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.node_root(node).join("data").join(node)
    }

    pub fn log_file(&self, node: &str) -> PathBuf {
        self.node_root(node)
            .join("logs")
            .join(node)
            .join("rapidstore.log")
    }

    /// The `rapidstore` binary as `node` runs it: ours locally, the
    /// uploaded copy ([`remote_binary`]) on a remote host.
    pub fn binary(&self, node: &str) -> PathBuf {
        match self.control.node_dir(node) {
            Some(dir) => remote_binary(&dir),
            None => self.opts.bin.clone(),
        }
    }

    /// Sets the extra environment of `node`'s server (e.g. libfaketime's
    /// `LD_PRELOAD`, `FAKETIME_TIMESTAMP_FILE`), used from its next start.
    pub fn set_env(&self, node: &str, env: Vec<(String, String)>) {
        self.env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), env);
    }

    /// The command line of `node`'s server.
    pub fn argv(&self, node: &str) -> Result<Vec<String>> {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|(_, ip)| SocketAddr::from((*ip, HTTP_PORT)).to_string())
            .collect();
        let mut argv = vec![
            self.binary(node).display().to_string(),
            "--id".into(),
            node.to_string(),
            "--listen".into(),
            self.http_addr(node)?.to_string(),
            "--zk".into(),
            self.opts.zk.clone(),
            "--peers".into(),
            peers.join(","),
            "--data-dir".into(),
            self.data_dir(node).display().to_string(),
            "--session-timeout".into(),
            duration_arg(self.opts.session_timeout_ms),
        ];
        for bug in &self.opts.bugs {
            argv.push("--bug".into());
            argv.push(bug.clone());
        }
        Ok(argv)
    }

    /// Starts `node`'s server (same data directory as any earlier start).
    pub async fn start(&self, node: &str) -> Result<()> {
        if self.procs.is_alive(node).await {
            bail!("RapidStore on {node} is already running");
        }
        self.control.mkdir(node, &self.data_dir(node)).await?;
        let env = self
            .env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_default();
        let spec = SpawnSpec {
            label: format!("rapidstore {node}"),
            argv: self.argv(node)?,
            env,
            log_file: self.log_file(node),
        };
        let handle = self.control.spawn(node, &spec).await?;
        self.procs.insert(handle);
        Ok(())
    }

    pub async fn start_all(&self) -> Result<()> {
        for (node, _) in &self.nodes {
            self.start(node).await?;
        }
        Ok(())
    }

    /// SIGKILL (if running) and start again with the same data directory.
    pub async fn restart(&self, node: &str) -> Result<()> {
        if self.procs.get(node).is_some() {
            self.procs.kill(node).await?;
        }
        self.start(node).await
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, node: &str, grace: Duration) -> Result<()> {
        self.procs.stop(node, grace).await
    }

    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        self.procs.stop_all(grace).await
    }

    /// `GET /health` of `node`.
    pub async fn health(&self, node: &str) -> Result<Health> {
        let url = format!("http://{}/health", self.http_addr(node)?);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .error_for_status()
            .with_context(|| format!("GET {url}"))?;
        resp.json()
            .await
            .with_context(|| format!("GET {url}: bad JSON"))
    }

    /// Every node's health (an error per node that did not answer).
    pub async fn healths(&self) -> Vec<(String, Result<Health>)> {
        let mut tasks = JoinSet::new();
        for (i, (node, _)) in self.nodes.iter().enumerate() {
            let node = node.clone();
            let url = self.http_addr(&node).map(|a| format!("http://{a}/health"));
            let http = self.http.clone();
            tasks.spawn(async move {
                let r = async {
                    let url = url?;
                    let resp = http.get(&url).send().await?.error_for_status()?;
                    Ok::<Health, anyhow::Error>(resp.json().await?)
                }
                .await;
                (i, node, r)
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(x)) = tasks.join_next().await {
            out.push(x);
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, n, r)| (n, r)).collect()
    }

    /// Waits until every node answers `/health`. Fails early if one exited.
    pub async fn wait_healthy(&self, deadline: Instant) -> Result<()> {
        loop {
            let healths = self.healths().await;
            if healths.iter().all(|(_, h)| h.is_ok()) {
                return Ok(());
            }
            for (node, _) in &self.nodes {
                if self.procs.get(node).is_some() && !self.procs.is_alive(node).await {
                    bail!(
                        "RapidStore on {node} exited\nhint: see {}",
                        self.log_file(node).display()
                    );
                }
            }
            if Instant::now() >= deadline {
                let failing: Vec<String> = healths
                    .iter()
                    .filter_map(|(n, h)| h.as_ref().err().map(|e| format!("{n}: {e:#}")))
                    .collect();
                bail!(
                    "RapidStore nodes not healthy in time: {}",
                    failing.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until exactly one node says it leads; returns it.
    pub async fn wait_leader(&self, deadline: Instant) -> Result<String> {
        loop {
            if let [one] = self.primaries().await.as_slice() {
                return Ok(one.clone());
            }
            if Instant::now() >= deadline {
                bail!("no single RapidStore leader in time");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Kill for RapidStore {
    async fn start(&self, node: &str) -> Result<()> {
        RapidStore::start(self, node).await
    }

    async fn kill(&self, node: &str) -> Result<()> {
        self.procs.kill(node).await
    }
}

impl Pause for RapidStore {
    async fn pause(&self, node: &str) -> Result<()> {
        self.procs.pause(node).await
    }

    async fn resume(&self, node: &str) -> Result<()> {
        self.procs.resume(node).await
    }
}

impl Primary for RapidStore {
    async fn primaries(&self) -> Vec<String> {
        self.healths()
            .await
            .into_iter()
            .filter(|(_, h)| matches!(h, Ok(h) if h.role == Role::Leader))
            .map(|(n, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;
    use std::sync::Arc;

    #[test]
    fn durations_in_cli_form() {
        assert_eq!(duration_arg(4000), "4s");
        assert_eq!(duration_arg(2500), "2500ms");
    }

    #[test]
    fn parses_health_leniently() {
        let h: Health = serde_json::from_str(
            r#"{"id":"n1","role":"leader","token":12,"leader":"10.213.1.1:7000","zk":"connected","time_ms":5,"last_index":3,"bugs":[]}"#,
        )
        .unwrap();
        assert_eq!(h.role, Role::Leader);
        assert_eq!(h.token, Some(12));
        let h: Health = serde_json::from_str(
            r#"{"id":"n2","role":"observing","token":null,"leader":null,"zk":"x","time_ms":5}"#,
        )
        .unwrap();
        assert_eq!(h.role, Role::Unknown);
    }

    #[test]
    fn command_line() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(
            Journal::create_in(&dir.path().join("state"), &dir.path().join("run"), "t").unwrap(),
        );
        let control = Control::Local(Arc::new(crate::control::NetnsRemote::new(
            journal,
            BTreeMap::new(),
        )));
        let nodes: Vec<(String, Ipv4Addr)> = (1..=3)
            .map(|k| (format!("n{k}"), Ipv4Addr::new(10, 213, 5, k)))
            .collect();
        let rs = RapidStore::new(
            control,
            nodes,
            Path::new("/r"),
            RapidStoreOpts {
                bin: "/bin/rapidstore".into(),
                session_timeout_ms: 4000,
                bugs: vec!["no-fencing".into()],
                zk: "10.213.5.1:2181".into(),
            },
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            rs.argv("n2").unwrap().join(" "),
            "/bin/rapidstore --id n2 --listen 10.213.5.2:7000 --zk 10.213.5.1:2181 \
             --peers 10.213.5.1:7000,10.213.5.2:7000,10.213.5.3:7000 --data-dir /r/data/n2 \
             --session-timeout 4s --bug no-fencing"
        );
    }
}
