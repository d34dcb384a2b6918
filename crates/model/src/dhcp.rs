//! DHCP subnets of a bridge and their static hosts.

use crate::addr::MacAddr;
use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Opt121Route {
    #[serde(deserialize_with = "lenient::opt")]
    pub destination_prefix: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub destination_length: u8,
    #[serde(deserialize_with = "lenient::opt")]
    pub gateway_addr: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtraDhcpOpt {
    pub opt_name: Option<String>,
    pub opt_value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DhcpHost {
    #[serde(deserialize_with = "lenient::opt")]
    pub mac_addr: Option<MacAddr>,
    #[serde(deserialize_with = "lenient::opt")]
    pub ip_addr: Option<Ipv4Addr>,
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub extra_dhcp_opts: Vec<ExtraDhcpOpt>,
}

impl DhcpHost {
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("macAddr", &self.mac_addr);
        c.require("ipAddr", &self.ip_addr);
        c.require("name", &self.name);
        c.finish()
    }
}

/// A static host of a DHCP subnet stored on its own (what Neutron's ports
/// make): adding one rewrites only itself, not the subnet with every other
/// host. The subnet's hosts are its embedded ones and these.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DhcpHostEntry {
    pub id: Uuid,
    pub bridge_id: Uuid,
    pub subnet_id: Uuid,
    #[serde(flatten)]
    pub host: DhcpHost,
}

impl DhcpHostEntry {
    /// The id of subnet `subnet`'s entry for `mac`: one per MAC, as the
    /// API names hosts.
    pub fn id_for(subnet: Uuid, mac: MacAddr) -> Uuid {
        let mut b = *subnet.as_bytes();
        for (i, m) in mac.0.iter().enumerate() {
            b[10 + i] ^= *m;
        }
        b[0] ^= 0xd4;
        Uuid::from_bytes(b)
    }

    fn check(&self) -> Result<(), Invalid> {
        self.host.validate()
    }
}
crate::object!(DhcpHostEntry, DhcpHostEntry);

/// A DHCP subnet served on a bridge. REST names it by `prefix_length` under its
/// bridge; the store gives it an id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DhcpSubnet {
    pub id: Uuid,
    pub bridge_id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub subnet_prefix: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub subnet_length: u8,
    #[serde(deserialize_with = "lenient::opt")]
    pub default_gateway: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt")]
    pub server_addr: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt")]
    pub dns_server_addrs: Option<Vec<Ipv4Addr>>,
    #[serde(rename = "interfaceMTU", deserialize_with = "lenient::int")]
    pub interface_mtu: u32,
    #[serde(rename = "opt121Routes", deserialize_with = "lenient::vec")]
    pub opt121_routes: Vec<Opt121Route>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub enabled: bool,
    #[serde(deserialize_with = "lenient::vec_or_link")]
    pub hosts: Vec<DhcpHost>,
}

impl DhcpSubnet {
    /// `10.0.0.0_24`, the subnet's name in its URI.
    pub fn key(&self) -> String {
        format!(
            "{}_{}",
            self.subnet_prefix.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.subnet_length
        )
    }

    pub fn normalize(&mut self) {
        if self.dns_server_addrs.as_ref().is_some_and(Vec::is_empty) {
            self.dns_server_addrs = None;
        }
        if let Some(p) = self.subnet_prefix {
            let m = if self.subnet_length == 0 {
                0
            } else {
                u32::MAX << (32 - self.subnet_length.min(32))
            };
            self.subnet_prefix = Some(Ipv4Addr::from(u32::from(p) & m));
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("subnetPrefix", &self.subnet_prefix);
        c.range("subnetLength", self.subnet_length.into(), 0, 32);
        c.range("interfaceMTU", self.interface_mtu.into(), 0, 65536);
        for r in &self.opt121_routes {
            c.require("opt121Routes.destinationPrefix", &r.destination_prefix);
            c.require("opt121Routes.gatewayAddr", &r.gateway_addr);
            c.range(
                "opt121Routes.destinationLength",
                r.destination_length.into(),
                0,
                32,
            );
        }
        c.finish()
    }
}
crate::object!(DhcpSubnet, DhcpSubnet);
