//! Pure election-ordering logic over the children of `/rapidstore/election`:
//! the lowest sequence number leads; every other node watches only its
//! predecessor (no herd effect).

/// Prefix of election node names.
pub const PREFIX: &str = "node_";

/// Sequence number of an election child such as `node_0000000012`.
pub fn sequence(child: &str) -> Option<u64> {
    child.strip_prefix(PREFIX)?.parse().ok()
}

/// What a node with sequence `mine` should do, given the current children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Lowest sequence: lead.
    Leader,
    /// Follow, watching the child just below ours.
    Follower { predecessor: String },
    /// Our own node is gone (session expired): rejoin.
    Missing,
}

/// Decide our position from the children of `/rapidstore/election`.
/// Children that are not election nodes are ignored.
pub fn position(children: &[String], mine: u64) -> Position {
    let mut seqs: Vec<(u64, &String)> = children
        .iter()
        .filter_map(|c| sequence(c).map(|s| (s, c)))
        .collect();
    seqs.sort();
    match seqs.iter().position(|(s, _)| *s == mine) {
        None => Position::Missing,
        Some(0) => Position::Leader,
        Some(i) => Position::Follower {
            predecessor: seqs[i - 1].1.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lowest_leads_and_others_watch_predecessor() {
        let c = kids(&[
            "node_0000000012",
            "node_0000000003",
            "node_0000000007",
            "junk",
        ]);
        assert_eq!(position(&c, 3), Position::Leader);
        assert_eq!(
            position(&c, 12),
            Position::Follower {
                predecessor: "node_0000000007".into()
            }
        );
        assert_eq!(
            position(&c, 7),
            Position::Follower {
                predecessor: "node_0000000003".into()
            }
        );
        assert_eq!(position(&c, 5), Position::Missing);
    }

    #[test]
    fn numeric_not_lexicographic_past_ten_digits() {
        // ZooKeeper pads to 10 digits, but a 64-bit counter can exceed that.
        let c = kids(&["node_9999999999", "node_10000000000"]);
        assert_eq!(position(&c, 9_999_999_999), Position::Leader);
        assert_eq!(sequence("node_0000000042"), Some(42));
        assert_eq!(sequence("other_1"), None);
    }
}
