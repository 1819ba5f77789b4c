//! End-to-end tests of `harness run --hosts`: the "hosts" are network
//! namespaces on this machine, each with its own PID namespace and its own
//! `sshd` (Debian's openssh-server, started here with keys generated here,
//! bound to the namespace's address), and the harness reaches them only
//! through SSH. Each host has its own base folder, so although they share
//! this machine's filesystem nothing relies on that. They need root, the
//! `rapidstore` binary (built by `cargo test --workspace`) and `sshd`.
//!
//!     cargo test -p harness --test ssh_e2e -- --test-threads=1 --nocapture

mod common;

use common::{
    assert_failover_measured, assert_valid, caught_lost_write, describe, harness, report, serial,
};

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::control::{NetnsRemote, Remote, SpawnSpec};
use harness::journal::Journal;
use harness::net::Network;
use serde_json::Value;

const SSHD: &str = "/usr/sbin/sshd";

fn assert_root() {
    common::assert_root();
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: apt-get install -y openssh-server"
    );
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("sshe2e-{tag}-{}-{nanos}", std::process::id())
}

/// Three "hosts": namespaces on a bridge of their own, each running sshd as
/// PID 1 of its own PID namespace (so it reaps what the harness leaves to
/// it, as init does on a real host).
struct Hosts {
    dir: tempfile::TempDir,
    journal: Arc<Journal>,
    network: Network,
    rt: tokio::runtime::Runtime,
    file: PathBuf,
}

