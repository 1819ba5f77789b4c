//! Shell snippets the harness runs on a node through any control: process
//! checks and signals guarded by start time (read from the node's own
//! `/proc`), detached starts behind a gate, chain removal, file writes.
//! Each is a POSIX `sh` script taking its inputs as positional arguments,
//! never spliced into the script text, so no value can change what runs.
//!
//! [`ssh_command_line`] quotes an argv for the one place a command line is a
//! string: the remote end of SSH.

use std::path::Path;

use super::argv;

/// Exit code of the process scripts when the process is gone (or is not the
/// one that started at the given time).
pub const GONE: i32 = 3;
/// Exit code of the gate when it was never opened.
pub const UNBORN: i32 = 97;

/// Process checks by PID and start time on the node:
/// `sh -c PROC proc ACTION PID START [ARG]`. Actions: `alive` (0 if running
/// and not a zombie), `stopped`, `signal SIG`, `stop` (SIGSTOP and wait until
/// stopped), `wait MS` (0 once exited), `kill` (SIGKILL and wait up to 10 s).
/// Exit [`GONE`] if the process is not there. The check and the signal are
/// two steps (a tiny PID-reuse window that a pidfd closes locally).
pub const PROC: &str = r#"a=$1 pid=$2 st=$3 arg=$4
case $pid in ''|*[!0-9]*) exit 2;; esac
[ "$pid" -gt 1 ] || exit 2
info() {
  s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  r=${s##*\) }
  set -- $r
  state=$1
  shift 19
  [ "$1" = "$st" ]
}
alive() { info && [ "$state" != Z ] && [ "$state" != X ]; }
stopped() { info && { [ "$state" = T ] || [ "$state" = t ]; }; }
case $a in
alive) alive ;;
stopped) stopped ;;
signal)
  alive || exit 3
  kill -s "$arg" "$pid" 2>/dev/null || { alive && exit 1; exit 3; } ;;
stop)
  alive || exit 3
  kill -s STOP "$pid" 2>/dev/null || exit 3
  i=0
  while ! stopped; do
    alive || exit 3
    i=$((i+1)); [ $i -gt 500 ] && exit 4
    sleep 0.01
  done ;;
wait)
  i=0; n=$((arg / 20 + 1))
  while alive; do
    i=$((i+1)); [ $i -gt $n ] && exit 1
    sleep 0.02
  done ;;
kill)
  alive || exit 3
  kill -s KILL "$pid" 2>/dev/null
  i=0
  while alive; do
    i=$((i+1)); [ $i -gt 500 ] && exit 1
    sleep 0.02
  done ;;
*) exit 2 ;;
esac"#;

/// argv for a [`PROC`] action.
pub fn proc_argv(action: &str, pid: i32, start_time: u64, arg: Option<&str>) -> Vec<String> {
    let mut v = argv(&["sh", "-c", PROC, "proc", action]);
    v.push(pid.to_string());
    v.push(start_time.to_string());
    if let Some(a) = arg {
        v.push(a.to_string());
    }
    v
}

/// Starts a detached process behind a gate: `sh -c START start GATE LOG
/// CMD...`. Prints `PID START_TIME` of the process, which waits (up to 10 s,
/// else exits [`UNBORN`]) for the file GATE to appear, removes it, and execs
/// CMD in a new session with stdout and stderr appended to LOG. The harness
/// journals the PID before it creates GATE, so nothing runs unjournaled.
pub const START: &str = r#"gate=$1 log=$2
shift 2
mkdir -p "$(dirname "$log")" || exit 1
: >>"$log" || exit 1
cd /
setsid sh -c 'i=0
while [ ! -e "$0" ]; do
  i=$((i+1)); [ $i -gt 500 ] && exit 97
  sleep 0.02
