//! Commands that move a node's clock, one builder per method of the hosts
//! file ([`ClockMethod`]). The clock nemesis (issue 5) runs them through a
//! control; they are pure so each is unit-tested.
//!
//! - `faketime`: RapidStore runs with libfaketime preloaded and reads its
//!   offset from a file of the run's own ([`faketime_env`]); a fault writes
//!   the offset there ([`faketime_set`]), a reset writes `+0`. Only that
//!   process's clock moves.
//! - `settime`: `clock_settime` through `date -s` sets the host's kernel
//!   clock to the harness's wall clock plus the offset ([`settime_set`]);
//!   the reset sets it back to the harness's own wall clock
//!   ([`settime_reset`]), which is also the journal's undo step,
//!   so a killed run's skew is undone by `harness clean`. Refused unless
//!   every host is dedicated ([`check_method`]).
//!
//! [`measure`] reads a node's clock so the report can show the offset
//! actually in force, not only the one asked for.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use super::argv;
use crate::hosts::{settime_refusal, ClockMethod, Hosts};

/// libfaketime's offset syntax: signed seconds with millisecond precision.
pub fn faketime_spec(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let abs = offset_ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// Environment that puts RapidStore under libfaketime, reading its offset
/// from `file` on every clock call.
pub fn faketime_env(lib: &Path, file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// The faketime offset file of `node` in its run folder on the node.
pub fn faketime_file(node_run_dir: &Path, node: &str) -> PathBuf {
    node_run_dir.join("clock").join(format!("{node}.faketime"))
}

/// Writes offset `offset_ms` to the faketime file (atomically: a process
/// reading it never sees half a line).
pub fn faketime_set(file: &Path, offset_ms: i64) -> Vec<String> {
    argv(&[
        "sh",
        "-c",
        r#"mkdir -p "$(dirname "$2")" && printf '%s\n' "$1" >"$2.tmp" && mv -f "$2.tmp" "$2""#,
        "faketime",
        &faketime_spec(offset_ms),
        &file.display().to_string(),
    ])
}

/// Resets the faketime offset to zero.
pub fn faketime_reset(file: &Path) -> Vec<String> {
    faketime_set(file, 0)
}

/// Sets the host clock to `now` (the harness's wall clock at the call)
/// shifted by `offset_ms`. Absolute, not a bump from the host's current
/// time, so a repeated or retried fault never accumulates.
pub fn settime_set(now: SystemTime, offset_ms: i64) -> Vec<String> {
    let shift = Duration::from_millis(offset_ms.unsigned_abs());
    let at = if offset_ms < 0 {
        now.checked_sub(shift).unwrap_or(UNIX_EPOCH)
    } else {
        now + shift
    };
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    argv(&[
        "date",
        "-u",
        "-s",
        &format!("@{}.{:09}", d.as_secs(), d.subsec_nanos()),
    ])
}

/// Sets the host clock back to `now` (the harness's wall clock at the call).
pub fn settime_reset(now: SystemTime) -> Vec<String> {
    settime_set(now, 0)
}

/// Prints the node's wall clock in Unix nanoseconds.
pub fn measure() -> Vec<String> {
    argv(&["date", "+%s%N"])
}

/// The node's offset from `local_ns` (this machine's clock, read halfway
/// through the round trip), from [`measure`]'s output.
pub fn offset_ms(measured: &str, local_ns: i128) -> Option<f64> {
    let remote: i128 = measured.trim().parse().ok()?;
    Some((remote - local_ns) as f64 / 1e6)
}

/// Whether a hosts file allows `method`; `settime` needs every host dedicated.
pub fn check_method(hosts: &Hosts, method: ClockMethod) -> Result<()> {
    if method == ClockMethod::Settime {
        let shared: Vec<&str> = hosts
            .hosts
            .iter()
            .filter(|h| !h.dedicated)
            .map(|h| h.node.as_str())
            .collect();
        if !shared.is_empty() {
            bail!("{}", settime_refusal(&shared));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faketime_specs() {
        assert_eq!(faketime_spec(1500), "+1.500");
        assert_eq!(faketime_spec(-250), "-0.250");
        assert_eq!(faketime_spec(0), "+0.000");
        assert_eq!(faketime_spec(-60_000), "-60.000");
    }

    #[test]
    fn faketime_commands_write_the_offset_file() {
        let f = Path::new("/srv/r1/clock/n2.faketime");
        assert_eq!(faketime_file(Path::new("/srv/r1"), "n2"), f);
        let cmd = faketime_set(f, -2000);
        assert_eq!(cmd[0..2], ["sh", "-c"]);
        assert_eq!(
            cmd[3..],
            ["faketime", "-2.000", "/srv/r1/clock/n2.faketime"]
        );
        assert_eq!(faketime_reset(f)[4], "+0.000");
        // Run it for real on this machine's shell.
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("clock/n1.faketime");
        let cmd = faketime_set(&file, 3250);
        let ok = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+3.250\n");
        let env = faketime_env(Path::new("/usr/lib/x/libfaketimeMT.so.1"), &file);
        assert!(env.contains(&("LD_PRELOAD".into(), "/usr/lib/x/libfaketimeMT.so.1".into())));
        assert!(env.contains(&("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string())));
    }

    #[test]
    fn settime_commands() {
        let now = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000_000);
        assert_eq!(
            settime_set(now, -1500),
            ["date", "-u", "-s", "@1699999998.505000000"]
        );
        assert_eq!(
            settime_set(now, 2250),
            ["date", "-u", "-s", "@1700000002.255000000"]
        );
        assert_eq!(
            settime_reset(now),
            ["date", "-u", "-s", "@1700000000.005000000"]
        );
        // `date` reads the argument as we mean it: checked with `-d`, which
        // parses the same way but sets nothing.
        let cmd = settime_set(now, -1500);
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &cmd[3], "+%s%N"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "1699999998505000000"
        );
        assert_eq!(measure(), ["date", "+%s%N"]);
        assert_eq!(
            offset_ms("1700000001000000000\n", 1_700_000_000_000_000_000),
            Some(1000.0)
        );
        assert_eq!(offset_ms("x", 0), None);
    }

    #[test]
    fn settime_needs_dedicated_hosts() {
        let text = "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n[[host]]\nnode = \"n2\"\naddress = \"10.0.0.2\"\ndedicated = true\n";
        let hosts = Hosts::parse(Path::new("h.toml"), text).unwrap();
        assert!(check_method(&hosts, ClockMethod::Faketime).is_ok());
        let err = check_method(&hosts, ClockMethod::Settime)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not dedicated: n1\n"), "{err}");
        let all = text.replace("zookeeper = true\n", "zookeeper = true\ndedicated = true\n");
        let hosts = Hosts::parse(Path::new("h.toml"), &all).unwrap();
        assert!(check_method(&hosts, ClockMethod::Settime).is_ok());
    }
}
