//! Local control: each node is a network namespace on this machine, and
//! commands run through `ip netns exec NS ...` (which execs in place, so a
//! spawned process's PID is the program's own).
//!
//! Also the local process primitives everything else uses: reading a
//! process's start time from `/proc/PID/stat` and signalling a PID only if it
//! still belongs to the process that started then (via a pidfd, so the check
//! and the signal cannot race a PID reuse).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;

use super::{Output, PauseSteps, ProcessHandle, Remote, SpawnSpec};
use crate::journal::{Journal, Undo};

/// The fields of `/proc/PID/stat` the harness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, T (stopped), Z (zombie), ...
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        // fields[0] is field 3, so field 22 is fields[19].
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
}

/// Start time of `pid` (field 22 of `/proc/PID/stat`), if it exists.
pub fn process_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start_time)
}

/// Whether `pid` is the process that started at `start_time` and has not
/// exited (a zombie has exited).
pub fn is_running(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some(s) if s.start_time == start_time && s.state != 'Z' && s.state != 'X')
}

/// Whether `pid` is stopped (SIGSTOP) and still the process from `start_time`.
pub fn is_stopped(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some(s) if s.start_time == start_time && matches!(s.state, 'T' | 't'))
}

/// Sends `sig` to `pid` only if it is still the process that started at
/// `start_time`. `Ok(false)` if that process is gone.
pub fn signal_guarded(pid: i32, start_time: u64, sig: Signal) -> io::Result<bool> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            // Kernels before 5.3: check then kill (a tiny reuse window).
            Some(libc::ENOSYS) => {
                if process_start_time(pid) != Some(start_time) {
                    return Ok(false);
                }
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
                    Ok(()) => Ok(true),
                    Err(nix::errno::Errno::ESRCH) => Ok(false),
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            _ => Err(e),
        };
    }
    // SAFETY: pidfd_open returned a fresh descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process: if it is the one from `start_time` now,
    // the signal below reaches that one and no other.
    if process_start_time(pid) != Some(start_time) {
        return Ok(false);
    }
    // SAFETY: valid pidfd, null siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(true)
}

/// Shell prologue that holds the process until the harness has journaled its
/// PID: it reads `go` from stdin, then execs the real command (`"$@"`).
/// If the harness dies first, stdin closes and the process exits unborn.
const GATE: &str = r#"read -r go && [ "$go" = go ] || exit 97; exec "$@" </dev/null"#;

type ExitRx = watch::Receiver<Option<Option<i32>>>;

/// Runs commands in the network namespace of each node.
#[derive(Debug)]
pub struct NetnsRemote {
    journal: Arc<Journal>,
    /// node id -> namespace name.
    namespaces: BTreeMap<String, String>,
    exec_timeout: Duration,
    /// Exit statuses reported by reaper tasks, by (pid, start time).
    exits: Mutex<HashMap<(i32, u64), ExitRx>>,
    /// Journal steps that resume processes we stopped.
    paused: PauseSteps<(i32, u64)>,
}

impl NetnsRemote {
    pub fn new(journal: Arc<Journal>, namespaces: BTreeMap<String, String>) -> NetnsRemote {
        NetnsRemote {
            journal,
            namespaces,
            exec_timeout: Duration::from_secs(60),
            exits: Mutex::new(HashMap::new()),
            paused: PauseSteps::default(),
        }
    }

    /// The namespace of `node`.
    pub fn namespace(&self, node: &str) -> Result<&str> {
        self.namespaces
            .get(node)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("unknown node `{node}`"))
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    fn settle_exit(&self, handle: &ProcessHandle) {
        let key = (handle.pid, handle.start_time);
        self.exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.paused.exited(&self.journal, &key, handle.undo);
    }
}

