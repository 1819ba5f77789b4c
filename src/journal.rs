//! The cleanup journal: the exact list of what a run created, so teardown and
//! `harness clean` can remove precisely that and nothing else.
//!
//! Before the harness creates anything (namespace, link, iptables chain,
//! process, paused process, file) it appends the undo step to
//! `RUN_DIR/cleanup.journal` as one JSON line and fsyncs it. Teardown replays
//! the journal backwards; every step tolerates its target being gone already,
//! and each step that succeeds appends a `done` record, so a second replay is a
//! no-op. Errors are collected, never fatal.
//!
//! While a run is active a marker `/run/rapidstore-harness/<run_id>` names its
//! journal and the harness PID; [`clean_stale`] replays the journals of runs
//! whose harness died (a SIGKILLed run leaves its marker behind). Each record
//! is also written to `/run/rapidstore-harness/journals/<run_id>`, used when
//! the run directory is gone.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::control::netns::{is_running, process_start_time, signal_guarded};
use crate::control::posix;
use crate::control::ssh::{self, SshTarget};

/// Where active-run markers live (tmpfs: a reboot ends every run anyway).
pub const STATE_DIR: &str = "/run/rapidstore-harness";
/// The journal's file name inside the run directory.
pub const JOURNAL_FILE: &str = "cleanup.journal";
/// Subdirectory of the state dir holding subnet reservations (not markers).
pub const SUBNETS_DIR: &str = "subnets";
/// Subdirectory of the state dir holding a mirror of each active journal, so
/// `harness clean` works even if the run directory was deleted.
pub const MIRRORS_DIR: &str = "journals";

/// One step that undoes something the harness created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Undo {
    /// `ip netns del NAME`.
    DeleteNetns { name: String },
    /// `ip link del NAME` (a bridge, or the root side of a veth pair).
    DeleteLink { name: String },
    /// SIGKILL the process if it is still the one that started at `start_time`.
    KillProcess {
        pid: i32,
        start_time: u64,
        label: String,
    },
    /// SIGCONT a process the harness stopped, so none is left stopped.
    ResumeProcess { pid: i32, start_time: u64 },
    /// Delete the jump rules `hook_rules` (each `[CHAIN, match..., "-j", chain]`),
    /// then flush and delete `chain`, in `netns` (None: the root namespace).
    DeleteChain {
        netns: Option<String>,
        table: String,
        chain: String,
        hook_rules: Vec<Vec<String>>,
    },
    /// Remove a file (faketime control files and the like).
    RemoveFile { path: PathBuf },
    /// Remove a subnet reservation file, only if it still names `run_id`.
    ReleaseSubnet { path: PathBuf, run_id: String },
    /// Remove a folder the harness made for itself on this machine (the SSH
    /// control sockets of a run), with what it holds.
    RemoveDir { path: PathBuf },
    /// On a host over SSH: SIGKILL the process if it is still the one that
    /// started at `start_time` (read from the host's `/proc`).
    RemoteKillProcess {
        host: SshTarget,
        pid: i32,
        start_time: u64,
        label: String,
    },
    /// On a host over SSH: SIGCONT a process the harness stopped.
    RemoteResumeProcess {
        host: SshTarget,
        pid: i32,
        start_time: u64,
    },
    /// On a host over SSH: delete the jump rules, then flush and delete the
    /// run's own chain.
    RemoteDeleteChain {
        host: SshTarget,
        table: String,
        chain: String,
        hook_rules: Vec<Vec<String>>,
    },
    /// On a host over SSH: remove the run's own folder (`base_dir/<run-id>`,
    /// created by the run, never one that existed before).
    RemoteRemoveDir { host: SshTarget, path: PathBuf },
    /// On a host over SSH: set the clock back to this machine's wall clock
    /// (after a `settime` clock fault).
    RemoteResetClock { host: SshTarget },
}

