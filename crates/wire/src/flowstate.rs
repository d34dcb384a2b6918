//! The flow-state message: connection-tracking and NAT keys one agent pushes
//! to the others that will see a connection's packets (in-band, in a tunnel
//! packet with the reserved key, before the data packet it belongs to).
//!
//! The same message, with flags, moves state between hosts when a port is
//! rebound: `REQUEST` (no entries) asks a port's previous host for the state
//! it holds; the answer comes in messages of bounded size, the last flagged
//! `LAST`.
//!
//! It also carries what a simulation learned (a router's ARP entry, a
//! bridge's MAC-to-port or IP-to-MAC entry) to the other hosts, so a host
//! whose packet waits for an ARP answer another host received gets it
//! without the cluster (which may be down).
//!
//! Layout (network byte order): magic `MNFS`, version, flags, conntrack
//! count (u16), NAT count (u16), learned count (u16), sender host id (16),
//! then the entries. Conntrack entry (32 bytes): device id (16), src (4),
//! dst (4), sport (2), dport (2), proto (1), 3 reserved. NAT entry (40
//! bytes): kind (1), proto (1), 2 reserved, device id (16), src (4), dst
//! (4), sport (2), dport (2), translated address (4), translated port (2), 2
//! reserved. Learned entry (48 bytes): kind (1: ARP, 2: MAC, 3: IP-to-MAC),
//! 1 reserved, VLAN (2), device id (16: router or bridge), MAC (6), 2
//! reserved, IPv4 address (4), port id (16; zero but for a MAC entry).
//! The learned count sits where version 1 had 2 reserved bytes: a receiver
//! that does not know it reads the rest unchanged.

use crate::{Error, Result, be16, put16};
use std::net::Ipv4Addr;

pub const MAGIC: [u8; 4] = *b"MNFS";
pub const VERSION: u8 = 1;
const HEADER: usize = 28;
const CT_LEN: usize = 32;
const NAT_LEN: usize = 40;
const LEARNED_LEN: usize = 48;
/// Flags: a request for the receiver's state; the last message of an answer.
pub const FLAG_REQUEST: u8 = 0x01;
pub const FLAG_LAST: u8 = 0x02;
/// The UDP port of flow-state datagrams (MidoNet's).
pub const UDP_PORT: u16 = 2925;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    pub device: [u8; 16],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatEntry {
    /// 1 FWD_SNAT, 2 FWD_DNAT, 3 FWD_STICKY_DNAT, 4 REV_SNAT, 5 REV_DNAT, 6 REV_STICKY_DNAT.
    pub kind: u8,
    pub proto: u8,
    pub device: [u8; 16],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub to_ip: Ipv4Addr,
    pub to_port: u16,
}

