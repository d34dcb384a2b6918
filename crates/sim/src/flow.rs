//! The flow match: the header fields of a packet that a simulation may read,
//! with a record of which ones it did read (the megaflow mask).

use std::cell::Cell;
use std::net::Ipv4Addr;
use wire::ethernet::{EtherType, EthernetFrame, Mac};
use wire::ipv4::{Ipv4Packet, Protocol};
use wire::{ArpPacket, Icmpv4Packet, TcpPacket, UdpPacket};

/// Bits of [`FieldSet`]: one per field of the match.
pub mod field {
    pub const IN_PORT: u32 = 1 << 0;
    pub const ETH_SRC: u32 = 1 << 1;
    pub const ETH_DST: u32 = 1 << 2;
    pub const ETH_TYPE: u32 = 1 << 3;
    pub const VLAN: u32 = 1 << 4;
    pub const NW_SRC: u32 = 1 << 5;
    pub const NW_DST: u32 = 1 << 6;
    pub const NW_PROTO: u32 = 1 << 7;
    pub const NW_TOS: u32 = 1 << 8;
    pub const NW_TTL: u32 = 1 << 9;
    pub const FRAG: u32 = 1 << 10;
    pub const TP_SRC: u32 = 1 << 11;
    pub const TP_DST: u32 = 1 << 12;
    /// Userspace-only: ICMP echo id and error payload cannot be matched by a
    /// datapath flow, so reading them means every packet comes up.
    pub const ICMP_ID: u32 = 1 << 13;
    pub const ICMP_DATA: u32 = 1 << 14;
    pub const USERSPACE_ONLY: u32 = ICMP_ID | ICMP_DATA;
    pub const L3: u32 = NW_SRC | NW_DST | NW_PROTO | NW_TOS | NW_TTL | FRAG;
    pub const L4: u32 = TP_SRC | TP_DST;
}

/// A set of fields (the mask of a megaflow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSet(pub u32);

impl FieldSet {
    pub fn contains(self, f: u32) -> bool {
        self.0 & f == f
    }
    pub fn any(self, f: u32) -> bool {
        self.0 & f != 0
    }
}

/// Fragment type of an IPv4 packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Frag {
    #[default]
    None,
    First,
    Later,
}

/// The match fields. ARP packets use `nw_src`/`nw_dst` for the sender and
/// target protocol addresses and `nw_proto` for the op, as MidoNet does; ICMP
/// keeps type and code in `tp_src`/`tp_dst`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fields {
    pub in_port: u32,
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub eth_type: u16,
    pub vlan: Option<u16>,
    pub nw_src: Ipv4Addr,
    pub nw_dst: Ipv4Addr,
    pub nw_proto: u8,
    pub nw_tos: u8,
    pub nw_ttl: u8,
    pub frag: Frag,
    pub tp_src: u16,
    pub tp_dst: u16,
    pub icmp_id: u16,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            in_port: 0,
            eth_src: Mac::ZERO,
            eth_dst: Mac::ZERO,
            eth_type: 0,
            vlan: None,
            nw_src: Ipv4Addr::UNSPECIFIED,
            nw_dst: Ipv4Addr::UNSPECIFIED,
            nw_proto: 0,
            nw_tos: 0,
            nw_ttl: 0,
            frag: Frag::None,
            tp_src: 0,
            tp_dst: 0,
            icmp_id: 0,
        }
    }
}

impl Fields {
    pub fn is_ipv4(&self) -> bool {
        self.eth_type == EtherType::IPV4
    }
    pub fn is_arp(&self) -> bool {
        self.eth_type == EtherType::ARP
    }
    pub fn has_l4(&self) -> bool {
        self.is_ipv4()
            && self.frag != Frag::Later
            && matches!(
                self.nw_proto,
                Protocol::TCP | Protocol::UDP | Protocol::ICMP
            )
    }