impl Remote for NetnsRemote {
    async fn exec_with_stdin(&self, node: &str, argv: &[String], stdin: Vec<u8>) -> Result<Output> {
        let ns = self.namespace(node)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(argv)
            .stdin(if stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = || format!("`{}` on {node}", argv.join(" "));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", what()))?;
        if let Some(mut pipe) = child.stdin.take() {
            tokio::spawn(async move {
                let _ = pipe.write_all(&stdin).await;
            });
        }
        let out = tokio::time::timeout(self.exec_timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("{} timed out after {:?}", what(), self.exec_timeout))?
            .with_context(what)?;
        Ok(Output {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn spawn(&self, node: &str, spec: &SpawnSpec) -> Result<ProcessHandle> {
        let ns = self.namespace(node)?;
        if spec.argv.is_empty() {
            bail!("empty command for {}", spec.label);
        }
        for (k, _) in &spec.env {
            if k.is_empty() || k.contains('=') {
                bail!("invalid environment variable name `{k}` for {}", spec.label);
            }
        }
        if let Some(parent) = spec.log_file.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create log directory `{}`", parent.display()))?;
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_file)
            .with_context(|| format!("cannot open log `{}`", spec.log_file.display()))?;
        {
            use std::io::Write;
            let _ = writeln!(
                log,
                "=== harness: starting {}: {}",
                spec.label,
                spec.argv.join(" ")
            );
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GATE)
            .arg("rsh-gate")
            .args(["ip", "netns", "exec", ns, "/usr/bin/env"])
            .args(spec.env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(&spec.argv)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a Ctrl-C to the harness's terminal does not
            // reach nodes; teardown stops them in order.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", spec.label))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", spec.label))? as i32;
        // Not yet reaped (we hold the child), so /proc/PID is there.
        let start_time = process_start_time(pid);
        let journaled = start_time
            .ok_or_else(|| anyhow!("no /proc entry for pid {pid}"))
            .and_then(|st| {
                self.journal.push(Undo::KillProcess {
                    pid,
                    start_time: st,
                    label: spec.label.clone(),
                })
            });
        let (start_time, undo) = match (start_time, journaled) {
            (Some(st), Ok(id)) => (st, id),
            (_, Err(e)) => {
                // The gate never opened: the command never ran.
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(e.context(format!("cannot journal {}", spec.label)));
            }
            (None, Ok(_)) => unreachable!("journaled without a start time"),
        };
        let mut gate = child.stdin.take().expect("stdin is piped");
        let opened = gate.write_all(b"go\n").await;
        drop(gate);
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code());
            let _ = tx.send(Some(code));
        });
        self.exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((pid, start_time), rx);
        let handle = ProcessHandle {
            node: node.to_string(),
            label: spec.label.clone(),
            pid,
            start_time,
            undo,
        };
        opened.with_context(|| format!("{} exited before it was released", spec.label))?;
        tracing::debug!(label = %spec.label, pid, "spawned");
        Ok(handle)
    }

    async fn signal(&self, handle: &ProcessHandle, sig: Signal) -> Result<bool> {
        let key = (handle.pid, handle.start_time);
        if sig == Signal::SIGSTOP {
            if !is_running(handle.pid, handle.start_time) {
                return Ok(false);
            }
            self.paused
                .before_stop(&self.journal, key, || Undo::ResumeProcess {
                    pid: handle.pid,
                    start_time: handle.start_time,
                })?;
        }
        let delivered = signal_guarded(handle.pid, handle.start_time, sig).with_context(|| {
            format!("cannot send {sig} to {} (pid {})", handle.label, handle.pid)
        })?;
        if sig == Signal::SIGSTOP && delivered {
            // Stopping every thread takes a moment; return once it has, so a
            // pause nemesis's fault is in effect when it says so.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !is_stopped(handle.pid, handle.start_time) {
                if !is_running(handle.pid, handle.start_time) {
                    return Ok(false);
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{} (pid {}) did not stop within 5 s of SIGSTOP",
                        handle.label,
                        handle.pid
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if sig == Signal::SIGCONT && delivered {
            self.paused.resumed(&self.journal, &key)?;
        }
        Ok(delivered)
    }

    async fn is_alive(&self, handle: &ProcessHandle) -> bool {
        is_running(handle.pid, handle.start_time)
    }

    async fn is_stopped(&self, handle: &ProcessHandle) -> bool {
        is_stopped(handle.pid, handle.start_time)
    }

    async fn wait_exit(&self, handle: &ProcessHandle, timeout: Duration) -> bool {
        let key = (handle.pid, handle.start_time);
        let rx = self
            .exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let deadline = Instant::now() + timeout;
        if let Some(mut rx) = rx {
            // Err(_) = the reaper is gone (runtime shutting down): poll instead.
            if let Ok(Ok(_)) = tokio::time::timeout(timeout, rx.wait_for(|v| v.is_some())).await {
                self.settle_exit(handle);
                return true;
            }
        }
        while is_running(handle.pid, handle.start_time) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.settle_exit(handle);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 30 0 987654 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn own_process_is_running_and_guard_rejects_wrong_start_time() {
        let me = std::process::id() as i32;
        let st = process_start_time(me).unwrap();
        assert!(is_running(me, st));
        assert!(!is_running(me, st + 1));
        // Signal 0 is not in `Signal`; SIGCONT to ourselves is harmless.
        assert!(signal_guarded(me, st, Signal::SIGCONT).unwrap());
        assert!(!signal_guarded(me, st + 1, Signal::SIGKILL).unwrap());
        assert!(signal_guarded(0, 0, Signal::SIGKILL).is_err());
    }
}
