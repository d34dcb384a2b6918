//! Groups (ports, addresses), mirrors, service insertion, trace requests, VTEPs.

use crate::addr::MacAddr;
use crate::chain::Condition;
use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortGroup {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::bool")]
    pub stateful: bool,
    #[serde(deserialize_with = "lenient::vec")]
    pub port_ids: Vec<Uuid>,
}
impl PortGroup {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 0, 255);
        c.finish()
    }
}
crate::object!(PortGroup, PortGroup);

/// One address of an IP address group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddrGroupAddr {
    pub addr: IpAddr,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub version: Option<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpAddrGroup {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub addrs: Vec<IpAddr>,
}
impl IpAddrGroup {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 1, 255);
        c.finish()
    }
}
crate::object!(IpAddrGroup, IpAddrGroup);

/// An address of an IP address group stored on its own (what Neutron's
/// security groups make, one per port address): adding one rewrites only
/// itself. The group's addresses are its embedded ones and these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddrGroupMember {
    pub id: Uuid,
    pub group_id: Uuid,
    pub addr: IpAddr,
}

impl IpAddrGroupMember {
    /// The id of `addr`'s membership of `group`: one per address.
    pub fn id_for(group: Uuid, addr: IpAddr) -> Uuid {
        let mut b = *group.as_bytes();
        let a: Vec<u8> = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        for (i, x) in a.iter().enumerate() {
            b[i % 16] ^= x.rotate_left(i as u32 / 16);
        }
        b[15] ^= 0x6b;
        Uuid::from_bytes(b)
    }

    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
crate::object!(IpAddrGroupMember, IpAddrGroupMember);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mirror {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub to_port_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::vec")]
    pub conditions: Vec<Condition>,
}
impl Mirror {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("toPortId", &self.to_port_id);
        for cond in &self.conditions {
            cond.check(&mut c);
        }
        c.finish()
    }
}
crate::object!(Mirror, Mirror);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct L2Insertion {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub port_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub srv_port_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::int")]
    pub vlan: u16,
    #[serde(deserialize_with = "lenient::int")]
    pub position: u32,
    #[serde(deserialize_with = "lenient::bool")]
    pub fail_open: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub mac: Option<MacAddr>,
}
impl L2Insertion {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("portId", &self.port_id);
        c.require("srvPortId", &self.srv_port_id);
        c.require("mac", &self.mac);
        c.range("vlan", self.vlan.into(), 0, 4095);
        c.finish()
    }
}
crate::object!(L2Insertion, L2Insertion);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TraceRequest {
    pub id: Uuid,
    pub name: Option<String>,
    pub device_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub device_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub condition: Option<Condition>,
    #[serde(deserialize_with = "lenient::int")]
    pub limit: i64,
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    #[serde(deserialize_with = "lenient::int")]
    pub creation_timestamp_ms: i64,
}
impl TraceRequest {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 1, 255);
        match self.device_type.as_deref() {
            Some("PORT" | "BRIDGE" | "ROUTER") => {}
            Some(t) => c.fail(
                "deviceType",
                format!("\"{t}\" is not one of PORT, BRIDGE, ROUTER"),
            ),
            None => c.fail("deviceType", "may not be null"),
        }
        c.require("deviceId", &self.device_id);
        c.require("condition", &self.condition);
        if let Some(cond) = &self.condition {
            cond.check(&mut c);
        }
        c.finish()
    }
}
crate::object!(TraceRequest, TraceRequest);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceContainerGroup {
    pub id: Uuid,
    pub policy: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub host_group_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port_group_id: Option<Uuid>,
}
impl ServiceContainerGroup {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        if let Some(p) = self.policy.as_deref()
            && p != "WEIGHTED"
            && p != "LEAST"
        {
            c.fail("policy", format!("\"{p}\" is not one of WEIGHTED, LEAST"));
        }
        c.finish()
    }
}
crate::object!(ServiceContainerGroup, ServiceContainerGroup);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceContainer {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub service_group_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub configuration_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port_id: Option<Uuid>,
    pub service_type: Option<String>,
    pub status_code: Option<String>,
    pub status_message: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub host_id: Option<Uuid>,
    pub namespace_name: Option<String>,
    pub interface_name: Option<String>,
}
impl ServiceContainer {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("serviceType", &self.service_type);
        c.finish()
    }
}
crate::object!(ServiceContainer, ServiceContainer);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Vtep {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub management_ip: Option<IpAddr>,
    #[serde(deserialize_with = "lenient::int")]
    pub management_port: u32,
    #[serde(deserialize_with = "lenient::opt")]
    pub tunnel_zone_id: Option<Uuid>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub connection_state: Option<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub tunnel_ip_addrs: Vec<String>,
}
impl Vtep {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("managementIp", &self.management_ip);
        c.range("managementPort", self.management_port.into(), 1, 65535);
        c.finish()
    }
}
crate::object!(Vtep, Vtep);
