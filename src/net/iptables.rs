//! Partitions with iptables: each node namespace gets the run's own chain
//! (`RSH-X` in the filter table, jumped to from INPUT), and a grudge becomes
//! `-s PEER -j DROP` rules in it. Healing flushes only that chain; whole
//! tables are never flushed. Also: letting bridged traffic through the root
//! namespace's filter when it would block it (Docker sets FORWARD to DROP and
//! `br_netfilter` sends bridged frames through it).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::task::JoinSet;

use super::bridge::{run, NetNode, Network, Subnet};
use super::grudge::Grudge;
use crate::control::{argv, Control, Remote};
use crate::journal::{Journal, Undo};

pub const TABLE: &str = "filter";

/// Whether the root filter table's `chain` could drop our traffic, judged
/// from `iptables -S CHAIN` output: a policy other than ACCEPT, or any rule.
pub fn chain_is_restrictive(rules: &str, chain: &str) -> bool {
    rules.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", c, policy] if *c == chain => *policy != "ACCEPT",
            ["-A", c, ..] if *c == chain => true,
            _ => false,
        }
    })
}

/// The jump rules (without `-I`/`-A`) that send the bridge's traffic in the
/// root namespace to the run's chain, for each restrictive built-in chain.
/// FORWARD only matters when bridged frames pass iptables (`br_netfilter`).
pub fn root_hooks(
    subnet: &Subnet,
    bridge_nf_call_iptables: bool,
    forward: &str,
    input: &str,
    output: &str,
) -> Vec<Vec<String>> {
    let br = subnet.bridge_name();
    let chain = subnet.chain_name();
    let mut hooks = Vec::new();
    if bridge_nf_call_iptables && chain_is_restrictive(forward, "FORWARD") {
        hooks.push(argv(&["FORWARD", "-i", &br, "-o", &br, "-j", &chain]));
    }
    if chain_is_restrictive(input, "INPUT") {
        hooks.push(argv(&["INPUT", "-i", &br, "-j", &chain]));
    }
    if chain_is_restrictive(output, "OUTPUT") {
        hooks.push(argv(&["OUTPUT", "-o", &br, "-j", &chain]));
    }
    hooks
}

/// Adds, if needed, a journaled ACCEPT for the run's bridge to the root
/// namespace's filter table. Returns whether it did.
pub async fn allow_bridge_in_root(journal: &Journal, subnet: &Subnet) -> Result<bool> {
    let nf_call = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let list =
        |c: &'static str| async move { run("iptables", &["-w", "-t", TABLE, "-S", c]).await };
    let hooks = root_hooks(
        subnet,
        nf_call,
        &list("FORWARD").await?,
        &list("INPUT").await?,
        &list("OUTPUT").await?,
    );
    if hooks.is_empty() {
        tracing::debug!(
            br_netfilter = nf_call,
            "root filter lets bridge traffic through"
        );
        return Ok(false);
    }
    let chain = subnet.chain_name();
    journal.push(Undo::DeleteChain {
        netns: None,
        table: TABLE.into(),
        chain: chain.clone(),
        hook_rules: hooks.clone(),
    })?;
    run("iptables", &["-w", "-t", TABLE, "-N", &chain]).await?;
    run(
        "iptables",
        &["-w", "-t", TABLE, "-A", &chain, "-j", "ACCEPT"],
    )
    .await?;
    for hook in &hooks {
        let mut args = vec!["-w", "-t", TABLE, "-I", &hook[0], "1"];
        args.extend(hook[1..].iter().map(String::as_str));
        run("iptables", &args).await?;
    }
    tracing::info!(
        ?hooks,
        "root filter would block the bridge: added ACCEPT in {chain}"
    );
    Ok(true)
}

