//! `rapidstore`: run one RapidStore server.

use clap::Parser;
use rapidstore::bugs::{Bug, Bugs};
use rapidstore::node::{Config, Node};
use std::path::PathBuf;
use std::time::Duration;

/// A leader-elected, replicated key-value server. Leadership is decided
/// through ZooKeeper (lowest ephemeral sequential node under
/// /rapidstore/election leads); writes are fenced with the leader's sequence
/// number and acknowledged once a majority of --peers has them on disk.
#[derive(Parser, Debug)]
#[command(version, after_help = AFTER_HELP)]
struct Cli {
    /// Node id, reported by /health and used under /rapidstore/follower.
    #[arg(long)]
    id: String,
    /// Address to serve HTTP on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Address other nodes and clients reach this node at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// ZooKeeper servers, HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    zk: String,
    /// Every member of the cluster (this node included), comma-separated
    /// HOST:PORT. Majorities are counted over this list. Default: only this node.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Directory for the log, the highest token seen and the event log.
    #[arg(long)]
    data_dir: PathBuf,
    /// ZooKeeper session timeout, e.g. 4s or 2500ms.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Read lease length for the lease-reads bug (default: half the session timeout).
    #[arg(long, value_parser = parse_duration)]
    lease: Option<Duration>,
    /// Switch on a planted bug (repeatable). Only for proving the checker.
    #[arg(long = "bug", value_enum)]
    bugs: Vec<Bug>,
}

const AFTER_HELP: &str = "\
HTTP API (JSON):
  GET  /health               id, role, token, leader, zk session, node wall clock
  GET  /kv/KEY               {value, token, index} | 404; followers redirect (307)
  PUT  /kv/KEY {\"value\":V}   {ok, token, index}; add \"if\": OLD|null for compare-and-set (412 on mismatch)
  GET  /events?since=N       the node's role transitions and replicated writes
  GET  /log?from=N           committed log entries";

/// Parse `4s`, `2500ms` or a plain number of milliseconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 4s or 2500ms"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mult / 1000.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,zookeeper_client=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let advertise = cli
        .advertise
        .clone()
        .unwrap_or_else(|| cli.listen.to_string());
    let mut peers = cli.peers.clone();
    if peers.is_empty() {
        peers.push(advertise.clone());
    }
    if !peers.contains(&advertise) {
        anyhow::bail!(
            "--peers must include this node's own address `{advertise}` (--advertise or --listen)"
        );
    }
    let cfg = Config {
        id: cli.id.clone(),
        advertise,
        peers,
        data_dir: cli.data_dir.clone(),
        session_timeout: cli.session_timeout,
        lease: cli.lease.unwrap_or(cli.session_timeout / 2),
        bugs: Bugs::new(cli.bugs.iter().copied()),
    };
    let node = Node::open(cfg)?;
    tracing::info!(id = %cli.id, listen = %cli.listen, bugs = ?node.cfg.bugs.names(), "starting");
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let election = tokio::spawn(rapidstore::zk::run(
        node.clone(),
        cli.zk.clone(),
        stop_rx.clone(),
    ));
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(listener, rapidstore::server::router(node.clone()))
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    tracing::info!("shutting down: leaving the election");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), election).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(
            parse_duration("2500ms").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("fast").unwrap_err().contains("e.g. 4s"));
        assert!(parse_duration("0s").is_err());
    }
}
