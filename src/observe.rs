//! Watching the cluster while a run goes: the harness's own ZooKeeper watch
//! on `/rapidstore/election` and `/rapidstore/leader`, pollers of every
//! node's own event stream, and resolving "the leader" at the moment of a
//! fault. Everything is stamped with the harness's monotonic clock.

use crate::client::{self, NodeClient, NodeEvent};
use crate::history::{Clock, Event, HistoryWriter, Role};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client as zk;

const ELECTION: &str = "/rapidstore/election";
const LEADER: &str = "/rapidstore/leader";

/// Node ids and their RapidStore addresses.
#[derive(Debug, Clone)]
pub struct Topology {
    /// (node id, `ip:port` of its RapidStore server), in node order.
    pub nodes: Vec<(String, String)>,
    /// ZooKeeper connect string reachable from the root namespace.
    pub zk_connect: String,
}

impl Topology {
    /// Node id serving at `addr`.
    pub fn node_of(&self, addr: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, a)| a == addr)
            .map(|(n, _)| n.as_str())
    }
    /// Address of node `id`.
    pub fn addr_of(&self, id: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, a)| a.as_str())
    }
}

fn parse_role(s: &str) -> Option<Role> {
    Some(match s {
        "leader" => Role::Leader,
        "follower" => Role::Follower,
        "candidate" => Role::Candidate,
        "disconnected" => Role::Disconnected,
        _ => return None,
    })
}

/// Watch ZooKeeper from the root namespace until `stop`, recording every
/// change of the election members and of `/rapidstore/leader`.
pub async fn watch_zookeeper(
    topo: Topology,
    clock: Clock,
    history: HistoryWriter,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_members: Option<Vec<(u64, String)>> = None;
    let mut last_leader: Option<Option<String>> = None;
    while !*stop.borrow() {
        let connect = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&topo.zk_connect);
        let client = tokio::select! {
            c = tokio::time::timeout(Duration::from_secs(5), connect) => c,
            _ = stop.changed() => return,
        };
        let Ok(Ok(client)) = client else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let step = async {
                let (children, _, w1) = client.get_and_watch_children(ELECTION).await?;
                let mut members = Vec::new();
                for c in &children {
                    let Some(seq) = c.strip_prefix("node_").and_then(|s| s.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    // A member may vanish between the listing and this read.
                    if let Ok((data, _)) = client.get_data(&format!("{ELECTION}/{c}")).await {
                        let addr = String::from_utf8_lossy(&data).to_string();
                        let node = topo.node_of(&addr).unwrap_or(&addr).to_string();
                        members.push((seq, node));
                    }
                }
                members.sort();
                let (data, _, w2) = client.get_and_watch_data(LEADER).await?;
                let addr = String::from_utf8_lossy(&data).to_string();
                let leader =
                    (!addr.is_empty()).then(|| topo.node_of(&addr).unwrap_or(&addr).to_string());
                Ok::<_, zk::Error>((members, leader, w1, w2))
            };
            let (members, leader, w1, w2) = match step.await {
                Ok(v) => v,
                // Not created yet, or connection trouble: retry shortly.
                Err(zk::Error::NoNode) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => break,
            };
            let now = clock.now_ms();
            if last_members.as_ref() != Some(&members) {
                history.record(&Event::ZkElection {
                    time_ms: now,
                    members: members.clone(),
                });
                last_members = Some(members.clone());
            }
            if last_leader.as_ref() != Some(&leader) {
                let token = leader
                    .as_ref()
                    .and_then(|l| members.iter().find(|(_, n)| n == l).map(|(s, _)| *s));
                history.record(&Event::ZkLeader {
                    time_ms: now,
                    leader: leader.clone(),
                    token,
                });
                last_leader = Some(leader);
            }
            tokio::select! {
                _ = w1.changed() => {}
                _ = w2.changed() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Where a node's event poller is: the next event to ask for, and when the
/// last successful sweep began (harness time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    pub next: u64,
    pub swept_at_ms: f64,
}

/// Replicated-write events collected from the nodes, for the end of the run.
pub type WriteEvents = Arc<Mutex<BTreeMap<String, Vec<NodeEvent>>>>;

/// Poll every node's `/events` until `stop`, recording role transitions as
/// they are seen and keeping write events for the end of the run. Each node
/// has its own poller, so a paused or partitioned node delays no other's
/// observations. Returns each node's cursor so a final sweep can pick up
/// the rest.
pub async fn poll_node_events(
    topo: Topology,
    client: NodeClient,
    clock: Clock,
    history: HistoryWriter,
    writes: WriteEvents,
    stop: watch::Receiver<bool>,
) -> HashMap<String, Cursor> {
    let tasks: Vec<_> = topo
        .nodes
        .iter()
        .cloned()
        .map(|(node, addr)| {
            let (client, history, writes, mut stop) = (
                client.clone(),
                history.clone(),
                writes.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut cursors = HashMap::new();
                loop {
                    sweep_node(
                        &node,
                        &addr,
                        &client,
                        &clock,
                        &history,
                        &writes,
                        &mut cursors,
                    )
                    .await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.changed() => return cursors,
                    }
                }
            })
        })
        .collect();
    let mut cursors = HashMap::new();
    for t in tasks {
        cursors.extend(t.await.unwrap_or_default());
    }
    cursors
}

