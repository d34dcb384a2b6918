//! Hosts (hypervisors running an agent) and the tunnel zones joining them.

use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use uuid::Uuid;

/// A network interface an agent reports for its host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostInterface {
    pub name: String,
    pub mac: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub mtu: u32,
    #[serde(rename = "type")]
    pub if_type: Option<String>,
    pub endpoint: Option<String>,
    pub port_type: Option<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub addresses: Vec<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub status: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Host {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::bool")]
    pub alive: bool,
    #[serde(deserialize_with = "lenient::vec")]
    pub addresses: Vec<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub host_interfaces: Vec<HostInterface>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub flooding_proxy_weight: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub container_weight: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub container_limit: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub enforce_container_limit: Option<bool>,
}

impl Host {
    pub fn normalize(&mut self) {
        self.flooding_proxy_weight.get_or_insert(1);
        self.container_weight.get_or_insert(1);
        self.container_limit.get_or_insert(-1);
        self.enforce_container_limit.get_or_insert(false);
    }
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 0, 255);
        c.opt_range("floodingProxyWeight", self.flooding_proxy_weight, 0, 65535);
        c.opt_range("containerWeight", self.container_weight, 0, i32::MAX as i64);
        c.opt_range("containerLimit", self.container_limit, -1, i32::MAX as i64);
        c.finish()
    }
}
crate::object!(Host, Host);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelZoneType {
    Gre,
    #[default]
    Vxlan,
    Vtep,
}

/// A host's membership in a tunnel zone, with its tunnel address there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelZoneHost {
    #[serde(deserialize_with = "lenient::opt")]
    pub host_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub ip_address: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelZone {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::opt")]
    pub zone_type: Option<TunnelZoneType>,
    #[serde(deserialize_with = "lenient::vec")]
    pub members: Vec<TunnelZoneHost>,
}

impl TunnelZone {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 1, 255);
        c.require("type", &self.zone_type);
        c.finish()
    }
    pub fn member(&self, host: Uuid) -> Option<&TunnelZoneHost> {
        self.members.iter().find(|m| m.host_id == Some(host))
    }
}
crate::object!(TunnelZone, TunnelZone);
