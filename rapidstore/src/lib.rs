//! RapidStore: a small replicated key-value store whose servers elect their
//! leader through ZooKeeper (the system under test of the harness).
//!
//! - `election`: pure ordering of election nodes (who leads, whom to watch)
//! - `zk`: the election loop against a real ZooKeeper
//! - `node`: roles, leader sync, replication, commit, fencing, client paths
//! - `log`: the fsynced log and the persisted highest token
//! - `events`: the node's own event log (`GET /events`)
//! - `server`: HTTP/JSON routes
//! - `api`: wire types
//! - `bugs`: planted bugs (`--bug NAME`)

pub mod api;
pub mod bugs;
pub mod election;
pub mod events;
pub mod log;
pub mod node;
pub mod server;
pub mod zk;