/// Fetch one node's new events (several pages if needed).
pub async fn sweep_node(
    node: &str,
    addr: &str,
    client: &NodeClient,
    clock: &Clock,
    history: &HistoryWriter,
    writes: &WriteEvents,
    cursors: &mut HashMap<String, Cursor>,
) -> bool {
    // Events since the last successful sweep happened after it began; a
    // node that died in between reports them late (after its restart), so
    // each is placed by its own stamp inside that window, not at "now".
    loop {
        let cursor = cursors.get(node).copied().unwrap_or_default();
        let since = cursor.next;
        let started = clock.now_ms();
        let Some((events, next)) = client.events(addr, since).await else {
            return false;
        };
        let now = clock.now_ms();
        let after = cursor.swept_at_ms;
        for e in &events {
            match e.event.as_str() {
                "role" => {
                    if let Some(role) = e.role.as_deref().and_then(parse_role) {
                        history.record(&Event::Role {
                            time_ms: clock.place(e.time_ms, after, now),
                            node: node.to_string(),
                            role,
                            token: e.token,
                        });
                    }
                }
                "write" => writes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(node.to_string())
                    .or_default()
                    .push(e.clone()),
                _ => {}
            }
        }
        cursors.insert(
            node.to_string(),
            Cursor {
                next,
                swept_at_ms: started,
            },
        );
        if events.is_empty() || next == since {
            return true;
        }
    }
}

/// Turn collected write events into history `Replica` events.
pub fn record_replica_events(writes: &WriteEvents, history: &HistoryWriter) -> usize {
    let w = writes.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for (node, events) in w.iter() {
        for e in events {
            history.record(&Event::Replica {
                node: node.clone(),
                seq: e.seq,
                token: e.token.unwrap_or(0),
                index: e.index.unwrap_or(0),
                key: e.key.clone().unwrap_or_default(),
                value: e.value.clone().unwrap_or_default(),
                accepted: e.accepted.unwrap_or(false),
                highest_seen: e.highest_seen.unwrap_or(0),
            });
            n += 1;
        }
    }
    n
}

/// The leader as the harness sees it now: among nodes answering `/health`,
/// the one claiming leadership with the highest token.
pub async fn current_leader(topo: &Topology, client: &NodeClient) -> Option<(String, u64)> {
    let checks = topo.nodes.iter().map(|(node, addr)| async move {
        let h = client.health(addr).await?;
        (h.role == client::Role::Leader).then(|| (node.clone(), h.token.unwrap_or(0)))
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .max_by_key(|(_, t)| *t)
}

/// Wait up to `deadline` for a leader.
pub async fn wait_for_leader(
    topo: &Topology,
    client: &NodeClient,
    deadline: Duration,
) -> Option<(String, u64)> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(l) = current_leader(topo, client).await {
            return Some(l);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader's successor now: the follower with the lowest election token
/// above the leader's (it leads if the leader goes).
pub async fn successor(topo: &Topology, client: &NodeClient) -> Option<String> {
    let healths =
        futures::future::join_all(topo.nodes.iter().map(|(node, addr)| async move {
            client.health(addr).await.map(|h| (node.clone(), h))
        }))
        .await;
    let healths: Vec<_> = healths.into_iter().flatten().collect();
    let leader_token = healths
        .iter()
        .filter(|(_, h)| h.role == client::Role::Leader)
        .filter_map(|(_, h)| h.token)
        .max()?;
    healths
        .into_iter()
        .filter(|(_, h)| {
            h.role == client::Role::Follower && h.token.is_some_and(|t| t > leader_token)
        })
        .min_by_key(|(_, h)| h.token)
        .map(|(n, _)| n)
}
