//! Planted bugs: opt-in switches in the real code paths that exist only to
//! prove the harness's checker catches what it claims to catch.

use clap::ValueEnum;
use std::collections::BTreeSet;

/// A deliberately planted bug (`--bug NAME`). Off unless named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Bug {
    /// No fencing at all: replicas accept writes carrying any token, even one
    /// below the highest they have seen, and a leader that lost its
    /// ZooKeeper session keeps serving under its old token until ZooKeeper
    /// shows it another leader. A deposed (paused, partitioned) leader's
    /// writes land.
    NoFencing,
    /// The leader answers reads from local state without confirming with a
    /// majority, and keeps answering them after losing ZooKeeper.
    StaleReads,
    /// A new leader serves without first fetching the newest entries from a
    /// majority: acknowledged writes it never saw are overwritten.
    NoLeaderSync,
    /// The leader acknowledges a write once it is on its own disk and
    /// replicates it in the background (on its next heartbeat), before a
    /// majority has it: a leader crash loses acknowledged writes.
    AckBeforeReplicate,
    /// Reads are served without a majority check while a wall-clock lease
    /// (renewed on every majority round) runs, even when cut off from
    /// ZooKeeper: clock skew makes the lease outlive the leadership.
    LeaseReads,
}

impl Bug {
    /// The `--bug` spelling.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The set of enabled bugs.
#[derive(Debug, Clone, Default)]
pub struct Bugs(BTreeSet<Bug>);

impl Bugs {
    pub fn new(bugs: impl IntoIterator<Item = Bug>) -> Self {
        Bugs(bugs.into_iter().collect())
    }
    /// Is `bug` switched on?
    pub fn has(&self, bug: Bug) -> bool {
        self.0.contains(&bug)
    }
    /// Names of the enabled bugs.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|b| b.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_cli_spellings() {
        let b = Bugs::new([Bug::AckBeforeReplicate, Bug::NoFencing]);
        assert_eq!(b.names(), vec!["no-fencing", "ack-before-replicate"]);
        assert!(b.has(Bug::NoFencing) && !b.has(Bug::LeaseReads));
    }
}