impl fmt::Display for Undo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undo::DeleteNetns { name } => write!(f, "delete netns {name}"),
            Undo::DeleteLink { name } => write!(f, "delete link {name}"),
            Undo::KillProcess {
                pid,
                start_time,
                label,
            } => write!(f, "kill {label} (pid {pid}, start {start_time})"),
            Undo::ResumeProcess { pid, start_time } => {
                write!(f, "resume pid {pid} (start {start_time})")
            }
            Undo::DeleteChain {
                netns,
                table,
                chain,
                ..
            } => write!(
                f,
                "delete iptables chain {table}/{chain} in {}",
                netns.as_deref().unwrap_or("the root namespace")
            ),
            Undo::RemoveFile { path } => write!(f, "remove file {}", path.display()),
            Undo::ReleaseSubnet { path, .. } => {
                write!(f, "release subnet reservation {}", path.display())
            }
            Undo::RemoveDir { path } => write!(f, "remove folder {}", path.display()),
            Undo::RemoteKillProcess {
                host,
                pid,
                start_time,
                label,
            } => write!(
                f,
                "kill {label} (pid {pid}, start {start_time}) on {}",
                host.describe()
            ),
            Undo::RemoteResumeProcess {
                host,
                pid,
                start_time,
            } => write!(
                f,
                "resume pid {pid} (start {start_time}) on {}",
                host.describe()
            ),
            Undo::RemoteDeleteChain {
                host, table, chain, ..
            } => write!(
                f,
                "delete iptables chain {table}/{chain} on {}",
                host.describe()
            ),
            Undo::RemoteRemoveDir { host, path } => {
                write!(f, "remove {} on {}", path.display(), host.describe())
            }
            Undo::RemoteResetClock { host } => {
                write!(f, "reset the clock of {}", host.describe())
            }
        }
    }
}

/// What carrying out one undo step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Undone,
    AlreadyGone,
}

impl Undo {
    /// Carry out the step. Idempotent: a target that is gone is not an error.
    fn run(&self) -> std::result::Result<Outcome, String> {
        match self {
            Undo::DeleteNetns { name } => {
                if !netns_exists(name) {
                    return Ok(Outcome::AlreadyGone);
                }
                let out = run_cmd("ip", &["netns", "del", name])?;
                if out.0 || !netns_exists(name) {
                    Ok(Outcome::Undone)
                } else {
                    Err(format!("ip netns del {name}: {}", out.1))
                }
            }
            Undo::DeleteLink { name } => {
                if !link_exists(name) {
                    return Ok(Outcome::AlreadyGone);
                }
                let out = run_cmd("ip", &["link", "del", "dev", name])?;
                if out.0 || !link_exists(name) {
                    Ok(Outcome::Undone)
                } else {
                    Err(format!("ip link del {name}: {}", out.1))
                }
            }
            Undo::KillProcess {
                pid, start_time, ..
            } => kill_and_wait(*pid, *start_time),
            Undo::ResumeProcess { pid, start_time } => {
                match signal_guarded(*pid, *start_time, Signal::SIGCONT) {
                    Ok(true) => Ok(Outcome::Undone),
                    Ok(false) => Ok(Outcome::AlreadyGone),
                    Err(e) => Err(format!("SIGCONT pid {pid}: {e}")),
                }
            }
            Undo::DeleteChain {
                netns,
                table,
                chain,
                hook_rules,
            } => delete_chain(netns.as_deref(), table, chain, hook_rules),
            Undo::RemoveFile { path } => match fs::remove_file(path) {
                Ok(()) => Ok(Outcome::Undone),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::AlreadyGone),
                Err(e) => Err(format!("remove {}: {e}", path.display())),
            },
            Undo::ReleaseSubnet { path, run_id } => match fs::read_to_string(path) {
                Ok(owner) if owner.trim() == run_id => match fs::remove_file(path) {
                    Ok(()) => Ok(Outcome::Undone),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::AlreadyGone),
                    Err(e) => Err(format!("remove {}: {e}", path.display())),
                },
                // Another run's reservation (we lost the race to create it).
                Ok(_) => Ok(Outcome::AlreadyGone),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::AlreadyGone),
                Err(e) => Err(format!("read {}: {e}", path.display())),
            },
            Undo::RemoveDir { path } => match fs::remove_dir_all(path) {
                Ok(()) => Ok(Outcome::Undone),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::AlreadyGone),
                Err(e) => Err(format!("remove {}: {e}", path.display())),
            },
            Undo::RemoteKillProcess { .. }
            | Undo::RemoteResumeProcess { .. }
            | Undo::RemoteDeleteChain { .. }
            | Undo::RemoteRemoveDir { .. }
            | Undo::RemoteResetClock { .. } => self.run_remote(),
        }
    }

    /// The host a remote step acts on.
    pub fn host(&self) -> Option<&SshTarget> {
        match self {
            Undo::RemoteKillProcess { host, .. }
            | Undo::RemoteResumeProcess { host, .. }
            | Undo::RemoteDeleteChain { host, .. }
            | Undo::RemoteRemoveDir { host, .. }
            | Undo::RemoteResetClock { host } => Some(host),
            _ => None,
        }
    }

    /// A remote step's command on its host (`None` for local steps).
    pub fn remote_argv(&self) -> Option<Vec<String>> {
        Some(match self {
            Undo::RemoteKillProcess {
                pid, start_time, ..
            } => posix::proc_argv("kill", *pid, *start_time, None),
            Undo::RemoteResumeProcess {
                pid, start_time, ..
            } => posix::proc_argv("signal", *pid, *start_time, Some("CONT")),
            Undo::RemoteDeleteChain {
                table,
                chain,
                hook_rules,
                ..
            } => posix::delete_chain_argv(table, chain, hook_rules),
            Undo::RemoteRemoveDir { path, .. } => crate::control::argv(&[
                "sh",
                "-c",
                posix::REMOVE_DIR,
                "rm",
                &path.display().to_string(),
            ]),
            Undo::RemoteResetClock { .. } => {
                crate::control::clock::settime_reset(std::time::SystemTime::now())
            }
            _ => return None,
        })
    }

    fn run_remote(&self) -> std::result::Result<Outcome, String> {
        let (Some(host), Some(argv)) = (self.host(), self.remote_argv()) else {
            return Err("not a remote step".into());
        };
        if let Undo::RemoteRemoveDir { path, .. } = self {
            if !safe_run_dir(path) {
                return Err(format!("refusing to remove `{}`", path.display()));
            }
        }
        let out = ssh::run_blocking(host, &argv, Duration::from_secs(30))
            .map_err(|e| format!("{e:#}"))?;
        match out.status {
            Some(0) => Ok(Outcome::Undone),
            Some(posix::GONE) => Ok(Outcome::AlreadyGone),
            other => Err(format!(
                "exit {}: {}",
                other.map_or_else(|| "by signal".into(), |c| c.to_string()),
                out.stderr.trim()
            )),
        }
    }
}

