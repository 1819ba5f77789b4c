//! The election through ZooKeeper, as the seed design describes it: an
//! ephemeral sequential node under `/rapidstore/election`, lowest sequence
//! leads, followers watch only their predecessor and `/rapidstore/leader`,
//! register under `/rapidstore/follower`, and a node whose session expired
//! rejoins with a new sequential node.

use crate::election::{position, Position, PREFIX};
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client as zk;

pub const ROOT: &str = "/rapidstore";
pub const ELECTION: &str = "/rapidstore/election";
pub const LEADER: &str = "/rapidstore/leader";
pub const FOLLOWER: &str = "/rapidstore/follower";

/// Why a session ended.
enum End {
    /// Shutdown was asked for.
    Shutdown,
    /// Session expired, closed, or our node vanished: rejoin with a new one.
    Rejoin(String),
}

/// Run the election for the node's whole life; returns after `shutdown`
/// turns true, once the ZooKeeper session is closed (so a successor is
/// elected at once, not after the session timeout).
pub async fn run(node: Arc<Node>, hosts: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        node.on_rejoin(None).await;
        let connector = zk::Client::connector()
            .with_session_timeout(node.cfg.session_timeout)
            .with_connection_timeout(node.cfg.session_timeout * 2 / 5);
        let client = tokio::select! {
            c = tokio::time::timeout(node.cfg.session_timeout * 2, connector.connect(&hosts)) => c,
            _ = shutdown.changed() => return,
        };
        let client = match client {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!("cannot reach ZooKeeper at {hosts}: {e}; retrying (is ZooKeeper running and reachable?)");
                node.set_zk_state("unreachable").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                tracing::error!("connecting to ZooKeeper at {hosts} timed out; retrying");
                node.set_zk_state("unreachable").await;
                continue;
            }
        };
        node.set_zk_state("connected").await;
        let mut states = client.state_watcher();
        let end = session(&node, &client, &mut states, &mut shutdown).await;
        match end {
            Ok(End::Shutdown) => {
                node.shutdown().await;
                drop(client);
                // Wait for the close to reach ZooKeeper (bounded).
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while !matches!(states.changed().await, zk::SessionState::Closed) {}
                })
                .await;
                return;
            }
            Ok(End::Rejoin(why)) => tracing::warn!("rejoining the election: {why}"),
            Err(e) => tracing::warn!("ZooKeeper session error, rejoining: {e}"),
        }
    }
}

fn connected(s: zk::SessionState) -> bool {
    matches!(
        s,
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
    )
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Create a persistent node unless it exists (safe when all nodes start at once).
async fn ensure(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match client.create(path, b"", &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a state change means for us.
async fn on_state(node: &Node, state: zk::SessionState) -> Option<End> {
    match state {
        zk::SessionState::Disconnected => {
            tracing::warn!("lost ZooKeeper connection");
            node.on_disconnect().await;
            None
        }
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            node.set_zk_state("connected").await;
            None
        }
        other => {
            node.set_zk_state(&format!("{other:?}").to_lowercase())
                .await;
            Some(End::Rejoin(format!("session {other:?}")))
        }
    }
}

async fn session(
    node: &Arc<Node>,
    client: &zk::Client,
    states: &mut zk::StateWatcher,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<End, zk::Error> {
    for p in [ROOT, ELECTION, LEADER, FOLLOWER] {
        ensure(client, p).await?;
    }
    let ephemeral_seq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = client
        .create(
            &format!("{ELECTION}/{PREFIX}"),
            node.cfg.advertise.as_bytes(),
            &ephemeral_seq,
        )
        .await?;
    let seq = seq.into_i64() as u64;
    let mine = format!("{ELECTION}/{PREFIX}{seq:010}");
    tracing::info!(seq, "joined the election");
    node.on_rejoin(Some(seq)).await;
    let mut stepdowns = node.stepdowns();
    stepdowns.borrow_and_update();
    loop {
        // While disconnected, wait for the session to come back or end.
        if !connected(states.peek_state()) {
            tokio::select! {
                s = states.changed() => if let Some(end) = on_state(node, s).await { return Ok(end) },
                _ = shutdown.changed() => return Ok(End::Shutdown),
            }
            continue;
        }
        let children = client.list_children(ELECTION).await?;
        match position(&children, seq) {
            Position::Missing => return Ok(End::Rejoin("our election node is gone".into())),
            Position::Leader => {
                let term = tokio::select! {
                    t = node.become_leader(seq) => t,
                    s = states.changed() => {
                        if let Some(end) = on_state(node, s).await { return Ok(end) }
                        continue;
                    }
                    _ = shutdown.changed() => return Ok(End::Shutdown),
                };
                if term.is_none() {
                    // Not safe to lead (a higher token exists, or the term ended):
                    // give up our place so the election moves on.
                    if connected(states.peek_state()) {
                        let _ = client.delete(&mine, None).await;
                        return Ok(End::Rejoin("leadership abandoned".into()));
                    }
                    continue;
                }
                // Publish only while our election node still exists.
                let mut w = client.new_multi_writer();
                w.add_check_version(&mine, -1)?;
                w.add_set_data(LEADER, node.cfg.advertise.as_bytes(), None)?;
                if let Err(e) = w.commit().await {
                    tracing::warn!("cannot publish leadership: {e}");
                    continue;
                }
                stepdowns.borrow_and_update();
                tokio::select! {
                    s = states.changed() => if let Some(end) = on_state(node, s).await { return Ok(end) },
                    _ = stepdowns.changed() => {
                        let _ = client.delete(&mine, None).await;
                        return Ok(End::Rejoin("stepped down".into()));
                    }
                    _ = shutdown.changed() => return Ok(End::Shutdown),
                }
            }
            Position::Follower { predecessor } => {
                let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
                match client
                    .create(
                        &format!("{FOLLOWER}/{}", node.cfg.id),
                        node.cfg.advertise.as_bytes(),
                        &ephemeral,
                    )
                    .await
                {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(e) => return Err(e),
                }
                let (stat, pred) = client
                    .check_and_watch_stat(&format!("{ELECTION}/{predecessor}"))
                    .await?;
                if stat.is_none() {
                    continue;
                }
                let (data, _, leader_watch) = client.get_and_watch_data(LEADER).await?;
                let leader = String::from_utf8(data).ok().filter(|s| !s.is_empty());
                node.become_follower(seq, leader).await;
                tokio::select! {
                    _ = pred.changed() => {}
                    _ = leader_watch.changed() => {}
                    s = states.changed() => if let Some(end) = on_state(node, s).await { return Ok(end) },
                    _ = shutdown.changed() => return Ok(End::Shutdown),
                }
            }
        }
    }
}
