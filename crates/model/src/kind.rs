use crate::error::Invalid;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// The kinds of stored topology objects. The name is the storage class, as in
/// MidoNet's object store (`/models/<Kind>/<id>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Bridge,
    Router,
    Port,
    Route,
    Chain,
    Rule,
    PortGroup,
    IpAddrGroup,
    /// An IP address group's address, stored on its own.
    IpAddrGroupMember,
    Host,
    TunnelZone,
    DhcpSubnet,
    /// A DHCP subnet's static host, stored on its own.
    DhcpHostEntry,
    LoadBalancer,
    Pool,
    PoolMember,
    Vip,
    HealthMonitor,
    BgpNetwork,
    BgpPeer,
    Mirror,
    L2Insertion,
    TraceRequest,
    ServiceContainer,
    ServiceContainerGroup,
    Vtep,
    /// A Neutron network as the Neutron API shows it (its bridge has the
    /// same id).
    NeutronNetwork,
    /// A Neutron subnet (its DHCP subnet has the same id).
    NeutronSubnet,
    /// A Neutron port (its bridge port has the same id).
    NeutronPort,
    /// A Neutron router (its router has the same id).
    NeutronRouter,
    /// A Neutron floating IP.
    NeutronFloatingIp,
    /// A Neutron security group (its IP address group has the same id).
    NeutronSecurityGroup,
    /// A Neutron security group rule (its chain rule has the same id).
    NeutronSecurityGroupRule,
    /// A Neutron subnet pool.
    NeutronSubnetPool,
    /// A project's Neutron quotas.
    NeutronQuota,
}

impl Kind {
    pub const ALL: [Kind; 35] = [
        Kind::Bridge,
        Kind::Router,
        Kind::Port,
        Kind::Route,
        Kind::Chain,
        Kind::Rule,
        Kind::PortGroup,
        Kind::IpAddrGroup,
        Kind::IpAddrGroupMember,
        Kind::Host,
        Kind::TunnelZone,
        Kind::DhcpSubnet,
        Kind::DhcpHostEntry,
        Kind::LoadBalancer,
        Kind::Pool,
        Kind::PoolMember,
        Kind::Vip,
        Kind::HealthMonitor,
        Kind::BgpNetwork,
        Kind::BgpPeer,
        Kind::Mirror,
        Kind::L2Insertion,
        Kind::TraceRequest,
        Kind::ServiceContainer,
        Kind::ServiceContainerGroup,
        Kind::Vtep,
        Kind::NeutronNetwork,
        Kind::NeutronSubnet,
        Kind::NeutronPort,
        Kind::NeutronRouter,
        Kind::NeutronFloatingIp,
        Kind::NeutronSecurityGroup,
        Kind::NeutronSecurityGroupRule,
        Kind::NeutronSubnetPool,
        Kind::NeutronQuota,
    ];

    /// Kept for an API's own view (Neutron's records), never sent to agents.
    pub fn is_api_record(self) -> bool {
        matches!(
            self,
            Kind::NeutronNetwork
                | Kind::NeutronSubnet
                | Kind::NeutronPort
                | Kind::NeutronRouter
                | Kind::NeutronFloatingIp
                | Kind::NeutronSecurityGroup
                | Kind::NeutronSecurityGroupRule
                | Kind::NeutronSubnetPool
                | Kind::NeutronQuota
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bridge => "Bridge",
            Kind::Router => "Router",
            Kind::Port => "Port",
            Kind::Route => "Route",
            Kind::Chain => "Chain",
            Kind::Rule => "Rule",
            Kind::PortGroup => "PortGroup",
            Kind::IpAddrGroup => "IpAddrGroup",
            Kind::IpAddrGroupMember => "IpAddrGroupMember",
            Kind::Host => "Host",
            Kind::TunnelZone => "TunnelZone",
            Kind::DhcpSubnet => "DhcpSubnet",
            Kind::DhcpHostEntry => "DhcpHostEntry",
            Kind::LoadBalancer => "LoadBalancer",
            Kind::Pool => "Pool",
            Kind::PoolMember => "PoolMember",
            Kind::Vip => "Vip",
            Kind::HealthMonitor => "HealthMonitor",
            Kind::BgpNetwork => "BgpNetwork",
            Kind::BgpPeer => "BgpPeer",
            Kind::Mirror => "Mirror",
            Kind::L2Insertion => "L2Insertion",
            Kind::TraceRequest => "TraceRequest",
            Kind::ServiceContainer => "ServiceContainer",
            Kind::ServiceContainerGroup => "ServiceContainerGroup",
            Kind::Vtep => "Vtep",
            Kind::NeutronNetwork => "NeutronNetwork",
            Kind::NeutronSubnet => "NeutronSubnet",
            Kind::NeutronPort => "NeutronPort",
            Kind::NeutronRouter => "NeutronRouter",
            Kind::NeutronFloatingIp => "NeutronFloatingIp",
            Kind::NeutronSecurityGroup => "NeutronSecurityGroup",
            Kind::NeutronSecurityGroupRule => "NeutronSecurityGroupRule",
            Kind::NeutronSubnetPool => "NeutronSubnetPool",
            Kind::NeutronQuota => "NeutronQuota",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored topology object.
pub trait Object: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn id(&self) -> Uuid;
    fn set_id(&mut self, id: Uuid);
    /// Checks the object on its own (formats, ranges, required fields); references
    /// to other objects are checked by the caller against the store.
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Implements `Object` for a struct whose id field is `id: Uuid`.
#[macro_export]
macro_rules! object {
    ($t:ty, $kind:ident) => {
        impl $crate::kind::Object for $t {
            const KIND: $crate::kind::Kind = $crate::kind::Kind::$kind;
            fn id(&self) -> uuid::Uuid {
                self.id
            }
            fn set_id(&mut self, id: uuid::Uuid) {
                self.id = id;
            }
            fn validate(&self) -> Result<(), $crate::error::Invalid> {
                self.check()
            }
        }
    };
}
