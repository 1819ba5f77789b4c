//! Remote control: each node is a host reached over SSH, through the system's
//! OpenSSH with one multiplexed master connection per host (the `openssh`
//! crate, process-mux), so keys, agents and `~/.ssh/config` work as users
//! expect.
//!
//! Nothing here reads this machine's `/proc` or filesystem on a node's
//! behalf: processes are started detached behind a gate and identified by
//! PID and start time read on the host ([`super::posix`]), signals are
//! guarded by that start time on the host, and every file of the run lives
//! under the host's own `base_dir/<run-id>/`.
//!
//! The cleanup journal replays remote steps with a plain `ssh` command
//! ([`run_blocking`]) built from the [`SshTarget`] stored in the step, so
//! `harness clean` needs no live session.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use openssh::{ControlPersist, KnownHosts as SshKnownHosts, Session, SessionBuilder};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::posix::{self, GONE};
use super::{Output, PauseSteps, ProcessHandle, Remote, SpawnSpec};
use crate::hosts::{Host, Hosts, KnownHosts};
use crate::journal::{Journal, Undo};

/// How long connecting to a host may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A master connection left by a killed harness exits after this much idle time.
const MASTER_IDLE_SECS: usize = 60;

/// Everything needed to reach one host with `ssh`: stored in journal steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    pub node: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub user: String,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub sudo: bool,
    pub known_hosts: KnownHosts,
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
}

impl SshTarget {
    pub fn new(host: &Host, hosts: &Hosts) -> SshTarget {
        SshTarget {
            node: host.node.clone(),
            address: host.address,
            port: host.port,
            user: host.user.clone(),
            key: host.key.clone(),
            sudo: host.sudo,
            known_hosts: hosts.known_hosts,
            known_hosts_file: hosts.known_hosts_file.clone(),
        }
    }

    /// `n2 (root@10.0.0.2:22)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}@{}:{})",
            self.node, self.user, self.address, self.port
        )
    }

    /// `argv` as the host runs it (behind `sudo -n` if asked).
    pub fn wrap(&self, argv: &[String]) -> Vec<String> {
        if self.sudo {
            let mut v = super::argv(&["sudo", "-n", "--"]);
            v.extend(argv.iter().cloned());
            v
        } else {
            argv.to_vec()
        }
    }

    /// Options and destination for a plain `ssh` (no master connection).
    pub fn ssh_args(&self) -> Vec<String> {
        let mut v = super::argv(&[
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
            "-o",
            &format!("StrictHostKeyChecking={}", self.known_hosts.ssh_option()),
            "-p",
            &self.port.to_string(),
            "-l",
            &self.user,
        ]);
        if let Some(f) = &self.known_hosts_file {
            v.push("-o".into());
            v.push(format!("UserKnownHostsFile={}", f.display()));
        }
        if let Some(k) = &self.key {
            v.extend(super::argv(&["-o", "IdentitiesOnly=yes", "-i"]));
            v.push(k.display().to_string());
        }
        v.push(self.address.to_string());
        v
    }

    fn builder(&self, control_dir: &Path) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.user(self.user.clone())
            .port(self.port)
            .connect_timeout(CONNECT_TIMEOUT)
            .server_alive_interval(Duration::from_secs(5))
            .control_directory(control_dir)
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(MASTER_IDLE_SECS).expect("non-zero"),
            ))
            .known_hosts_check(match self.known_hosts {
                KnownHosts::Strict => SshKnownHosts::Strict,
                KnownHosts::Add => SshKnownHosts::Add,
                KnownHosts::Accept => SshKnownHosts::Accept,
            });
        if let Some(k) = &self.key {
            b.keyfile(k);
        }
        if let Some(f) = &self.known_hosts_file {
            b.user_known_hosts_file(f);
        }
        b
    }

    /// Opens the master connection, its socket in a fresh folder in
    /// `control_dir`.
    pub async fn connect(&self, control_dir: &Path) -> Result<Session> {
        self.builder(control_dir)
            .connect(self.address.to_string())
            .await
            .map_err(|e| anyhow!("{}: {}", self.describe(), ssh_error(&e)))
    }
}

