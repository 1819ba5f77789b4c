//! `harness doctor`: is this machine able to run a local cluster? Each check
//! names what is missing and the exact command that fixes it; `harness run`
//! fails fast with the same words.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::db::{rapidstore, zookeeper};

/// Where Debian's libfaketime puts its preload libraries.
pub fn faketime_dir() -> PathBuf {
    let multiarch = match std::env::consts::ARCH {
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        arch => return PathBuf::from(format!("/usr/lib/{arch}-linux-gnu/faketime")),
    };
    PathBuf::from(format!("/usr/lib/{multiarch}/faketime"))
}

/// The libfaketime library to preload (multi-threaded variant).
pub fn libfaketime() -> PathBuf {
    faketime_dir().join("libfaketimeMT.so.1")
}

/// One prerequisite and whether it is met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Short name for the table, e.g. `iptables`.
    pub name: &'static str,
    pub ok: bool,
    /// What was found, or what is missing.
    pub detail: String,
    /// The command that fixes it (None when ok).
    pub fix: Option<String>,
}

/// A prerequisite that is not met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub name: &'static str,
    /// What is missing.
    pub what: String,
    /// The exact fix.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\nhint: {}", self.name, self.what, self.fix)
    }
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn missing(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// First line of `prog args` output (stdout, else stderr) if it ran and succeeded.
fn version(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    )
}

/// Every check, in a stable order, for `harness doctor`'s table.
pub fn checks() -> Vec<Check> {
    let mut checks = Vec::new();

    // SAFETY: geteuid has no preconditions and cannot fail.
    checks.push(if unsafe { libc::geteuid() } == 0 {
        ok("root", "running as root")
    } else {
        missing(
            "root",
            "namespaces, bridges and iptables need root",
            "run as root, e.g. sudo",
        )
    });

    checks.push(match version("ip", &["-V"]) {
        Some(v) => ok("ip", v),
        None => missing(
            "ip",
            "`ip` (iproute2) not found",
            "apt-get install -y iproute2",
        ),
    });

    checks.push(
        match (
            version("iptables", &["-V"]),
            version("iptables-restore", &["-V"]),
        ) {
            (Some(v), Some(_)) => ok("iptables", v),
            _ => missing(
                "iptables",
                "`iptables` and `iptables-restore` not found",
                "apt-get install -y iptables",
            ),
        },
    );

    checks.push(match version(zookeeper::JAVA, &["-version"]) {
        Some(v) => ok("java", v),
        None => missing(
            "java",
            format!("{} not found", zookeeper::JAVA),
            "apt-get install -y zookeeper",
        ),
    });

    let absent: Vec<&str> = zookeeper::CLASSPATH
        .iter()
        .copied()
        .filter(|j| !Path::new(j).is_file())
        .collect();
    checks.push(if absent.is_empty() {
        ok("zookeeper", zookeeper::CLASSPATH.join(":"))
    } else {
        missing(
            "zookeeper",
            format!("missing {}", absent.join(", ")),
            "apt-get install -y zookeeper",
        )
    });

    let lib = libfaketime();
    checks.push(if lib.is_file() {
        ok("libfaketime", lib.display().to_string())
    } else {
        missing(
            "libfaketime",
            format!("{} not found", lib.display()),
            "apt-get install -y faketime libfaketime",
        )
    });

    checks.push(match rapidstore::locate_binary() {
        Ok(p) => ok("rapidstore", p.display().to_string()),
        Err(_) => missing(
            "rapidstore",
            format!(
                "the `rapidstore` binary is not beside the harness (or in ${})",
                rapidstore::BIN_ENV
            ),
            "cargo build -p rapidstore",
        ),
    });

    checks
}

/// The unmet prerequisites (empty: ready to run).
pub fn check() -> Vec<Problem> {
    checks()
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| Problem {
            name: c.name,
            what: c.detail,
            fix: c.fix.unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failed_check_has_a_fix() {
        let checks = checks();
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "root",
                "ip",
                "iptables",
                "java",
                "zookeeper",
                "libfaketime",
                "rapidstore"
            ]
        );
        for c in &checks {
            assert_eq!(c.ok, c.fix.is_none(), "{c:?}");
        }
        for p in check() {
            assert!(!p.fix.is_empty());
            assert!(p.to_string().contains("hint: "));
        }
    }

    #[test]
    fn faketime_path_is_multiarch() {
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                libfaketime(),
                Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
            );
        }
    }
}
