//! The simulation: one packet through the virtual topology, as a pure
//! function. Given a topology snapshot, state tables, an ingress port, a
//! packet, the time and a source of randomness, [`simulate`] decides what
//! happens: the actions and the megaflow to install (with the mask of exactly
//! the fields it read, and the tags it depends on), the packets to emit (ARP,
//! ICMP, DHCP), the state to write (learned MACs and ARP entries, conntrack,
//! NAT), or "not yet" naming what is missing. No I/O, no clock, no locks.

pub mod actions;
mod engine;
pub mod flow;
pub mod meter;
mod nat;
pub mod probe;
pub mod result;
pub mod services;
pub mod state;
pub mod topology;

pub use engine::{Input, MAX_HOPS, Random, XorShift, simulate};
pub use flow::{FieldSet, Fields, Frag};
pub use result::*;
pub use state::{
    ConnKey, NAT_BLOCK_PORTS, NatBinding, NatKey, NatKind, STATE_IDLE_MS, StateTables, StateWrite,
    nat_block_ports, table_bytes,
};
pub use topology::{Delta, Objects, Topology};
