//! The local network: a private /24 per run, one bridge in the root
//! namespace, one network namespace per node joined to it by a veth pair.
//!
//! Run subnet `10.213.X.0/24`: bridge `rshX` at `10.213.X.254` (the harness,
//! never partitioned), node `nK` in namespace `rshX-nK` at `10.213.X.K` on its
//! `eth0`, whose root-side peer is `rshXvK`. Every step is journaled first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

use crate::journal::{Journal, Undo, SUBNETS_DIR};

/// First two octets of every run subnet.
pub const SUBNET_PREFIX: [u8; 2] = [10, 213];
/// Third octets a run may use.
pub const SUBNET_RANGE: std::ops::RangeInclusive<u8> = 1..=250;
/// Most nodes a run may have (addresses .1 to .N; .254 is the bridge).
pub const MAX_NODES: usize = 9;

/// One run's /24, `10.213.X.0/24`, and the names derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    pub x: u8,
}

impl Subnet {
    pub fn bridge_name(&self) -> String {
        format!("rsh{}", self.x)
    }

    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.x, 254)
    }

    /// Address of node `k` (1-based).
    pub fn node_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.x, k as u8)
    }

    pub fn netns_name(&self, k: usize) -> String {
        format!("rsh{}-n{k}", self.x)
    }

    /// Root-namespace end of node `k`'s veth pair.
    pub fn veth_name(&self, k: usize) -> String {
        format!("rsh{}v{k}", self.x)
    }

    /// The run's own iptables chain (root namespace and node namespaces).
    pub fn chain_name(&self) -> String {
        format!("RSH-{}", self.x)
    }

    /// `10.213.X.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.x)
    }
}

/// Third octets X whose `10.213.X.0/24` overlaps any address or prefix
/// (`a.b.c.d` or `a.b.c.d/len`) in `text`, e.g. `ip -o -4 addr` or
/// `ip -4 route` output. Prefixes broader than /16 (a default route, a VPN's
/// 10.0.0.0/8) do not count: a /24 of ours only shadows a small part of them.
pub fn used_octets(text: &str) -> BTreeSet<u8> {
    let mut used = BTreeSet::new();
    for word in text.split_whitespace() {
        let (addr, len) = match word.split_once('/') {
            Some((a, l)) => (a, l.parse::<u32>().ok()),
            None => (word, Some(32)),
        };
        let (Ok(addr), Some(len)) = (addr.parse::<Ipv4Addr>(), len) else {
            continue;
        };
        if !(16..=32).contains(&len) {
            continue;
        }
        for x in SUBNET_RANGE {
            let ours = u32::from(Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], x, 0));
            let bits = len.min(24);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            if u32::from(addr) & mask == ours & mask {
                used.insert(x);
            }
        }
    }
    used
}

/// The lowest free third octet, if any.
pub fn choose_octet(used: &BTreeSet<u8>) -> Option<u8> {
    SUBNET_RANGE.into_iter().find(|x| !used.contains(x))
}

/// Picks and reserves a subnet: not on any interface of the root namespace,
/// not named by an existing link, and not reserved by another run (a
/// reservation file `STATE_DIR/subnets/X` created exclusively, so two
/// concurrent runs cannot take the same one).
pub async fn reserve_subnet(journal: &Journal) -> Result<Subnet> {
    let addrs = run("ip", &["-o", "-4", "addr", "show"]).await?;
    let routes = run("ip", &["-4", "route", "show", "table", "all"]).await?;
    // Only the address/prefix words matter; "default" and friends are skipped.
    let mut used = used_octets(&format!("{addrs}\n{routes}"));
    let dir = journal.state_dir().join(SUBNETS_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    loop {
        let x = choose_octet(&used).ok_or_else(|| {
            anyhow!("no free subnet in 10.213.1-250.0/24\nhint: run `harness clean` to remove stale runs")
        })?;
        used.insert(x);
        let subnet = Subnet { x };
        if Path::new("/sys/class/net")
            .join(subnet.bridge_name())
            .exists()
        {
            continue;
        }
        let path = dir.join(x.to_string());
        journal.push(Undo::ReleaseSubnet {
            path: path.clone(),
            run_id: journal.run_id().to_string(),
        })?;
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                writeln!(f, "{}", journal.run_id())?;
                f.sync_all()?;
                return Ok(subnet);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create `{}`", path.display())),
        }
    }
}

/// Runs `ip ARGS`, failing with its stderr.
pub(crate) async fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).await.map(drop)
}

