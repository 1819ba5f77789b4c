//! Clock faults, locally with libfaketime: each RapidStore process is
//! started with `LD_PRELOAD` of libfaketime and reads its offset from a file
//! of the run's (re-read on every call), so the harness moves one process's
//! wall clock without touching the machine's. The monotonic clock is left
//! alone, as a skewed NTP step would. The offset a node actually shows in
//! `/health` is measured and recorded beside the one asked for.

use crate::client::NodeClient;
use crate::control::{Control, Remote};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::control::clock::faketime_env;
use crate::control::clock::{faketime_set, faketime_spec};

/// The per-node offset files of a run.
#[derive(Debug, Clone)]
pub struct ClockFiles {
    files: BTreeMap<String, PathBuf>,
}

impl ClockFiles {
    /// Offset files under `dir` for `nodes`, created with a zero offset.
    pub fn create(dir: &Path, nodes: &[String]) -> Result<ClockFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = BTreeMap::new();
        for n in nodes {
            let f = dir.join(format!("{n}.faketime"));
            std::fs::write(&f, faketime_spec(0) + "\n")
                .with_context(|| format!("cannot write {}", f.display()))?;
            files.insert(n.clone(), f);
        }
        Ok(ClockFiles { files })
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
    fn files_start_at_zero() {
        let d = tempfile::tempdir().unwrap();
        let c = ClockFiles::create(d.path(), &["n1".into(), "n2".into()]).unwrap();
        let text = std::fs::read_to_string(c.file("n2").unwrap()).unwrap();
        assert_eq!(text.trim(), faketime_spec(0));
        assert!(c.file("n3").is_none());
    }
}
