//! The RapidStore fault-injection harness: bring up a real cluster, drive a
//! workload, inject faults, record a history, check it, report.
//!
//! See `ARCHITECTURE.md` for a map of the modules.

pub mod history;