/// A run folder on a host: absolute, no `..`, at least two components deep
/// (`base_dir/<run-id>`).
fn safe_run_dir(path: &Path) -> bool {
    use std::path::Component;
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir))
        && path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
            >= 2
}

impl Undo {
    /// Whether the thing this step undoes still exists (and still needs
    /// undoing): for tests, and for reporting what a failed cleanup left.
    pub fn remains(&self) -> bool {
        match self {
            Undo::DeleteNetns { name } => netns_exists(name),
            Undo::DeleteLink { name } => link_exists(name),
            Undo::KillProcess {
                pid, start_time, ..
            } => is_running(*pid, *start_time),
            Undo::ResumeProcess { pid, start_time } => {
                crate::control::netns::is_stopped(*pid, *start_time)
            }
            Undo::DeleteChain {
                netns,
                table,
                chain,
                ..
            } => {
                if netns.as_deref().is_some_and(|ns| !netns_exists(ns)) {
                    return false;
                }
                let mut argv: Vec<&str> = Vec::new();
                if let Some(ns) = netns {
                    argv.extend(["netns", "exec", ns, "iptables"]);
                }
                argv.extend(["-w", "-t", table, "-S", chain]);
                let prog = if netns.is_some() { "ip" } else { "iptables" };
                matches!(run_cmd(prog, &argv), Ok((true, _)))
            }
            Undo::RemoveFile { path } => path.exists(),
            Undo::ReleaseSubnet { path, run_id } => {
                fs::read_to_string(path).is_ok_and(|owner| owner.trim() == run_id)
            }
            Undo::RemoveDir { path } => path.exists(),
            Undo::RemoteResetClock { .. } => false,
            Undo::RemoteKillProcess { .. }
            | Undo::RemoteResumeProcess { .. }
            | Undo::RemoteDeleteChain { .. }
            | Undo::RemoteRemoveDir { .. } => {
                let Some(host) = self.host() else {
                    return false;
                };
                let argv = match self {
                    Undo::RemoteKillProcess {
                        pid, start_time, ..
                    } => posix::proc_argv("alive", *pid, *start_time, None),
                    Undo::RemoteResumeProcess {
                        pid, start_time, ..
                    } => posix::proc_argv("stopped", *pid, *start_time, None),
                    Undo::RemoteDeleteChain { table, chain, .. } => {
                        posix::list_chain_argv(table, chain)
                    }
                    Undo::RemoteRemoveDir { path, .. } => {
                        crate::control::argv(&["test", "-e", &path.display().to_string()])
                    }
                    _ => return false,
                };
                // Unreachable counts as remaining: it could not be verified.
                ssh::run_blocking(host, &argv, Duration::from_secs(30))
                    .map_or(true, |o| o.success())
            }
        }
    }
}

/// Every step ever journaled at `path`, done or not, oldest first.
pub fn entries(path: &Path) -> Result<Vec<Undo>> {
    let (steps, _) = read_journal(path).map_err(anyhow::Error::msg)?;
    Ok(steps.into_iter().map(|(_, u)| u).collect())
}

