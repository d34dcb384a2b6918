//! The wire layer: packet formats as zero-copy views (`XxxPacket<T>` over any
//! `AsRef<[u8]>`) and validated representations (`XxxRepr`) with `parse` and
//! `emit`, in the style of smoltcp. No allocation on the parsing path; a
//! malformed packet is one small [`Error`], counted and dropped by the caller.

pub mod arp;
pub mod checksum;
pub mod dhcpv4;
pub mod ethernet;
pub mod flowstate;
pub mod gso;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vnet;
pub mod vxlan;

pub use arp::{ArpOp, ArpPacket, ArpRepr};
pub use dhcpv4::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{Ipv4Packet, Ipv4Repr, Protocol};
pub use ipv6::Ipv6Packet;
pub use tcp::TcpPacket;
pub use udp::{UdpPacket, UdpRepr};
pub use vxlan::VxlanPacket;

/// A packet that is too short, inconsistent, or otherwise not what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed packet")
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Real packets captured by `scripts/capture-wire-fixtures.sh`, for tests.
#[cfg(test)]
pub(crate) mod captures {
    /// The frames of a classic pcap file.
    pub fn frames(pcap: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= pcap.len() {
            let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 16;
            out.push(&pcap[at..at + len]);
            at += len;
        }
        out
    }
    pub const ARP_ICMP: &[u8] = include_bytes!("../tests/captures/arp_icmp.pcap");
    pub const DHCP: &[u8] = include_bytes!("../tests/captures/dhcp.pcap");
    pub const FRAG: &[u8] = include_bytes!("../tests/captures/frag.pcap");
    pub const ND: &[u8] = include_bytes!("../tests/captures/nd.pcap");
    pub const TCP: &[u8] = include_bytes!("../tests/captures/tcp.pcap");
    pub const UDP: &[u8] = include_bytes!("../tests/captures/udp.pcap");
    pub const VXLAN: &[u8] = include_bytes!("../tests/captures/vxlan.pcap");
}
