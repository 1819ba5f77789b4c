//! Grudges: which nodes drop traffic from which (Jepsen's `nemesis.clj`
//! partition shapes). Pure functions over node ids; `iptables` applies them.
//!
//! A grudge maps a node to the set of nodes it drops packets *from*. Nodes
//! with no grudge are absent (never mapped to an empty set), and no node ever
//! holds a grudge against itself.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

/// node -> nodes it drops traffic from.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// Smallest number of nodes that is more than half of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// `node` cut off from every other node of `all`, both ways.
pub fn isolate(node: &str, all: &[String]) -> Grudge {
    let rest: Vec<String> = all.iter().filter(|n| *n != node).cloned().collect();
    complete(&[vec![node.to_string()], rest])
}

/// Each component cut off from every other, both ways.
pub fn complete(components: &[Vec<String>]) -> Grudge {
    let mut grudge = Grudge::new();
    for (i, component) in components.iter().enumerate() {
        let others: BTreeSet<String> = components
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        for node in component {
            let dropped: BTreeSet<String> = others.iter().filter(|o| *o != node).cloned().collect();
            if !dropped.is_empty() {
                grudge.entry(node.clone()).or_default().extend(dropped);
            }
        }
    }
    grudge
}

/// Splits nodes into two halves, the first one smaller (or equal).
pub fn bisect(nodes: &[String]) -> (Vec<String>, Vec<String>) {
    let (a, b) = nodes.split_at(nodes.len() / 2);
    (a.to_vec(), b.to_vec())
}

/// The two halves of [`bisect`] cut off from each other: a minority and a
/// majority.
pub fn halves(nodes: &[String]) -> Grudge {
    let (a, b) = bisect(nodes);
    complete(&[a, b])
}

/// Two halves joined by one node (the first of the second half) that keeps
/// talking to both sides.
pub fn bridge(nodes: &[String]) -> Grudge {
    let (a, b) = bisect(nodes);
    let Some(bridge) = b.first().cloned() else {
        return Grudge::new();
    };
    let mut grudge = complete(&[a, b]);
    grudge.remove(&bridge);
    for dropped in grudge.values_mut() {
        dropped.remove(&bridge);
    }
    grudge.retain(|_, d| !d.is_empty());
    grudge
}

/// Every node sees a majority (itself included), and no two nodes see the
/// same majority (for 3 or more nodes). Nodes sit on a ring in the given
/// order and each sees the window of `majority(n)` nodes around itself. The
/// grudge is symmetric when the majority is odd (n = 4, 5, 8, 9, ...); for
/// an even majority (n = 3, 6, 7, ...) no symmetric arrangement exists and
/// the window leans one way.
pub fn majorities_ring(nodes: &[String]) -> Grudge {
    let n = nodes.len();
    if n < 3 {
        return Grudge::new();
    }
    let m = majority(n);
    let below = (m - 1) / 2;
    let mut grudge = Grudge::new();
    for (i, node) in nodes.iter().enumerate() {
        let sees: BTreeSet<usize> = (0..m).map(|k| (i + n - below + k) % n).collect();
        let dropped: BTreeSet<String> = (0..n)
            .filter(|j| !sees.contains(j))
            .map(|j| nodes[j].clone())
            .collect();
        if !dropped.is_empty() {
            grudge.insert(node.clone(), dropped);
        }
    }
    grudge
}

/// [`halves`] over a random shuffle of `nodes`.
pub fn random_halves<R: Rng + ?Sized>(nodes: &[String], rng: &mut R) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    halves(&shuffled)
}

/// A random node isolated from the rest.
pub fn random_isolate<R: Rng + ?Sized>(nodes: &[String], rng: &mut R) -> Grudge {
    match nodes.len() {
        0 => Grudge::new(),
        n => isolate(&nodes[rng.random_range(0..n)], nodes),
    }
}

/// Whether `a` drops `b` exactly when `b` drops `a`.
pub fn is_symmetric(grudge: &Grudge) -> bool {
    grudge.iter().all(|(a, dropped)| {
        dropped
            .iter()
            .all(|b| grudge.get(b).is_some_and(|d| d.contains(a)))
    })
}

