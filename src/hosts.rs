//! The hosts file of `harness run --hosts FILE.toml`: the real machines a
//! run uses instead of local network namespaces, reached over SSH
//! ([`crate::control::ssh`]).
//!
//! ```toml
//! version = 1
//! clock = "faketime"          # or "settime" (every host must be dedicated)
//! known_hosts = "add"         # "strict" | "add" (accept new keys) | "accept"
//! known_hosts_file = ".vagrant/known_hosts"   # optional, relative to this file
//!
//! [defaults]                  # any per-host field but node/address/zookeeper
//! user = "root"
//! key = ".vagrant/id"         # relative to this file
//!
//! [[host]]
//! node = "n1"
//! address = "192.168.56.11"
//! zookeeper = true
//! dedicated = true
//! ```
//!
//! Parsed in passes, like every file people write here: syntax and unknown
//! fields first (file, line, column), then meaning (each error names the
//! line of the host or field at fault), all before anything is touched.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::workload::{line_col, DefinitionError};

/// Where a run's files go on a host unless `base_dir` says otherwise; each
/// run gets `BASE_DIR/<run-id>/`, removed at teardown.
pub const DEFAULT_BASE_DIR: &str = "/var/lib/rapidstore-harness";
/// Most nodes a run may have (as locally).
pub const MAX_HOSTS: usize = crate::net::bridge::MAX_NODES;

/// How clock faults move a node's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMethod {
    /// libfaketime preloaded into RapidStore, offset in a file (per process).
    #[default]
    Faketime,
    /// `clock_settime` on the host: moves the whole kernel's clock, so only
    /// for dedicated hosts.
    Settime,
}

/// What to do with a host key SSH has not seen before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    /// Only keys already in the known-hosts file.
    Strict,
    /// Accept and remember new keys; refuse changed ones.
    #[default]
    Add,
    /// Accept any key (throwaway VMs whose keys change on every `up`).
    Accept,
}

impl KnownHosts {
    /// The `StrictHostKeyChecking` value for `ssh -o`.
    pub fn ssh_option(self) -> &'static str {
        match self {
            KnownHosts::Strict => "yes",
            KnownHosts::Add => "accept-new",
            KnownHosts::Accept => "no",
        }
    }
}

/// One host of the hosts file, with defaults applied and paths resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// `n1`..`nN`.
    pub node: String,
    /// Where SSH, clients and peers reach the node. An address, not a name:
    /// partitions drop traffic by source address.
    pub address: Ipv4Addr,
    pub user: String,
    pub port: u16,
    /// Private key (absolute); `None`: SSH's own choice (agent, config).
    pub key: Option<PathBuf>,
    /// The run's files go under `base_dir/<run-id>/`.
    pub base_dir: PathBuf,
    /// Runs a ZooKeeper server.
    pub zookeeper: bool,
    /// The machine is the test's alone (its clock may be moved).
    pub dedicated: bool,
    /// Prefix every command with `sudo -n` (for a non-root user).
    pub sudo: bool,
}

impl Host {
    /// The run's own directory on this host.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.base_dir.join(run_id)
    }
}

/// A parsed and validated hosts file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hosts {
    pub path: PathBuf,
    pub clock: ClockMethod,
    pub known_hosts: KnownHosts,
    /// Absolute; `None`: SSH's default (`~/.ssh/known_hosts`).
    pub known_hosts_file: Option<PathBuf>,
    /// In node order n1..nN.
    pub hosts: Vec<Host>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<u32>,
    #[serde(default)]
    clock: Option<Spanned<ClockMethod>>,
    #[serde(default)]
    known_hosts: KnownHosts,
    #[serde(default)]
    known_hosts_file: Option<PathBuf>,
    #[serde(default)]
    defaults: RawOpts,
    #[serde(default, rename = "host")]
    hosts: Vec<Spanned<RawHost>>,
}

/// Fields a host may take from `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpts {
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
    base_dir: Option<PathBuf>,
    dedicated: Option<bool>,
    sudo: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    node: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    zookeeper: bool,
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
    base_dir: Option<PathBuf>,
    dedicated: Option<bool>,
    sudo: Option<bool>,
}