/// What the journal at `path` created that still exists, described.
pub fn leftovers(path: &Path) -> Result<Vec<String>> {
    Ok(entries(path)?
        .into_iter()
        .filter(Undo::remains)
        .map(|u| format!("needs: {u}"))
        .collect())
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Runs a command; `Ok((success, stderr))`, `Err` only if it could not start.
fn run_cmd(prog: &str, args: &[&str]) -> std::result::Result<(bool, String), String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn kill_and_wait(pid: i32, start_time: u64) -> std::result::Result<Outcome, String> {
    match signal_guarded(pid, start_time, Signal::SIGKILL) {
        Ok(false) => return Ok(Outcome::AlreadyGone),
        Ok(true) => {}
        Err(e) => return Err(format!("SIGKILL pid {pid}: {e}")),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid, start_time) {
        if Instant::now() > deadline {
            return Err(format!("pid {pid} still running 10 s after SIGKILL"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Outcome::Undone)
}

fn delete_chain(
    netns: Option<&str>,
    table: &str,
    chain: &str,
    hook_rules: &[Vec<String>],
) -> std::result::Result<Outcome, String> {
    if let Some(ns) = netns {
        if !netns_exists(ns) {
            return Ok(Outcome::AlreadyGone);
        }
    }
    let iptables = |args: &[&str]| {
        let mut argv: Vec<&str> = Vec::new();
        if let Some(ns) = netns {
            argv.extend(["netns", "exec", ns, "iptables"]);
        }
        argv.extend(["-w", "-t", table]);
        argv.extend(args);
        if netns.is_some() {
            run_cmd("ip", &argv)
        } else {
            run_cmd("iptables", &argv)
        }
    };
    let mut errors = Vec::new();
    for rule in hook_rules {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        // A rule may have been inserted more than once; bound the loop anyway.
        for _ in 0..64 {
            let check: Vec<&str> = std::iter::once("-C").chain(rule.iter().copied()).collect();
            if !iptables(&check)?.0 {
                break;
            }
            let del: Vec<&str> = std::iter::once("-D").chain(rule.iter().copied()).collect();
            let (ok, err) = iptables(&del)?;
            if !ok {
                errors.push(format!("iptables -D {}: {err}", rule.join(" ")));
                break;
            }
        }
    }
    let (exists, _) = iptables(&["-S", chain])?;
    if !exists {
        return if errors.is_empty() {
            Ok(Outcome::AlreadyGone)
        } else {
            Err(errors.join("; "))
        };
    }
    let (ok, err) = iptables(&["-F", chain])?;
    if !ok {
        errors.push(format!("iptables -F {chain}: {err}"));
    }
    let (ok, err) = iptables(&["-X", chain])?;
    if !ok {
        errors.push(format!("iptables -X {chain}: {err}"));
    }
    if errors.is_empty() {
        Ok(Outcome::Undone)
    } else {
        Err(errors.join("; "))
    }
}

/// Identifies one journaled undo step (its sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UndoId(pub u64);

/// One line of the journal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    Undo { seq: u64, undo: Undo },
    Done { seq: u64 },
}

/// The active-run marker, `STATE_DIR/<run_id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub run_id: String,
    pub journal: PathBuf,
    /// Copy of the journal in the state directory.
    #[serde(default)]
    pub mirror: Option<PathBuf>,
    pub pid: i32,
    pub pid_start_time: u64,
}

impl Marker {
    /// Whether the harness process that owns the run is still alive.
    pub fn harness_alive(&self) -> bool {
        is_running(self.pid, self.pid_start_time)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Steps carried out, in the order they ran.
    pub undone: Vec<String>,
    /// Steps whose target was already gone.
    pub already_gone: Vec<String>,
    /// Steps skipped because an earlier replay had done them.
    pub skipped: usize,
    /// Steps that failed (they stay pending for a later replay).
    pub errors: Vec<String>,
}

impl ReplayReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The cleanup journal of one run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    run_id: String,
    state_dir: PathBuf,
    marker: PathBuf,
    mirror: PathBuf,
    /// The journal and its mirror.
    file: Mutex<(File, File)>,
    next_seq: AtomicU64,
}

impl Journal {
    /// Creates `run_dir/cleanup.journal` and the marker `/run/rapidstore-harness/<run_id>`.
    pub fn create(run_dir: &Path, run_id: &str) -> Result<Journal> {
        Self::create_in(Path::new(STATE_DIR), run_dir, run_id)
    }

    /// Like [`Journal::create`] with another state directory (tests).
    pub fn create_in(state_dir: &Path, run_dir: &Path, run_id: &str) -> Result<Journal> {
        validate_run_id(run_id)?;
        fs::create_dir_all(run_dir)
            .with_context(|| format!("failed to create run directory `{}`", run_dir.display()))?;
        fs::create_dir_all(state_dir).with_context(|| {
            format!("failed to create state directory `{}`", state_dir.display())
        })?;
        let marker = state_dir.join(run_id);
        if marker.exists() {
            bail!(
                "run id `{run_id}` is already active (marker `{}`)\nhint: pick another run id, or run `harness clean`",
                marker.display()
            );
        }
        let path = run_dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "failed to create journal `{}`\nhint: each run needs a fresh run directory",
                    path.display()
                )
            })?;
        sync_dir(run_dir);
        let path = fs::canonicalize(&path).unwrap_or(path);
        let mirrors = state_dir.join(MIRRORS_DIR);
        fs::create_dir_all(&mirrors)
            .with_context(|| format!("failed to create `{}`", mirrors.display()))?;
        let mirror = mirrors.join(run_id);
        let mirror_file = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(&mirror)
            .with_context(|| format!("failed to create journal mirror `{}`", mirror.display()))?;
        mirror_file.set_len(0)?;
        let pid = std::process::id() as i32;
        let m = Marker {
            run_id: run_id.to_string(),
            journal: path.clone(),
            mirror: Some(mirror.clone()),
            pid,
            pid_start_time: process_start_time(pid).context("cannot read own start time")?,
        };
        write_atomic(&marker, &serde_json::to_vec_pretty(&m)?)
            .with_context(|| format!("failed to write run marker `{}`", marker.display()))?;
        Ok(Journal {
            path,
            run_id: run_id.to_string(),
            state_dir: state_dir.to_path_buf(),
            marker,
            mirror,
            file: Mutex::new((file, mirror_file)),
            next_seq: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The directory holding markers and subnet reservations.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Appends `undo` and fsyncs. Call this *before* creating the thing.
    pub fn push(&self, undo: Undo) -> Result<UndoId> {
        let mut files = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(seq, %undo, "journal");
        let record = Record::Undo { seq, undo };
        append_record(&mut files.0, &record)
            .with_context(|| format!("failed to append to journal `{}`", self.path.display()))?;
        if let Err(e) = append_record(&mut files.1, &record) {
            tracing::warn!(
                "cannot append to journal mirror {}: {e}",
                self.mirror.display()
            );
        }
        Ok(UndoId(seq))
    }

    /// Records that `id` no longer needs undoing (the harness undid it itself,
    /// e.g. a killed and reaped process, or a resumed one).
    pub fn resolve(&self, id: UndoId) -> Result<()> {
        let mut files = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let record = Record::Done { seq: id.0 };
        let _ = append_record(&mut files.1, &record);
        append_record(&mut files.0, &record)
            .with_context(|| format!("failed to append to journal `{}`", self.path.display()))
    }

    /// The id the next pushed step will get: `rollback(mark)` undoes only
    /// what was pushed after this call.
    pub fn mark(&self) -> UndoId {
        UndoId(self.next_seq.load(Ordering::SeqCst))
    }

    /// Undoes the steps pushed since `mark`, newest first.
    pub fn rollback(&self, mark: UndoId) -> ReplayReport {
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        replay_from(&self.path, Some(&self.mirror), mark.0)
    }

    /// Undoes everything, newest first, and removes the active-run marker if
    /// every step succeeded (otherwise `harness clean` can retry).
    pub fn teardown(&self) -> ReplayReport {
        let report = {
            let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
            replay_from(&self.path, Some(&self.mirror), 0)
        };
        if report.is_clean() {
            for f in [&self.marker, &self.mirror] {
                if let Err(e) = fs::remove_file(f) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!("cannot remove {}: {e}", f.display());
                    }
                }
            }
        }
        report
    }

    /// Replays the journal at `path` backwards; returns the errors.
    pub fn replay(path: &Path) -> Vec<String> {
        Self::replay_report(path).errors
    }

    /// Replays the journal at `path` backwards; returns what it did.
    pub fn replay_report(path: &Path) -> ReplayReport {
        replay_from(path, None, 0)
    }
}

