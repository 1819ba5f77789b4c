//! `report.json`: written atomically (temporary file, then rename), so a
//! reader never sees half a report.

use super::Report;
use std::path::{Path, PathBuf};

/// Errors writing or reading `report.json`.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to write report `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to read report `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed report `{path}`: {source}\n  hint: was it written by another version of the harness?")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// File name of the JSON report inside a run directory.
pub const REPORT_JSON: &str = "report.json";

impl Report {
    /// Write `dir/report.json` (pretty-printed); returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        let path = dir.join(REPORT_JSON);
        let tmp = dir.join(format!(".{REPORT_JSON}.tmp"));
        let err = |source| ReportError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).expect("reports always serialize");
        std::fs::write(&tmp, text + "\n").map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(path)
    }

    /// Read a `report.json` (a file, or a run directory holding one).
    pub fn read_json(path: &Path) -> Result<Report, ReportError> {
        let path = if path.is_dir() {
            path.join(REPORT_JSON)
        } else {
            path.to_path_buf()
        };
        let p = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
            path: p.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse { path: p, source })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn round_trips_through_a_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample();
        let path = r.write_json(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("report.json"));
        assert_eq!(Report::read_json(dir.path()).unwrap(), r);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["valid"], "unknown");
        assert_eq!(json["checks"]["no-lost-writes"]["valid"], "unknown");
        assert_eq!(json["run"]["started_at"], "2024-05-01T12:00:00Z");
    }

    #[test]
    fn missing_report_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Report::read_json(dir.path()).unwrap_err().to_string();
        assert!(err.contains("report.json"), "{err}");
    }
}
