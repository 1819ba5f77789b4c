//! End-to-end tests of the local cluster: real namespaces, bridge, iptables
//! and ZooKeeper JVMs. They need root; as another user they pass vacuously
//! with a note. Run them one at a time:
//!
//!     cargo test -p harness --test cluster_e2e -- --test-threads=1 --nocapture

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::cluster::{Cluster, ClusterConfig};
use harness::control::{argv, Remote};
use harness::db::zookeeper::ZkMode;
use harness::db::{Kill, Pause, Primary};
use harness::journal::{self, Journal, Undo};
use harness::net::grudge;

const DEADLINE: Duration = Duration::from_secs(60);

/// One cluster at a time: several JVM ensembles at once on 2 cores make
/// timing-sensitive steps flaky.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CHILD_ENV: &str = "RSH_E2E_CHILD_RUN_DIR";

fn is_root() -> bool {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: needs root (namespaces, bridge, iptables)");
    }
    root
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "harness=info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn run_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("e2e-{tag}-{}-{nanos}", std::process::id())
}

/// Polls `cond` until it holds or `DEADLINE` passes.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `from` can open a TCP connection to `to` within 2 s.
async fn node_can_connect(cluster: &Cluster, from: &str, to: SocketAddr) -> bool {
    let script = format!("exec 3<>/dev/tcp/{}/{}", to.ip(), to.port());
    let out = cluster
        .control()
        .exec(from, &argv(&["timeout", "2", "bash", "-c", &script]))
        .await
        .unwrap();
    out.success()
}

fn root_can_connect(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok()
}

/// Namespaces, links and root iptables chains named after subnet `x`, and
/// processes whose command line mentions `run_dir`.
fn system_leftovers(x: u8, run_dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let sh = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for line in sh("ip netns list").lines() {
        if line.starts_with(&format!("rsh{x}-")) {
            left.push(format!("netns {line}"));
        }
    }
    for name in sh("ls /sys/class/net").split_whitespace() {
        if name == format!("rsh{x}") || name.starts_with(&format!("rsh{x}v")) {
            left.push(format!("link {name}"));
        }
    }
    for line in sh("iptables -w -S").lines() {
        if line.contains(&format!("RSH-{x}")) {
            left.push(format!("root iptables: {line}"));
        }
    }
    let needle = run_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let state = harness::control::netns::proc_stat(pid).map(|s| s.state);
        if cmdline.contains(&needle) && state != Some('Z') {
            left.push(format!("process {pid}: {cmdline}"));
        }
    }
    left
}

fn assert_gone(journal_path: &Path, x: u8, run_dir: &Path, run_id: &str) {
    let left = journal::leftovers(journal_path).unwrap();
    assert!(left.is_empty(), "journal says still present: {left:#?}");
    let left = system_leftovers(x, run_dir);
    assert!(left.is_empty(), "still present: {left:#?}");
    assert!(
        !Path::new(journal::STATE_DIR).join(run_id).exists(),
        "run marker still there"
    );
}

/// Replays the journal if a test panics before its own teardown, so a
/// failing test leaves nothing behind (drop it before the run's tempdir).
struct TeardownGuard(Arc<Journal>);

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let report = self.0.teardown();
        if !report.is_clean() {
            eprintln!("guard teardown errors: {:?}", report.errors);
        }
    }
}