pub(crate) async fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .await
        .with_context(|| format!("cannot run `{prog}`"))?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One node of the local network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNode {
    pub id: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// The run's bridge and node namespaces. Removed by replaying the journal.
#[derive(Debug, Clone)]
pub struct Network {
    subnet: Subnet,
    nodes: Vec<NetNode>,
}

impl Network {
    /// Reserves a subnet and creates the bridge and `n` node namespaces.
    pub async fn setup(journal: &Journal, n: usize) -> Result<Network> {
        if n == 0 || n > MAX_NODES {
            bail!("a local cluster has 1 to {MAX_NODES} nodes, not {n}");
        }
        let started = Instant::now();
        let subnet = reserve_subnet(journal).await?;
        let br = subnet.bridge_name();
        journal.push(Undo::DeleteLink { name: br.clone() })?;
        ip(&["link", "add", &br, "type", "bridge"]).await?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", subnet.bridge_ip()),
            "dev",
            &br,
        ])
        .await?;
        ip(&["link", "set", &br, "up"]).await?;
        super::iptables::allow_bridge_in_root(journal, &subnet).await?;
        let mut nodes = Vec::new();
        for k in 1..=n {
            let node = NetNode {
                id: format!("n{k}"),
                netns: subnet.netns_name(k),
                ip: subnet.node_ip(k),
            };
            let veth = subnet.veth_name(k);
            journal.push(Undo::DeleteNetns {
                name: node.netns.clone(),
            })?;
            ip(&["netns", "add", &node.netns]).await?;
            journal.push(Undo::DeleteLink { name: veth.clone() })?;
            ip(&[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ])
            .await?;
            ip(&["link", "set", &veth, "master", &br, "up"]).await?;
            let ns = node.netns.as_str();
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", node.ip),
                "dev",
                "eth0",
            ])
            .await?;
            ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
            ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
            nodes.push(node);
        }
        tracing::info!(
            subnet = %subnet.cidr(),
            nodes = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "network up"
        );
        Ok(Network { subnet, nodes })
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    pub fn nodes(&self) -> &[NetNode] {
        &self.nodes
    }

    pub fn node(&self, id: &str) -> Option<&NetNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn ip(&self, id: &str) -> Option<Ipv4Addr> {
        self.node(id).map(|n| n.ip)
    }

    /// node id -> namespace name, for [`crate::control::NetnsRemote`].
    pub fn namespaces(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .map(|n| (n.id.clone(), n.netns.clone()))
            .collect()
    }

    /// Everything of this run that should be gone after teardown and still
    /// exists: namespaces and links (for tests and `harness doctor`).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for k in 1..=self.nodes.len() {
            let ns = self.subnet.netns_name(k);
            if Path::new("/run/netns").join(&ns).exists() {
                left.push(format!("netns {ns}"));
            }
            let veth = self.subnet.veth_name(k);
            if Path::new("/sys/class/net").join(&veth).exists() {
                left.push(format!("link {veth}"));
            }
        }
        let br = self.subnet.bridge_name();
        if Path::new("/sys/class/net").join(&br).exists() {
            left.push(format!("link {br}"));
        }
        left
    }

    /// Path of the run's subnet reservation.
    pub fn reservation(&self, journal: &Journal) -> PathBuf {
        journal
            .state_dir()
            .join(SUBNETS_DIR)
            .join(self.subnet.x.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits() {
        let s = Subnet { x: 250 };
        assert_eq!(s.bridge_name(), "rsh250");
        assert_eq!(s.veth_name(9), "rsh250v9");
        assert_eq!(s.netns_name(3), "rsh250-n3");
        assert_eq!(s.chain_name(), "RSH-250");
        assert_eq!(s.node_ip(2), Ipv4Addr::new(10, 213, 250, 2));
        assert_eq!(s.bridge_ip(), Ipv4Addr::new(10, 213, 250, 254));
        assert!(s.veth_name(9).len() <= 15);
    }

    #[test]
    fn finds_used_octets() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                   5: rsh3    inet 10.213.3.254/24 scope global rsh3\n\
                   6: eth1    inet 10.2.13.4/24 scope global eth1\n\
                   7: eth2    inet 10.213.17.9/16 brd 10.213.255.255 scope global eth2\n";
        let used = used_octets(out);
        // 10.213.17.9/16 overlaps every run subnet.
        assert_eq!(used.len(), SUBNET_RANGE.count());
        let out = "5: rsh3    inet 10.213.3.254/24 scope global rsh3\n\
                   10.213.9.0/24 dev rsh9 proto kernel scope link src 10.213.9.254\n\
                   default via 10.213.40.1 dev eth0\n\
                   10.2.13.0/24 dev x\n\
                   10.0.0.0/8 via 192.0.2.1 dev eth0\n";
        assert_eq!(used_octets(out), [3, 9, 40].into_iter().collect());
        assert_eq!(choose_octet(&[1, 2, 4].into_iter().collect()), Some(3));
        assert_eq!(choose_octet(&SUBNET_RANGE.collect()), None);
    }
}
