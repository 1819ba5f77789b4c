//! Test and benchmark support: a real standalone ZooKeeper (Debian's
//! `zookeeper` package) and N real `rapidstore` processes on loopback, all
//! killed when dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());
pub const SESSION: Duration = Duration::from_secs(2);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A standalone ZooKeeper plus N RapidStore servers, all killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    zk: Child,
    zk_port: u16,
    pub ports: Vec<u16>,
    pub nodes: Vec<Option<Child>>,
    bugs: Vec<String>,
}

impl Cluster {
    pub fn start(n: usize, bugs: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let zk_port = free_port();
        let zk_dir = dir.path().join("zk");
        std::fs::create_dir_all(&zk_dir).unwrap();
        let cfg = zk_dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n",
                zk_dir.display()
            ),
        )
        .unwrap();
        let jar = "/usr/share/java/zookeeper.jar";
        assert!(
            std::path::Path::new(jar).exists(),
            "{jar} is missing: install ZooKeeper with `apt-get install -y zookeeper`"
        );
        let zk = Command::new("java")
            .args([
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-cp",
            ])
            .arg(format!("/etc/zookeeper/conf:{jar}"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start java (apt-get install -y zookeeper)");
        let mut c = Cluster {
            dir,
            zk,
            zk_port,
            ports: (0..n).map(|_| free_port()).collect(),
            nodes: Vec::new(),
            bugs: bugs.iter().map(|s| s.to_string()).collect(),
        };
        wait_for("ZooKeeper to serve", Duration::from_secs(30), || {
            use std::io::{Read, Write};
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], zk_port));
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"srvr").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            out.contains("Mode:").then_some(())
        });
        for i in 0..n {
            let child = c.spawn(i);
            c.nodes.push(Some(child));
        }
        c
    }

    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    pub fn spawn(&self, i: usize) -> Child {
        let peers: Vec<String> = (0..self.ports.len()).map(|j| self.addr(j)).collect();
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        let mut cmd = Command::new(rapidstore_bin());
        cmd.args(["--id", &format!("n{}", i + 1), "--listen", &self.addr(i)])
            .args(["--zk", &format!("127.0.0.1:{}", self.zk_port)])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--session-timeout", &format!("{}ms", SESSION.as_millis())])
            .stdout(Stdio::null())
            .stderr(log);
        for b in &self.bugs {
            cmd.args(["--bug", b]);
        }
        cmd.spawn().unwrap()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    pub fn health(&self, i: usize) -> Option<Value> {
        http()
            .get(format!("http://{}/health", self.addr(i)))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The single node that says it leads, with its token, once every live
    /// node agrees on that leader.
    pub fn leader(&self) -> Option<(usize, u64)> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect();
        let healths: Vec<Value> = live
            .iter()
            .map(|i| self.health(*i))
            .collect::<Option<_>>()?;
        let leaders: Vec<usize> = live
            .iter()
            .zip(&healths)
            .filter(|(_, h)| h["role"] == "leader")
            .map(|(i, _)| *i)
            .collect();
        if leaders.len() != 1 {
            return None;
        }
        let l = leaders[0];
        let addr = self.addr(l);
        healths
            .iter()
            .all(|h| h["leader"] == addr.as_str())
            .then(|| {
                (
                    l,
                    healths[live.iter().position(|i| *i == l).unwrap()]["token"]
                        .as_u64()
                        .unwrap(),
                )
            })
    }

    pub fn wait_leader(&self) -> (usize, u64) {
        wait_for("a single agreed leader", Duration::from_secs(30), || {
            self.leader()
        })
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::SIGTERM,
            )
            .unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none());
        self.nodes[i] = Some(self.spawn(i));
    }

    /// Write through node `via`, following one redirect by hand.
    pub fn put(&self, via: usize, key: &str, body: Value) -> (u16, Value) {
        let c = http();
        let mut url = format!("http://{}/kv/{key}", self.addr(via));
        for _ in 0..3 {
            let r = c.put(&url).json(&body).send().unwrap();
            if r.status() == 307 {
                url = r.headers()["location"].to_str().unwrap().to_string();
                continue;
            }
            let status = r.status().as_u16();
            return (status, r.json().unwrap_or(Value::Null));
        }
        panic!("redirect loop for {key}");
    }

    /// Like `put`, but `None` on connection errors.
    pub fn try_put(&self, via: usize, key: &str, body: Value) -> Option<(u16, Value)> {
        let c = http();
        let mut url = format!("http://{}/kv/{key}", self.addr(via));
        for _ in 0..3 {
            let r = c.put(&url).json(&body).send().ok()?;
            if r.status() == 307 {
                url = r.headers()["location"].to_str().ok()?.to_string();
                continue;
            }
            let status = r.status().as_u16();
            return Some((status, r.json().unwrap_or(Value::Null)));
        }
        None
    }

    pub fn get(&self, via: usize, key: &str) -> (u16, Value) {
        let r = http()
            .get(format!("http://{}/kv/{key}", self.addr(via)))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.zk.kill();
        let _ = self.zk.wait();
    }
}

/// The `rapidstore` binary: Cargo's path for tests, or beside the bench binary.
fn rapidstore_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_rapidstore") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("rapidstore")
}
