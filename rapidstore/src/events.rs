//! The node's own event log (role transitions, replicated writes accepted or
//! refused), kept in memory for `GET /events` and appended to
//! `events.jsonl` in the data directory so it survives a restart.

use crate::api::{NodeEvent, NodeEventKind};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

/// Append-only event log.
pub struct EventLog {
    inner: Mutex<(Vec<NodeEvent>, File)>,
}

/// Node wall clock in Unix milliseconds (skewable by libfaketime).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl EventLog {
    /// Open `events.jsonl` in `dir`, loading earlier events.
    pub fn open(dir: &Path) -> std::io::Result<EventLog> {
        let path = dir.join("events.jsonl");
        let mut events = Vec::new();
        if path.exists() {
            for line in BufReader::new(File::open(&path)?).lines() {
                match serde_json::from_str::<NodeEvent>(&line?) {
                    Ok(e) if e.seq == events.len() as u64 => events.push(e),
                    _ => break,
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // Rewrite if a torn line was dropped, so seq numbers stay dense.
        let mut buf = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        if file.metadata()?.len() != buf.len() as u64 {
            file.set_len(0)?;
            file.write_all(&buf)?;
        }
        Ok(EventLog {
            inner: Mutex::new((events, file)),
        })
    }

    /// Record an event (not fsynced: it is an observation, not data).
    pub fn record(&self, kind: NodeEventKind) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let event = NodeEvent {
            seq: g.0.len() as u64,
            time_ms: wall_ms(),
            kind,
        };
        if let Ok(mut line) = serde_json::to_vec(&event) {
            line.push(b'\n');
            if let Err(e) = g.1.write_all(&line) {
                tracing::warn!("cannot append to events.jsonl: {e}");
            }
        }
        g.0.push(event);
    }

    /// Events with `seq >= since`, at most `limit`.
    pub fn page(&self, since: u64, limit: usize) -> (Vec<NodeEvent>, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let events: Vec<NodeEvent> =
            g.0.iter()
                .skip(since as usize)
                .take(limit)
                .cloned()
                .collect();
        let next = events.last().map_or(since, |e| e.seq + 1);
        (events, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Role;

    #[test]
    fn events_persist_with_dense_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EventLog::open(dir.path()).unwrap();
            log.record(NodeEventKind::Boot);
            log.record(NodeEventKind::Role {
                role: Role::Follower,
                token: Some(3),
                leader: None,
            });
        }
        let log = EventLog::open(dir.path()).unwrap();
        log.record(NodeEventKind::Boot);
        let (events, next) = log.page(1, 10);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(next, 3);
        let (rest, next) = log.page(3, 10);
        assert!(rest.is_empty());
        assert_eq!(next, 3);
    }
}
