//! Wire types: the public HTTP/JSON contract and the internal replication
//! messages between RapidStore nodes.

use serde::{Deserialize, Deserializer, Serialize};

/// One log entry. An entry with an empty key is a leader's no-op, written when
/// it takes office so that everything before it commits under its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    /// Token of the leader that created the entry.
    pub token: u64,
    pub key: String,
    pub value: String,
}

impl Entry {
    /// Is this a leader's no-op rather than a client write?
    pub fn is_noop(&self) -> bool {
        self.key.is_empty()
    }
}

/// A node's role as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Disconnected,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub id: String,
    pub role: Role,
    pub token: Option<u64>,
    pub leader: Option<String>,
    pub zk: String,
    /// The node's wall clock, Unix milliseconds (skewed under clock faults).
    pub time_ms: i64,
    pub last_index: u64,
    pub commit_index: u64,
    pub highest_token: u64,
    pub bugs: Vec<String>,
}

/// Body of `PUT /kv/{key}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub value: String,
    /// Compare-and-set: absent = unconditional; `null` = only if the key is
    /// absent; a string = only if the key holds it.
    #[serde(default, rename = "if", deserialize_with = "present")]
    pub expected: Option<Option<String>>,
}

/// Distinguish `"if": null` (Some(None)) from a missing field (None).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `200` answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteOk {
    pub ok: bool,
    pub token: u64,
    pub index: u64,
}

/// `200` answer to a read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadOk {
    pub value: String,
    pub token: u64,
    /// Index of the write that produced the value.
    pub index: u64,
}

/// One of a node's own events, served by `GET /events?since=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Position in this node's event log (persisted across restarts).
    pub seq: u64,
    /// Node wall clock (Unix ms): informative only, clocks may be skewed.
    pub time_ms: i64,
    #[serde(flatten)]
    pub kind: NodeEventKind,
}

/// What happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEventKind {
    /// The node started (a fresh process on this data directory).
    Boot,
    /// Role transition; `token` is the node's election sequence number.
    Role {
        role: Role,
        token: Option<u64>,
        leader: Option<String>,
    },
    /// A replicated entry this node stored (`accepted`) or refused as fenced.
    /// `token` is the fencing token of the leader that sent it.
    Write {
        token: u64,
        entry_token: u64,
        index: u64,
        key: String,
        value: String,
        accepted: bool,
        highest_seen: u64,
    },
    /// The node stopped serving as leader for the reason given.
    StepDown { token: u64, reason: String },
}

/// `GET /events` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsPage {
    pub events: Vec<NodeEvent>,
    /// Pass as `since` to get the next page.
    pub next: u64,
}

/// `GET /log` answer: committed entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<Entry>,
    pub commit_index: u64,
}

/// `POST /internal/append`: the leader replicates entries (or heartbeats).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendRequest {
    pub token: u64,
    pub leader: String,
    pub prev_index: u64,
    pub prev_token: u64,
    pub entries: Vec<Entry>,
    pub commit_index: u64,
}

/// Answer to an append.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AppendResponse {
    Ok {
        last_index: u64,
    },
    /// The replica's log does not hold the leader's previous entry.
    Mismatch {
        hint: u64,
    },
    /// The leader's token is below one the replica has seen: it is fenced.
    Stale {
        highest: u64,
    },
}

/// `POST /internal/sync`: a new leader asks for a promise (no token below
/// `token` will be accepted from now on) and for the entries from `from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    pub token: u64,
    pub from: u64,
}

/// Answer to a sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SyncResponse {
    Ok {
        last_index: u64,
        last_token: u64,
        entries: Vec<Entry>,
    },
    Stale {
        highest: u64,
    },
}

/// `POST /internal/confirm`: a leader checks no higher token exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmRequest {
    pub token: u64,
}

/// Answer to a confirm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmResponse {
    pub highest: u64,
}

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_condition_distinguishes_null_from_missing() {
        let w: WriteRequest = serde_json::from_str(r#"{"value":"a"}"#).unwrap();
        assert_eq!(w.expected, None);
        let w: WriteRequest = serde_json::from_str(r#"{"value":"a","if":null}"#).unwrap();
        assert_eq!(w.expected, Some(None));
        let w: WriteRequest = serde_json::from_str(r#"{"value":"a","if":"b"}"#).unwrap();
        assert_eq!(w.expected, Some(Some("b".into())));
        assert!(serde_json::from_str::<WriteRequest>(r#"{"value":"a","iff":1}"#).is_err());
    }
}