fn validate_run_id(run_id: &str) -> Result<()> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 64
        && !run_id.starts_with('.')
        && run_id != SUBNETS_DIR
        && run_id != MIRRORS_DIR
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "invalid run id `{run_id}`\nhint: use letters, digits, `-`, `_` and `.` (at most 64)"
        );
    }
    Ok(())
}

fn append_record(file: &mut File, record: &Record) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// A parsed journal: undo steps in order, and the done sequence numbers.
type Parsed = (Vec<(u64, Undo)>, BTreeSet<u64>);

fn read_journal(path: &Path) -> std::result::Result<Parsed, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read journal {}: {e}", path.display()))?;
    let mut steps = Vec::new();
    let mut done = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(Record::Undo { seq, undo }) => steps.push((seq, undo)),
            Ok(Record::Done { seq }) => {
                done.insert(seq);
            }
            // A torn last line was never synced, so its thing was never created.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => return Err(format!("journal {} line {}: {e}", path.display(), i + 1)),
        }
    }
    Ok((steps, done))
}

/// Replays the journal at `path` (or, if that is unreadable, its `mirror`)
/// from sequence number `min_seq` on, recording progress in both.
fn replay_from(path: &Path, mirror: Option<&Path>, min_seq: u64) -> ReplayReport {
    let mut report = ReplayReport::default();
    let (steps, done) = match read_journal(path) {
        Ok(parsed) => parsed,
        Err(e) => match mirror.map(read_journal) {
            Some(Ok(parsed)) => {
                tracing::warn!("{e}; using the mirror");
                parsed
            }
            Some(Err(e2)) => {
                report.errors.push(format!("{e}; {e2}"));
                return report;
            }
            None => {
                report.errors.push(e);
                return report;
            }
        },
    };
    let mut files: Vec<File> = std::iter::once(path)
        .chain(mirror)
        .filter_map(|p| OpenOptions::new().append(true).open(p).ok())
        .collect();
    if files.is_empty() {
        report.errors.push(format!(
            "cannot open journal {} to record progress",
            path.display()
        ));
    }
    for (seq, undo) in steps.iter().rev() {
        if *seq < min_seq {
            continue;
        }
        if done.contains(seq) {
            report.skipped += 1;
            continue;
        }
        let started = Instant::now();
        match undo.run() {
            Ok(outcome) => {
                tracing::debug!(%undo, ?outcome, elapsed = ?started.elapsed(), "undo");
                match outcome {
                    Outcome::Undone => report.undone.push(undo.to_string()),
                    Outcome::AlreadyGone => report.already_gone.push(undo.to_string()),
                }
                for f in &mut files {
                    if let Err(e) = append_record(f, &Record::Done { seq: *seq }) {
                        report.errors.push(format!("cannot record progress: {e}"));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%undo, "undo failed: {e}");
                report.errors.push(format!("{undo}: {e}"));
            }
        }
    }
    report
}

/// What `harness clean` did for one run marker.
#[derive(Debug, Clone)]
pub struct CleanedRun {
    pub run_id: String,
    pub marker: PathBuf,
    pub harness_pid: Option<i32>,
    /// Why the run was left alone (its harness is alive), if it was.
    pub skipped: Option<String>,
    pub replay: ReplayReport,
    pub marker_removed: bool,
}

/// What `harness clean` did.
#[derive(Debug, Clone, Default)]
pub struct CleanReport {
    pub runs: Vec<CleanedRun>,
    /// Problems not tied to one run (unreadable state directory).
    pub errors: Vec<String>,
}

impl CleanReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.runs.iter().all(|r| r.replay.is_clean())
    }
}

