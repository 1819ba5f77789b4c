//! DB: what runs on nodes. [`zookeeper`] (the coordination ensemble) and
//! [`rapidstore`] (the system under test), each started by PID through the
//! [`Remote`](crate::control::Remote) seam.
//!
//! Capabilities are small traits (Jepsen's `db/Kill`, `db/Pause`,
//! `db/Primary`) so nemeses can act on either kind of server.

pub mod rapidstore;
pub mod zookeeper;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use nix::sys::signal::Signal;
use tokio::task::JoinSet;

use crate::control::{Control, ProcessHandle, Remote};

pub use rapidstore::RapidStore;
pub use zookeeper::ZooKeeper;

/// Servers that can be killed (SIGKILL) and started again.
pub trait Kill: Send + Sync {
    fn start(&self, node: &str) -> impl Future<Output = Result<()>> + Send;
    fn kill(&self, node: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Servers that can be paused (SIGSTOP) and resumed (SIGCONT).
pub trait Pause: Send + Sync {
    fn pause(&self, node: &str) -> impl Future<Output = Result<()>> + Send;
    fn resume(&self, node: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Servers with a distinguished node (ZooKeeper's leader, RapidStore's leader).
pub trait Primary: Send + Sync {
    /// The nodes that currently say they lead (more than one is possible).
    fn primaries(&self) -> impl Future<Output = Vec<String>> + Send;
}

/// How long a killed process may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// The processes of one kind of server, by node.
#[derive(Debug)]
pub struct Procs {
    control: Control,
    running: Mutex<BTreeMap<String, ProcessHandle>>,
}

impl Procs {
    pub fn new(control: Control) -> Procs {
        Procs {
            control,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ProcessHandle>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of the process on `node`, if the harness started one that
    /// it has not stopped.
    pub fn get(&self, node: &str) -> Option<ProcessHandle> {
        self.lock().get(node).cloned()
    }

    pub fn insert(&self, handle: ProcessHandle) {
        self.lock().insert(handle.node.clone(), handle);
    }

    pub fn handles(&self) -> Vec<ProcessHandle> {
        self.lock().values().cloned().collect()
    }

    /// Whether the process on `node` is running (a paused one is).
    pub async fn is_alive(&self, node: &str) -> bool {
        match self.get(node) {
            Some(h) => self.control.is_alive(&h).await,
            None => false,
        }
    }

    fn expect(&self, node: &str) -> Result<ProcessHandle> {
        self.get(node)
            .ok_or_else(|| anyhow!("no process of ours on {node}"))
    }

    /// SIGKILL and wait until reaped.
    pub async fn kill(&self, node: &str) -> Result<()> {
        let h = self.expect(node)?;
        kill_handle(&self.control, &h).await?;
        self.lock().remove(node);
        Ok(())
    }

    /// SIGTERM, then SIGKILL if still running after `grace`.
    pub async fn stop(&self, node: &str, grace: Duration) -> Result<()> {
        let h = self.expect(node)?;
        stop_handle(&self.control, &h, grace).await?;
        self.lock().remove(node);
        Ok(())
    }

    /// Stops every process at once; returns the errors.
    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        let mut tasks = JoinSet::new();
        for h in self.handles() {
            let control = self.control.clone();
            tasks.spawn(async move {
                let r = stop_handle(&control, &h, grace).await;
                (h, r)
            });
        }
        let mut errors = Vec::new();
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok((h, Ok(()))) => {
                    self.lock().remove(&h.node);
                }
                Ok((h, Err(e))) => errors.push(format!("stop {}: {e:#}", h.label)),
                Err(e) => errors.push(format!("stop task failed: {e}")),
            }
        }
        errors
    }

    /// SIGSTOP (journaled: teardown resumes it).
    pub async fn pause(&self, node: &str) -> Result<()> {
        let h = self.expect(node)?;
        if !self.control.signal(&h, Signal::SIGSTOP).await? {
            bail!("{} is not running", h.label);
        }
        Ok(())
    }

    /// SIGCONT.
    pub async fn resume(&self, node: &str) -> Result<()> {
        let h = self.expect(node)?;
        if !self.control.signal(&h, Signal::SIGCONT).await? {
            bail!("{} is not running", h.label);
        }
        Ok(())
    }
}

async fn kill_handle(control: &Control, h: &ProcessHandle) -> Result<()> {
    control.signal(h, Signal::SIGKILL).await?;
    if !control.wait_exit(h, REAP_TIMEOUT).await {
        bail!("{} (pid {}) survived SIGKILL", h.label, h.pid);
    }
    Ok(())
}

async fn stop_handle(control: &Control, h: &ProcessHandle, grace: Duration) -> Result<()> {
    if control.signal(h, Signal::SIGTERM).await? {
        // A paused process handles SIGTERM only once resumed.
        control.signal(h, Signal::SIGCONT).await?;
        if control.wait_exit(h, grace).await {
            return Ok(());
        }
        tracing::debug!(label = %h.label, "still running after SIGTERM; SIGKILL");
    }
    kill_handle(control, h).await
}
