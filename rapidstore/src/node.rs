//! A RapidStore node's state machine: roles, the leader's sync, replication
//! and commit, fencing on replicas, and the client read/write paths.
//!
//! ZooKeeper decides *who* leads (see `zk.rs`); this module makes leadership
//! safe: a leader's token fences every write it replicates, a new leader
//! adopts the newest log of a majority before it serves, a write is
//! acknowledged once a majority has it on disk, and a read is answered only
//! after a majority confirms that no higher token exists.

use crate::api::*;
use crate::bugs::{Bug, Bugs};
use crate::events::{wall_ms, EventLog};
use crate::log::{Log, Match};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// Most entries sent in one append.
const MAX_BATCH: usize = 500;
/// A leader heartbeats followers this often (also carries the commit index).
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Timeout of one node-to-node request.
const PEER_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a client write waits for a majority before answering "unknown".
const COMMIT_WAIT: Duration = Duration::from_secs(3);

/// Static configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: String,
    /// `ip:port` others reach this node at (stored in its election znode).
    pub advertise: String,
    /// Every member's `ip:port`, this node included: majorities count these.
    pub peers: Vec<String>,
    pub data_dir: PathBuf,
    pub session_timeout: Duration,
    pub bugs: Bugs,
    /// Length of the read lease (only used by the `lease-reads` bug).
    pub lease: Duration,
}

/// A leadership term: reads and writes started under it stop when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    epoch: u64,
    token: u64,
}

struct State {
    log: Log,
    commit: u64,
    applied: u64,
    /// Committed state: key -> (value, index, token).
    kv: HashMap<String, (String, u64, u64)>,
    role: Role,
    /// Our election sequence number (our token if we lead).
    seq: Option<u64>,
    leader: Option<String>,
    /// Bumped on every role change; leader tasks of an old epoch stop.
    epoch: u64,
    /// A leader that has synced and may serve clients.
    serving: bool,
    /// Followers' highest index known to match ours (leader only).
    matched: HashMap<String, u64>,
    zk: String,
    /// Token of the last leadership this node held and has not yet learned
    /// was superseded (the stale-reads and lease-reads bugs serve under it).
    believed_token: Option<u64>,
    lease_until_ms: i64,
}

/// Why a client request was not served.
#[derive(Debug)]
pub enum Refusal {
    /// Not the leader; the known leader's address, if any.
    NotLeader(Option<String>),
    /// Leader, but a majority could not be reached in time.
    Unavailable(String),
    /// Compare-and-set condition failed; the current value.
    Precondition(Option<String>),
    /// The write may or may not take effect.
    Unknown(String),
    /// Local I/O failure.
    Io(String),
}

/// One RapidStore node.
pub struct Node {
    pub cfg: Config,
    state: Mutex<State>,
    pub events: EventLog,
    commit_tx: watch::Sender<u64>,
    /// Counts step-downs, so the election loop can give up a leadership that
    /// is no longer safe (it deletes its znode and rejoins).
    stepdown_tx: watch::Sender<u64>,
    appended_tx: watch::Sender<u64>,
    http: reqwest::Client,
}

