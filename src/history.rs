//! The history: every client operation, nemesis step, role transition, ZooKeeper
//! observation and replica-accepted write of a run, as JSON Lines.
//!
//! One [`Event`] per line of `history.jsonl`. All `time_ms` values are
//! milliseconds on the harness's monotonic clock since the run's clock started
//! (never a node's wall clock: node clocks are skewed on purpose).
//!
//! Completions can only be made from their invocation ([`Invocation::ok`],
//! [`Invocation::fail`], [`Invocation::info`]), so a completion can never change
//! its process or operation.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a client operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Read a key; the completion's `value` is what was read (`None`: absent).
    Read,
    /// Write `value` to a key unconditionally.
    Write,
    /// Compare-and-set: write `value` only if the key currently holds `expected`
    /// (`expected: None` means "only if absent").
    Cas,
}

/// How an operation ended. `Info` means unknown: it may or may not have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect (or, for a read, returned `value`).
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: timed out, connection lost mid-request, ...
    Info,
}

/// The start of a client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Invocation {
    /// Unique per run; the completion carries the same id.
    pub op_id: u64,
    /// Client (logical process) number; one operation at a time per process.
    pub process: u64,
    pub time_ms: f64,
    pub f: OpKind,
    pub key: String,
    /// Value to write (write, cas); `None` for reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For cas: the value expected (`None` = absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Option<String>>,
    /// Node the client first sent the request to.
    pub node: String,
}

/// The end of a client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Completion {
    pub op_id: u64,
    pub process: u64,
    pub time_ms: f64,
    pub outcome: Outcome,
    /// For an ok read: the value read (`None` = key absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Fencing token of the leader that served it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// Log index of the write (ok writes) or of the state read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Node that finally served the request (after redirects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Invocation {
    fn complete(&self, outcome: Outcome, time_ms: f64) -> Completion {
        Completion {
            op_id: self.op_id,
            process: self.process,
            time_ms,
            outcome,
            value: None,
            token: None,
            index: None,
            node: None,
            error: None,
        }
    }
    /// The operation took effect; `value` is what a read returned.
    pub fn ok(&self, time_ms: f64, value: Option<String>) -> Completion {
        Completion {
            value,
            ..self.complete(Outcome::Ok, time_ms)
        }
    }
    /// The operation certainly did not take effect.
    pub fn fail(&self, time_ms: f64, error: impl Into<String>) -> Completion {
        Completion {
            error: Some(error.into()),
            ..self.complete(Outcome::Fail, time_ms)
        }
    }
    /// The outcome is unknown.
    pub fn info(&self, time_ms: f64, error: impl Into<String>) -> Completion {
        Completion {
            error: Some(error.into()),
            ..self.complete(Outcome::Info, time_ms)
        }
    }
}

/// Role of a RapidStore node, as the node itself reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Disconnected,
    /// The process is not running (killed or stopped by the harness).
    Down,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A run phase began: setup, running, healing, final_reads, checking, teardown.
    Phase {
        time_ms: f64,
        phase: String,
    },
    Invoke(Invocation),
    Complete(Completion),
    /// A nemesis step. `action` is the verb (partition, heal, kill, start, pause,
    /// resume, skew, reset_clock); `targets` are resolved node ids.
    Nemesis {
        time_ms: f64,
        /// Schedule step name (e.g. "partition-leader").
        fault: String,
        action: String,
        targets: Vec<String>,
        /// Free-form detail: the grudge, the offset asked for and measured, errors.
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        detail: serde_json::Value,
    },
    /// A node reported a role change (observed by the harness at `time_ms`).
    Role {
        time_ms: f64,
        node: String,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
    },
    /// The harness's own ZooKeeper watch: children of `/rapidstore/election`,
    /// as (sequence number, node id) sorted by sequence.
    ZkElection {
        time_ms: f64,
        members: Vec<(u64, String)>,
    },
    /// The harness's own ZooKeeper watch: content of `/rapidstore/leader`
    /// (node id, or `None` when absent/empty).
    ZkLeader {
        time_ms: f64,
        leader: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
    },
    /// A replicated write a replica accepted (or rejected), from the node's own
    /// event log, collected at the end of the run. `seq` orders a node's events.
    Replica {
        node: String,
        seq: u64,
        token: u64,
        index: u64,
        key: String,
        value: String,
        accepted: bool,
        /// Highest token the replica had seen when it decided.
        highest_seen: u64,
    },
    /// The final committed log of the cluster, read from the leader after heal:
    /// (index, token, key, value).
    FinalLog {
        time_ms: f64,
        node: String,
        entries: Vec<LogEntry>,
    },
}

/// One committed log entry, as RapidStore reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogEntry {
    pub index: u64,
    pub token: u64,
    pub key: String,
    pub value: String,
}

