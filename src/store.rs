//! The run store: one folder per run under the reports folder
//! (`reports/<run-id>/`), written in phases (run.json at start, history as
//! the run goes, results at the end), and `reports/latest` pointing at the
//! newest run.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let (y, mo, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RunDir {
    /// Make `out/<id>/` with `logs/`, where id = UTC time + nemesis name (+ a
    /// counter if that folder exists), and point `out/latest` at it.
    pub fn create(out: &Path, nemesis: &str) -> Result<RunDir> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("failed to create reports folder `{}`", out.display()))?;
        let stamp = rfc3339(unix_now()).replace([':', '-'], "");
        let base = format!("{}-{nemesis}", stamp.trim_end_matches('Z'));
        let mut id = base.clone();
        let mut n = 1;
        while out.join(&id).exists() {
            n += 1;
            id = format!("{base}-{n}");
        }
        let path = out.join(&id);
        std::fs::create_dir_all(path.join("logs"))
            .with_context(|| format!("failed to create run folder `{}`", path.display()))?;
        let link = out.join("latest");
        let tmp = out.join(format!(".latest-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&id, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &link))
            .with_context(|| format!("failed to update `{}`", link.display()))?;
        Ok(RunDir { id, path })
    }

    /// Write `name` in the run folder as pretty JSON.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let p = self.path.join(name);
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(&p, text + "\n")
            .with_context(|| format!("failed to write `{}`", p.display()))
    }

    /// Path of the history file.
    pub fn history_path(&self) -> PathBuf {
        self.path.join("history.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_701_042), "2026-11-26T13:50:42Z");
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let d = tempfile::tempdir().unwrap();
        let a = RunDir::create(d.path(), "kill-leader").unwrap();
        let b = RunDir::create(d.path(), "kill-leader").unwrap();
        assert_ne!(a.id, b.id);
        assert!(a.path.join("logs").is_dir());
        let latest = std::fs::read_link(d.path().join("latest")).unwrap();
        assert_eq!(latest, PathBuf::from(&b.id));
    }
}
