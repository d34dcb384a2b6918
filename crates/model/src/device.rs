//! Bridges (Neutron networks), routers, their ports and routes.

use crate::addr::MacAddr;
use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Bridge {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub name: Option<String>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub inbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub outbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub vx_lan_port_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<Uuid>,
}

impl Bridge {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 0, 255);
        c.finish()
    }
}
crate::object!(Bridge, Bridge);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Router {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub name: Option<String>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub inbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub outbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub local_redirect_chain_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub forward_chain_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub load_balancer_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::int")]
    pub as_number: i64,
    #[serde(deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<Uuid>,
}

impl Router {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 0, 255);
        c.range("asNumber", self.as_number, -1, u32::MAX as i64);
        c.finish()
    }
}
crate::object!(Router, Router);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortType {
    #[default]
    Bridge,
    Router,
    Vxlan,
}

/// A port of a bridge or a router. One shape for every kind, as in MidoNet's
/// storage; fields of the other kind stay null.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Port {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub port_type: PortType,
    pub device_id: Uuid,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub inbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub outbound_filter_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::int")]
    pub tunnel_key: u64,
    #[serde(deserialize_with = "lenient::opt")]
    pub vif_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub host_id: Option<Uuid>,
    pub interface_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub peer_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub previous_host_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub post_in_filter_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub pre_out_filter_mirror_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub insertion_ids: Vec<Uuid>,
    #[serde(deserialize_with = "lenient::bool")]
    pub active: bool,
    // Bridge ports.
    #[serde(deserialize_with = "lenient::opt_int")]
    pub vlan_id: Option<u16>,
    // Router ports.
    #[serde(deserialize_with = "lenient::opt")]
    pub network_address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub network_length: Option<u8>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port_address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port_mac: Option<MacAddr>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub rtr_port_vni: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub off_ramp_vxlan: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub service_container_id: Option<Uuid>,
    pub bgp_status: Option<String>,
    // VXLAN ports.
    #[serde(deserialize_with = "lenient::opt")]
    pub vtep_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub vni: Option<u32>,
}

impl Port {
    pub fn is_router_port(&self) -> bool {
        self.port_type == PortType::Router
    }
    /// Bound to an interface on a host.
    pub fn is_exterior(&self) -> bool {
        self.host_id.is_some() && self.interface_name.is_some()
    }
    /// Linked to a peer port.
    pub fn is_interior(&self) -> bool {
        self.peer_id.is_some()
    }

    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        match self.port_type {
            PortType::Router => {
                c.require("networkAddress", &self.network_address);
                c.require("portAddress", &self.port_address);
                c.opt_range("networkLength", self.network_length.map(i64::from), 0, 32);
                c.opt_range(
                    "rtrPortVni",
                    self.rtr_port_vni.map(i64::from),
                    0,
                    (1 << 24) - 1,
                );
            }
            PortType::Bridge => {
                c.opt_range("vlanId", self.vlan_id.map(i64::from), 0, 4095);
            }
            PortType::Vxlan => {}
        }
        if let Some(name) = &self.interface_name
            && (name.is_empty() || name.len() > 15)
        {
            c.fail("interfaceName", "must be 1 to 15 characters");
        }
        c.finish()
    }
}
crate::object!(Port, Port);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteType {
    #[default]
    Normal,
    BlackHole,
    Reject,
    Local,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    pub id: Uuid,
    #[serde(rename = "type", deserialize_with = "lenient::opt")]
    pub route_type: Option<RouteType>,
    #[serde(deserialize_with = "lenient::opt")]
    pub src_network_addr: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub src_network_length: u8,
    #[serde(deserialize_with = "lenient::opt")]
    pub dst_network_addr: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub dst_network_length: u8,
    #[serde(deserialize_with = "lenient::opt")]
    pub next_hop_port: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub next_hop_gateway: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub weight: i64,
    pub attributes: Option<String>,
    #[serde(deserialize_with = "lenient::bool")]
    pub learned: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub router_id: Option<Uuid>,
}

impl Route {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("type", &self.route_type);
        c.require("srcNetworkAddr", &self.src_network_addr);
        c.require("dstNetworkAddr", &self.dst_network_addr);
        c.range("srcNetworkLength", self.src_network_length.into(), 0, 32);
        c.range("dstNetworkLength", self.dst_network_length.into(), 0, 32);
        c.range("weight", self.weight, 0, i32::MAX as i64);
        if self.route_type == Some(RouteType::Normal) && self.next_hop_port.is_none() {
            c.fail("nextHopPort", "a Normal route needs a next hop port");
        }
        c.finish()
    }
}
crate::object!(Route, Route);