impl Event {
    /// Harness time of the event, when it has one (replica events do not).
    pub fn time_ms(&self) -> Option<f64> {
        match self {
            Event::Phase { time_ms, .. }
            | Event::Nemesis { time_ms, .. }
            | Event::Role { time_ms, .. }
            | Event::ZkElection { time_ms, .. }
            | Event::ZkLeader { time_ms, .. }
            | Event::FinalLog { time_ms, .. } => Some(*time_ms),
            Event::Invoke(i) => Some(i.time_ms),
            Event::Complete(c) => Some(c.time_ms),
            Event::Replica { .. } => None,
        }
    }
}

/// The harness's monotonic clock: milliseconds since the run's clock started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// The harness's wall clock at start (Unix ms), only to place node
    /// reports stamped with a wall clock; never used for history times.
    wall_at_start_ms: f64,
}

impl Clock {
    pub fn start() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Clock {
            start: Instant::now(),
            wall_at_start_ms: wall,
        }
    }
    /// Milliseconds since start (fractional).
    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// Place an event a node stamped with its wall clock (`unix_ms`) on the
    /// harness timeline, knowing it happened within `[after, before]`
    /// (harness times). The wall clock only picks the point inside that
    /// window, so a skewed node clock can never move an event outside it.
    pub fn place(&self, unix_ms: i64, after: f64, before: f64) -> f64 {
        (unix_ms as f64 - self.wall_at_start_ms).clamp(after.min(before), before)
    }
}

/// Appends events to `history.jsonl` as they happen, flushing each line so a
/// crash of the harness loses nothing already recorded. Cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter {
    inner: Arc<Mutex<BufWriter<std::fs::File>>>,
}

impl HistoryWriter {
    /// Create (truncate) the history file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(HistoryWriter {
            inner: Arc::new(Mutex::new(BufWriter::new(file))),
        })
    }
    /// Append one event and flush it to the OS.
    pub fn record(&self, event: &Event) {
        let line = serde_json::to_string(event).expect("history events always serialize");
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A history write failure must not crash the run; it surfaces at check time
        // as an incomplete history.
        let _ = writeln!(w, "{line}").and_then(|_| w.flush());
    }
}

/// Errors reading a stored history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("failed to read history `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed history `{path}` line {line}: {source}\n  hint: each line must be one JSON event as written by `harness run`")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

/// Read a whole `history.jsonl`. A truncated last line (a crash mid-write) is
/// ignored; any other malformed line is an error naming the line.
pub fn read_history(path: &Path) -> Result<Vec<Event>, HistoryError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| HistoryError::Io {
        path: p.clone(),
        source,
    })?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| HistoryError::Io {
            path: p.clone(),
            source,
        })?;
    let mut events = Vec::with_capacity(lines.len());
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(e) => events.push(e),
            Err(_) if i + 1 == last && !line.ends_with('}') => break,
            Err(source) => {
                return Err(HistoryError::Parse {
                    path: p,
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        Invocation {
            op_id: 7,
            process: 2,
            time_ms: 1.5,
            f: OpKind::Write,
            key: "k1".into(),
            value: Some("v".into()),
            expected: None,
            node: "n1".into(),
        }
    }

    #[test]
    fn node_stamps_are_placed_inside_the_observation_window() {
        let c = Clock::start();
        let wall = c.wall_at_start_ms.ceil() as i64;
        let placed = c.place(wall + 500, 400.0, 900.0);
        assert!((500.0..501.0).contains(&placed), "{placed}");
        // A clock 30 s behind or ahead stays inside the window.
        assert_eq!(c.place(wall - 30_000, 400.0, 900.0), 400.0);
        assert_eq!(c.place(wall + 30_000, 400.0, 900.0), 900.0);
    }

    #[test]
    fn completion_keeps_process_and_op() {
        let i = inv();
        let c = i.info(9.0, "timeout");
        assert_eq!((c.op_id, c.process, c.outcome), (7, 2, Outcome::Info));
        assert_eq!(c.error.as_deref(), Some("timeout"));
    }

    #[test]
    fn events_round_trip_through_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let w = HistoryWriter::create(&path).unwrap();
        let events = vec![
            Event::Invoke(inv()),
            Event::Complete(inv().ok(3.0, None)),
            Event::Role {
                time_ms: 4.0,
                node: "n2".into(),
                role: Role::Leader,
                token: Some(12),
            },
            Event::ZkElection {
                time_ms: 5.0,
                members: vec![(3, "n1".into()), (4, "n2".into())],
            },
            Event::Nemesis {
                time_ms: 6.0,
                fault: "kill-leader".into(),
                action: "kill".into(),
                targets: vec!["n1".into()],
                detail: serde_json::Value::Null,
            },
        ];
        for e in &events {
            w.record(e);
        }
        assert_eq!(read_history(&path).unwrap(), events);
    }

    #[test]
    fn truncated_last_line_is_ignored_but_bad_middle_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let good = serde_json::to_string(&Event::Invoke(inv())).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"type\":\"inv")).unwrap();
        assert_eq!(read_history(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
