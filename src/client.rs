//! The harness's HTTP client for RapidStore nodes: client operations that
//! follow redirects and classify every outcome as ok / fail / info, plus the
//! observation calls (`/health`, `/events`, `/log`).
//!
//! Only node addresses the harness created are ever contacted.

use crate::history::{LogEntry, OpKind, Outcome};
use serde::Deserialize;
use std::time::Duration;

/// How long one client request may take before its outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);

/// A node's role as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Disconnected,
    /// A role this harness does not know yet.
    #[serde(other)]
    Unknown,
}

/// `GET /health` (the fields the harness uses; others are ignored). The one
/// shape for it: the nemesis, the observers and the db layer all read this.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Health {
    pub id: String,
    pub role: Role,
    pub token: Option<u64>,
    /// `ip:port` of the leader this node knows of.
    pub leader: Option<String>,
    /// ZooKeeper session state.
    pub zk: String,
    /// The node's wall clock in Unix ms (skewed under clock faults).
    pub time_ms: i64,
    /// The highest fencing token this replica has accepted.
    #[serde(default)]
    pub highest_token: u64,
}

/// One node event from `GET /events`.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeEvent {
    pub seq: u64,
    /// The node's wall clock when it happened (Unix ms; may be skewed).
    #[serde(default)]
    pub time_ms: i64,
    pub event: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub token: Option<u64>,
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub accepted: Option<bool>,
    #[serde(default)]
    pub highest_seen: Option<u64>,
}

#[derive(Deserialize)]
struct EventsPage {
    events: Vec<NodeEvent>,
    next: u64,
}

#[derive(Deserialize)]
struct LogPage {
    entries: Vec<LogEntry>,
}

/// What a client operation came back with.
#[derive(Debug, Clone, PartialEq)]
pub struct OpResult {
    pub outcome: Outcome,
    /// Value read (ok reads; `None` = absent).
    pub value: Option<String>,
    pub token: Option<u64>,
    pub index: Option<u64>,
    /// Node (address) that finally answered.
    pub served_by: Option<String>,
    pub error: Option<String>,
}

impl OpResult {
    fn new(outcome: Outcome, error: Option<String>) -> Self {
        OpResult {
            outcome,
            value: None,
            token: None,
            index: None,
            served_by: None,
            error,
        }
    }
}

/// HTTP client shared by all harness tasks.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
}

impl Default for NodeClient {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeClient {
    pub fn new() -> Self {
        NodeClient {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_millis(500))
                .timeout(OP_TIMEOUT)
                .pool_max_idle_per_host(16)
                .build()
                .expect("build HTTP client"),
        }
    }

    /// `GET /health` with a short timeout.
    pub async fn health(&self, addr: &str) -> Option<Health> {
        let r = self
            .http
            .get(format!("http://{addr}/health"))
            .timeout(Duration::from_millis(700))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// `GET /events?since=N`: events and the next `since`.
    pub async fn events(&self, addr: &str, since: u64) -> Option<(Vec<NodeEvent>, u64)> {
        let r = self
            .http
            .get(format!("http://{addr}/events?since={since}"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let page: EventsPage = r.json().await.ok()?;
        Some((page.events, page.next))
    }

    /// `GET /log`: the node's committed entries.
    pub async fn committed_log(&self, addr: &str) -> Option<Vec<LogEntry>> {
        let r = self
            .http
            .get(format!("http://{addr}/log?from=1"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let page: LogPage = r.json().await.ok()?;
        Some(page.entries)
    }

    /// Run one client operation against `addr`, following up to three
    /// redirects. Outcomes: a definite refusal (connection refused, 503, 412,
    /// 404 for reads) is ok/fail; anything that may have taken effect but did
    /// not say so (timeout, reset mid-request, 500 "unknown") is info.
    pub async fn op(
        &self,
        addr: &str,
        f: OpKind,
        key: &str,
        value: Option<&str>,
        expected: Option<Option<&str>>,
    ) -> OpResult {
        let mut target = format!("http://{addr}/kv/{key}");
        for _ in 0..4 {
            let req = match f {
                OpKind::Read => self.http.get(&target),
                OpKind::Write | OpKind::Cas => {
                    let mut body = serde_json::json!({ "value": value.unwrap_or_default() });
                    if let (OpKind::Cas, Some(exp)) = (f, expected) {
                        body["if"] = exp.map_or(serde_json::Value::Null, |s| s.into());
                    }
                    self.http.put(&target).json(&body)
                }
            };
            let served_by = target
                .trim_start_matches("http://")
                .split('/')
                .next()
                .map(str::to_string);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let msg = error_chain(&e);
                    // Nothing reached the node: the operation cannot have happened.
                    let definite = e.is_connect() || f == OpKind::Read;
                    let outcome = if definite {
                        Outcome::Fail
                    } else {
                        Outcome::Info
                    };
                    return OpResult {
                        served_by,
                        ..OpResult::new(outcome, Some(msg))
                    };
                }
            };
            let status = resp.status().as_u16();
            if status == 307 {
                match resp.headers().get("location").and_then(|l| l.to_str().ok()) {
                    Some(l) => {
                        target = l.to_string();
                        continue;
                    }
                    None => {
                        return OpResult::new(
                            Outcome::Fail,
                            Some("redirect without Location".into()),
                        )
                    }
                }
            }
            let body: serde_json::Value = match resp.json().await {
                Ok(b) => b,
                Err(e) => {
                    let outcome = if f == OpKind::Read || status != 200 && status != 500 {
                        Outcome::Fail
                    } else {
                        Outcome::Info
                    };
                    return OpResult {
                        served_by,
                        ..OpResult::new(
                            outcome,
                            Some(format!("HTTP {status}: unreadable body: {e}")),
                        )
                    };
                }
            };
            let err = || {
                body["error"]
                    .as_str()
                    .map(|s| format!("HTTP {status}: {s}"))
            };
            let mut r = match (f, status) {
                (_, 200) => OpResult {
                    value: if f == OpKind::Read {
                        body["value"].as_str().map(str::to_string)
                    } else {
                        None
                    },
                    token: body["token"].as_u64(),
                    index: body["index"].as_u64(),
                    ..OpResult::new(Outcome::Ok, None)
                },
                (OpKind::Read, 404) => OpResult::new(Outcome::Ok, None),
                (OpKind::Cas, 412) => OpResult::new(
                    Outcome::Fail,
                    Some(format!("precondition failed: current {}", body["value"])),
                ),
                // The server could not tell whether the write took effect.
                (OpKind::Write | OpKind::Cas, 500) => OpResult::new(Outcome::Info, err()),
                _ => OpResult::new(Outcome::Fail, err().or(Some(format!("HTTP {status}")))),
            };
            r.served_by = served_by;
            return r;
        }
        OpResult::new(Outcome::Fail, Some("too many redirects".into()))
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        msg = format!("timeout: {msg}");
    }
    msg
}
