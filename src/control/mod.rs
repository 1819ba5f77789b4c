//! Control: how the harness runs a command on a node.
//!
//! [`Remote`] is the seam (Jepsen's `control/core.clj` protocol): run a
//! command and wait for it, start a detached process, signal it by PID, ask
//! whether it lives, write a file. [`netns::NetnsRemote`] implements it for
//! nodes that are network namespaces on this machine, [`ssh::SshRemote`]
//! for hosts reached over SSH; [`Control`] is either. Both run the same
//! shell snippets ([`posix`]), so db, nemesis and log code is shared.
//! [`clock`] builds the commands that move a node's clock.

pub mod clock;
pub mod netns;
pub mod posix;
pub mod ssh;

use std::collections::hash_map::{Entry, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::journal::{Journal, Undo, UndoId};

pub use netns::NetnsRemote;
pub use ssh::SshRemote;

/// The result of a command run to completion on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` if killed by a signal.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// `Ok(self)` if the command succeeded, else an error naming `what`.
    pub fn check(self, what: &str) -> Result<Output> {
        if self.success() {
            Ok(self)
        } else {
            bail!(
                "{what} failed (exit {}): {}",
                self.status
                    .map_or_else(|| "by signal".to_string(), |s| s.to_string()),
                self.stderr.trim()
            )
        }
    }
}

/// How to start a long-running process on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// Short name for logs and the journal, e.g. `zookeeper n1`.
    pub label: String,
    pub argv: Vec<String>,
    /// Extra environment (e.g. `LD_PRELOAD` for libfaketime).
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log_file: PathBuf,
}