impl Hosts {
    fn start(tag: &str, n: usize) -> Hosts {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let journal = Arc::new(Journal::create(&d.join("fixture"), &run_id(tag)).unwrap());
        let network = rt.block_on(Network::setup(&journal, n)).unwrap();
        for (key, file) in [("client", "id"), ("host", "host_key")] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(d.join(file))
                .status()
                .unwrap();
            assert!(ok.success(), "ssh-keygen failed");
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege-separation folder, as its service would make it.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let remote = NetnsRemote::new(journal.clone(), network.namespaces());
        let mut hosts = String::from(
            "# Written by tests/ssh_e2e.rs.\nversion = 1\nclock = \"faketime\"\nknown_hosts = \"add\"\nknown_hosts_file = \"known_hosts\"\n\n[defaults]\nuser = \"root\"\nkey = \"id\"\n",
        );
        for (k, node) in network.nodes().iter().enumerate() {
            let cfg = d.join(format!("sshd_{}.conf", node.id));
            std::fs::write(
                &cfg,
                format!(
                    "ListenAddress {ip}\nPort 22\nHostKey {d}/host_key\nPidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\n",
                    ip = node.ip,
                    d = d.display()
                ),
            )
            .unwrap();
            let spec = SpawnSpec {
                label: format!("sshd {}", node.id),
                argv: [
                    "unshare",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount-proc",
                    SSHD,
                    "-D",
                    "-e",
                    "-f",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([cfg.display().to_string()])
                .collect(),
                env: Vec::new(),
                log_file: d.join(format!("sshd_{}.log", node.id)),
            };
            rt.block_on(remote.spawn(&node.id, &spec)).unwrap();
            hosts.push_str(&format!(
                "\n[[host]]\nnode = \"{}\"\naddress = \"{}\"\nzookeeper = {}\nbase_dir = \"{}\"\n",
                node.id,
                node.ip,
                k < 3,
                d.join("hosts").join(&node.id).display()
            ));
        }
        let file = d.join("hosts.toml");
        std::fs::write(&file, hosts).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in network.nodes() {
            while TcpStream::connect_timeout(
                &SocketAddr::from((node.ip, 22)),
                Duration::from_millis(300),
            )
            .is_err()
            {
                assert!(
                    Instant::now() < deadline,
                    "sshd on {} never listened",
                    node.id
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Hosts {
            dir,
            journal,
            network,
            rt,
            file,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn base_dir(&self, node: &str) -> PathBuf {
        self.path().join("hosts").join(node)
    }

    fn ips(&self) -> Vec<(String, Ipv4Addr)> {
        self.network
            .nodes()
            .iter()
            .map(|n| (n.id.clone(), n.ip))
            .collect()
    }

    /// `harness run --hosts` with fast settings plus `extra`.
    fn run(&self, out: &Path, extra: &[&str]) -> (Output, PathBuf) {
        let o = harness()
            .args(["run", "--session-timeout", "2s", "--hosts"])
            .arg(&self.file)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        let dir = std::fs::canonicalize(out.join("latest"))
            .unwrap_or_else(|_| panic!("no run folder: {}", describe(&o)));
        (o, dir)
    }

    /// What run `run_id` left on any host: its folder, processes started
    /// from it, its iptables chain, its marker.
    fn leftovers(&self, run_id: &str) -> Vec<String> {
        let mut left = Vec::new();
        let chain = harness::net::iptables::remote_chain_name(run_id);
        for (node, _) in self.ips() {
            let base = self.base_dir(&node);
            let run_dir = base.join(run_id);
            if run_dir.exists() {
                left.push(format!("{node}: folder {}", run_dir.display()));
            }
            let ns = &self.network.node(&node).unwrap().netns;
            let rules = sh(&format!("ip netns exec {ns} iptables -w -S"));
            for line in rules.lines().filter(|l| l.contains(&chain)) {
                left.push(format!("{node}: iptables {line}"));
            }
            let needle = base.display().to_string();
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                let state = harness::control::netns::proc_stat(pid).map(|s| s.state);
                if cmd.contains(&needle) && state != Some('Z') {
                    left.push(format!("{node}: process {pid}: {cmd}"));
                }
            }
        }
        let sockets = Path::new("/run/rapidstore-harness/ssh").join(chain.to_lowercase());
        if sockets.exists() {
            left.push(format!("ssh control folder {}", sockets.display()));
        }
        if Path::new("/run/rapidstore-harness").join(run_id).exists() {
            left.push(format!("marker of {run_id}"));
        }
        left
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Kills each sshd (and with it its PID namespace), removes the
        // namespaces and the bridge.
        let report = self.journal.teardown();
        if !report.is_clean() {
            eprintln!("fixture teardown: {:?}", report.errors);
        }
        let _ = &self.rt;
    }
}

fn run_id_of(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// A valid run over SSH under `nemesis` with a measured failover, remote
/// logs collected, and nothing left on any host.
fn valid_run_over_ssh(tag: &str, nemesis: &str, time_limit: &str) {
    assert_root();
    let _g = serial();
    let hosts = Hosts::start(tag, 3);
    let out = tempfile::tempdir().unwrap();
    let (o, dir) = hosts.run(
        out.path(),
        &[
            "--nemesis",
            nemesis,
            "--time-limit",
            time_limit,
            "--seed",
            "7",
        ],
    );
    // Also: the heal verified on each host (process state read there, not
    // here) and teardown complete.
    let r = assert_valid(&o, &dir);
    assert_failover_measured(&r);
    for node in ["n1", "n2", "n3"] {
        for log in ["rapidstore.log", "zookeeper.log"] {
            let p = dir.join("logs").join(node).join(log);
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{} not collected: {e}", p.display()));
            assert!(!text.is_empty(), "{} is empty", p.display());
        }
    }
    let run = std::fs::read_to_string(dir.join("run.json")).unwrap();
    assert!(run.contains("\"hosts\""), "run.json records the hosts");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let action = match nemesis {
        "partition-leader" => "partition",
        "kill-leader" => "kill",
        "clock-skew" => "skew",
        _ => "pause",
    };
    assert!(
        history.contains(&format!("\"action\":\"{action}\"")),
        "no {action} step in the history"
    );
    if action == "skew" {
        // The offset was written on the host, through SSH, and RapidStore
        // there shows it.
        let steps: Vec<Value> = history
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == "nemesis" && e["action"] == "skew")
            .collect();
        assert!(!steps.is_empty());
        for e in &steps {
            let d = &e["detail"];
            assert_eq!(d["method"], "faketime", "{e}");
            let asked = d["asked_ms"].as_i64().unwrap();
            assert_ne!(asked, 0, "{e}");
            for (node, shown) in d["measured_ms"].as_object().unwrap() {
                let shown = shown
                    .as_i64()
                    .unwrap_or_else(|| panic!("{node} not measured: {e}"));
                assert!(
                    (shown - asked).abs() < 2000,
                    "{node} shows {shown} ms, asked {asked}: {e}"
                );
            }
        }
        assert!(history.contains("\"reset_clock\""), "clocks never reset");
    }
    let left = hosts.leftovers(&run_id_of(&dir));
    assert!(left.is_empty(), "left on the hosts: {left:#?}");
}

#[test]
fn partition_leader_over_ssh_is_valid() {
    valid_run_over_ssh("part", "partition-leader", "12");
}

#[test]
fn kill_leader_over_ssh_is_valid() {
    valid_run_over_ssh("kill", "kill-leader", "10");
}

/// Clock faults over SSH with `clock = "faketime"`: the offset file lives
/// in the run's folder on each host, RapidStore there runs under libfaketime.
#[test]
fn clock_skew_over_ssh_is_valid() {
    valid_run_over_ssh("clock", "clock-skew", "11");
}

#[test]
fn pause_leader_over_ssh_is_valid() {
    valid_run_over_ssh("pause", "pause-leader", "12");
}

/// The planted bug is caught over SSH as it is locally: acknowledged writes
/// lost when the leader is killed. A write must be in flight at a kill, so a
/// few runs are allowed.
#[test]
fn ack_before_replicate_is_caught_over_ssh() {
    assert_root();
    let _g = serial();
    let hosts = Hosts::start("bug", 3);
    const TRIES: usize = 4;
    for attempt in 1..=TRIES {
        let out = tempfile::tempdir().unwrap();
        let seed = attempt.to_string();
        let (o, dir) = hosts.run(
            out.path(),
            &[
                "--nemesis",
                "kill-leader",
                "--workload",
                "write-heavy",
                "--time-limit",
                "16",
                "--bug",
                "ack-before-replicate",
                "--seed",
                &seed,
            ],
        );
        let left = hosts.leftovers(&run_id_of(&dir));
        assert!(left.is_empty(), "left on the hosts: {left:#?}");
        if caught_lost_write(&o, &report(&dir), attempt) {
            return;
        }
    }
    panic!("ack-before-replicate was not caught over SSH in {TRIES} runs");
}

/// A SIGKILLed harness leaves processes, a chain and folders on the hosts;
/// `harness clean --hosts` removes exactly those.
#[test]
fn killed_run_is_cleaned_by_clean_hosts() {
    assert_root();
    let _g = serial();
    let hosts = Hosts::start("clean", 3);
    let out = tempfile::tempdir().unwrap();
    let mut child = harness()
        .args([
            "run",
            "--session-timeout",
            "2s",
            "--nemesis",
            "pause-leader",
            "--time-limit",
            "120",
            "--hosts",
        ])
        .arg(&hosts.file)
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = common::wait_for_action(out.path(), &mut child, "pause");
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = run_id_of(&dir);
    let left = hosts.leftovers(&run_id);
    assert!(
        left.iter().any(|l| l.contains("process"))
            && left.iter().any(|l| l.contains("iptables"))
            && left.iter().any(|l| l.contains("folder")),
        "a killed run should leave processes, chains and folders: {left:#?}"
    );
    let o = harness()
        .args(["clean", "--hosts"])
        .arg(&hosts.file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&run_id), "{text}");
    let left = hosts.leftovers(&run_id);
    assert!(left.is_empty(), "left after clean: {left:#?}");
    // The fixture's own run (its namespaces) was not touched.
    assert!(hosts.network.leftovers().len() > 1);
}

/// Unreachable hosts are named with SSH's own words, before anything is
/// created on any host or in the reports folder.
#[test]
fn unreachable_hosts_are_named_before_anything_changes() {
    assert_root();
    let _g = serial();
    let hosts = Hosts::start("unreach", 3);
    let text = std::fs::read_to_string(&hosts.file).unwrap();
    let broken = hosts.path().join("broken.toml");
    // n3 is the last table; its sshd listens on 22 only.
    std::fs::write(&broken, format!("{text}port = 2200\n")).unwrap();
    let out = hosts.path().join("out");
    let o = harness()
        .args(["run", "--hosts"])
        .arg(&broken)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(
        err.contains("n3 (root@") && err.contains(":2200)") && err.contains("refused"),
        "{err}"
    );
    assert!(!err.contains("n1 (root@"), "{err}");
    assert!(!out.exists(), "no run folder before the hosts answer");
    for node in ["n1", "n2", "n3"] {
        assert!(!hosts.base_dir(node).exists(), "{node} was touched");
    }
    let o = harness()
        .args(["clean", "--hosts"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
}

/// Bad hosts files are usage errors naming file and line; no root needed.
#[test]
fn bad_hosts_files_are_usage_errors_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"not-an-ip\"\nzookeeper = true\n",
            "line 4",
        ),
        ("version = 1\n[[hosts]]\nnode = \"n1\"\n", "line 2"),
        (
            "version = 1\nclock = \"settime\"\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n",
            "dedicated",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = d.path().join(format!("h{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let o = harness().args(["run", "--hosts"]).arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{}", describe(&o));
        assert!(
            err.contains(&f.display().to_string()) && err.contains(want),
            "{want}: {err}"
        );
    }
    let o = harness()
        .args(["run", "--hosts", "x.toml", "--nodes", "3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "--hosts and --nodes conflict");
}
