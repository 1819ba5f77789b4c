//! The ZooKeeper ensemble, from Debian's `zookeeper` package: one server per
//! node on n1..nZ (Z = 1, 3 or 5), each a small JVM in its node's namespace,
//! with a short tickTime so sessions expire in seconds.
//!
//! Layout: `RUN_DIR/zk/nK/{zoo.cfg,log4j.properties,data/myid}`, log in
//! `RUN_DIR/logs/nK/zookeeper.log` (JVM stdout/stderr in `zookeeper.out`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use super::{Kill, Pause, Primary, Procs};
use crate::control::{Control, Remote, SpawnSpec};

pub const JAVA: &str = "/usr/bin/java";
/// Debian's jar names its dependencies in its manifest `Class-Path`, but no
/// slf4j binding: add log4j 1.2 and its binding so the server logs to a file.
pub const CLASSPATH: &[&str] = &[
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
pub const CLIENT_PORT: u16 = 2181;
pub const QUORUM_PORT: u16 = 2888;
pub const ELECTION_PORT: u16 = 3888;
/// Ensemble sizes the harness supports.
pub const SIZES: &[usize] = &[1, 3, 5];

/// One server of the ensemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkServer {
    /// `myid`, 1-based.
    pub id: u32,
    pub node: String,
    pub ip: Ipv4Addr,
}

impl ZkServer {
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CLIENT_PORT))
    }
}

/// Timing knobs of zoo.cfg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZkTuning {
    /// ZooKeeper clamps session timeouts to [2, 20] x tickTime unless the
    /// bounds below widen it; 200 ms keeps failover tests fast.
    pub tick_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub min_session_ms: u32,
    pub max_session_ms: u32,
}

impl Default for ZkTuning {
    fn default() -> Self {
        ZkTuning {
            tick_ms: 200,
            init_limit: 10,
            sync_limit: 5,
            min_session_ms: 400,
            max_session_ms: 60_000,
        }
    }
}

/// The zoo.cfg of server `me`.
pub fn zoo_cfg(servers: &[ZkServer], me: &ZkServer, data_dir: &Path, t: &ZkTuning) -> String {
    let mut cfg = format!(
        "# Written by the RapidStore harness.\n\
         tickTime={}\n\
         initLimit={}\n\
         syncLimit={}\n\
         dataDir={}\n\
         clientPort={CLIENT_PORT}\n\
         clientPortAddress={}\n\
         minSessionTimeout={}\n\
         maxSessionTimeout={}\n\
         4lw.commands.whitelist=*\n\
         admin.enableServer=false\n\
         # Quorum connection attempts to a dead peer give up after 1 s (default 5 s).\n\
         cnxTimeout=1000\n",
        t.tick_ms,
        t.init_limit,
        t.sync_limit,
        data_dir.display(),
        me.ip,
        t.min_session_ms,
        t.max_session_ms,
    );
    if servers.len() > 1 {
        cfg.push_str("standaloneEnabled=false\n");
        for s in servers {
            cfg.push_str(&format!(
                "server.{}={}:{QUORUM_PORT}:{ELECTION_PORT}\n",
                s.id, s.ip
            ));
        }
    }
    cfg
}

/// log4j 1.2 configuration writing everything at INFO to `log_file`.
pub fn log4j_properties(log_file: &Path) -> String {
    format!(
        "log4j.rootLogger=INFO, FILE\n\
         log4j.appender.FILE=org.apache.log4j.FileAppender\n\
         log4j.appender.FILE.File={}\n\
         log4j.appender.FILE.Append=true\n\
         log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n\
         log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n\n",
        log_file.display()
    )
}

/// What a server says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZkMode {
    Leader,
    Follower,
    Observer,
    Standalone,
    /// Up, but not in a quorum (electing, or cut off).
    NotServing,
    /// Not answering on its client port.
    Down,
}

impl ZkMode {
    /// Whether the server serves clients.
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            ZkMode::Leader | ZkMode::Follower | ZkMode::Observer | ZkMode::Standalone
        )
    }
}

/// Parses the reply to the `srvr` four-letter word.
pub fn parse_mode(srvr: &str) -> ZkMode {
    for line in srvr.lines() {
        if let Some(mode) = line.strip_prefix("Mode:") {
            return match mode.trim() {
                "leader" => ZkMode::Leader,
                "follower" => ZkMode::Follower,
                "observer" => ZkMode::Observer,
                "standalone" => ZkMode::Standalone,
                _ => ZkMode::NotServing,
            };
        }
    }
    ZkMode::NotServing
}

