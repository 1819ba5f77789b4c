//! The local network of a run: subnet, bridge and node namespaces
//! ([`bridge`]), partition shapes ([`grudge`]) and applying them with
//! iptables ([`iptables`]).

pub mod bridge;
pub mod grudge;
pub mod iptables;

pub use bridge::{NetNode, Network, Subnet};
pub use grudge::Grudge;
pub use iptables::{Firewall, FwNode};
