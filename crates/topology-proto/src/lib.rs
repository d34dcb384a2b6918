//! The topology service protocol (gRPC): agents subscribe to topology
//! changes with a resumable watch and hold a session that keeps their host
//! alive and their port states published.

pub mod v1 {
    tonic::include_proto!("midonet.topology.v1");
}

pub use v1::topology_client::TopologyClient;
pub use v1::topology_server::{Topology, TopologyServer};

/// MidoNet's topology API port.
pub const DEFAULT_PORT: u16 = 8088;