/// Sends a four-letter word and reads the reply (blocking; short timeouts).
pub fn four_letter_word(
    addr: SocketAddr,
    word: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

/// The mode of the server at `addr`, asked from the harness's namespace.
pub async fn mode_at(addr: SocketAddr) -> ZkMode {
    let reply = tokio::task::spawn_blocking(move || {
        four_letter_word(addr, "srvr", Duration::from_millis(1500))
    })
    .await;
    match reply {
        Ok(Ok(text)) if !text.is_empty() => parse_mode(&text),
        Ok(Ok(_)) => ZkMode::NotServing,
        _ => ZkMode::Down,
    }
}

/// The ensemble of one run.
#[derive(Debug)]
pub struct ZooKeeper {
    control: Control,
    servers: Vec<ZkServer>,
    run_dir: PathBuf,
    tuning: ZkTuning,
    procs: Procs,
}

impl ZooKeeper {
    pub fn new(control: Control, servers: Vec<ZkServer>, run_dir: &Path, tuning: ZkTuning) -> Self {
        ZooKeeper {
            procs: Procs::new(control.clone()),
            control,
            servers,
            run_dir: run_dir.to_path_buf(),
            tuning,
        }
    }

    pub fn servers(&self) -> &[ZkServer] {
        &self.servers
    }

    pub fn nodes(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.node.clone()).collect()
    }

    pub fn server(&self, node: &str) -> Result<&ZkServer> {
        self.servers
            .iter()
            .find(|s| s.node == node)
            .with_context(|| format!("no ZooKeeper server on {node}"))
    }

    pub fn procs(&self) -> &Procs {
        &self.procs
    }

    /// `ip:2181,...` for clients (reachable from the root namespace too).
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.client_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The run's folder as `node` sees it: the run folder itself locally,
    /// `base_dir/<run-id>` on a remote host.
    fn node_root(&self, node: &str) -> PathBuf {
        self.control
            .node_dir(node)
            .unwrap_or_else(|| self.run_dir.clone())
    }

    pub fn config_dir(&self, node: &str) -> PathBuf {
        self.node_root(node).join("zk").join(node)
    }

    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.config_dir(node).join("data")
    }

    pub fn log_file(&self, node: &str) -> PathBuf {
        self.node_root(node)
            .join("logs")
            .join(node)
            .join("zookeeper.log")
    }

    /// Writes every server's config and `myid` on its node (data is kept if
    /// present), through the control: the node's filesystem, not ours.
    pub async fn install(&self) -> Result<()> {
        for s in &self.servers {
            let conf = self.config_dir(&s.node);
            let data = self.data_dir(&s.node);
            let c = &self.control;
            if let Some(logs) = self.log_file(&s.node).parent() {
                c.mkdir(&s.node, logs).await?;
            }
            c.write_file(
                &s.node,
                &data.join("myid"),
                format!("{}\n", s.id).into_bytes(),
                None,
            )
            .await?;
            c.write_file(
                &s.node,
                &conf.join("zoo.cfg"),
                zoo_cfg(&self.servers, s, &data, &self.tuning).into_bytes(),
                None,
            )
            .await?;
            c.write_file(
                &s.node,
                &conf.join("log4j.properties"),
                log4j_properties(&self.log_file(&s.node)).into_bytes(),
                None,
            )
            .await?;
        }
        Ok(())
    }

    fn spawn_spec(&self, node: &str) -> SpawnSpec {
        let conf = self.config_dir(node);
        let log_dir = self
            .log_file(node)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let argv = vec![
            JAVA.to_string(),
            "-Xmx192m".into(),
            "-XX:+UseSerialGC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-XX:-UsePerfData".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
            "-Djava.net.preferIPv4Stack=true".into(),
            format!("-Dzookeeper.log.dir={}", log_dir.display()),
            format!(
                "-Dlog4j.configuration=file:{}",
                conf.join("log4j.properties").display()
            ),
            "-cp".into(),
            CLASSPATH.join(":"),
            MAIN_CLASS.into(),
            conf.join("zoo.cfg").display().to_string(),
        ];
        SpawnSpec {
            label: format!("zookeeper {node}"),
            argv,
            env: Vec::new(),
            log_file: log_dir.join("zookeeper.out"),
        }
    }

    /// Starts the server on `node` (not waiting for it to serve).
    pub async fn start(&self, node: &str) -> Result<()> {
        self.server(node)?;
        if self.procs.is_alive(node).await {
            bail!("ZooKeeper on {node} is already running");
        }
        let handle = self.control.spawn(node, &self.spawn_spec(node)).await?;
        self.procs.insert(handle);
        Ok(())
    }

    pub async fn start_all(&self) -> Result<()> {
        for s in &self.servers {
            self.start(&s.node).await?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, node: &str, grace: Duration) -> Result<()> {
        self.procs.stop(node, grace).await
    }

    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        self.procs.stop_all(grace).await
    }

    /// What the server on `node` says it is.
    pub async fn mode(&self, node: &str) -> ZkMode {
        match self.server(node) {
            Ok(s) => mode_at(s.client_addr()).await,
            Err(_) => ZkMode::Down,
        }
    }

    /// Every server's mode, in server order.
    pub async fn modes(&self) -> Vec<(String, ZkMode)> {
        let mut tasks = JoinSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let (node, addr) = (s.node.clone(), s.client_addr());
            tasks.spawn(async move { (i, node, mode_at(addr).await) });
        }
        let mut modes = Vec::new();
        while let Some(Ok(m)) = tasks.join_next().await {
            modes.push(m);
        }
        modes.sort();
        modes.into_iter().map(|(_, n, m)| (n, m)).collect()
    }

    /// The current ZooKeeper leader, if exactly one server says it leads.
    pub async fn leader(&self) -> Option<String> {
        let leaders = self.primaries().await;
        match leaders.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Waits until every server serves (leader/follower, or standalone for a
    /// single server) with exactly one leader. Fails early if a server died.
    pub async fn wait_ready(&self, deadline: Instant) -> Result<()> {
        loop {
            let modes = self.modes().await;
            let leaders = modes.iter().filter(|(_, m)| *m == ZkMode::Leader).count();
            let ready = if self.servers.len() == 1 {
                modes.iter().all(|(_, m)| *m == ZkMode::Standalone)
            } else {
                leaders == 1
                    && modes
                        .iter()
                        .all(|(_, m)| matches!(m, ZkMode::Leader | ZkMode::Follower))
            };
            if ready {
                return Ok(());
            }
            for s in &self.servers {
                if self.procs.get(&s.node).is_some() && !self.procs.is_alive(&s.node).await {
                    bail!(
                        "ZooKeeper on {} exited\nhint: see {} and {}",
                        s.node,
                        self.log_file(&s.node).display(),
                        self.log_file(&s.node).with_extension("out").display()
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "ZooKeeper ensemble not ready in time: {modes:?}\nhint: see {}",
                    self.log_file(&self.servers[0].node).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Kill for ZooKeeper {
    async fn start(&self, node: &str) -> Result<()> {
        ZooKeeper::start(self, node).await
    }

    async fn kill(&self, node: &str) -> Result<()> {
        self.procs.kill(node).await
    }
}

impl Pause for ZooKeeper {
    async fn pause(&self, node: &str) -> Result<()> {
        self.procs.pause(node).await
    }

    async fn resume(&self, node: &str) -> Result<()> {
        self.procs.resume(node).await
    }
}

impl Primary for ZooKeeper {
    async fn primaries(&self) -> Vec<String> {
        self.modes()
            .await
            .into_iter()
            .filter(|(_, m)| matches!(m, ZkMode::Leader | ZkMode::Standalone))
            .map(|(n, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: u32) -> Vec<ZkServer> {
        (1..=n)
            .map(|i| ZkServer {
                id: i,
                node: format!("n{i}"),
                ip: Ipv4Addr::new(10, 213, 7, i as u8),
            })
            .collect()
    }

    #[test]
    fn ensemble_config() {
        let s = servers(3);
        let cfg = zoo_cfg(&s, &s[1], Path::new("/r/zk/n2/data"), &ZkTuning::default());
        for line in [
            "tickTime=200",
            "initLimit=10",
            "syncLimit=5",
            "dataDir=/r/zk/n2/data",
            "clientPort=2181",
            "clientPortAddress=10.213.7.2",
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
            "standaloneEnabled=false",
            "server.1=10.213.7.1:2888:3888",
            "server.3=10.213.7.3:2888:3888",
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line}:\n{cfg}");
        }
    }

    #[test]
    fn session_bounds_admit_the_default_session() {
        let t = ZkTuning::default();
        // 4 s must not be clamped (20 x tickTime would be exactly 4 s).
        assert!(t.min_session_ms <= 4000 && 4000 <= t.max_session_ms);
        assert!(t.tick_ms * 2 <= 4000);
    }

    #[test]
    fn standalone_config_has_no_server_lines() {
        let s = servers(1);
        let cfg = zoo_cfg(&s, &s[0], Path::new("/d"), &ZkTuning::default());
        assert!(!cfg.contains("server."));
        assert!(!cfg.contains("standaloneEnabled"));
    }

    #[test]
    fn parses_srvr() {
        let reply = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_mode(reply), ZkMode::Follower);
        assert_eq!(parse_mode("Mode: leader\n"), ZkMode::Leader);
        assert_eq!(parse_mode("Mode: standalone"), ZkMode::Standalone);
        assert_eq!(
            parse_mode("This ZooKeeper instance is not currently serving requests\n"),
            ZkMode::NotServing
        );
    }
}