/// `iptables-restore --noflush` input that replaces the contents of `chain`
/// with DROP rules for `drops` (declaring the chain flushes it, atomically).
/// With `ports`, only TCP traffic to or from those ports is dropped.
pub fn restore_script(chain: &str, drops: &[Ipv4Addr], ports: &[u16]) -> String {
    let mut s = format!("*{TABLE}\n:{chain} - [0:0]\n");
    for ip in drops {
        if ports.is_empty() {
            s.push_str(&format!("-A {chain} -s {ip}/32 -j DROP\n"));
        }
        for p in ports {
            s.push_str(&format!(
                "-A {chain} -s {ip}/32 -p tcp --dport {p} -j DROP\n"
            ));
            s.push_str(&format!(
                "-A {chain} -s {ip}/32 -p tcp --sport {p} -j DROP\n"
            ));
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// The DROP rules of `chain` in `iptables -S CHAIN` output.
pub fn drop_rules(listing: &str, chain: &str) -> Vec<String> {
    let prefix = format!("-A {chain} ");
    listing
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// One node the firewall acts on: its id and the address peers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNode {
    pub id: String,
    pub ip: Ipv4Addr,
}

/// The run's own chain on a remote host: `RSH-` and 8 hex digits of the run
/// id (FNV-1a), distinct from local runs' `RSH-<octet>` and under
/// iptables' 28-character limit.
pub fn remote_chain_name(run_id: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in run_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("RSH-{h:08x}")
}

/// The run's partition control over all nodes (namespaces or hosts): every
/// command goes through the [`Control`], so both modes share it.
#[derive(Debug, Clone)]
pub struct Firewall {
    control: Control,
    chain: String,
    nodes: Vec<FwNode>,
}

impl Firewall {
    pub fn new(control: Control, chain: String, nodes: Vec<FwNode>) -> Firewall {
        Firewall {
            control,
            chain,
            nodes,
        }
    }

    /// The firewall of a local network: its chain in every namespace.
    pub fn local(control: Control, network: &Network) -> Firewall {
        Firewall::new(
            control,
            network.subnet().chain_name(),
            network
                .nodes()
                .iter()
                .map(|n: &NetNode| FwNode {
                    id: n.id.clone(),
                    ip: n.ip,
                })
                .collect(),
        )
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Creates the run's chain on every node, jumped to from INPUT. Refuses
    /// a chain that already exists: it is not the run's own.
    pub async fn install(&self, journal: &Journal) -> Result<()> {
        for node in &self.nodes {
            let exists = self
                .control
                .exec(
                    &node.id,
                    &argv(&["iptables", "-w", "-t", TABLE, "-S", &self.chain]),
                )
                .await?;
            if exists.success() {
                bail!(
                    "iptables chain {} already exists on {}: not created by this run\nhint: run `harness clean`",
                    self.chain,
                    node.id
                );
            }
            let hook = argv(&["INPUT", "-j", &self.chain]);
            journal.push(self.control.delete_chain_undo(
                &node.id,
                TABLE,
                &self.chain,
                vec![hook.clone()],
            )?)?;
            self.iptables(&node.id, &["-N", &self.chain]).await?;
            let mut insert = vec!["-I", "INPUT", "1"];
            insert.extend(hook[1..].iter().map(String::as_str));
            self.iptables(&node.id, &insert).await?;
        }
        Ok(())
    }

    async fn iptables(&self, node: &str, args: &[&str]) -> Result<String> {
        let mut full = argv(&["iptables", "-w", "-t", TABLE]);
        full.extend(argv(args));
        let out = self.control.exec(node, &full).await?;
        Ok(out
            .check(&format!("iptables {} on {node}", args.join(" ")))?
            .stdout)
    }

    /// Makes the network exactly `grudge`: each node drops traffic from the
    /// nodes its grudge names, and from no others. All nodes at once.
    pub async fn partition(&self, grudge: &Grudge) -> Result<()> {
        self.partition_ports(grudge, &[]).await
    }

    /// Like [`Firewall::partition`], but only TCP traffic to or from `ports`
    /// (e.g. RapidStore's, leaving ZooKeeper reachable); all traffic if empty.
    pub async fn partition_ports(&self, grudge: &Grudge, ports: &[u16]) -> Result<()> {
        let known: BTreeSet<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        for (node, dropped) in grudge {
            if let Some(bad) = std::iter::once(node)
                .chain(dropped)
                .find(|n| !known.contains(n.as_str()))
            {
                bail!("grudge names unknown node `{bad}`");
            }
        }
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for node in &self.nodes {
            let drops: Vec<Ipv4Addr> = grudge
                .get(&node.id)
                .into_iter()
                .flatten()
                .filter_map(|peer| self.nodes.iter().find(|n| &n.id == peer).map(|n| n.ip))
                .collect();
            let script = restore_script(&self.chain, &drops, ports);
            let control = self.control.clone();
            let id = node.id.clone();
            tasks.spawn(async move {
                let cmd = argv(&["iptables-restore", "-w", "--noflush"]);
                control
                    .exec_with_stdin(&id, &cmd, script.into_bytes())
                    .await
                    .and_then(|o| o.check(&format!("iptables-restore on {id}")))
            });
        }
        join_all(tasks).await?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition applied"
        );
        Ok(())
    }

    /// Removes every DROP rule the run added (flushes only its own chain).
    pub async fn heal(&self) -> Result<()> {
        let mut tasks = JoinSet::new();
        for node in &self.nodes {
            let this = self.clone();
            let id = node.id.clone();
            tasks.spawn(async move { this.iptables(&id, &["-F", &this.chain]).await });
        }
        join_all(tasks).await
    }

    /// The rules still in the run's chain, as (node, rule); empty after a
    /// full heal.
    pub async fn rules_left(&self) -> Result<Vec<(String, String)>> {
        let mut left = Vec::new();
        for node in &self.nodes {
            let listing = self
                .iptables(&node.id, &["-S", &self.chain])
                .await
                .with_context(|| format!("cannot list {} on {}", self.chain, node.id))?;
            left.extend(
                drop_rules(&listing, &self.chain)
                    .into_iter()
                    .map(|r| (node.id.clone(), r)),
            );
        }
        Ok(left)
    }
}

async fn join_all<T: 'static>(mut tasks: JoinSet<Result<T>>) -> Result<()> {
    let mut errors = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("task failed: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_FORWARD: &str = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n";

    #[test]
    fn restrictive_chains() {
        assert!(!chain_is_restrictive("-P FORWARD ACCEPT\n", "FORWARD"));
        assert!(chain_is_restrictive(DOCKER_FORWARD, "FORWARD"));
        assert!(chain_is_restrictive(
            "-P INPUT ACCEPT\n-A INPUT -p tcp -j REJECT\n",
            "INPUT"
        ));
    }

    #[test]
    fn hooks_only_where_needed() {
        let s = Subnet { x: 9 };
        let open = |c: &str| format!("-P {c} ACCEPT\n");
        assert!(root_hooks(&s, true, &open("FORWARD"), &open("INPUT"), &open("OUTPUT")).is_empty());
        // Without br_netfilter, bridged frames never see FORWARD.
        assert!(root_hooks(&s, false, DOCKER_FORWARD, &open("INPUT"), &open("OUTPUT")).is_empty());
        let hooks = root_hooks(&s, true, DOCKER_FORWARD, &open("INPUT"), &open("OUTPUT"));
        assert_eq!(
            hooks,
            vec![argv(&[
                "FORWARD", "-i", "rsh9", "-o", "rsh9", "-j", "RSH-9"
            ])]
        );
    }

    #[test]
    fn restore_script_replaces_the_chain() {
        let script = restore_script("RSH-4", &[Ipv4Addr::new(10, 213, 4, 2)], &[]);
        assert_eq!(
            script,
            "*filter\n:RSH-4 - [0:0]\n-A RSH-4 -s 10.213.4.2/32 -j DROP\nCOMMIT\n"
        );
        assert_eq!(
            restore_script("RSH-4", &[], &[]),
            "*filter\n:RSH-4 - [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn port_scoped_rules_drop_both_directions_of_one_service() {
        let script = restore_script("RSH-4", &[Ipv4Addr::new(10, 213, 4, 2)], &[7000]);
        assert!(script.contains("-A RSH-4 -s 10.213.4.2/32 -p tcp --dport 7000 -j DROP\n"));
        assert!(script.contains("-A RSH-4 -s 10.213.4.2/32 -p tcp --sport 7000 -j DROP\n"));
        assert!(!script.contains("-s 10.213.4.2/32 -j DROP"));
    }

    #[test]
    fn remote_chain_names_are_short_and_distinct() {
        let a = remote_chain_name("2024-01-01T00-00-00_partition-leader");
        let b = remote_chain_name("2024-01-01T00-00-01_partition-leader");
        assert_ne!(a, b);
        assert!(a.starts_with("RSH-") && a.len() == 12, "{a}");
        assert_eq!(a, remote_chain_name("2024-01-01T00-00-00_partition-leader"));
    }

    #[test]
    fn lists_only_our_rules() {
        let listing = "-N RSH-4\n-A RSH-4 -s 10.213.4.2/32 -j DROP\n-A INPUT -j RSH-4\n";
        assert_eq!(
            drop_rules(listing, "RSH-4"),
            vec!["-A RSH-4 -s 10.213.4.2/32 -j DROP"]
        );
    }
}
