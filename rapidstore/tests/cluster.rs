//! End-to-end tests of RapidStore on loopback: a real standalone ZooKeeper
//! (Debian's `zookeeper` package) and three real `rapidstore` processes.
//! Tests run one at a time (a JVM and three servers each) and wait for
//! conditions with generous deadlines, never for fixed sleeps.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
const SESSION: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A standalone ZooKeeper plus N RapidStore servers, all killed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    zk: Child,
    zk_port: u16,
    ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    bugs: Vec<String>,
}

impl Cluster {
    fn start(n: usize, bugs: &[&str]) -> Cluster {
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
            let mut s = std::net::TcpStream::connect(("127.0.0.1", zk_port)).ok()?;
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

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn spawn(&self, i: usize) -> Child {
        let peers: Vec<String> = (0..self.ports.len()).map(|j| self.addr(j)).collect();
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rapidstore"));
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

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    fn health(&self, i: usize) -> Option<Value> {
        http()
            .get(format!("http://{}/health", self.addr(i)))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The single node that says it leads, with its token, once every live
    /// node agrees on that leader.
    fn leader(&self) -> Option<(usize, u64)> {
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

    fn wait_leader(&self) -> (usize, u64) {
        wait_for("a single agreed leader", Duration::from_secs(30), || {
            self.leader()
        })
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::SIGTERM,
            )
            .unwrap();
            c.wait().unwrap();
        }
    }

    fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none());
        self.nodes[i] = Some(self.spawn(i));
    }

    /// Write through node `via`, following one redirect by hand.
    fn put(&self, via: usize, key: &str, body: Value) -> (u16, Value) {
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

    fn get(&self, via: usize, key: &str) -> (u16, Value) {
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

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn exactly_one_leader_and_followers_redirect() {
    let _g = serial();
    let c = Cluster::start(3, &[]);
    let (leader, _) = c.wait_leader();
    let follower = (leader + 1) % 3;
    let r = http()
        .put(format!("http://{}/kv/a", c.addr(follower)))
        .json(&json!({"value": "1"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("http://{}/kv/a", c.addr(leader))
    );
    let (s, body) = c.put(follower, "a", json!({"value": "1"}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(c.get(leader, "a").1["value"], "1");
    // Compare-and-set: mismatch gives 412 with the current value.
    let (s, body) = c.put(leader, "a", json!({"value": "3", "if": "2"}));
    assert_eq!((s, body["value"].as_str()), (412, Some("1")));
    let (s, _) = c.put(leader, "a", json!({"value": "2", "if": "1"}));
    assert_eq!(s, 200);
    let (s, _) = c.put(leader, "fresh", json!({"value": "x", "if": null}));
    assert_eq!(s, 200);
    // Bad input is refused with JSON errors.
    let r = http()
        .put(format!("http://{}/kv/a", c.addr(leader)))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("malformed JSON"));
    let (s, _) = c.put(leader, "big", json!({"value": "x".repeat(70_000)}));
    assert_eq!(s, 413);
    assert_eq!(c.get(leader, "missing").0, 404);
}

#[test]
fn leader_kill_elects_higher_token_and_keeps_acknowledged_writes() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, token) = c.wait_leader();
    for i in 0..30 {
        let (s, b) = c.put(leader, &format!("k{i}"), json!({"value": format!("v{i}")}));
        assert_eq!(s, 200, "{b}");
    }
    let killed_at = Instant::now();
    c.kill(leader);
    let (new_leader, new_token) = c.wait_leader();
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(new_token > token, "token {new_token} not above {token}");
    assert!(
        failover < SESSION + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    for i in 0..30 {
        let (s, b) = c.get(new_leader, &format!("k{i}"));
        assert_eq!(
            (s, b["value"].as_str()),
            (200, Some(format!("v{i}").as_str()))
        );
    }
    // The killed node restarts and catches up from the leader.
    c.restart(leader);
    let (s, b) = c.put(new_leader, "after", json!({"value": "restart"}));
    assert_eq!(s, 200, "{b}");
    let last = b["index"].as_u64().unwrap();
    wait_for(
        "restarted node to catch up",
        Duration::from_secs(20),
        || {
            let h = c.health(leader)?;
            (h["role"] == "follower" && h["last_index"].as_u64()? >= last).then_some(())
        },
    );
}

/// A replica refuses an append whose token is below the highest it has seen;
/// with `--bug no-fencing` it accepts it.
fn stale_append(bugs: &[&str]) -> Value {
    let c = Cluster::start(3, bugs);
    let (leader, token) = c.wait_leader();
    let (s, _) = c.put(leader, "x", json!({"value": "1"}));
    assert_eq!(s, 200);
    let follower = (leader + 1) % 3;
    wait_for("follower to see the token", Duration::from_secs(10), || {
        (c.health(follower)?["highest_token"].as_u64()? >= token).then_some(())
    });
    let h = c.health(follower).unwrap();
    let last = h["last_index"].as_u64().unwrap();
    let prev_token = token;
    // Pretend to be a deposed leader with a lower token (token - 1 wraps at 0,
    // so bump the replica's highest first with a sync from a higher token).
    let higher = token + 100;
    let r: Value = http()
        .post(format!("http://{}/internal/sync", c.addr(follower)))
        .json(&json!({"token": higher, "from": last + 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["result"], "ok");
    http()
        .post(format!("http://{}/internal/append", c.addr(follower)))
        .json(&json!({
            "token": token, "leader": c.addr(leader), "prev_index": last, "prev_token": prev_token,
            "entries": [{"index": last + 1, "token": token, "key": "stale", "value": "s"}],
            "commit_index": 0
        }))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn stale_token_append_is_rejected() {
    let _g = serial();
    let r = stale_append(&[]);
    assert_eq!(r["result"], "stale", "{r}");
}

#[test]
fn stale_token_append_is_accepted_with_no_fencing_bug() {
    let _g = serial();
    let r = stale_append(&["no-fencing"]);
    assert_eq!(r["result"], "ok", "{r}");
}

#[test]
fn sigterm_hands_over_leadership_without_waiting_for_session_expiry() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, token) = c.wait_leader();
    let (s, _) = c.put(leader, "k", json!({"value": "before"}));
    assert_eq!(s, 200);
    let t = Instant::now();
    c.terminate(leader);
    let (new_leader, new_token) = c.wait_leader();
    let handover = t.elapsed();
    assert!(new_token > token && new_leader != leader);
    // Expiry would take the whole session timeout; a graceful close does not.
    assert!(handover < SESSION, "handover took {handover:?}");
    assert_eq!(c.get(new_leader, "k").1["value"], "before");
}

#[test]
fn data_survives_kill_of_every_node() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, _) = c.wait_leader();
    for i in 0..10 {
        assert_eq!(
            c.put(leader, &format!("d{i}"), json!({"value": i.to_string()}))
                .0,
            200
        );
    }
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let (leader, _) = c.wait_leader();
    for i in 0..10 {
        assert_eq!(c.get(leader, &format!("d{i}")).1["value"], i.to_string());
    }
}
