//! Workloads: what clients do. Each is a declarative file in `workloads/`
//! (TOML), resolved by name, so a user adds one without recompiling.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A workload definition (`workloads/NAME.toml`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// File format version; must be 1.
    pub version: u32,
    /// One line for `harness list`.
    pub description: String,
    /// Number of keys (`k0`..); each key is an independent register.
    pub keys: usize,
    /// Relative weights of operation kinds.
    pub mix: Mix,
    /// Default operations per second over all clients (`--rate` overrides).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Default number of concurrent clients (`--concurrency` overrides).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Name (file stem), filled in on load.
    #[serde(skip)]
    pub name: String,
}

fn default_rate() -> f64 {
    50.0
}
fn default_concurrency() -> usize {
    5
}

/// Weights of reads, writes and compare-and-sets.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    #[serde(default)]
    pub read: f64,
    #[serde(default)]
    pub write: f64,
    #[serde(default)]
    pub cas: f64,
}

/// A declarative file (workload or nemesis schedule) that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("unknown {kind} `{name}`; valid names: {valid}\n  hint: add `{dir}/{name}.toml` or pick one of those")]
    Unknown {
        kind: &'static str,
        name: String,
        valid: String,
        dir: String,
    },
    #[error("failed to read `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to parse `{path}` at line {line}, column {column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// Names (file stems) of the `.toml` files in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// Read and parse `dir/NAME.toml` into `T`, with file, line and column on error.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    dir: &Path,
    kind: &'static str,
    name: &str,
) -> Result<(T, PathBuf), DefinitionError> {
    let path = dir.join(format!("{name}.toml"));
    if name.contains('/') || !path.exists() {
        return Err(DefinitionError::Unknown {
            kind,
            name: name.to_string(),
            valid: names_in(dir).join(", "),
            dir: dir.display().to_string(),
        });
    }
    let p = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| DefinitionError::Io {
        path: p.clone(),
        source,
    })?;
    let value = toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
        DefinitionError::Parse {
            path: p.clone(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    Ok((value, path))
}

/// 1-based line and column of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Workload {
    /// Load `workloads/NAME.toml` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Workload, DefinitionError> {
        let (mut w, path): (Workload, _) = load_toml(dir, "workload", name)?;
        w.name = name.to_string();
        let invalid = |message: String| DefinitionError::Invalid {
            path: path.display().to_string(),
            message,
        };
        if w.version != 1 {
            return Err(invalid(format!(
                "version {} is not supported; use version = 1",
                w.version
            )));
        }
        if w.keys == 0 {
            return Err(invalid("keys must be at least 1".into()));
        }
        let m = w.mix;
        if [m.read, m.write, m.cas]
            .iter()
            .any(|x| x.is_nan() || *x < 0.0)
            || m.read + m.write + m.cas <= 0.0
        {
            return Err(invalid(
                "mix weights must be non-negative and not all zero".into(),
            ));
        }
        if w.rate.is_nan() || w.rate <= 0.0 || w.concurrency == 0 {
            return Err(invalid("rate and concurrency must be positive".into()));
        }
        Ok(w)
    }

    /// Key names.
    pub fn key_names(&self) -> Vec<String> {
        (0..self.keys).map(|i| format!("k{i}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
    }

    #[test]
    fn shipped_workloads_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let names = names_in(&dir);
        assert!(names.contains(&"register".to_string()), "{names:?}");
        for n in names {
            Workload::load(&dir, &n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a", "");
        write(d.path(), "b", "");
        let err = Workload::load(d.path(), "zzz").unwrap_err().to_string();
        assert!(
            err.contains("unknown workload `zzz`") && err.contains("a, b"),
            "{err}"
        );
    }

    #[test]
    fn malformed_toml_names_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "bad",
            "version = 1\ndescription = \"x\"\nkeys = \"three\"\n[mix]\nread = 1.0\n",
        );
        let err = Workload::load(d.path(), "bad").unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("line 3, column 8"),
            "{err}"
        );
        write(
            d.path(),
            "typo",
            "version = 1\ndescription = \"x\"\nkeys = 3\nrat = 2\n[mix]\nread = 1.0\n",
        );
        let err = Workload::load(d.path(), "typo").unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("rat"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "z",
            "version = 1\ndescription = \"x\"\nkeys = 0\n[mix]\nread = 1.0\n",
        );
        assert!(Workload::load(d.path(), "z")
            .unwrap_err()
            .to_string()
            .contains("keys"));
        write(
            d.path(),
            "v",
            "version = 2\ndescription = \"x\"\nkeys = 1\n[mix]\nread = 1.0\n",
        );
        assert!(Workload::load(d.path(), "v")
            .unwrap_err()
            .to_string()
            .contains("version"));
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