/// The nodes `node` can still hear from, itself included.
pub fn sees(grudge: &Grudge, node: &str, all: &[String]) -> BTreeSet<String> {
    let dropped = grudge.get(node);
    all.iter()
        .filter(|n| dropped.is_none_or(|d| !d.contains(*n)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn well_formed(g: &Grudge, all: &[String]) {
        for (node, dropped) in g {
            assert!(all.contains(node), "{node} not a node");
            assert!(!dropped.is_empty(), "{node} has an empty grudge");
            assert!(!dropped.contains(node), "{node} drops itself");
            assert!(dropped.iter().all(|d| all.contains(d)));
        }
    }

    #[test]
    fn isolate_three() {
        let all = nodes(3);
        let g = isolate("n2", &all);
        assert_eq!(g["n2"], set(&["n1", "n3"]));
        assert_eq!(g["n1"], set(&["n2"]));
        assert_eq!(g["n3"], set(&["n2"]));
    }

    #[test]
    fn bisect_puts_the_smaller_half_first() {
        let (a, b) = bisect(&nodes(5));
        assert_eq!(a, nodes(2));
        assert_eq!(b, vec!["n3", "n4", "n5"]);
        assert_eq!(bisect(&nodes(1)), (vec![], nodes(1)));
    }

    #[test]
    fn bridge_five() {
        let g = bridge(&nodes(5));
        // n3 is the bridge: it drops nobody and nobody drops it.
        assert!(!g.contains_key("n3"));
        assert_eq!(g["n1"], set(&["n4", "n5"]));
        assert_eq!(g["n4"], set(&["n1", "n2"]));
        assert!(g.values().all(|d| !d.contains("n3")));
    }

    #[test]
    fn majorities_ring_five() {
        let all = nodes(5);
        let g = majorities_ring(&all);
        assert_eq!(g["n1"], set(&["n3", "n4"]));
        assert_eq!(sees(&g, "n1", &all), set(&["n5", "n1", "n2"]));
        assert!(is_symmetric(&g));
    }

    #[test]
    fn tiny_clusters_have_no_grudge() {
        assert!(halves(&nodes(1)).is_empty());
        assert!(bridge(&nodes(2)).is_empty());
        assert!(majorities_ring(&nodes(2)).is_empty());
        assert!(isolate("n1", &nodes(1)).is_empty());
    }

    #[test]
    fn random_halves_is_seeded() {
        let all = nodes(5);
        let a = random_halves(&all, &mut rand::rngs::SmallRng::seed_from_u64(7));
        let b = random_halves(&all, &mut rand::rngs::SmallRng::seed_from_u64(7));
        assert_eq!(a, b);
    }

    fn node_list() -> impl Strategy<Value = Vec<String>> {
        (0usize..10).prop_flat_map(|n| Just(nodes(n)).prop_shuffle())
    }

    proptest! {
        #[test]
        fn cuts_are_symmetric_and_well_formed(all in node_list(), seed in any::<u64>()) {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let grudges = [
                halves(&all),
                bridge(&all),
                random_halves(&all, &mut rng),
                random_isolate(&all, &mut rng),
                complete(&[all.iter().take(1).cloned().collect(), all.iter().skip(1).step_by(2).cloned().collect(), all.iter().skip(2).step_by(2).cloned().collect()]),
            ];
            for g in &grudges {
                well_formed(g, &all);
                prop_assert!(is_symmetric(g), "{:?}", g);
            }
        }

        #[test]
        fn isolate_cuts_exactly_one_node(all in node_list(), pick in any::<prop::sample::Index>()) {
            prop_assume!(all.len() >= 2);
            let node = pick.get(&all).clone();
            let g = isolate(&node, &all);
            well_formed(&g, &all);
            prop_assert!(is_symmetric(&g));
            prop_assert_eq!(sees(&g, &node, &all), set(&[node.as_str()]));
            for other in all.iter().filter(|o| **o != node) {
                prop_assert_eq!(sees(&g, other, &all).len(), all.len() - 1);
            }
        }

        #[test]
        fn halves_leave_a_majority_and_a_minority(all in node_list()) {
            prop_assume!(all.len() >= 2);
            let g = halves(&all);
            let counts: BTreeSet<usize> = all.iter().map(|n| sees(&g, n, &all).len()).collect();
            let small = all.len() / 2;
            prop_assert_eq!(counts, [small, all.len() - small].into_iter().collect::<BTreeSet<_>>());
        }

        #[test]
        fn bridge_node_sees_everyone(all in node_list()) {
            prop_assume!(all.len() >= 3);
            let g = bridge(&all);
            well_formed(&g, &all);
            let (_, b) = bisect(&all);
            prop_assert_eq!(sees(&g, &b[0], &all).len(), all.len());
        }

        #[test]
        fn majorities_ring_gives_distinct_majorities(all in node_list()) {
            prop_assume!(all.len() >= 3);
            let g = majorities_ring(&all);
            well_formed(&g, &all);
            let m = majority(all.len());
            let views: BTreeSet<BTreeSet<String>> = all.iter().map(|n| sees(&g, n, &all)).collect();
            prop_assert_eq!(views.len(), all.len(), "views not distinct");
            for n in &all {
                prop_assert_eq!(sees(&g, n, &all).len(), m);
            }
            prop_assert_eq!(is_symmetric(&g), m % 2 == 1);
        }
    }
}