    /// The fields in `mask`, named as a flow dump shows them.
    pub fn describe(&self, mask: FieldSet) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let mut put = |f: u32, name: &'static str, val: String| {
            if mask.contains(f) {
                v.push((name, val));
            }
        };
        put(field::IN_PORT, "in_port", self.in_port.to_string());
        put(field::ETH_SRC, "eth_src", self.eth_src.to_string());
        put(field::ETH_DST, "eth_dst", self.eth_dst.to_string());
        put(
            field::ETH_TYPE,
            "eth_type",
            format!("0x{:04x}", self.eth_type),
        );
        put(
            field::VLAN,
            "vlan",
            self.vlan.map_or("none".into(), |v| v.to_string()),
        );
        put(field::NW_SRC, "nw_src", self.nw_src.to_string());
        put(field::NW_DST, "nw_dst", self.nw_dst.to_string());
        put(field::NW_PROTO, "nw_proto", self.nw_proto.to_string());
        put(field::NW_TOS, "nw_tos", self.nw_tos.to_string());
        put(field::NW_TTL, "nw_ttl", self.nw_ttl.to_string());
        put(field::FRAG, "frag", format!("{:?}", self.frag));
        put(field::TP_SRC, "tp_src", self.tp_src.to_string());
        put(field::TP_DST, "tp_dst", self.tp_dst.to_string());
        v
    }

    /// Only the fields in `mask` (the rest zeroed): the megaflow key.
    pub fn masked(&self, mask: FieldSet) -> Fields {
        let m = |f: u32| mask.contains(f);
        Fields {
            in_port: if m(field::IN_PORT) { self.in_port } else { 0 },
            eth_src: if m(field::ETH_SRC) {
                self.eth_src
            } else {
                Mac::ZERO
            },
            eth_dst: if m(field::ETH_DST) {
                self.eth_dst
            } else {
                Mac::ZERO
            },
            eth_type: if m(field::ETH_TYPE) { self.eth_type } else { 0 },
            vlan: if m(field::VLAN) { self.vlan } else { None },
            nw_src: if m(field::NW_SRC) {
                self.nw_src
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            nw_dst: if m(field::NW_DST) {
                self.nw_dst
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            nw_proto: if m(field::NW_PROTO) { self.nw_proto } else { 0 },
            nw_tos: if m(field::NW_TOS) { self.nw_tos } else { 0 },
            nw_ttl: if m(field::NW_TTL) { self.nw_ttl } else { 0 },
            frag: if m(field::FRAG) {
                self.frag
            } else {
                Frag::None
            },
            tp_src: if m(field::TP_SRC) { self.tp_src } else { 0 },
            tp_dst: if m(field::TP_DST) { self.tp_dst } else { 0 },
            icmp_id: if m(field::ICMP_ID) { self.icmp_id } else { 0 },
        }
    }

    /// Extracts the fields from an Ethernet frame. `None` for a frame too
    /// short or inconsistent to forward (the caller counts and drops it).
    pub fn parse(frame: &[u8], in_port: u32) -> Option<Fields> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let mut f = Fields {
            in_port,
            eth_src: eth.src(),
            eth_dst: eth.dst(),
            eth_type: eth.ethertype(),
            vlan: eth.vlan(),
            ..Default::default()
        };
        match f.eth_type {
            EtherType::ARP => {
                let arp = ArpPacket::new_checked(eth.payload()).ok()?;
                f.nw_src = arp.spa();
                f.nw_dst = arp.tpa();
                f.nw_proto = arp.op() as u8;
            }
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                f.nw_src = ip.src();
                f.nw_dst = ip.dst();
                f.nw_proto = ip.protocol();
                f.nw_tos = ip.tos();
                f.nw_ttl = ip.ttl();
                f.frag = match (ip.frag_offset(), ip.more_frags()) {
                    (0, false) => Frag::None,
                    (0, true) => Frag::First,
                    _ => Frag::Later,
                };
                if f.frag != Frag::Later {
                    let l4 = ip.payload();
                    match f.nw_proto {
                        Protocol::TCP => {
                            let t = TcpPacket::new_checked(l4).ok()?;
                            (f.tp_src, f.tp_dst) = (t.src_port(), t.dst_port());
                        }
                        Protocol::UDP => {
                            let u = UdpPacket::new_checked(l4).ok()?;
                            (f.tp_src, f.tp_dst) = (u.src_port(), u.dst_port());
                        }
                        Protocol::ICMP => {
                            let i = Icmpv4Packet::new_checked(l4).ok()?;
                            (f.tp_src, f.tp_dst) = (u16::from(i.msg_type()), u16::from(i.code()));
                            f.icmp_id = i.echo_id();
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Some(f)
    }
}

/// The working match of a simulation: the fields, and which were read.
#[derive(Debug, Default)]
pub struct Match {
    f: Fields,
    seen: Cell<u32>,
}

impl Clone for Match {
    fn clone(&self) -> Self {
        Match {
            f: self.f.clone(),
            seen: Cell::new(self.seen.get()),
        }
    }
}

macro_rules! getter {
    ($name:ident, $t:ty, $bit:expr) => {
        #[inline]
        pub fn $name(&self) -> $t {
            self.seen.set(self.seen.get() | $bit);
            self.f.$name
        }
    };
}

impl Match {
    pub fn new(f: Fields) -> Self {
        // The input port is never wildcarded.
        Match {
            f,
            seen: Cell::new(field::IN_PORT),
        }
    }
    getter!(eth_src, Mac, field::ETH_SRC);
    getter!(eth_dst, Mac, field::ETH_DST);
    getter!(eth_type, u16, field::ETH_TYPE);
    getter!(vlan, Option<u16>, field::VLAN | field::ETH_TYPE);
    getter!(nw_src, Ipv4Addr, field::NW_SRC | field::ETH_TYPE);
    getter!(nw_dst, Ipv4Addr, field::NW_DST | field::ETH_TYPE);
    getter!(nw_proto, u8, field::NW_PROTO | field::ETH_TYPE);
    getter!(nw_tos, u8, field::NW_TOS | field::ETH_TYPE);
    getter!(nw_ttl, u8, field::NW_TTL | field::ETH_TYPE);
    getter!(frag, Frag, field::FRAG | field::ETH_TYPE);
    getter!(
        tp_src,
        u16,
        field::TP_SRC | field::NW_PROTO | field::ETH_TYPE
    );
    getter!(
        tp_dst,
        u16,
        field::TP_DST | field::NW_PROTO | field::ETH_TYPE
    );
    getter!(
        icmp_id,
        u16,
        field::ICMP_ID | field::NW_PROTO | field::ETH_TYPE
    );

    pub fn is_ipv4(&self) -> bool {
        self.eth_type() == EtherType::IPV4
    }
    pub fn is_arp(&self) -> bool {
        self.eth_type() == EtherType::ARP
    }
    /// Reads without marking (for building replies and state keys whose own
    /// reads are accounted for by the caller).
    pub fn peek(&self) -> &Fields {
        &self.f
    }
    pub fn fields_mut(&mut self) -> &mut Fields {
        &mut self.f
    }
    pub fn mark(&self, bits: u32) {
        self.seen.set(self.seen.get() | bits);
    }
    pub fn seen(&self) -> FieldSet {
        FieldSet(self.seen.get())
    }
}
