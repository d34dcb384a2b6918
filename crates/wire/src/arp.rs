//! ARP for IPv4 over Ethernet (RFC 826).

use crate::ethernet::{EtherType, EthernetRepr, Mac};
use crate::{Error, Result, be16, put16};
use std::net::Ipv4Addr;

pub const LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
}

/// A view of an ARP packet (after the Ethernet header).
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        // Ethernet hardware (1), IPv4 protocol, 6-byte and 4-byte addresses.
        if b.len() < LEN
            || be16(b, 0) != 1
            || be16(b, 2) != EtherType::IPV4
            || b[4] != 6
            || b[5] != 4
        {
            return Err(Error);
        }
        Ok(ArpPacket { buf })
    }
    pub fn op(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    fn mac(&self, at: usize) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[at..at + 6]);
        Mac(m)
    }
    fn ip(&self, at: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }
    pub fn sha(&self) -> Mac {
        self.mac(8)
    }
    pub fn spa(&self) -> Ipv4Addr {
        self.ip(14)
    }
    pub fn tha(&self) -> Mac {
        self.mac(18)
    }
    pub fn tpa(&self) -> Ipv4Addr {
        self.ip(24)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: ArpOp,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self> {
        let op = match p.op() {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            _ => return Err(Error),
        };
        Ok(ArpRepr {
            op,
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        })
    }

    /// Gratuitous: the sender announces its own address.
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }

    pub fn emit(&self, b: &mut [u8]) {
        put16(b, 0, 1);
        put16(b, 2, EtherType::IPV4);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, if self.op == ArpOp::Request { 1 } else { 2 });
        b[8..14].copy_from_slice(&self.sha.0);
        b[14..18].copy_from_slice(&self.spa.octets());
        b[18..24].copy_from_slice(&self.tha.0);
        b[24..28].copy_from_slice(&self.tpa.octets());
    }

    /// A whole Ethernet frame carrying this ARP packet.
    pub fn to_frame(&self, eth_src: Mac, eth_dst: Mac) -> Vec<u8> {
        let eth = EthernetRepr {
            src: eth_src,
            dst: eth_dst,
            ethertype: EtherType::ARP,
            vlan: None,
        };
        let mut f = vec![0u8; 14 + LEN];
        eth.emit(&mut f);
        self.emit(&mut f[14..]);
        f
    }

    /// The reply to this request, from `mac` owning `tpa`.
    pub fn reply_from(&self, mac: Mac) -> ArpRepr {
        ArpRepr {
            op: ArpOp::Reply,
            sha: mac,
            spa: self.tpa,
            tha: self.sha,
            tpa: self.spa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{ARP_ICMP, frames};
    use crate::ethernet::EthernetFrame;

    #[test]
    fn real_request_and_reply() {
        let f = frames(ARP_ICMP);
        let req = ArpRepr::parse(&ArpPacket::new_checked(&f[0][14..]).unwrap()).unwrap();
        assert_eq!(req.op, ArpOp::Request);
        assert_eq!(
            (req.spa, req.tpa),
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
        );
        let rep = ArpRepr::parse(&ArpPacket::new_checked(&f[1][14..]).unwrap()).unwrap();
        // Building the reply to the captured request gives the captured reply, byte for byte.
        let built = req.reply_from(rep.sha).to_frame(rep.sha, req.sha);
        assert_eq!(&built[..], f[1]);
        assert_eq!(
            EthernetFrame::new_checked(&built[..]).unwrap().ethertype(),
            EtherType::ARP
        );
    }

    #[test]
    fn impossible() {
        let f = frames(ARP_ICMP);
        assert!(ArpPacket::new_checked(&f[0][14..40]).is_err());
        let mut bad = f[0][14..].to_vec();
        bad[5] = 16; // IPv6-sized protocol address
        assert!(ArpPacket::new_checked(&bad[..]).is_err());
        bad[5] = 4;
        bad[7] = 9; // unknown op
        assert!(ArpRepr::parse(&ArpPacket::new_checked(&bad[..]).unwrap()).is_err());
    }
}