impl Node {
    /// Open the data directory and build the node (as a follower-to-be).
    pub fn open(cfg: Config) -> anyhow::Result<Arc<Node>> {
        let log = Log::open(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot open data dir `{}`: {e}", cfg.data_dir.display())
        })?;
        let events = EventLog::open(&cfg.data_dir)?;
        events.record(NodeEventKind::Boot);
        let last = log.last_index();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(500))
            .timeout(PEER_TIMEOUT)
            .build()?;
        Ok(Arc::new(Node {
            state: Mutex::new(State {
                log,
                commit: 0,
                applied: 0,
                kv: HashMap::new(),
                role: Role::Candidate,
                seq: None,
                leader: None,
                epoch: 0,
                serving: false,
                matched: HashMap::new(),
                zk: "connecting".into(),
                believed_token: None,
                lease_until_ms: 0,
            }),
            events,
            commit_tx: watch::channel(0).0,
            stepdown_tx: watch::channel(0).0,
            appended_tx: watch::channel(last).0,
            http,
            cfg,
        }))
    }

    fn majority(&self) -> usize {
        self.cfg.peers.len() / 2 + 1
    }

    fn others(&self) -> impl Iterator<Item = &String> {
        self.cfg
            .peers
            .iter()
            .filter(move |p| **p != self.cfg.advertise)
    }

    fn bug(&self, b: Bug) -> bool {
        self.cfg.bugs.has(b)
    }

    // ---- roles -------------------------------------------------------------

    fn set_role(&self, st: &mut State, role: Role, leader: Option<String>) {
        let changed = st.role != role || st.leader != leader;
        st.role = role;
        st.leader = leader.clone();
        if role != Role::Leader {
            st.serving = false;
        }
        if changed {
            st.epoch += 1;
            tracing::info!(role = ?role, token = ?st.seq, leader = ?leader, "role");
            self.events.record(NodeEventKind::Role {
                role,
                token: st.seq,
                leader,
            });
        }
    }

    /// ZooKeeper session state changed (for `/health`).
    pub async fn set_zk_state(&self, zk: &str) {
        self.state.lock().await.zk = zk.to_string();
    }

    /// Lost ZooKeeper: a leader stops serving at once (it can no longer know
    /// it still leads).
    pub async fn on_disconnect(&self) {
        let mut st = self.state.lock().await;
        st.zk = "disconnected".into();
        if self.trusts_zookeeper_alone(&st) {
            return;
        }
        let leader = st.leader.clone();
        self.set_role(&mut st, Role::Disconnected, leader);
    }

    /// Our election node is gone or not yet made: no position.
    pub async fn on_rejoin(&self, seq: Option<u64>) {
        let mut st = self.state.lock().await;
        if self.trusts_zookeeper_alone(&st) {
            return;
        }
        st.seq = seq;
        self.set_role(&mut st, Role::Candidate, None);
    }

    /// The `no-fencing` bug: a serving leader keeps serving under its old
    /// token until ZooKeeper shows it another leader, rather than stepping
    /// down the moment it loses its session.
    fn trusts_zookeeper_alone(&self, st: &State) -> bool {
        self.bug(Bug::NoFencing) && st.serving
    }

    /// ZooKeeper says someone else leads; we follow `leader` (if known).
    pub async fn become_follower(&self, seq: u64, leader: Option<String>) {
        let mut st = self.state.lock().await;
        st.seq = Some(seq);
        if leader.is_some() && leader.as_deref() != Some(self.cfg.advertise.as_str()) {
            st.believed_token = None;
        }
        self.set_role(&mut st, Role::Follower, leader);
    }

    /// We hold the lowest election sequence number `seq`: sync from a majority,
    /// commit a no-op under our token, then serve. Returns the term once the
    /// node may publish itself in `/rapidstore/leader`, or `None` if the
    /// attempt was abandoned (role changed, higher token seen).
    pub async fn become_leader(self: &Arc<Self>, seq: u64) -> Option<Term> {
        let term = {
            let mut st = self.state.lock().await;
            st.seq = Some(seq);
            // Candidate while syncing: neither serving nor redirecting.
            self.set_role(&mut st, Role::Candidate, Some(self.cfg.advertise.clone()));
            if st.log.highest_token() > seq {
                drop(st);
                self.step_down(seq, "a higher token was already seen").await;
                return None;
            }
            if let Err(e) = st.log.observe_token(seq) {
                tracing::error!("cannot persist token: {e}");
                return None;
            }
            st.matched.clear();
            Term {
                epoch: st.epoch,
                token: seq,
            }
        };
        if !self.bug(Bug::NoLeaderSync) && !self.sync_from_majority(term).await {
            return None;
        }
        // The replicators run for the whole term; the no-op commits everything
        // adopted above under our token.
        for peer in self.others().cloned().collect::<Vec<_>>() {
            let node = self.clone();
            tokio::spawn(async move { node.replicate_to(peer, term).await });
        }
        let noop = {
            let mut st = self.state.lock().await;
            if st.epoch != term.epoch {
                return None;
            }
            match st.log.append(term.token, String::new(), String::new()) {
                Ok(e) => e.index,
                Err(e) => {
                    tracing::error!("cannot append no-op: {e}");
                    return None;
                }
            }
        };
        self.after_append(noop).await;
        if self.wait_commit(noop, term).await.is_err() {
            return None;
        }
        let mut st = self.state.lock().await;
        if st.epoch != term.epoch {
            return None;
        }
        // Candidate -> leader keeps the epoch: the term's replicators go on.
        st.believed_token = Some(term.token);
        st.role = Role::Leader;
        st.serving = true;
        tracing::info!(token = term.token, "leading");
        self.events.record(NodeEventKind::Role {
            role: Role::Leader,
            token: Some(term.token),
            leader: Some(self.cfg.advertise.clone()),
        });
        Some(term)
    }

    /// Is `term` still our current leadership?
    pub async fn still_leading(&self, term: Term) -> bool {
        let st = self.state.lock().await;
        st.epoch == term.epoch && st.serving
    }

    /// Stop serving: a higher token exists, or leadership could not be made safe.
    async fn step_down(&self, token: u64, reason: &str) {
        let mut st = self.state.lock().await;
        if st.seq != Some(token) || !matches!(st.role, Role::Leader | Role::Candidate) {
            return;
        }
        tracing::warn!(token, reason, "stepping down");
        self.events.record(NodeEventKind::StepDown {
            token,
            reason: reason.to_string(),
        });
        st.believed_token = None;
        self.set_role(&mut st, Role::Candidate, None);
        self.stepdown_tx.send_modify(|n| *n += 1);
    }

    /// Subscribe to step-downs (see `stepdown_tx`).
    pub fn stepdowns(&self) -> watch::Receiver<u64> {
        self.stepdown_tx.subscribe()
    }

    /// Ask a majority for a promise and their newest entries; adopt the best
    /// log (highest last token, then longest). Retries until it succeeds or
    /// the term ends.
    async fn sync_from_majority(self: &Arc<Self>, term: Term) -> bool {
        loop {
            let from = {
                let st = self.state.lock().await;
                if st.epoch != term.epoch {
                    return false;
                }
                st.commit + 1
            };
            let req = SyncRequest {
                token: term.token,
                from,
            };
            let need = self.majority() - 1;
            let replies = self
                .ask_others::<_, SyncResponse>("/internal/sync", &req, |a| {
                    a.iter()
                        .filter(|r| matches!(r, SyncResponse::Ok { .. }))
                        .count()
                        >= need
                        || a.iter().any(|r| matches!(r, SyncResponse::Stale { .. }))
                })
                .await;
            let mut best: Option<(u64, u64, Vec<Entry>)> = None;
            let mut oks = 1; // ourselves
            for r in replies {
                match r {
                    SyncResponse::Stale { highest } => {
                        self.step_down(term.token, &format!("sync refused: token {highest} seen"))
                            .await;
                        return false;
                    }
                    SyncResponse::Ok {
                        last_index,
                        last_token,
                        entries,
                    } => {
                        oks += 1;
                        if best
                            .as_ref()
                            .is_none_or(|b| (last_token, last_index) > (b.0, b.1))
                        {
                            best = Some((last_token, last_index, entries));
                        }
                    }
                }
            }
            if oks >= self.majority() {
                let mut st = self.state.lock().await;
                if st.epoch != term.epoch {
                    return false;
                }
                if let Some((lt, li, entries)) = best {
                    if (lt, li) > (st.log.last_token(), st.log.last_index()) && li >= st.commit {
                        if let Err(e) = self.adopt(&mut st, from, li, &entries) {
                            tracing::error!("cannot adopt newer log: {e}");
                            return false;
                        }
                    }
                }
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn adopt(
        &self,
        st: &mut State,
        from: u64,
        last: u64,
        entries: &[Entry],
    ) -> std::io::Result<()> {
        tracing::info!(from, last, "adopting newer log from a majority member");
        st.log.truncate_from(from)?;
        st.log.merge(entries)?;
        st.log.truncate_from(last + 1)?;
        Ok(())
    }

    // ---- replication (leader side) ----------------------------------------

    /// Wake replicators after a local append, and commit at once when we are
    /// a majority on our own.
    async fn after_append(&self, index: u64) {
        // With ack-before-replicate, replication is background work that the
        // next heartbeat carries, as in asynchronously replicated stores.
        if !self.bug(Bug::AckBeforeReplicate) {
            self.appended_tx.send_replace(index);
        }
        let mut st = self.state.lock().await;
        self.advance_commit(&mut st);
    }

    /// Keep one follower up to date for the whole term: one request in flight,
    /// batching whatever accumulated meanwhile; heartbeat when idle.
    async fn replicate_to(self: Arc<Self>, peer: String, term: Term) {
        let mut next = {
            let st = self.state.lock().await;
            st.log.last_index() + 1
        };
        let mut appended = self.appended_tx.subscribe();
        let url = format!("http://{peer}/internal/append");
        loop {
            let req = {
                let st = self.state.lock().await;
                if st.epoch != term.epoch {
                    return;
                }
                let prev_index = next - 1;
                AppendRequest {
                    token: term.token,
                    leader: self.cfg.advertise.clone(),
                    prev_index,
                    prev_token: st.log.token_at(prev_index).unwrap_or(0),
                    entries: st.log.entries_from(next, MAX_BATCH),
                    commit_index: st.commit,
                }
            };
            let sent = req.entries.len() as u64;
            let reply = self.http.post(&url).json(&req).send().await;
            let reply = match reply {
                Ok(r) if r.status().is_success() => r.json::<AppendResponse>().await.ok(),
                _ => None,
            };
            match reply {
                Some(AppendResponse::Ok { .. }) => {
                    let matched = req.prev_index + sent;
                    next = matched + 1;
                    let mut st = self.state.lock().await;
                    if st.epoch != term.epoch {
                        return;
                    }
                    let m = st.matched.entry(peer.clone()).or_insert(0);
                    *m = (*m).max(matched);
                    self.advance_commit(&mut st);
                    if st.log.last_index() >= next {
                        continue;
                    }
                }
                Some(AppendResponse::Mismatch { hint }) => {
                    next = (hint + 1).min(next.saturating_sub(1)).max(1);
                    continue;
                }
                Some(AppendResponse::Stale { highest }) => {
                    self.step_down(
                        term.token,
                        &format!("replica {peer} has seen token {highest}"),
                    )
                    .await;
                    return;
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            // Up to date: wait for new entries or the heartbeat.
            let _ = tokio::time::timeout(HEARTBEAT, appended.changed()).await;
        }
    }

    /// Commit the highest index a majority has, if it carries our token
    /// (older entries commit with it, never by counting alone).
    fn advance_commit(&self, st: &mut State) {
        if !matches!(st.role, Role::Leader | Role::Candidate) {
            return;
        }
        let Some(token) = st.seq else { return };
        let mut idx: Vec<u64> = self
            .others()
            .map(|p| st.matched.get(p).copied().unwrap_or(0))
            .collect();
        idx.push(st.log.last_index());
        idx.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = idx[self.majority() - 1];
        if candidate > st.commit && st.log.token_at(candidate) == Some(token) {
            st.commit = candidate;
            self.apply(st);
            if self.bug(Bug::LeaseReads) {
                st.lease_until_ms = wall_ms() + self.cfg.lease.as_millis() as i64;
            }
            self.commit_tx.send_replace(st.commit);
        }
    }

    fn apply(&self, st: &mut State) {
        if st.applied > st.log.last_index() {
            // A committed entry was cut off: only planted bugs get here.
            tracing::error!(
                applied = st.applied,
                "committed entries truncated; rebuilding state"
            );
            st.kv.clear();
            st.applied = 0;
            st.commit = st.commit.min(st.log.last_index());
        }
        while st.applied < st.commit {
            st.applied += 1;
            if let Some(e) = st.log.get(st.applied).cloned() {
                if !e.is_noop() {
                    st.kv.insert(e.key, (e.value, e.index, e.token));
                }
            }
        }
    }

    /// Wait until `index` commits under `term`.
    async fn wait_commit(&self, index: u64, term: Term) -> Result<(), Refusal> {
        let mut rx = self.commit_tx.subscribe();
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        loop {
            {
                let st = self.state.lock().await;
                if st.commit >= index {
                    return if st.log.token_at(index) == Some(term.token) {
                        Ok(())
                    } else {
                        Err(Refusal::Unknown("entry was overwritten".into()))
                    };
                }
                if st.epoch != term.epoch {
                    return Err(Refusal::Unknown(
                        "lost leadership before a majority stored the write".into(),
                    ));
                }
            }
            // Epoch changes do not signal the commit channel: poll briefly.
            let wait = tokio::time::timeout(Duration::from_millis(50), rx.changed());
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::Unknown(
                    "no majority stored the write in time".into(),
                ));
            }
            let _ = wait.await;
        }
    }

    /// Send `body` to every other member concurrently and return the answers
    /// as soon as `enough(answers)` holds (or every call has ended), so an
    /// unreachable member never delays a majority round.
    async fn ask_others<B, R>(&self, path: &str, body: &B, enough: impl Fn(&[R]) -> bool) -> Vec<R>
    where
        B: serde::Serialize,
        R: serde::de::DeserializeOwned,
    {
        use futures::stream::{FuturesUnordered, StreamExt};
        let mut calls: FuturesUnordered<_> = self
            .others()
            .map(|peer| {
                let req = self.http.post(format!("http://{peer}{path}")).json(body);
                async move {
                    let r = req.send().await.ok()?;
                    if !r.status().is_success() {
                        return None;
                    }
                    r.json::<R>().await.ok()
                }
            })
            .collect();
        let mut answers = Vec::new();
        while let Some(a) = calls.next().await {
            answers.extend(a);
            if enough(&answers) {
                break;
            }
        }
        answers
    }

    /// A majority confirms no token above ours exists.
    async fn confirm(&self, term: Term) -> Result<(), Refusal> {
        let (need, token) = (self.majority() - 1, term.token);
        let replies = self
            .ask_others::<_, ConfirmResponse>("/internal/confirm", &ConfirmRequest { token }, |a| {
                a.iter().any(|r| r.highest > token) || a.len() >= need
            })
            .await;
        let mut ok = 1;
        for r in replies {
            if r.highest > term.token {
                self.step_down(
                    term.token,
                    &format!("a replica has seen token {}", r.highest),
                )
                .await;
                return Err(Refusal::NotLeader(None));
            }
            ok += 1;
        }
        if ok >= self.majority() {
            if self.bug(Bug::LeaseReads) {
                self.state.lock().await.lease_until_ms =
                    wall_ms() + self.cfg.lease.as_millis() as i64;
            }
            Ok(())
        } else {
            Err(Refusal::Unavailable(
                "no majority confirmed leadership".into(),
            ))
        }
    }

    // ---- client paths -------------------------------------------------------

    fn refuse_not_leader(&self, st: &State) -> Refusal {
        let leader = st
            .leader
            .clone()
            .filter(|l| *l != self.cfg.advertise && st.role == Role::Follower);
        Refusal::NotLeader(leader)
    }

    /// Write `value` to `key` (if `expected` matches, for compare-and-set).
    pub async fn write(
        &self,
        key: String,
        value: String,
        expected: Option<Option<String>>,
    ) -> Result<WriteOk, Refusal> {
        let (entry, term) = {
            let mut st = self.state.lock().await;
            if !st.serving {
                return Err(self.refuse_not_leader(&st));
            }
            let term = Term {
                epoch: st.epoch,
                token: st.seq.unwrap_or(0),
            };
            if let Some(expected) = expected {
                let current = Self::latest_value(&st, &key);
                if current != expected {
                    // Answer only from state a majority holds and no newer
                    // leader has passed: wait for what we compared against
                    // to commit, then confirm.
                    let upto = st.log.last_index();
                    drop(st);
                    self.wait_commit(upto, term).await?;
                    self.confirm(term).await?;
                    return Err(Refusal::Precondition(current));
                }
            }
            match st.log.append(term.token, key, value) {
                Ok(e) => (e, term),
                Err(e) => return Err(Refusal::Io(e.to_string())),
            }
        };
        self.after_append(entry.index).await;
        if !self.bug(Bug::AckBeforeReplicate) {
            self.wait_commit(entry.index, term).await?;
        }
        Ok(WriteOk {
            ok: true,
            token: term.token,
            index: entry.index,
        })
    }

    /// The newest value of `key` in our log, committed or not.
    fn latest_value(st: &State, key: &str) -> Option<String> {
        let mut i = st.log.last_index();
        while i > st.applied {
            if let Some(e) = st.log.get(i) {
                if e.key == key {
                    return Some(e.value.clone());
                }
            }
            i -= 1;
        }
        st.kv.get(key).map(|(v, _, _)| v.clone())
    }

    /// Linearizable read of `key`: snapshot committed state, then confirm.
    pub async fn read(&self, key: &str) -> Result<Option<ReadOk>, Refusal> {
        let (value, term) = {
            let st = self.state.lock().await;
            let value = st.kv.get(key).map(|(v, i, t)| ReadOk {
                value: v.clone(),
                index: *i,
                token: *t,
            });
            if st.believed_token.is_some() {
                if self.bug(Bug::StaleReads) {
                    return Ok(value);
                }
                if self.bug(Bug::LeaseReads) && wall_ms() < st.lease_until_ms {
                    return Ok(value);
                }
            }
            if !st.serving {
                return Err(self.refuse_not_leader(&st));
            }
            (
                value,
                Term {
                    epoch: st.epoch,
                    token: st.seq.unwrap_or(0),
                },
            )
        };
        self.confirm(term).await?;
        Ok(value)
    }

    // ---- replica side -------------------------------------------------------

    /// A leader replicates entries to us.
    pub async fn handle_append(&self, req: AppendRequest) -> Result<AppendResponse, String> {
        let mut st = self.state.lock().await;
        let highest = st.log.highest_token();
        if req.token < highest && !self.bug(Bug::NoFencing) {
            for e in &req.entries {
                self.record_write(req.token, e, false, highest);
            }
            return Ok(AppendResponse::Stale { highest });
        }
        st.log.observe_token(req.token).map_err(|e| e.to_string())?;
        self.notice_token(&mut st, req.token, Some(&req.leader));
        if let Match::Mismatch { hint } = st.log.matches(req.prev_index, req.prev_token) {
            return Ok(AppendResponse::Mismatch { hint });
        }
        let fresh = st.log.merge(&req.entries).map_err(|e| e.to_string())?;
        for e in &fresh {
            self.record_write(req.token, e, true, highest);
        }
        let matched = req.prev_index + req.entries.len() as u64;
        if !matches!(st.role, Role::Leader | Role::Candidate) || st.seq != Some(req.token) {
            let commit = req.commit_index.min(matched);
            if commit > st.commit {
                st.commit = commit;
                self.apply(&mut st);
            }
        }
        Ok(AppendResponse::Ok {
            last_index: st.log.last_index(),
        })
    }

    fn record_write(&self, token: u64, e: &Entry, accepted: bool, highest_seen: u64) {
        self.events.record(NodeEventKind::Write {
            token,
            entry_token: e.token,
            index: e.index,
            key: e.key.clone(),
            value: e.value.clone(),
            accepted,
            highest_seen,
        });
    }

    /// A message carried `token` from another leader: if it is above our own
    /// leadership's, we are deposed.
    fn notice_token(&self, st: &mut State, token: u64, leader: Option<&String>) {
        if st.believed_token.is_some_and(|t| t < token) {
            st.believed_token = None;
        }
        if self.trusts_zookeeper_alone(st) {
            return;
        }
        if matches!(st.role, Role::Leader | Role::Candidate) && st.seq.is_some_and(|s| s < token) {
            self.events.record(NodeEventKind::StepDown {
                token: st.seq.unwrap_or(0),
                reason: format!("a leader with token {token} exists"),
            });
            let leader = leader.cloned();
            self.set_role(st, Role::Follower, leader);
            self.stepdown_tx.send_modify(|n| *n += 1);
        } else if st.role == Role::Follower {
            if let Some(l) = leader {
                if st.leader.as_ref() != Some(l) {
                    st.leader = Some(l.clone());
                }
            }
        }
    }

    /// A new leader asks for our promise and newest entries.
    pub async fn handle_sync(&self, req: SyncRequest) -> Result<SyncResponse, String> {
        let mut st = self.state.lock().await;
        let highest = st.log.highest_token();
        if req.token < highest {
            return Ok(SyncResponse::Stale { highest });
        }
        st.log.observe_token(req.token).map_err(|e| e.to_string())?;
        self.notice_token(&mut st, req.token, None);
        Ok(SyncResponse::Ok {
            last_index: st.log.last_index(),
            last_token: st.log.last_token(),
            entries: st.log.entries_from(req.from, usize::MAX),
        })
    }

    /// A leader checks that no higher token exists.
    pub async fn handle_confirm(&self, _req: ConfirmRequest) -> ConfirmResponse {
        ConfirmResponse {
            highest: self.state.lock().await.log.highest_token(),
        }
    }

    // ---- observation ---------------------------------------------------------

    /// `GET /health`.
    pub async fn health(&self) -> Health {
        let st = self.state.lock().await;
        Health {
            id: self.cfg.id.clone(),
            role: st.role,
            token: st.seq,
            leader: st.leader.clone(),
            zk: st.zk.clone(),
            time_ms: wall_ms(),
            last_index: st.log.last_index(),
            commit_index: st.commit,
            highest_token: st.log.highest_token(),
            bugs: self.cfg.bugs.names(),
        }
    }

    /// `GET /log`: committed entries from `from`.
    pub async fn committed(&self, from: u64, limit: usize) -> LogPage {
        let st = self.state.lock().await;
        let n = (st.commit + 1).saturating_sub(from.max(1)) as usize;
        LogPage {
            entries: st.log.entries_from(from, n.min(limit)),
            commit_index: st.commit,
        }
    }

    /// Graceful stop: leave the leadership so a successor is elected at once.
    pub async fn shutdown(&self) {
        let mut st = self.state.lock().await;
        st.believed_token = None;
        self.set_role(&mut st, Role::Candidate, None);
    }
}
