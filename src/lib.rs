//! The RapidStore fault-injection harness: bring up a real cluster, drive a
//! workload, inject faults, record a history, check it, report.
//!
//! See `ARCHITECTURE.md` for a map of the modules.

pub mod checker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod control;
pub mod db;
pub mod doctor;
pub mod generator;
pub mod history;
pub mod hosts;
pub mod journal;
pub mod nemesis;
pub mod net;
pub mod observe;
pub mod report;
pub mod run;
pub mod store;
pub mod workload;