done
rm -f "$0"
exec "$@"' "$gate" "$@" >>"$log" 2>&1 </dev/null &
pid=$!
s=$(cat "/proc/$pid/stat") || exit 1
r=${s##*\) }
set -- $r
shift 19
echo "$pid $1""#;

/// argv that starts `cmd` behind `gate`, logging to `log` (see [`START`]).
pub fn start_argv(gate: &Path, log: &Path, cmd: &[String]) -> Vec<String> {
    let mut v = argv(&["sh", "-c", START, "start"]);
    v.push(gate.display().to_string());
    v.push(log.display().to_string());
    v.extend(cmd.iter().cloned());
    v
}

/// Parses [`START`]'s output: `PID START_TIME`.
pub fn parse_started(stdout: &str) -> Option<(i32, u64)> {
    let mut words = stdout.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let start = words.next()?.parse().ok()?;
    (pid > 1).then_some((pid, start))
}

/// Writes stdin to a file, creating its folder: `sh -c WRITE write PATH [MODE]`.
pub const WRITE: &str = r#"mkdir -p "$(dirname "$1")" && cat >"$1.tmp" && { [ -z "$2" ] || chmod "$2" "$1.tmp"; } && mv -f "$1.tmp" "$1""#;

/// argv that writes its stdin to `path` (mode like `755`, optional).
pub fn write_argv(path: &Path, mode: Option<&str>) -> Vec<String> {
    let mut v = argv(&["sh", "-c", WRITE, "write"]);
    v.push(path.display().to_string());
    if let Some(m) = mode {
        v.push(m.to_string());
    }
    v
}

/// Removes the run's iptables chain: `sh -c DELETE_CHAIN delete TABLE CHAIN
/// HOOK...`, each HOOK a jump rule as one space-separated string
/// (`INPUT -j CHAIN`). Every copy of each hook goes, then the chain is
/// flushed and deleted. Exit [`GONE`] if neither was there.
pub const DELETE_CHAIN: &str = r#"t=$1 c=$2
shift 2
found=0
for h in "$@"; do
  i=0
  while iptables -w -t "$t" -C $h 2>/dev/null; do
    found=1
    iptables -w -t "$t" -D $h || exit 1
    i=$((i+1)); [ $i -gt 64 ] && exit 1
  done
done
if iptables -w -t "$t" -S "$c" >/dev/null 2>&1; then
  iptables -w -t "$t" -F "$c" && iptables -w -t "$t" -X "$c" || exit 1
  exit 0
fi
[ $found = 1 ] && exit 0
exit 3"#;

/// argv for [`DELETE_CHAIN`].
pub fn delete_chain_argv(table: &str, chain: &str, hook_rules: &[Vec<String>]) -> Vec<String> {
    let mut v = argv(&["sh", "-c", DELETE_CHAIN, "delete", table, chain]);
    v.extend(hook_rules.iter().map(|r| r.join(" ")));
    v
}

/// Whether the chain exists: `iptables -S CHAIN` (exit 0 if it does).
pub fn list_chain_argv(table: &str, chain: &str) -> Vec<String> {
    argv(&["iptables", "-w", "-t", table, "-S", chain])
}

/// Removes the run's own folder on a host: `sh -c REMOVE_DIR rm DIR`. Exit
/// [`GONE`] if it is not there.
pub const REMOVE_DIR: &str = r#"[ -e "$1" ] || exit 3
rm -rf -- "$1""#;

/// Quotes `s` for a POSIX shell (single quotes; `'` as `'\''`).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line the remote shell of SSH runs for `argv` (ssh joins its
/// arguments with spaces and hands them to the login shell).
pub fn ssh_command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(args: &[String]) -> (Option<i32>, String) {
        let out = Command::new(&args[0]).args(&args[1..]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn quoting_survives_a_shell() {
        let nasty = argv(&["printf", "%s|", "a b", "it's", "$(echo no)", "", "*"]);
        let line = ssh_command_line(&nasty);
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "a b|it's|$(echo no)||*|"
        );
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
    }

    #[test]
    fn start_gate_and_process_checks_on_this_machine() {
        let d = tempfile::tempdir().unwrap();
        let gate = d.path().join("gate");
        let log = d.path().join("logs/x.log");
        let (code, out) = sh(&start_argv(&gate, &log, &argv(&["sleep", "30"])));
        assert_eq!(code, Some(0));
        let (pid, st) = parse_started(&out).unwrap();
        assert_eq!(
            crate::control::netns::process_start_time(pid),
            Some(st),
            "the printed start time is the process's own"
        );
        assert_eq!(sh(&proc_argv("alive", pid, st, None)).0, Some(0));
        assert_eq!(sh(&proc_argv("alive", pid, st + 1, None)).0, Some(1));
        assert_eq!(
            sh(&proc_argv("signal", pid, st + 1, Some("KILL"))).0,
            Some(GONE)
        );
        std::fs::write(&gate, "").unwrap();
        // Once through the gate it is `sleep` itself, same PID.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.starts_with("sleep") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never passed the gate"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!gate.exists(), "the gate removes its file");
        assert_eq!(sh(&proc_argv("stop", pid, st, None)).0, Some(0));
        assert_eq!(sh(&proc_argv("stopped", pid, st, None)).0, Some(0));
        assert_eq!(sh(&proc_argv("signal", pid, st, Some("CONT"))).0, Some(0));
        assert_eq!(sh(&proc_argv("wait", pid, st, Some("100"))).0, Some(1));
        assert_eq!(sh(&proc_argv("kill", pid, st, None)).0, Some(0));
        // Reaped or a zombie (PID 1 of this machine may be slow to reap).
        assert_ne!(sh(&proc_argv("alive", pid, st, None)).0, Some(0));
        assert_eq!(sh(&proc_argv("kill", pid, st, None)).0, Some(GONE));
        assert_eq!(
            sh(&proc_argv("alive", 1, 0, None)).0,
            Some(2),
            "never PID 1"
        );
        assert!(log.exists());
    }

    #[test]
    fn an_unopened_gate_never_runs_the_command() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let cmd = argv(&["touch", &marker.display().to_string()]);
        let (_, out) = sh(&start_argv(
            &d.path().join("gate"),
            &d.path().join("l"),
            &cmd,
        ));
        let (pid, st) = parse_started(&out).unwrap();
        // It gives up after ~10 s; kill it sooner, the point is it has not run.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!marker.exists());
        assert_eq!(sh(&proc_argv("kill", pid, st, None)).0, Some(0));
    }

    #[test]
    fn write_creates_folders_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c.sh");
        let mut child = Command::new("sh")
            .args(&write_argv(&p, Some("755"))[1..])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"hello").unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn delete_chain_passes_hooks_as_words() {
        let v = delete_chain_argv("filter", "RSH-1", &[argv(&["INPUT", "-j", "RSH-1"])]);
        assert_eq!(&v[3..], ["delete", "filter", "RSH-1", "INPUT -j RSH-1"]);
    }
}
