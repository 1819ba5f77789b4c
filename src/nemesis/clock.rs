//! Clock faults, by the method the run uses ([`ClockMethod`]):
//!
//! - `faketime` (always locally; over SSH when the hosts file says so): each
//!   RapidStore process is started with libfaketime preloaded and reads its
//!   offset from a file of the run's on its node (re-read on every call), so
//!   the harness moves one process's wall clock and nothing else. The
//!   cluster creates the files before RapidStore starts
//!   ([`crate::cluster::Cluster::faketime_files`]).
//! - `settime` (dedicated hosts over SSH only): the host's kernel clock is
//!   set, after the journal has a step that sets it back, so a killed run's
//!   skew is undone by `harness clean --hosts`.
//!
//! Either way the monotonic clock is left alone, as a skewed NTP step
//! would, and the offset a node actually shows in `/health` is measured and
//! recorded beside the one asked for.

use crate::client::NodeClient;
use crate::control::clock::{faketime_set, settime_set};
use crate::control::{Control, Remote};
use crate::hosts::ClockMethod;
use crate::journal::{Journal, UndoId};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How a run moves its nodes' clocks.
#[derive(Debug, Clone)]
pub enum Clocks {
    /// libfaketime offset files, one per node, on the node.
    Faketime(ClockFiles),
    /// `clock_settime` on each host.
    Settime(HostClocks),
}

impl Clocks {
    /// The method, for the history.
    pub fn method(&self) -> ClockMethod {
        match self {
            Clocks::Faketime(_) => ClockMethod::Faketime,
            Clocks::Settime(_) => ClockMethod::Settime,
        }
    }

    /// Set `node`'s clock `ms` off the harness's (0: back in step).
    pub async fn set(
        &self,
        control: &Control,
        journal: &Journal,
        node: &str,
        ms: i64,
    ) -> Result<()> {
        match self {
            Clocks::Faketime(files) => files.set(control, node, ms).await,
            Clocks::Settime(hosts) => hosts.set(control, journal, node, ms).await,
        }
    }
}

/// The per-node libfaketime offset files of a run (paths on the nodes).
#[derive(Debug, Clone)]
pub struct ClockFiles {
    files: BTreeMap<String, PathBuf>,
}

impl ClockFiles {
    /// Offset files by node, as the cluster created them.
    pub fn new(files: BTreeMap<String, PathBuf>) -> ClockFiles {
        ClockFiles { files }
    }

    /// The offset file of `node`.
    pub fn file(&self, node: &str) -> Option<&Path> {
        self.files.get(node).map(PathBuf::as_path)
    }

    /// Set `node`'s offset (written on the node, through its control).
    pub async fn set(&self, control: &Control, node: &str, ms: i64) -> Result<()> {
        let file = self
            .file(node)
            .with_context(|| format!("{node} has no clock file (was faketime enabled?)"))?;
        control
            .exec(node, &faketime_set(file, ms))
            .await?
            .check(&format!("set clock offset on {node}"))?;
        Ok(())
    }
}

/// Host clocks moved with `settime`: which hosts are off, each with the
/// journal step that sets it back.
#[derive(Debug, Clone, Default)]
pub struct HostClocks {
    moved: Arc<Mutex<BTreeMap<String, UndoId>>>,
}

impl HostClocks {
    /// Set `node`'s host clock to the harness's wall clock plus `ms`. The
    /// undo step is journaled before the clock first moves, and resolved
    /// only once a reset has succeeded. A host never moved is not touched
    /// by a reset (setting it would only add the round trip's error).
    pub async fn set(
        &self,
        control: &Control,
        journal: &Journal,
        node: &str,
        ms: i64,
    ) -> Result<()> {
        let moved = self.lock().get(node).copied();
        let id = match (moved, ms) {
            (None, 0) => return Ok(()),
            (Some(id), _) => id,
            (None, _) => {
                let id = journal.push(control.reset_clock_undo(node)?)?;
                self.lock().insert(node.to_string(), id);
                id
            }
        };
        control
            .exec(node, &settime_set(SystemTime::now(), ms))
            .await?
            .check(&format!("set the clock of {node}"))?;
        if ms == 0 {
            self.lock().remove(node);
            journal.resolve(id)?;
        }
        Ok(())
    }

    /// Hosts whose clock is off now.
    pub fn moved(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, UndoId>> {
        self.moved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The offset `addr` shows now: its `/health` clock minus ours at the
/// midpoint of the request. `None` if it does not answer.
pub async fn measure(client: &NodeClient, addr: &str) -> Option<i64> {
    let before = wall_ms();
    let h = client.health(addr).await?;
    let after = wall_ms();
    Some(h.time_ms - (before + after) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_by_node() {
        let c = ClockFiles::new(
            [("n2".to_string(), PathBuf::from("/srv/r/clock/n2.faketime"))]
                .into_iter()
                .collect(),
        );
        assert_eq!(c.file("n2"), Some(Path::new("/srv/r/clock/n2.faketime")));
        assert!(c.file("n3").is_none());
        assert_eq!(Clocks::Faketime(c).method(), ClockMethod::Faketime);
        let h = HostClocks::default();
        assert!(h.moved().is_empty());
        assert_eq!(Clocks::Settime(h).method(), ClockMethod::Settime);
    }

    /// `settime` on local nodes (which share this machine's clock) is
    /// refused before anything is journaled or run; a reset of a clock never
    /// moved does nothing at all.
    #[tokio::test]
    async fn settime_is_refused_on_local_nodes() {
        let d = tempfile::tempdir().unwrap();
        let journal = Arc::new(
            Journal::create_in(&d.path().join("state"), &d.path().join("r"), "r-clock").unwrap(),
        );
        let control = Control::Local(Arc::new(crate::control::NetnsRemote::new(
            journal.clone(),
            BTreeMap::new(),
        )));
        let clocks = Clocks::Settime(HostClocks::default());
        clocks.set(&control, &journal, "n1", 0).await.unwrap();
        let err = clocks
            .set(&control, &journal, "n1", 1500)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("hosts of their own"), "{err}");
        assert!(crate::journal::entries(journal.path()).unwrap().is_empty());
        let Clocks::Settime(h) = clocks else {
            unreachable!()
        };
        assert!(h.moved().is_empty());
    }
}