impl Hosts {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Hosts, DefinitionError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Io {
            path: p.clone(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the contents of `path` (relative paths inside
    /// resolve against `path`'s folder).
    pub fn parse(path: &Path, text: &str) -> Result<Hosts, DefinitionError> {
        let p = path.display().to_string();
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            DefinitionError::Parse {
                path: p.clone(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            DefinitionError::Parse {
                path: p.clone(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        if *raw.version.get_ref() != 1 {
            return Err(at(
                raw.version.span().start,
                format!(
                    "version {} is not supported; use version = 1",
                    raw.version.get_ref()
                ),
            ));
        }
        let dir = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        if raw.hosts.is_empty() {
            return Err(at(
                text.len(),
                "no hosts: add a `[[host]]` table per node (node, address)".into(),
            ));
        }
        if raw.hosts.len() > MAX_HOSTS {
            return Err(at(
                raw.hosts[MAX_HOSTS].span().start,
                format!("at most {MAX_HOSTS} hosts are supported"),
            ));
        }
        let d = &raw.defaults;
        let mut hosts = Vec::new();
        let mut seen_nodes = BTreeSet::new();
        let mut seen_addrs = BTreeSet::new();
        for h in &raw.hosts {
            let start = h.span().start;
            let h = h.get_ref();
            let node = h.node.get_ref().clone();
            let k = node
                .strip_prefix('n')
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|k| (1..=MAX_HOSTS).contains(k) && node == format!("n{k}"));
            if k.is_none() {
                return Err(at(
                    h.node.span().start,
                    format!("node `{node}` is not a node name; use n1, n2, ... in order"),
                ));
            }
            if !seen_nodes.insert(node.clone()) {
                return Err(at(
                    h.node.span().start,
                    format!("node `{node}` is listed twice"),
                ));
            }
            let address: Ipv4Addr = h.address.get_ref().parse().map_err(|_| {
                at(
                    h.address.span().start,
                    format!(
                        "address `{}` of {node} is not an IPv4 address (names are not resolved: partitions drop by address)",
                        h.address.get_ref()
                    ),
                )
            })?;
            if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
                return Err(at(
                    h.address.span().start,
                    format!("address {address} of {node} cannot be a host's address"),
                ));
            }
            if !seen_addrs.insert(address) {
                return Err(at(
                    h.address.span().start,
                    format!("address {address} is used by two hosts; partitions drop by source address, so each node needs its own"),
                ));
            }
            let user = h
                .user
                .clone()
                .or_else(|| d.user.clone())
                .unwrap_or_else(|| "root".into());
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c == '@') {
                return Err(at(
                    start,
                    format!("user `{user}` of {node} is not a user name"),
                ));
            }
            let port = h.port.or(d.port).unwrap_or(22);
            if port == 0 {
                return Err(at(start, format!("port 0 of {node} is not a port")));
            }
            let key = h.key.as_ref().or(d.key.as_ref()).map(|k| resolve(k));
            if let Some(k) = &key {
                if !k.is_file() {
                    return Err(at(
                        start,
                        format!("key `{}` of {node} is not a file", k.display()),
                    ));
                }
            }
            let base_dir = h
                .base_dir
                .clone()
                .or_else(|| d.base_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BASE_DIR));
            let normal = base_dir
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .count();
            let clean = base_dir
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
            if !base_dir.is_absolute() || normal == 0 || !clean {
                return Err(at(
                    start,
                    format!(
                        "base_dir `{}` of {node} must be an absolute folder other than `/` (without `..`)",
                        base_dir.display()
                    ),
                ));
            }
            hosts.push((
                k.unwrap_or_default(),
                Host {
                    node,
                    address,
                    user,
                    port,
                    key,
                    base_dir,
                    zookeeper: h.zookeeper,
                    dedicated: h.dedicated.or(d.dedicated).unwrap_or(false),
                    sudo: h.sudo.or(d.sudo).unwrap_or(false),
                },
                start,
            ));
        }
        hosts.sort_by_key(|(k, _, _)| *k);
        for (i, (k, host, start)) in hosts.iter().enumerate() {
            if *k != i + 1 {
                return Err(at(
                    *start,
                    format!(
                        "nodes must be n1..n{} with none missing; n{} is missing",
                        hosts.len(),
                        i + 1
                    ),
                ));
            }
            let _ = host;
        }
        let zk = hosts.iter().filter(|(_, h, _)| h.zookeeper).count();
        if !crate::db::zookeeper::SIZES.contains(&zk) {
            return Err(at(
                raw.hosts[0].span().start,
                format!("{zk} hosts have `zookeeper = true`; a ZooKeeper ensemble needs 1, 3 or 5"),
            ));
        }
        let clock = raw.clock.as_ref().map(|c| *c.get_ref()).unwrap_or_default();
        if clock == ClockMethod::Settime {
            let shared: Vec<&str> = hosts
                .iter()
                .filter(|(_, h, _)| !h.dedicated)
                .map(|(_, h, _)| h.node.as_str())
                .collect();
            if !shared.is_empty() {
                let offset = raw.clock.as_ref().map_or(0, |c| c.span().start);
                return Err(at(offset, settime_refusal(&shared)));
            }
        }
        Ok(Hosts {
            path: path.to_path_buf(),
            clock,
            known_hosts: raw.known_hosts,
            known_hosts_file: raw.known_hosts_file.as_deref().map(resolve),
            hosts: hosts.into_iter().map(|(_, h, _)| h).collect(),
        })
    }

    /// Node ids in order.
    pub fn nodes(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.node.clone()).collect()
    }

    /// Nodes that run ZooKeeper, in order.
    pub fn zk_nodes(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.zookeeper)
            .map(|h| h.node.clone())
            .collect()
    }

