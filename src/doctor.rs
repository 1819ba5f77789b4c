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

/// The prerequisite checks run on a remote host (`sh -c REMOTE doctor
/// CLOCK LIBFAKETIME JAR...`): one line per check, `ok|NAME` or
/// `missing|NAME|WHAT|FIX`. Only tests and `command -v`: it changes nothing.
pub const REMOTE: &str = r#"clock=$1 lib=$2
shift 2
say() { if [ "$2" = 0 ]; then echo "ok|$1"; else echo "missing|$1|$3|$4"; fi; }
[ "$(id -u)" = 0 ]; say root $? "commands do not run as root" "log in as root, or set sudo = true with passwordless sudo"
{ command -v iptables && command -v iptables-restore; } >/dev/null 2>&1; say iptables $? "iptables and iptables-restore not found" "apt-get install -y iptables"
[ -x /usr/bin/java ]; say java $? "/usr/bin/java not found" "apt-get install -y default-jre-headless"
miss=""
for j in "$@"; do [ -f "$j" ] || miss="$miss $j"; done
[ -z "$miss" ]; say zookeeper $? "missing$miss" "apt-get install -y zookeeper"
{ command -v setsid && command -v find && [ -r /proc/self/stat ]; } >/dev/null 2>&1; say base $? "setsid, find or /proc missing" "apt-get install -y util-linux findutils"
if [ "$clock" = faketime ]; then
  [ -f "$lib" ]; say libfaketime $? "$lib not found" "apt-get install -y faketime libfaketime"
else
  command -v date >/dev/null 2>&1; say date $? "date not found" "apt-get install -y coreutils"
  ntp=""
  if command -v systemctl >/dev/null 2>&1; then
    for s in systemd-timesyncd chrony chronyd ntp ntpsec openntpd; do
      [ "$(systemctl is-active "$s" 2>/dev/null)" = active ] && ntp="$ntp $s"
    done
  fi
  [ -z "$ntp" ]; say ntp $? "an NTP client would undo clock faults:$ntp" "systemctl disable --now$ntp"
fi"#;

/// Parses [`REMOTE`]'s output into the host's unmet prerequisites.
pub fn parse_remote(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter_map(|l| {
            let parts: Vec<&str> = l.splitn(4, '|').collect();
            match parts.as_slice() {
                ["missing", name, what, fix] => {
                    Some((name.to_string(), what.to_string(), fix.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// `harness doctor`, remotely: runs [`REMOTE`] on every host and fails
/// naming each host's missing prerequisites and their fixes.
pub async fn check_hosts(
    control: &crate::control::Control,
    hosts: &crate::hosts::Hosts,
) -> anyhow::Result<()> {
    use crate::control::Remote;
    let clock = match hosts.clock {
        crate::hosts::ClockMethod::Faketime => "faketime",
        crate::hosts::ClockMethod::Settime => "settime",
    };
    let mut argv = crate::control::argv(&["sh", "-c", REMOTE, "doctor", clock]);
    argv.push(libfaketime().display().to_string());
    argv.extend(zookeeper::CLASSPATH.iter().map(|s| s.to_string()));
    let mut problems = Vec::new();
    for h in &hosts.hosts {
        match control.exec(&h.node, &argv).await {
            Ok(out) if out.success() => {
                for (name, what, fix) in parse_remote(&out.stdout) {
                    problems.push(format!("{}: {name}: {what}\n    fix: {fix}", h.node));
                }
            }
            Ok(out) => problems.push(format!(
                "{}: the check itself failed: {}",
                h.node,
                out.stderr.trim()
            )),
            Err(e) => problems.push(format!("{}: {e:#}", h.node)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "the hosts cannot run the harness yet:\n  {}",
            problems.join("\n  ")
        )
    }
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
    fn remote_checks_run_in_a_plain_shell() {
        let out = Command::new("sh")
            .args([
                "-c",
                REMOTE,
                "doctor",
                "faketime",
                "/no/such/lib.so",
                "/no/such.jar",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let missing = parse_remote(&text);
        let names: Vec<&str> = missing.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(names.contains(&"libfaketime"), "{text}");
        assert!(names.contains(&"zookeeper"), "{text}");
        let zk = missing.iter().find(|(n, _, _)| n == "zookeeper").unwrap();
        assert_eq!(zk.1, "missing /no/such.jar");
        assert_eq!(zk.2, "apt-get install -y zookeeper");
        assert_eq!(text.lines().count(), 6, "{text}");
        let settime = Command::new("sh")
            .args(["-c", REMOTE, "doctor", "settime", "/no/such/lib.so"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&settime.stdout);
        assert!(
            text.contains("ok|date") && !text.contains("libfaketime"),
            "{text}"
        );
        // Whether an NTP client runs here or not, the check says so.
        assert!(
            text.lines()
                .any(|l| l == "ok|ntp" || l.starts_with("missing|ntp|")),
            "{text}"
        );
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