/// An SSH error with its cause (the ssh client's own words).
fn ssh_error(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !c.trim().is_empty() {
            s.push_str(": ");
            s.push_str(c.trim());
        }
        src = cause.source();
    }
    s
}

/// Runs `argv` on `target` with a plain `ssh`, blocking (journal replay).
/// `Ok(Output)` whatever the command's exit; `Err` if ssh could not run or
/// could not reach the host (exit 255), or on timeout.
pub fn run_blocking(target: &SshTarget, argv: &[String], timeout: Duration) -> Result<Output> {
    let mut child = std::process::Command::new("ssh")
        .args(target.ssh_args())
        .arg("--")
        .arg(posix::ssh_command_line(&target.wrap(argv)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ssh`")?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("ssh to {} timed out after {timeout:?}", target.describe());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output()?;
    if out.status.code() == Some(255) {
        bail!(
            "ssh to {}: {}",
            target.describe(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Output {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Connects to every host at once and runs `true`; the error names each
/// host that cannot be reached with SSH's own words. Changes nothing.
pub async fn probe(hosts: &Hosts) -> Result<()> {
    let mut tasks = JoinSet::new();
    for h in &hosts.hosts {
        let t = SshTarget::new(h, hosts);
        tasks.spawn(async move {
            let r = async {
                let s = t.connect(&std::env::temp_dir()).await?;
                let out = s
                    .command("true")
                    .output()
                    .await
                    .map_err(|e| anyhow!("{}: {}", t.describe(), ssh_error(&e)))?;
                if !out.status.success() {
                    bail!("{}: `true` failed", t.describe());
                }
                let _ = s.close().await;
                Ok(())
            }
            .await;
            (t.node.clone(), r)
        });
    }
    let mut errors = BTreeMap::new();
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok((_, Ok(()))) => {}
            Ok((node, Err(e))) => {
                errors.insert(node, format!("{e:#}"));
            }
            Err(e) => {
                errors.insert(String::new(), format!("probe task failed: {e}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!(
            "cannot reach {} of {} hosts over SSH:\n  {}\nhint: check address, port, user and key in {}",
            errors.len(),
            hosts.hosts.len(),
            errors.into_values().collect::<Vec<_>>().join("\n  "),
            hosts.path.display()
        )
    }
}

struct SshNode {
    target: SshTarget,
    session: Session,
    /// The run's folder on the host.
    run_dir: PathBuf,
}

/// Runs commands on hosts over SSH.
pub struct SshRemote {
    journal: Arc<Journal>,
    nodes: BTreeMap<String, SshNode>,
    exec_timeout: Duration,
    /// Journal steps that resume processes we stopped, by (node, pid, start).
    paused: PauseSteps<(String, i32, u64)>,
    gates: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SshRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRemote")
            .field(
                "nodes",
                &self
                    .nodes
                    .values()
                    .map(|n| n.target.describe())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SshRemote {
    /// Connects to every host (at once). The run's folder on each host is
    /// `base_dir/<run_id>`.
    pub async fn connect(journal: Arc<Journal>, hosts: &Hosts) -> Result<SshRemote> {
        let run_id = journal.run_id().to_string();
        // The master sockets live in a folder of the run's own (short: a
        // socket path has at most 108 bytes), removed by the journal.
        let control_dir = journal
            .state_dir()
            .join("ssh")
            .join(crate::net::iptables::remote_chain_name(&run_id).to_lowercase());
        journal.push(Undo::RemoveDir {
            path: control_dir.clone(),
        })?;
        std::fs::create_dir_all(&control_dir)
            .with_context(|| format!("cannot create `{}`", control_dir.display()))?;
        let mut tasks = JoinSet::new();
        for h in &hosts.hosts {
            let t = SshTarget::new(h, hosts);
            let run_dir = h.run_dir(&run_id);
            let dir = control_dir.clone();
            tasks.spawn(async move {
                let s = t.connect(&dir).await;
                (t, run_dir, s)
            });
        }
        let mut nodes = BTreeMap::new();
        let mut errors = Vec::new();
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok((target, run_dir, Ok(session))) => {
                    nodes.insert(
                        target.node.clone(),
                        SshNode {
                            target,
                            session,
                            run_dir,
                        },
                    );
                }
                Ok((_, _, Err(e))) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(format!("connect task failed: {e}")),
            }
        }
        if !errors.is_empty() {
            errors.sort();
            bail!("cannot reach hosts over SSH:\n  {}", errors.join("\n  "));
        }
        Ok(SshRemote {
            journal,
            nodes,
            exec_timeout: Duration::from_secs(120),
            paused: PauseSteps::default(),
            gates: Default::default(),
        })
    }

    /// Asks every master connection to exit now (`ssh -O exit`), so none
    /// outlives the run; commands after this fail.
    pub async fn close_masters(&self) {
        let mut tasks = JoinSet::new();
        for n in self.nodes.values() {
            let socket = n.session.control_socket().to_path_buf();
            let dest = n.target.address.to_string();
            tasks.spawn(async move {
                let _ = tokio::process::Command::new("ssh")
                    .arg("-S")
                    .arg(socket)
                    .args(["-o", "BatchMode=yes", "-O", "exit", &dest])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    fn node(&self, node: &str) -> Result<&SshNode> {
        self.nodes
            .get(node)
            .ok_or_else(|| anyhow!("unknown node `{node}`"))
    }

    pub fn target(&self, node: &str) -> Result<&SshTarget> {
        Ok(&self.node(node)?.target)
    }

    /// The run's folder on `node`'s host.
    pub fn run_dir(&self, node: &str) -> Result<&Path> {
        Ok(&self.node(node)?.run_dir)
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Runs a [`posix::PROC`] action for `handle`; its exit code.
    async fn proc(&self, handle: &ProcessHandle, action: &str, arg: Option<&str>) -> Result<i32> {
        let out = self
            .exec(
                &handle.node,
                &posix::proc_argv(action, handle.pid, handle.start_time, arg),
            )
            .await?;
        out.status
            .ok_or_else(|| anyhow!("process check on {} killed by a signal", handle.node))
    }

    fn settle_exit(&self, handle: &ProcessHandle) {
        let key = (handle.node.clone(), handle.pid, handle.start_time);
        self.paused.exited(&self.journal, &key, handle.undo);
    }
}

fn signal_name(sig: Signal) -> &'static str {
    sig.as_str().trim_start_matches("SIG")
}

impl Remote for SshRemote {
    async fn exec_with_stdin(&self, node: &str, argv: &[String], stdin: Vec<u8>) -> Result<Output> {
        let n = self.node(node)?;
        let argv = n.target.wrap(argv);
        let Some((prog, args)) = argv.split_first() else {
            bail!("empty command for {node}");
        };
        let what = || {
            let mut s = argv.join(" ");
            if s.len() > 80 {
                let mut cut = 80;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push_str("...");
            }
            format!("`{s}` on {}", n.target.describe())
        };
        let mut cmd = n.session.command(prog.as_str());
        cmd.args(args)
            .stdin(if stdin.is_empty() {
                openssh::Stdio::null()
            } else {
                openssh::Stdio::piped()
            })
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let run = async {
            let mut child = cmd
                .spawn()
                .await
                .map_err(|e| anyhow!("cannot run {}: {}", what(), ssh_error(&e)))?;
            if let Some(mut pipe) = child.stdin().take() {
                let feed = async move {
                    let r = pipe.write_all(&stdin).await;
                    let _ = pipe.shutdown().await;
                    r
                };
                // Feed stdin while the output is collected.
                let (fed, out) = tokio::join!(feed, child.wait_with_output());
                fed.with_context(|| format!("cannot send input to {}", what()))?;
                out.map_err(|e| anyhow!("{}: {}", what(), ssh_error(&e)))
            } else {
                child
                    .wait_with_output()
                    .await
                    .map_err(|e| anyhow!("{}: {}", what(), ssh_error(&e)))
            }
        };
        let out = tokio::time::timeout(self.exec_timeout, run)
            .await
            .map_err(|_| anyhow!("{} timed out after {:?}", what(), self.exec_timeout))??;
        Ok(Output {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn spawn(&self, node: &str, spec: &SpawnSpec) -> Result<ProcessHandle> {
        let n = self.node(node)?;
        if spec.argv.is_empty() {
            bail!("empty command for {}", spec.label);
        }
        let mut cmd = super::argv(&["env"]);
        for (k, v) in &spec.env {
            if k.is_empty() || k.contains('=') {
                bail!("invalid environment variable name `{k}` for {}", spec.label);
            }
            cmd.push(format!("{k}={v}"));
        }
        cmd.extend(spec.argv.iter().cloned());
        let seq = self.gates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let gate = n.run_dir.join("gates").join(format!("{seq}"));
        self.exec(
            node,
            &super::argv(&[
                "sh",
                "-c",
                r#"mkdir -p "$(dirname "$1")" "$(dirname "$3")" && printf '%s\n' "$2" >>"$1""#,
                "log",
                &spec.log_file.display().to_string(),
                &format!(
                    "=== harness: starting {}: {}",
                    spec.label,
                    spec.argv.join(" ")
                ),
                &gate.display().to_string(),
            ]),
        )
        .await?
        .check(&format!("preparing the log of {}", spec.label))?;
        let out = self
            .exec(node, &posix::start_argv(&gate, &spec.log_file, &cmd))
            .await?
            .check(&format!("starting {} on {node}", spec.label))?;
        let (pid, start_time) = posix::parse_started(&out.stdout).ok_or_else(|| {
            anyhow!(
                "starting {} on {node}: unexpected output `{}`",
                spec.label,
                out.stdout.trim()
            )
        })?;
        let undo = match self.journal.push(Undo::RemoteKillProcess {
            host: n.target.clone(),
            pid,
            start_time,
            label: spec.label.clone(),
        }) {
            Ok(id) => id,
            Err(e) => {
                // The gate never opens; the process gives up unborn.
                let _ = self
                    .exec(node, &posix::proc_argv("kill", pid, start_time, None))
                    .await;
                return Err(e.context(format!("cannot journal {}", spec.label)));
            }
        };
        self.exec(node, &super::argv(&["touch", &gate.display().to_string()]))
            .await?
            .check(&format!("releasing {} on {node}", spec.label))?;
        tracing::debug!(label = %spec.label, node, pid, "spawned over ssh");
        Ok(ProcessHandle {
            node: node.to_string(),
            label: spec.label.clone(),
            pid,
            start_time,
            undo,
        })
    }

    async fn signal(&self, handle: &ProcessHandle, sig: Signal) -> Result<bool> {
        let n = self.node(&handle.node)?;
        let key = (handle.node.clone(), handle.pid, handle.start_time);
        if sig == Signal::SIGSTOP {
            if !self.is_alive(handle).await {
                return Ok(false);
            }
            self.paused
                .before_stop(&self.journal, key, || Undo::RemoteResumeProcess {
                    host: n.target.clone(),
                    pid: handle.pid,
                    start_time: handle.start_time,
                })?;
            return match self.proc(handle, "stop", None).await? {
                0 => Ok(true),
                GONE => Ok(false),
                code => bail!(
                    "{} (pid {} on {}) did not stop within 5 s of SIGSTOP (exit {code})",
                    handle.label,
                    handle.pid,
                    handle.node
                ),
            };
        }
        let delivered = match self.proc(handle, "signal", Some(signal_name(sig))).await? {
            0 => true,
            GONE => false,
            code => bail!(
                "cannot send {sig} to {} (pid {} on {}): exit {code}",
                handle.label,
                handle.pid,
                handle.node
            ),
        };
        if sig == Signal::SIGCONT && delivered {
            self.paused.resumed(&self.journal, &key)?;
        }
        Ok(delivered)
    }

    async fn is_alive(&self, handle: &ProcessHandle) -> bool {
        matches!(self.proc(handle, "alive", None).await, Ok(0))
    }

    async fn is_stopped(&self, handle: &ProcessHandle) -> bool {
        matches!(self.proc(handle, "stopped", None).await, Ok(0))
    }

    async fn wait_exit(&self, handle: &ProcessHandle, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // One round trip waits up to 2 s on the host.
            let ms = left.min(Duration::from_secs(2)).as_millis().to_string();
            match self.proc(handle, "wait", Some(&ms)).await {
                Ok(0) => {
                    self.settle_exit(handle);
                    return true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("waiting for {}: {e:#}", handle.label);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            node: "n2".into(),
            address: Ipv4Addr::new(192, 168, 56, 12),
            port: 2222,
            user: "vagrant".into(),
            key: Some("/k/id".into()),
            sudo: true,
            known_hosts: KnownHosts::Accept,
            known_hosts_file: Some("/k/known".into()),
        }
    }

    #[test]
    fn plain_ssh_arguments() {
        let t = target();
        let args = t.ssh_args().join(" ");
        for part in [
            "-T",
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "-p 2222",
            "-l vagrant",
            "UserKnownHostsFile=/k/known",
            "IdentitiesOnly=yes -i /k/id",
        ] {
            assert!(args.contains(part), "{part} missing: {args}");
        }
        assert!(args.ends_with("192.168.56.12"), "{args}");
        assert_eq!(t.describe(), "n2 (vagrant@192.168.56.12:2222)");
        assert_eq!(
            t.wrap(&super::super::argv(&["kill", "1"])),
            ["sudo", "-n", "--", "kill", "1"]
        );
        let mut plain = t.clone();
        plain.sudo = false;
        assert_eq!(plain.wrap(&super::super::argv(&["x"])), ["x"]);
    }

    #[test]
    fn targets_roundtrip_in_the_journal() {
        let t = target();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<SshTarget>(&json).unwrap(), t);
    }

    /// What each nemesis sends to a host: the exact remote command lines.
    #[test]
    fn nemesis_commands_over_ssh() {
        let t = target();
        let line = |argv: Vec<String>| posix::ssh_command_line(&t.wrap(&argv));
        let tail = |argv: Vec<String>| argv[3..].join(" ");
        // kill-leader: SIGKILL by PID, guarded by the start time on the host.
        let kill = posix::proc_argv("signal", 4242, 987_654, Some(signal_name(Signal::SIGKILL)));
        assert_eq!(tail(kill.clone()), "proc signal 4242 987654 KILL");
        assert!(line(kill).starts_with("sudo -n -- sh -c '"));
        // pause-leader: SIGSTOP and wait until stopped; resume with SIGCONT.
        assert_eq!(
            tail(posix::proc_argv("stop", 4242, 987_654, None)),
            "proc stop 4242 987654"
        );
        assert_eq!(
            tail(posix::proc_argv(
                "signal",
                4242,
                987_654,
                Some(signal_name(Signal::SIGCONT))
            )),
            "proc signal 4242 987654 CONT"
        );
        // partition-leader: the run's chain replaced atomically on each host.
        let script = crate::net::iptables::restore_script(
            "RSH-0badc0de",
            &[Ipv4Addr::new(192, 168, 56, 11)],
            &[],
        );
        assert_eq!(
            script,
            "*filter\n:RSH-0badc0de - [0:0]\n-A RSH-0badc0de -s 192.168.56.11/32 -j DROP\nCOMMIT\n"
        );
        // teardown of a partition chain.
        let del = posix::delete_chain_argv(
            "filter",
            "RSH-0badc0de",
            &[super::super::argv(&["INPUT", "-j", "RSH-0badc0de"])],
        );
        assert!(line(del).ends_with("delete filter RSH-0badc0de 'INPUT -j RSH-0badc0de'"));
        // clock, both methods.
        let f = Path::new("/var/lib/rapidstore-harness/r1/clock/n2.faketime");
        assert_eq!(
            tail(super::super::clock::faketime_set(f, 5000)),
            "faketime +5.000 /var/lib/rapidstore-harness/r1/clock/n2.faketime"
        );
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            line(super::super::clock::settime_set(now, -3000)),
            "sudo -n -- date -u -s @1699999997.000000000"
        );
    }

    #[test]
    fn signal_names_for_kill() {
        assert_eq!(signal_name(Signal::SIGKILL), "KILL");
        assert_eq!(signal_name(Signal::SIGCONT), "CONT");
        assert_eq!(signal_name(Signal::SIGTERM), "TERM");
    }
}