/// A process the harness started, identified by PID and start time so a
/// recycled PID is never signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandle {
    pub node: String,
    pub label: String,
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat` (clock ticks since boot).
    pub start_time: u64,
    /// The journal step that kills it.
    pub undo: UndoId,
}

/// The journal steps that resume processes a control stopped, by process
/// (`K` names a process the way the control does). Both controls keep one:
/// a step is journaled before the first SIGSTOP, and resolved once the
/// process is resumed or has exited.
#[derive(Debug)]
pub struct PauseSteps<K>(Mutex<HashMap<K, UndoId>>);

impl<K: std::hash::Hash + Eq> Default for PauseSteps<K> {
    fn default() -> Self {
        PauseSteps(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> PauseSteps<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, UndoId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a SIGSTOP: journal `undo` (which resumes the process) unless
    /// a step for `key` is already there.
    pub fn before_stop(
        &self,
        journal: &Journal,
        key: K,
        undo: impl FnOnce() -> Undo,
    ) -> Result<()> {
        if let Entry::Vacant(slot) = self.lock().entry(key) {
            slot.insert(journal.push(undo())?);
        }
        Ok(())
    }

    /// After a delivered SIGCONT: the step is done.
    pub fn resumed(&self, journal: &Journal, key: &K) -> Result<()> {
        let id = self.lock().remove(key);
        match id {
            Some(id) => journal.resolve(id),
            None => Ok(()),
        }
    }

    /// The process has exited: its pause step (if any) and `exit_step`
    /// (the one that would kill it) are done.
    pub fn exited(&self, journal: &Journal, key: &K, exit_step: UndoId) {
        let paused = self.lock().remove(key);
        for id in paused.into_iter().chain([exit_step]) {
            if let Err(e) = journal.resolve(id) {
                tracing::warn!("{e:#}");
            }
        }
    }
}

/// How the harness runs commands on nodes.
pub trait Remote: Send + Sync {
    /// Runs `argv` on `node` to completion, feeding it `stdin`.
    fn exec_with_stdin(
        &self,
        node: &str,
        argv: &[String],
        stdin: Vec<u8>,
    ) -> impl Future<Output = Result<Output>> + Send;

    /// Runs `argv` on `node` to completion.
    fn exec(&self, node: &str, argv: &[String]) -> impl Future<Output = Result<Output>> + Send {
        self.exec_with_stdin(node, argv, Vec::new())
    }

    /// Writes `contents` to `path` on `node` (creating its folder), with
    /// `mode` (e.g. `755`) if given. Through a command on the node, never
    /// this machine's filesystem.
    fn write_file(
        &self,
        node: &str,
        path: &Path,
        contents: Vec<u8>,
        mode: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send {
        let argv = posix::write_argv(path, mode);
        let what = format!("writing {} on {node}", path.display());
        async move {
            self.exec_with_stdin(node, &argv, contents)
                .await?
                .check(&what)
                .map(drop)
        }
    }

    /// Creates `dir` (and its parents) on `node`.
    fn mkdir(&self, node: &str, dir: &Path) -> impl Future<Output = Result<()>> + Send {
        let argv = argv(&["mkdir", "-p", &dir.display().to_string()]);
        let what = format!("mkdir {} on {node}", dir.display());
        async move { self.exec(node, &argv).await?.check(&what).map(drop) }
    }

    /// Starts a detached process on `node`. It is journaled (to be killed at
    /// teardown) before it can run, is not in the harness's process group
    /// (a Ctrl-C to the terminal does not reach it) and is reaped when it exits.
    fn spawn(
        &self,
        node: &str,
        spec: &SpawnSpec,
    ) -> impl Future<Output = Result<ProcessHandle>> + Send;

    /// Sends `sig` if the process is still the one in `handle`. `Ok(false)`
    /// if it is gone. SIGSTOP is journaled first (teardown resumes it) and
    /// returns once the process is stopped.
    fn signal(
        &self,
        handle: &ProcessHandle,
        sig: Signal,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether the process is running (a zombie is not).
    fn is_alive(&self, handle: &ProcessHandle) -> impl Future<Output = bool> + Send;

    /// Whether the process is stopped (SIGSTOP), read on its node.
    fn is_stopped(&self, handle: &ProcessHandle) -> impl Future<Output = bool> + Send;

    /// Waits up to `timeout` for the process to exit; true if it did. Once
    /// it has, its journal step is resolved.
    fn wait_exit(
        &self,
        handle: &ProcessHandle,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send;
}

/// The concrete control in use; dispatches to one implementation.
#[derive(Debug, Clone)]
pub enum Control {
    /// Nodes are network namespaces on this machine.
    Local(std::sync::Arc<NetnsRemote>),
    /// Nodes are hosts reached over SSH.
    Ssh(std::sync::Arc<SshRemote>),
}

impl Control {
    /// The run's folder on `node`; `None` when nodes share this machine's
    /// filesystem (local namespaces), where node files go in the run folder.
    pub fn node_dir(&self, node: &str) -> Option<PathBuf> {
        match self {
            Control::Local(_) => None,
            Control::Ssh(r) => r.run_dir(node).ok().map(Path::to_path_buf),
        }
    }

    /// Whether nodes are remote hosts.
    pub fn is_remote(&self) -> bool {
        matches!(self, Control::Ssh(_))
    }

    /// The journal step that sets `node`'s clock back after a `settime`
    /// clock fault. Only hosts over SSH have a clock of their own.
    pub fn reset_clock_undo(&self, node: &str) -> Result<Undo> {
        match self {
            Control::Local(_) => bail!(
                "clock method `settime` needs hosts of their own (--hosts); local nodes share this machine's clock"
            ),
            Control::Ssh(r) => Ok(Undo::RemoteResetClock {
                host: r.target(node)?.clone(),
            }),
        }
    }

    /// The journal step that removes the run's iptables `chain` (and its
    /// `hook_rules`) from `node`.
    pub fn delete_chain_undo(
        &self,
        node: &str,
        table: &str,
        chain: &str,
        hook_rules: Vec<Vec<String>>,
    ) -> Result<Undo> {
        Ok(match self {
            Control::Local(r) => Undo::DeleteChain {
                netns: Some(r.namespace(node)?.to_string()),
                table: table.into(),
                chain: chain.into(),
                hook_rules,
            },
            Control::Ssh(r) => Undo::RemoteDeleteChain {
                host: r.target(node)?.clone(),
                table: table.into(),
                chain: chain.into(),
                hook_rules,
            },
        })
    }
}

impl Remote for Control {
    async fn exec_with_stdin(&self, node: &str, argv: &[String], stdin: Vec<u8>) -> Result<Output> {
        match self {
            Control::Local(r) => r.exec_with_stdin(node, argv, stdin).await,
            Control::Ssh(r) => r.exec_with_stdin(node, argv, stdin).await,
        }
    }

    async fn spawn(&self, node: &str, spec: &SpawnSpec) -> Result<ProcessHandle> {
        match self {
            Control::Local(r) => r.spawn(node, spec).await,
            Control::Ssh(r) => r.spawn(node, spec).await,
        }
    }

    async fn signal(&self, handle: &ProcessHandle, sig: Signal) -> Result<bool> {
        match self {
            Control::Local(r) => r.signal(handle, sig).await,
            Control::Ssh(r) => r.signal(handle, sig).await,
        }
    }

    async fn is_alive(&self, handle: &ProcessHandle) -> bool {
        match self {
            Control::Local(r) => r.is_alive(handle).await,
            Control::Ssh(r) => r.is_alive(handle).await,
        }
    }

    async fn is_stopped(&self, handle: &ProcessHandle) -> bool {
        match self {
            Control::Local(r) => r.is_stopped(handle).await,
            Control::Ssh(r) => r.is_stopped(handle).await,
        }
    }

    async fn wait_exit(&self, handle: &ProcessHandle, timeout: Duration) -> bool {
        match self {
            Control::Local(r) => r.wait_exit(handle, timeout).await,
            Control::Ssh(r) => r.wait_exit(handle, timeout).await,
        }
    }
}

/// `["a", "b"]` as owned argv.
pub fn argv<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    args.iter().map(|s| s.as_ref().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (steps journaled, steps done) in the journal file.
    fn counts(journal: &Journal) -> (usize, usize) {
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let op = |o: &str| text.matches(&format!("\"op\":\"{o}\"")).count();
        (op("undo"), op("done"))
    }

    #[test]
    fn pause_steps_journal_once_and_resolve_on_resume_or_exit() {
        let d = tempfile::tempdir().unwrap();
        let journal =
            Journal::create_in(&d.path().join("state"), &d.path().join("r"), "r-pause").unwrap();
        let steps = PauseSteps::default();
        let resume = |pid| move || Undo::ResumeProcess { pid, start_time: 9 };
        // Two SIGSTOPs of one process: one step.
        steps.before_stop(&journal, 42, resume(42)).unwrap();
        steps.before_stop(&journal, 42, resume(42)).unwrap();
        assert_eq!(counts(&journal), (1, 0));
        steps.resumed(&journal, &42).unwrap();
        assert_eq!(counts(&journal), (1, 1));
        // Resuming what was never stopped touches nothing.
        steps.resumed(&journal, &42).unwrap();
        assert_eq!(counts(&journal), (1, 1));
        // A stopped process that exits: its pause step and its kill step are done.
        let kill = journal
            .push(Undo::KillProcess {
                pid: 43,
                start_time: 9,
                label: "x".into(),
            })
            .unwrap();
        steps.before_stop(&journal, 43, resume(43)).unwrap();
        steps.exited(&journal, &43, kill);
        assert_eq!(counts(&journal), (3, 3));
    }
}