impl fmt::Display for CleanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() && self.errors.is_empty() {
            return writeln!(f, "no stale runs");
        }
        for run in &self.runs {
            let pid = run
                .harness_pid
                .map_or_else(|| "?".to_string(), |p| p.to_string());
            if let Some(why) = &run.skipped {
                writeln!(f, "run {} (harness pid {pid}): skipped: {why}", run.run_id)?;
                continue;
            }
            writeln!(
                f,
                "run {} (harness pid {pid}): {} undone, {} already gone, {} done before, {} errors{}",
                run.run_id,
                run.replay.undone.len(),
                run.replay.already_gone.len(),
                run.replay.skipped,
                run.replay.errors.len(),
                if run.marker_removed { ", marker removed" } else { "" }
            )?;
            for step in &run.replay.undone {
                writeln!(f, "  undone: {step}")?;
            }
            for e in &run.replay.errors {
                writeln!(f, "  error: {e}")?;
            }
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// `harness clean`: replays the journal of every run whose harness is dead
/// (every run but this process's own with `force`) and removes its marker.
pub fn clean_stale(force: bool) -> CleanReport {
    clean_stale_in(Path::new(STATE_DIR), force)
}

/// `harness clean --hosts FILE`: like [`clean_stale`], but only runs whose
/// journal acts on one of `hosts` (address and SSH port); other runs on this
/// machine are left alone.
pub fn clean_stale_on_hosts(hosts: &[(std::net::Ipv4Addr, u16)], force: bool) -> CleanReport {
    clean_stale_matching(Path::new(STATE_DIR), force, &|m: &Marker| {
        let steps = read_journal(&m.journal)
            .or_else(|e| m.mirror.as_deref().map(read_journal).unwrap_or(Err(e)))
            .map(|(steps, _)| steps)
            .unwrap_or_default();
        steps.iter().any(|(_, u)| {
            u.host()
                .is_some_and(|t| hosts.contains(&(t.address, t.port)))
        })
    })
}

/// [`clean_stale`] over another state directory (tests).
pub fn clean_stale_in(state_dir: &Path, force: bool) -> CleanReport {
    clean_stale_matching(state_dir, force, &|_| true)
}

fn clean_stale_matching(
    state_dir: &Path,
    force: bool,
    wanted: &dyn Fn(&Marker) -> bool,
) -> CleanReport {
    let mut report = CleanReport::default();
    let entries = match fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return report,
        Err(e) => {
            report
                .errors
                .push(format!("cannot read {}: {e}", state_dir.display()));
            return report;
        }
    };
    let mut markers: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "tmp"))
        .collect();
    markers.sort();
    let me = std::process::id() as i32;
    for path in markers {
        let run_id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let marker: Marker = match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                report
                    .errors
                    .push(format!("unreadable marker {}: {e}", path.display()));
                continue;
            }
        };
        if !wanted(&marker) {
            continue;
        }
        let mut run = CleanedRun {
            run_id,
            marker: path.clone(),
            harness_pid: Some(marker.pid),
            skipped: None,
            replay: ReplayReport::default(),
            marker_removed: false,
        };
        let alive = marker.harness_alive();
        if alive && marker.pid == me {
            run.skipped = Some("it is this process's own run".into());
        } else if alive && !force {
            run.skipped = Some("its harness is still running (use --force)".into());
        }
        if run.skipped.is_none() {
            run.replay = replay_from(&marker.journal, marker.mirror.as_deref(), 0);
            if run.replay.is_clean() {
                if let Some(m) = &marker.mirror {
                    let _ = fs::remove_file(m);
                }
                run.marker_removed = fs::remove_file(&path).is_ok();
            }
        }
        report.runs.push(run);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path, id: &str) -> Journal {
        Journal::create_in(&dir.join("state"), &dir.join(id), id).unwrap()
    }

    #[test]
    fn undo_roundtrips_as_tagged_json() {
        let undo = Undo::DeleteChain {
            netns: Some("rsh7-n1".into()),
            table: "filter".into(),
            chain: "RSH-7".into(),
            hook_rules: vec![vec!["INPUT".into(), "-j".into(), "RSH-7".into()]],
        };
        let json = serde_json::to_string(&undo).unwrap();
        assert!(json.starts_with(r#"{"kind":"delete_chain""#), "{json}");
        assert_eq!(serde_json::from_str::<Undo>(&json).unwrap(), undo);
        assert!(
            serde_json::from_str::<Undo>(r#"{"kind":"delete_link","name":"x","y":1}"#).is_err()
        );
    }

    /// A killed `settime` run's clock is set back to this machine's wall
    /// clock at clean time (not the time the step was journaled).
    #[test]
    fn remote_clock_reset_uses_the_wall_clock_at_replay() {
        let undo = Undo::RemoteResetClock {
            host: SshTarget {
                node: "n2".into(),
                address: std::net::Ipv4Addr::new(192, 168, 56, 12),
                port: 22,
                user: "root".into(),
                key: None,
                sudo: false,
                known_hosts: crate::hosts::KnownHosts::Add,
                known_hosts_file: None,
            },
        };
        let json = serde_json::to_string(&undo).unwrap();
        assert_eq!(serde_json::from_str::<Undo>(&json).unwrap(), undo);
        assert_eq!(
            undo.to_string(),
            "reset the clock of n2 (root@192.168.56.12:22)"
        );
        let argv = undo.remote_argv().unwrap();
        assert_eq!(argv[..3], ["date", "-u", "-s"]);
        let secs: f64 = argv[3].trim_start_matches('@').parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((secs - now).abs() < 5.0, "{secs} vs {now}");
        assert!(!undo.remains(), "a clock is never listed as a leftover");
    }

    #[test]
    fn replay_runs_backwards_and_twice_is_a_noop() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), "r1");
        let files: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("f{i}"))).collect();
        for f in &files {
            j.push(Undo::RemoveFile { path: f.clone() }).unwrap();
            fs::write(f, b"x").unwrap();
        }
        // One file already gone: tolerated.
        fs::remove_file(&files[1]).unwrap();
        let report = Journal::replay_report(j.path());
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            report.undone,
            vec![
                format!("remove file {}", files[2].display()),
                format!("remove file {}", files[0].display())
            ]
        );
        assert_eq!(report.already_gone.len(), 1);
        assert!(files.iter().all(|f| !f.exists()));
        fs::write(&files[0], b"recreated by someone else").unwrap();
        let again = Journal::replay_report(j.path());
        assert_eq!(again.skipped, 3);
        assert!(again.undone.is_empty() && again.already_gone.is_empty());
        assert!(files[0].exists(), "a finished step must not run again");
    }

    #[test]
    fn resolved_steps_and_rollback_marks() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), "r2");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let c = dir.path().join("c");
        let id_a = j.push(Undo::RemoveFile { path: a.clone() }).unwrap();
        fs::write(&a, b"").unwrap();
        let mark = j.mark();
        j.push(Undo::RemoveFile { path: b.clone() }).unwrap();
        fs::write(&b, b"").unwrap();
        let id_c = j.push(Undo::RemoveFile { path: c.clone() }).unwrap();
        fs::write(&c, b"").unwrap();
        j.resolve(id_c).unwrap();
        let r = j.rollback(mark);
        assert!(r.is_clean());
        assert!(a.exists() && !b.exists() && c.exists());
        assert_eq!(r.skipped, 1);
        j.resolve(id_a).unwrap();
        let r = j.teardown();
        assert!(r.is_clean() && r.undone.is_empty());
        assert!(a.exists(), "resolved step must not run");
        assert!(!dir.path().join("state/r2").exists(), "marker removed");
    }

    #[test]
    fn subnet_release_only_removes_own_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), "r3");
        let p = dir.path().join("42");
        j.push(Undo::ReleaseSubnet {
            path: p.clone(),
            run_id: "r3".into(),
        })
        .unwrap();
        fs::write(&p, "other-run\n").unwrap();
        assert!(j.teardown().is_clean());
        assert!(p.exists());
    }

    #[test]
    fn torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), "r4");
        let a = dir.path().join("a");
        j.push(Undo::RemoveFile { path: a.clone() }).unwrap();
        fs::write(&a, b"").unwrap();
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(br#"{"op":"undo","seq":1,"undo":{"kind":"remo"#)
            .unwrap();
        let r = Journal::replay_report(j.path());
        assert!(r.is_clean(), "{r:?}");
        assert!(!a.exists());
    }

    #[test]
    fn clean_stale_skips_live_runs_and_cleans_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let j = journal(dir.path(), "live");
        let a = dir.path().join("a");
        j.push(Undo::RemoveFile { path: a.clone() }).unwrap();
        fs::write(&a, b"").unwrap();
        // A run whose harness is dead: forge its marker with a bogus start time.
        let dead_dir = dir.path().join("dead");
        fs::create_dir_all(&dead_dir).unwrap();
        let dead_journal = dead_dir.join(JOURNAL_FILE);
        let b = dir.path().join("b");
        fs::write(
            &dead_journal,
            format!(
                "{}\n",
                serde_json::to_string(&Record::Undo {
                    seq: 0,
                    undo: Undo::RemoveFile { path: b.clone() }
                })
                .unwrap()
            ),
        )
        .unwrap();
        fs::write(&b, b"").unwrap();
        let m = Marker {
            run_id: "dead".into(),
            journal: dead_journal,
            mirror: None,
            pid: std::process::id() as i32,
            pid_start_time: 1,
        };
        fs::write(state.join("dead"), serde_json::to_vec(&m).unwrap()).unwrap();
        let report = clean_stale_in(&state, true);
        assert!(report.is_clean(), "{report}");
        assert!(a.exists(), "own live run is never cleaned");
        assert!(!b.exists());
        assert!(!state.join("dead").exists());
        assert!(state.join("live").exists());
        let text = report.to_string();
        assert!(text.contains("run dead"), "{text}");
    }

    #[test]
    fn clean_uses_the_mirror_when_the_run_dir_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let j = journal(dir.path(), "gone");
        let a = dir.path().join("a");
        j.push(Undo::RemoveFile { path: a.clone() }).unwrap();
        fs::write(&a, b"").unwrap();
        // Pretend the harness died: bogus start time in the marker.
        let mut m: Marker = serde_json::from_slice(&fs::read(state.join("gone")).unwrap()).unwrap();
        m.pid_start_time += 1;
        fs::write(state.join("gone"), serde_json::to_vec(&m).unwrap()).unwrap();
        drop(j);
        fs::remove_dir_all(dir.path().join("gone")).unwrap();
        let report = clean_stale_in(&state, false);
        assert!(report.is_clean(), "{report}");
        assert!(!a.exists());
        assert!(!state.join("gone").exists());
        assert!(!state.join(MIRRORS_DIR).join("gone").exists());
    }

    #[test]
    fn run_ids_are_validated() {
        assert!(validate_run_id("2024-01-01T00-00-00_abc").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", SUBNETS_DIR, MIRRORS_DIR] {
            assert!(validate_run_id(bad).is_err(), "{bad}");
        }
    }
}
