//! Clock faults, locally with libfaketime: each RapidStore process is
//! started with `LD_PRELOAD` of libfaketime and reads its offset from a file
//! of the run's (re-read on every call), so the harness moves one process's
//! wall clock without touching the machine's. The monotonic clock is left
//! alone, as a skewed NTP step would. The offset a node actually shows in
//! `/health` is measured and recorded beside the one asked for.

use crate::client::NodeClient;
use crate::control::{argv, Control, Remote};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// libfaketime's offset syntax for `ms` milliseconds, e.g. `+1.500000s`.
pub fn faketime_offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}000s", a / 1000, a % 1000)
}

/// Environment that makes a process read its clock offset from `file`.
pub fn faketime_env(lib: &Path, file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        // Re-read the file on every call, so a change applies at once.
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        // Timers and timeouts run on the monotonic clock: leave it true.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

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
            std::fs::write(&f, faketime_offset(0) + "\n")
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
        // Write then rename, so the process never reads a half-written offset.
        let tmp = file.with_extension("tmp");
        let script = format!(
            "printf '%s\\n' '{}' > '{}' && mv '{}' '{}'",
            faketime_offset(ms),
            tmp.display(),
            tmp.display(),
            file.display()
        );
        control
            .exec(node, &argv(&["sh", "-c", &script]))
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
    fn offsets_in_faketime_syntax() {
        assert_eq!(faketime_offset(0), "+0.000000s");
        assert_eq!(faketime_offset(-30_000), "-30.000000s");
        assert_eq!(faketime_offset(1_500), "+1.500000s");
    }

    #[test]
    fn env_preloads_and_spares_the_monotonic_clock() {
        let env = faketime_env(Path::new("/lib/ft.so"), Path::new("/r/n1.faketime"));
        let get = |k: &str| env.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("LD_PRELOAD"), Some("/lib/ft.so"));
        assert_eq!(get("FAKETIME_TIMESTAMP_FILE"), Some("/r/n1.faketime"));
        assert_eq!(get("FAKETIME_DONT_FAKE_MONOTONIC"), Some("1"));
    }

    #[test]
    fn files_start_at_zero() {
        let d = tempfile::tempdir().unwrap();
        let c = ClockFiles::create(d.path(), &["n1".into(), "n2".into()]).unwrap();
        let text = std::fs::read_to_string(c.file("n2").unwrap()).unwrap();
        assert_eq!(text.trim(), "+0.000000s");
        assert!(c.file("n3").is_none());
    }
}