/// What kind of learned entry: the layout's kind byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnedKind {
    /// A router's ARP entry: `ip` is at `mac`.
    Arp = 1,
    /// A bridge's `mac` is behind `port` in `vlan`.
    Mac = 2,
    /// A bridge's `ip` is at `mac` (a gratuitous ARP).
    Ip4Mac = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnedEntry {
    pub kind: LearnedKind,
    pub vlan: u16,
    pub device: [u8; 16],
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: [u8; 16],
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FlowStateRepr {
    pub flags: u8,
    pub sender: [u8; 16],
    pub conntrack: Vec<ConnEntry>,
    pub nat: Vec<NatEntry>,
    pub learned: Vec<LearnedEntry>,
}

fn ip(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn id(b: &[u8], at: usize) -> [u8; 16] {
    let mut v = [0u8; 16];
    v.copy_from_slice(&b[at..at + 16]);
    v
}

impl FlowStateRepr {
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER || b[0..4] != MAGIC || b[4] != VERSION {
            return Err(Error);
        }
        let (nc, nn, nl) = (
            usize::from(be16(b, 6)),
            usize::from(be16(b, 8)),
            usize::from(be16(b, 10)),
        );
        if b.len() < HEADER + nc * CT_LEN + nn * NAT_LEN + nl * LEARNED_LEN {
            return Err(Error);
        }
        let mut r = FlowStateRepr {
            flags: b[5],
            sender: id(b, 12),
            ..Default::default()
        };
        let mut at = HEADER;
        for _ in 0..nc {
            r.conntrack.push(ConnEntry {
                device: id(b, at),
                src: ip(b, at + 16),
                dst: ip(b, at + 20),
                sport: be16(b, at + 24),
                dport: be16(b, at + 26),
                proto: b[at + 28],
            });
            at += CT_LEN;
        }
        for _ in 0..nn {
            if !(1..=6).contains(&b[at]) {
                return Err(Error);
            }
            r.nat.push(NatEntry {
                kind: b[at],
                proto: b[at + 1],
                device: id(b, at + 4),
                src: ip(b, at + 20),
                dst: ip(b, at + 24),
                sport: be16(b, at + 28),
                dport: be16(b, at + 30),
                to_ip: ip(b, at + 32),
                to_port: be16(b, at + 36),
            });
            at += NAT_LEN;
        }
        for _ in 0..nl {
            let kind = match b[at] {
                1 => LearnedKind::Arp,
                2 => LearnedKind::Mac,
                3 => LearnedKind::Ip4Mac,
                _ => return Err(Error),
            };
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&b[at + 20..at + 26]);
            r.learned.push(LearnedEntry {
                kind,
                vlan: be16(b, at + 2),
                device: id(b, at + 4),
                mac,
                ip: ip(b, at + 28),
                port: id(b, at + 32),
            });
            at += LEARNED_LEN;
        }
        Ok(r)
    }

    pub fn buffer_len(&self) -> usize {
        HEADER
            + self.conntrack.len() * CT_LEN
            + self.nat.len() * NAT_LEN
            + self.learned.len() * LEARNED_LEN
    }

    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.buffer_len()];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.flags;
        put16(&mut b, 6, self.conntrack.len() as u16);
        put16(&mut b, 8, self.nat.len() as u16);
        put16(&mut b, 10, self.learned.len() as u16);
        b[12..28].copy_from_slice(&self.sender);
        let mut at = HEADER;
        for c in &self.conntrack {
            b[at..at + 16].copy_from_slice(&c.device);
            b[at + 16..at + 20].copy_from_slice(&c.src.octets());
            b[at + 20..at + 24].copy_from_slice(&c.dst.octets());
            put16(&mut b, at + 24, c.sport);
            put16(&mut b, at + 26, c.dport);
            b[at + 28] = c.proto;
            at += CT_LEN;
        }
        for n in &self.nat {
            b[at] = n.kind;
            b[at + 1] = n.proto;
            b[at + 4..at + 20].copy_from_slice(&n.device);
            b[at + 20..at + 24].copy_from_slice(&n.src.octets());
            b[at + 24..at + 28].copy_from_slice(&n.dst.octets());
            put16(&mut b, at + 28, n.sport);
            put16(&mut b, at + 30, n.dport);
            b[at + 32..at + 36].copy_from_slice(&n.to_ip.octets());
            put16(&mut b, at + 36, n.to_port);
            at += NAT_LEN;
        }
        for l in &self.learned {
            b[at] = l.kind as u8;
            put16(&mut b, at + 2, l.vlan);
            b[at + 4..at + 20].copy_from_slice(&l.device);
            b[at + 20..at + 26].copy_from_slice(&l.mac);
            b[at + 28..at + 32].copy_from_slice(&l.ip.octets());
            b[at + 32..at + 48].copy_from_slice(&l.port);
            at += LEARNED_LEN;
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowStateRepr {
        FlowStateRepr {
            flags: 0,
            sender: [7; 16],
            conntrack: vec![ConnEntry {
                device: [1; 16],
                src: Ipv4Addr::new(10, 0, 0, 2),
                dst: Ipv4Addr::new(10, 0, 0, 1),
                sport: 80,
                dport: 40000,
                proto: 6,
            }],
            nat: vec![NatEntry {
                kind: 4,
                proto: 6,
                device: [2; 16],
                src: Ipv4Addr::new(203, 0, 113, 9),
                dst: Ipv4Addr::new(203, 0, 113, 100),
                sport: 80,
                dport: 5000,
                to_ip: Ipv4Addr::new(10, 0, 1, 5),
                to_port: 40000,
            }],
            learned: Vec::new(),
        }
    }

    #[test]
    fn byte_exact_layout_and_round_trip() {
        let b = sample().emit();
        assert_eq!(b.len(), 28 + 32 + 40);
        assert_eq!(&b[0..12], b"MNFS\x01\x00\x00\x01\x00\x01\x00\x00");
        assert_eq!(
            &b[28 + 16..28 + 29],
            &[10, 0, 0, 2, 10, 0, 0, 1, 0, 80, 0x9c, 0x40, 6]
        );
        assert_eq!(&b[60..62], &[4, 6]);
        assert_eq!(&b[60 + 32..60 + 38], &[10, 0, 1, 5, 0x9c, 0x40]);
        assert_eq!(FlowStateRepr::parse(&b).unwrap(), sample());
        let last = FlowStateRepr {
            flags: FLAG_LAST,
            ..sample()
        };
        assert_eq!(last.emit()[5], FLAG_LAST);
        assert_eq!(FlowStateRepr::parse(&last.emit()).unwrap(), last);
    }

    #[test]
    fn learned_entries_byte_exact() {
        let m = FlowStateRepr {
            learned: vec![
                LearnedEntry {
                    kind: LearnedKind::Arp,
                    vlan: 0,
                    device: [3; 16],
                    mac: [2, 0, 0, 0, 0, 0x22],
                    ip: Ipv4Addr::new(192, 168, 20, 21),
                    port: [0; 16],
                },
                LearnedEntry {
                    kind: LearnedKind::Mac,
                    vlan: 10,
                    device: [4; 16],
                    mac: [2, 0, 0, 0, 0, 0x11],
                    ip: Ipv4Addr::UNSPECIFIED,
                    port: [5; 16],
                },
            ],
            ..sample()
        };
        let b = m.emit();
        assert_eq!(b.len(), 28 + 32 + 40 + 2 * 48);
        assert_eq!(&b[10..12], &[0, 2], "the learned count");
        let l = 100;
        assert_eq!(&b[l..l + 4], &[1, 0, 0, 0]);
        assert_eq!(&b[l + 4..l + 20], &[3; 16]);
        assert_eq!(
            &b[l + 20..l + 32],
            &[2, 0, 0, 0, 0, 0x22, 0, 0, 192, 168, 20, 21]
        );
        assert_eq!(&b[l + 48..l + 52], &[2, 0, 0, 10]);
        assert_eq!(&b[l + 48 + 32..l + 96], &[5; 16]);
        assert_eq!(FlowStateRepr::parse(&b).unwrap(), m);
        let mut bad = b.clone();
        bad[l] = 7;
        assert!(FlowStateRepr::parse(&bad).is_err(), "unknown learned kind");
        assert!(FlowStateRepr::parse(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn short_or_foreign_messages_are_refused() {
        let b = sample().emit();
        assert!(FlowStateRepr::parse(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(FlowStateRepr::parse(&bad).is_err());
        let mut bad = b;
        bad[60] = 9;
        assert!(FlowStateRepr::parse(&bad).is_err(), "unknown NAT key type");
    }
}
