//! The MidoNet topology: every object the REST API v5 exposes, with its JSON shape
//! (camelCase, every field present; [`stored`] keeps less), its validation, and the reference rules that
//! decide what a delete cascades, clears or refuses.
//!
//! Validation lives here, not in the HTTP layer, so the Neutron API, the CLI and the
//! agent all see the same rules.

pub mod addr;
pub mod bgp;
pub mod chain;
pub mod device;
pub mod dhcp;
pub mod error;
pub mod host;
pub mod kind;
pub mod lb;
pub mod lenient;
pub mod misc;
pub mod objects;
pub mod refs;
pub mod schema;
pub mod stored;

pub use addr::{Ipv4Prefix, MacAddr};
pub use bgp::{BgpNetwork, BgpPeer};
pub use chain::{
    Chain, Condition, FlowAction, FragmentPolicy, NatTarget, PortRange, Rule, RuleType,
};
pub use device::{Bridge, Port, PortType, Route, RouteType, Router};
pub use dhcp::{DhcpHost, DhcpHostEntry, DhcpSubnet, ExtraDhcpOpt, Opt121Route};
pub use error::{Invalid, Violation};
pub use host::{Host, HostInterface, TunnelZone, TunnelZoneHost, TunnelZoneType};
pub use kind::{Kind, Object};
pub use lb::{HealthMonitor, LoadBalancer, Pool, PoolMember, Vip};
pub use misc::{
    IpAddrGroup, IpAddrGroupAddr, IpAddrGroupMember, L2Insertion, Mirror, PortGroup,
    ServiceContainer, ServiceContainerGroup, TraceRequest, Vtep,
};
pub use objects::Objects;
pub use schema::{Obj, REFS, Ref, Walk};
