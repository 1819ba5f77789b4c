//! Nemeses: faults and their heals. Schedules (`schedule`) say what and
//! when; the executor applies a planned fault to the live cluster.

pub mod schedule;