    pub fn host(&self, node: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.node == node)
    }
}

/// Why `settime` is refused on a file with non-dedicated hosts.
pub fn settime_refusal(shared: &[&str]) -> String {
    format!(
        "clock = \"settime\" moves the clock of the whole kernel, so every host must be declared `dedicated = true`; not dedicated: {}\n  hint: use clock = \"faketime\" (per process) on shared machines",
        shared.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Hosts, String> {
        Hosts::parse(Path::new("/x/hosts.toml"), text).map_err(|e| e.to_string())
    }

    const THREE: &str = r#"version = 1
[defaults]
user = "admin"
base_dir = "/srv/h"

[[host]]
node = "n2"
address = "192.168.56.12"
zookeeper = true

[[host]]
node = "n1"
address = "192.168.56.11"
zookeeper = true
port = 2222
base_dir = "/srv/one"

[[host]]
node = "n3"
address = "192.168.56.13"
zookeeper = true
user = "root"
"#;

    #[test]
    fn parses_with_defaults_in_node_order() {
        let h = parse(THREE).unwrap();
        assert_eq!(h.nodes(), ["n1", "n2", "n3"]);
        assert_eq!(h.zk_nodes(), ["n1", "n2", "n3"]);
        assert_eq!(h.clock, ClockMethod::Faketime);
        assert_eq!(h.known_hosts, KnownHosts::Add);
        let n1 = h.host("n1").unwrap();
        assert_eq!(n1.port, 2222);
        assert_eq!(n1.user, "admin");
        assert_eq!(n1.base_dir, Path::new("/srv/one"));
        assert_eq!(n1.run_dir("r1"), Path::new("/srv/one/r1"));
        let n3 = h.host("n3").unwrap();
        assert_eq!((n3.user.as_str(), n3.port), ("root", 22));
        assert_eq!(n3.base_dir, Path::new("/srv/h"));
        assert!(!n3.dedicated && !n3.sudo && n3.key.is_none());
    }

    #[test]
    fn syntax_and_unknown_fields_name_line_and_column() {
        let err =
            parse("version = 1\n[[host]]\nnode = \"n1\"\naddres = \"1.2.3.4\"\n").unwrap_err();
        assert!(
            err.contains("/x/hosts.toml") && err.contains("line 4") && err.contains("addres"),
            "{err}"
        );
        let err = parse("version = 1\n[[host]]\nnode = \"n1\"\naddress = 5\n").unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        let err = parse("version = 1\nclock = \"ntp\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("ntp"), "{err}");
    }

    #[test]
    fn meaning_errors_name_the_line_at_fault() {
        let cases: &[(&str, &str, &str)] = &[
            ("version = 2\n", "line 1", "version 2"),
            ("version = 1\n", "line 2", "no hosts"),
            (
                "version = 1\n[[host]]\nnode = \"x1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n",
                "line 3",
                "not a node name",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"zk1.example\"\nzookeeper = true\n",
                "line 4",
                "not an IPv4 address",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n[[host]]\nnode = \"n2\"\naddress = \"10.0.0.1\"\n",
                "line 8",
                "used by two hosts",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.2\"\n",
                "line 7",
                "listed twice",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n[[host]]\nnode = \"n3\"\naddress = \"10.0.0.3\"\n",
                "line 6",
                "n2 is missing",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\n",
                "line 2",
                "needs 1, 3 or 5",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\nkey = \"/no/such/key\"\n",
                "line 2",
                "not a file",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\nbase_dir = \"/\"\n",
                "line 2",
                "base_dir",
            ),
            (
                "version = 1\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\nbase_dir = \"rel\"\n",
                "line 2",
                "base_dir",
            ),
        ];
        for (text, line, what) in cases {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("/x/hosts.toml") && err.contains(line) && err.contains(what),
                "expected {line} / {what}:\n{text}\n=> {err}"
            );
        }
    }

    #[test]
    fn settime_is_refused_unless_every_host_is_dedicated() {
        let shared = THREE.replace("version = 1\n", "version = 1\nclock = \"settime\"\n");
        let err = parse(&shared).unwrap_err();
        assert!(
            err.contains("line 2")
                && err.contains("whole kernel")
                && err.contains("n1, n2, n3")
                && err.contains("hint"),
            "{err}"
        );
        let partly = shared.replace("user = \"root\"\n", "user = \"root\"\ndedicated = true\n");
        let err = parse(&partly).unwrap_err();
        assert!(err.contains("not dedicated: n1, n2\n"), "{err}");
        let all = shared.replace("[defaults]\n", "[defaults]\ndedicated = true\n");
        let h = parse(&all).unwrap();
        assert_eq!(h.clock, ClockMethod::Settime);
        assert!(h.hosts.iter().all(|h| h.dedicated));
        // faketime needs no dedicated hosts.
        assert_eq!(parse(THREE).unwrap().clock, ClockMethod::Faketime);
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("id"), "k").unwrap();
        let path = d.path().join("hosts.toml");
        let text = "version = 1\nknown_hosts = \"accept\"\nknown_hosts_file = \"kh\"\n[defaults]\nkey = \"id\"\n[[host]]\nnode = \"n1\"\naddress = \"10.0.0.1\"\nzookeeper = true\n";
        std::fs::write(&path, text).unwrap();
        let h = Hosts::load(&path).unwrap();
        let dir = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(h.hosts[0].key.as_deref(), Some(dir.join("id").as_path()));
        assert_eq!(h.known_hosts_file, Some(dir.join("kh")));
        assert_eq!(h.known_hosts, KnownHosts::Accept);
        assert_eq!(KnownHosts::Accept.ssh_option(), "no");
        let missing = Hosts::load(&d.path().join("nope.toml")).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
    }

    #[test]
    fn the_vagrant_hosts_file_matches_the_vagrantfile() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("vagrant-hosts.toml")).unwrap();
        // The key is created by `vagrant up`; check the rest without it.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("key"))
            .map(|l| format!("{l}\n"))
            .collect();
        let h = Hosts::parse(&root.join("vagrant-hosts.toml"), &text).unwrap();
        assert_eq!(h.nodes(), ["n1", "n2", "n3", "n4", "n5"]);
        assert_eq!(h.zk_nodes().len(), 3);
        assert!(h.hosts.iter().all(|h| h.dedicated));
        let vagrantfile = std::fs::read_to_string(root.join("Vagrantfile")).unwrap();
        for host in &h.hosts {
            assert!(
                vagrantfile.contains(&host.address.to_string()),
                "{} ({}) is not in the Vagrantfile",
                host.node,
                host.address
            );
        }
    }
}