fn small_config(run_id: &str, run_dir: &Path, nodes: usize) -> ClusterConfig {
    ClusterConfig {
        nodes,
        zk: 3,
        start_rapidstore: false,
        ..ClusterConfig::new(run_id, run_dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_zookeeper_partition_heal_teardown() {
    if !is_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let id = run_id("partition");
    let journal = Arc::new(Journal::create(&run_dir, &id).unwrap());
    let _guard = TeardownGuard(journal.clone());
    let cluster = Cluster::setup(small_config(&id, &run_dir, 3), journal.clone())
        .await
        .expect("setup");
    let x = cluster.subnet().expect("a local cluster").x;
    let nodes = cluster.nodes();
    assert_eq!(nodes, ["n1", "n2", "n3"]);

    // ZooKeeper serves, seen from the root namespace.
    let modes = cluster.zookeeper().modes().await;
    assert_eq!(
        modes.iter().filter(|(_, m)| *m == ZkMode::Leader).count(),
        1,
        "{modes:?}"
    );
    assert!(modes.iter().all(|(_, m)| m.is_serving()), "{modes:?}");
    let zk = zookeeper_client::Client::connect(&cluster.zk_connect())
        .await
        .expect("ZooKeeper client from the root namespace");
    zk.create(
        "/e2e",
        b"hello",
        &zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all()),
    )
    .await
    .unwrap();
    drop(zk);

    // Node to node and root to node traffic flows.
    let zk_addr = |n: &str| SocketAddr::from((cluster.ip(n).unwrap(), 2181));
    assert!(node_can_connect(&cluster, "n1", zk_addr("n3")).await);
    assert!(node_can_connect(&cluster, "n3", zk_addr("n2")).await);
    assert!(root_can_connect(zk_addr("n3")));

    // Isolate n3.
    let grudge = grudge::isolate("n3", &nodes);
    cluster.firewall().partition(&grudge).await.unwrap();
    assert_eq!(cluster.firewall().rules_left().await.unwrap().len(), 4);
    assert!(!node_can_connect(&cluster, "n1", zk_addr("n3")).await);
    assert!(!node_can_connect(&cluster, "n3", zk_addr("n1")).await);
    assert!(!node_can_connect(&cluster, "n3", zk_addr("n2")).await);
    assert!(node_can_connect(&cluster, "n1", zk_addr("n2")).await);
    // The harness is never partitioned.
    assert!(root_can_connect(zk_addr("n3")));
    let zkeeper = cluster.zookeeper();
    eventually("n3 stops serving", || async {
        zkeeper.mode("n3").await == ZkMode::NotServing
    })
    .await;
    eventually("n1+n2 keep a quorum", || async {
        zkeeper.mode("n1").await.is_serving() && zkeeper.mode("n2").await.is_serving()
    })
    .await;

    // Heal.
    cluster.firewall().heal().await.unwrap();
    assert!(cluster.firewall().rules_left().await.unwrap().is_empty());
    assert!(node_can_connect(&cluster, "n1", zk_addr("n3")).await);
    assert!(node_can_connect(&cluster, "n3", zk_addr("n1")).await);
    zkeeper
        .wait_ready(Instant::now() + DEADLINE)
        .await
        .expect("ensemble whole again after heal");

    // Leave a ZooKeeper server paused: teardown must still stop it.
    zkeeper.pause("n2").await.unwrap();
    let paused = zkeeper.procs().get("n2").unwrap();
    assert!(harness::control::netns::is_stopped(
        paused.pid,
        paused.start_time
    ));
    assert!(journal::entries(journal.path())
        .unwrap()
        .iter()
        .any(|u| matches!(u, Undo::ResumeProcess { pid, .. } if *pid == paused.pid)));
    let handles = zkeeper.procs().handles();
    assert_eq!(handles.len(), 3);

    let report = cluster.teardown().await;
    assert!(report.is_clean(), "{:?}", report.errors);
    for h in &handles {
        assert!(!cluster.control().is_alive(h).await, "{} survived", h.label);
    }
    assert_gone(journal.path(), x, &run_dir, &id);
    // A second replay finds nothing to do.
    let again = Journal::replay_report(journal.path());
    assert!(again.is_clean() && again.undone.is_empty(), "{again:?}");
}

/// Not a test on its own: the harness side that the next test SIGKILLs
/// mid-setup. Does nothing unless started by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn child_harness_for_kill_test() {
    let Some(run_dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    init_tracing();
    let run_dir = PathBuf::from(run_dir);
    let id = std::env::var("RSH_E2E_CHILD_RUN_ID").unwrap();
    let journal = Arc::new(Journal::create(&run_dir, &id).unwrap());
    let cfg = ClusterConfig {
        ready_timeout: Duration::from_secs(600),
        ..small_config(&id, &run_dir, 3)
    };
    let cluster = Cluster::setup(cfg, journal).await.unwrap();
    // Setup done before the parent killed us: wait to be killed anyway.
    std::mem::forget(cluster);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_killed_mid_setup_is_cleaned_by_clean_stale() {
    if !is_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let id = run_id("killed");
    // Orphans of the killed child get reparented to us (not to an init that
    // may never reap them), so we can reap them once cleaned up.
    // SAFETY: prctl with integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let log = std::fs::File::create(dir.path().join("child.log")).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_harness_for_kill_test",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &run_dir)
        .env("RSH_E2E_CHILD_RUN_ID", &id)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let journal_path = run_dir.join(journal::JOURNAL_FILE);

    // Kill it once all three ZooKeeper servers are started, before they are
    // ready (mid-setup).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let started = journal::entries(&journal_path)
            .map(|e| {
                e.iter()
                    .filter(|u| matches!(u, Undo::KillProcess { .. }))
                    .count()
            })
            .unwrap_or(0);
        if started == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child never started ZooKeeper; see {}",
            dir.path().join("child.log").display()
        );
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // What it left behind is real...
    let x = journal::entries(&journal_path)
        .unwrap()
        .iter()
        .find_map(|u| match u {
            Undo::DeleteLink { name } => name.strip_prefix("rsh")?.parse::<u8>().ok(),
            _ => None,
        })
        .expect("bridge journaled");
    let before = system_leftovers(x, &run_dir);
    assert!(before.iter().any(|l| l.starts_with("netns")), "{before:#?}");
    assert!(
        before.iter().any(|l| l.starts_with("process")),
        "{before:#?}"
    );
    assert!(Path::new(journal::STATE_DIR).join(&id).exists());

    // ...and `harness clean` removes all of it.
    let report = journal::clean_stale(false);
    println!("{report}");
    let run = report
        .runs
        .iter()
        .find(|r| r.run_id == id)
        .expect("clean found the dead run");
    assert!(run.skipped.is_none() && run.replay.is_clean(), "{report}");
    assert!(run.marker_removed);
    assert_gone(&journal_path, x, &run_dir, &id);
    // Reap the killed orphans (no other children are running now).
    loop {
        // SAFETY: plain waitpid on any child, non-blocking.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_kill_zookeeper_leader_and_timing() {
    if !is_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    init_tracing();
    let with_rapidstore = harness::db::rapidstore::locate_binary().is_ok()
        && std::env::var("RSH_E2E_RAPIDSTORE").as_deref() != Ok("0");
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let id = run_id("five");
    let journal = Arc::new(Journal::create(&run_dir, &id).unwrap());
    let _guard = TeardownGuard(journal.clone());
    let cfg = ClusterConfig {
        start_rapidstore: with_rapidstore,
        ..small_config(&id, &run_dir, 5)
    };
    let started = Instant::now();
    let cluster = Cluster::setup(cfg, journal.clone()).await.expect("setup");
    let setup_time = started.elapsed();
    let x = cluster.subnet().expect("a local cluster").x;
    assert_eq!(cluster.zk_nodes(), ["n1", "n2", "n3"]);

    // Every node reaches every other; nodes without ZooKeeper too.
    for from in ["n4", "n5"] {
        assert!(
            node_can_connect(
                &cluster,
                from,
                SocketAddr::from((cluster.ip("n1").unwrap(), 2181))
            )
            .await
        );
    }

    // Kill the ZooKeeper leader; the other two elect a new one; restart it.
    let zk = cluster.zookeeper();
    let old = zk.leader().await.expect("a ZooKeeper leader");
    zk.kill(&old).await.unwrap();
    assert_eq!(zk.mode(&old).await, ZkMode::Down);
    eventually("a new ZooKeeper leader", || async {
        matches!(zk.leader().await, Some(l) if l != old)
    })
    .await;
    Kill::start(zk, &old).await.unwrap();
    zk.wait_ready(Instant::now() + DEADLINE).await.unwrap();

    if let Some(rs) = cluster.rapidstore() {
        let leader = rs.wait_leader(Instant::now() + DEADLINE).await.unwrap();
        let health = rs.health(&leader).await.unwrap();
        println!("rapidstore leader {leader}: {health:?}");
        assert_eq!(rs.primaries().await, vec![leader.clone()]);
        // kill / restart / pause / resume by PID.
        rs.kill("n5").await.unwrap();
        rs.restart("n5").await.unwrap();
        rs.pause("n4").await.unwrap();
        rs.resume("n4").await.unwrap();
        rs.wait_healthy(Instant::now() + DEADLINE).await.unwrap();
    }

    let started = Instant::now();
    let report = cluster.teardown().await;
    let teardown_time = started.elapsed();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_gone(journal.path(), x, &run_dir, &id);
    println!(
        "5 nodes, 3 ZooKeeper, rapidstore: {with_rapidstore}: setup {setup_time:?} {:?}; teardown {teardown_time:?} {:?}",
        cluster.setup_phases(),
        report.phases
    );
}

#[test]
fn root_namespace_chain_undo_removes_hooks_and_chain() {
    if !is_root() {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let id = run_id("rootchain");
    let journal = Journal::create(&dir.path().join("run"), &id).unwrap();
    let chain = format!("RSH-T{}", std::process::id());
    // Matches only an interface that does not exist: inert while it lives.
    let hook = argv(&["INPUT", "-i", "rshnosuchif", "-j", &chain]);
    journal
        .push(Undo::DeleteChain {
            netns: None,
            table: "filter".into(),
            chain: chain.clone(),
            hook_rules: vec![hook.clone()],
        })
        .unwrap();
    let ipt = |args: &[&str]| {
        let ok = std::process::Command::new("iptables")
            .args(["-w"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "iptables {args:?}");
    };
    ipt(&["-N", &chain]);
    ipt(&["-A", &chain, "-j", "RETURN"]);
    ipt(&["-I", "INPUT", "1", "-i", "rshnosuchif", "-j", &chain]);
    assert!(!journal::leftovers(journal.path()).unwrap().is_empty());
    let report = journal.teardown();
    assert!(report.is_clean() && report.undone.len() == 1, "{report:?}");
    let listing = std::process::Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listing.stdout).contains(&chain));
    assert!(journal::leftovers(journal.path()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_setup_rolls_back_what_it_built() {
    if !is_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let id = run_id("rollback");
    let journal = Arc::new(Journal::create(&run_dir, &id).unwrap());
    let _guard = TeardownGuard(journal.clone());
    // A "server" that exits at once: setup fails after ZooKeeper is up.
    let cfg = ClusterConfig {
        nodes: 1,
        zk: 1,
        start_rapidstore: true,
        rapidstore_bin: Some(PathBuf::from("/bin/false")),
        ..ClusterConfig::new(&id, &run_dir)
    };
    let err = Cluster::setup(cfg, journal.clone()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("RapidStore on n1 exited"),
        "{err:#}"
    );
    let entries = journal::entries(journal.path()).unwrap();
    let x = entries
        .iter()
        .find_map(|u| match u {
            Undo::DeleteLink { name } => name.strip_prefix("rsh")?.parse::<u8>().ok(),
            _ => None,
        })
        .unwrap();
    assert!(entries
        .iter()
        .any(|u| matches!(u, Undo::KillProcess { label, .. } if label == "zookeeper n1")));
    assert!(journal::leftovers(journal.path()).unwrap().is_empty());
    assert!(system_leftovers(x, &run_dir).is_empty());
    // The run itself is still active until its journal is torn down.
    assert!(Path::new(journal::STATE_DIR).join(&id).exists());
    assert!(journal.teardown().is_clean());
    assert_gone(journal.path(), x, &run_dir, &id);
}
