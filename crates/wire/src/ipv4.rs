//! IPv4 (RFC 791): header with options, fragments, checksum.

use crate::checksum;
use crate::{Error, Result, be16, put16};
use std::net::Ipv4Addr;

pub struct Protocol;
impl Protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

pub const MIN_HEADER: usize = 20;

/// A view of an IPv4 packet.
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }
    /// Checks version, header length and total length against the buffer.
    pub fn new_checked(buf: T) -> Result<Self> {
        let p = Ipv4Packet { buf };
        let b = p.buf.as_ref();
        if b.len() < MIN_HEADER || b[0] >> 4 != 4 {
            return Err(Error);
        }
        let hl = p.header_len();
        let total = p.total_len() as usize;
        if hl < MIN_HEADER || total < hl || b.len() < total {
            return Err(Error);
        }
        Ok(p)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buf.as_ref(), 6) & 0x1fff) * 8
    }
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[MIN_HEADER..self.header_len()]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buf.as_ref()[..self.header_len()])) == 0xffff
    }
    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        put16(b, 10, 0);
        let ck = checksum::checksum(&b[..hl]);
        put16(b, 10, ck);
    }
    /// Rewrites the source, keeping the IP and L4 checksums right.
    pub fn set_src(&mut self, ip: Ipv4Addr) {
        let old = u32::from(self.src());
        self.buf.as_mut()[12..16].copy_from_slice(&ip.octets());
        self.fix_checksums(old, u32::from(ip));
    }
    pub fn set_dst(&mut self, ip: Ipv4Addr) {
        let old = u32::from(self.dst());
        self.buf.as_mut()[16..20].copy_from_slice(&ip.octets());
        self.fix_checksums(old, u32::from(ip));
    }
    fn fix_checksums(&mut self, old: u32, new: u32) {
        let ck = checksum::update32(self.checksum(), old, new);
        put16(self.buf.as_mut(), 10, ck);
        // TCP and UDP checksums cover the addresses through the pseudo-header;
        // later fragments carry no L4 header.
        if self.frag_offset() != 0 {
            return;
        }
        let hl = self.header_len();
        let at = match self.protocol() {
            Protocol::TCP => hl + 16,
            Protocol::UDP => hl + 6,
            _ => return,
        };
        let b = self.buf.as_mut();
        if b.len() < at + 2 {
            return;
        }
        let l4 = be16(b, at);
        if self.protocol() == Protocol::UDP && l4 == 0 {
            return; // no UDP checksum in use
        }
        let b = self.buf.as_mut();
        put16(b, at, checksum::update32(l4, old, new));
    }
    /// Decrements the TTL (with an incremental checksum update).
    pub fn decrement_ttl(&mut self) {
        let b = self.buf.as_mut();
        let old = be16(b, 8);
        b[8] = b[8].saturating_sub(1);
        let new = be16(b, 8);
        let ck = checksum::update16(be16(b, 10), old, new);
        put16(b, 10, ck);
    }
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_mut();
        let old = be16(b, 8);
        b[8] = ttl;
        let new = be16(b, 8);
        let ck = checksum::update16(be16(b, 10), old, new);
        put16(b, 10, ck);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len() as usize);
        &mut self.buf.as_mut()[hl..tl]
    }
}

/// A validated IPv4 header without options (what we build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error);
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() as usize - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }
    /// Writes a 20-byte header with its checksum.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = 0x45;
        b[1] = self.tos;
        put16(b, 2, (MIN_HEADER + self.payload_len) as u16);
        put16(b, 4, self.ident);
        put16(b, 6, if self.dont_frag { 0x4000 } else { 0 });
        b[8] = self.ttl;
        b[9] = self.protocol;
        put16(b, 10, 0);
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        let ck = checksum::checksum(&b[..MIN_HEADER]);
        put16(b, 10, ck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{ARP_ICMP, FRAG, UDP, frames};

    #[test]
    fn real_echo_header_round_trip() {
        let f = frames(ARP_ICMP);
        let p = Ipv4Packet::new_checked(&f[2][14..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            (r.src, r.dst, r.protocol, r.payload_len),
            (
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                1,
                64
            )
        );
        let mut out = [0u8; 20];
        r.emit(&mut out);
        assert_eq!(&out[..], &f[2][14..34]);
    }

    #[test]
    fn real_fragments() {
        let f = frames(FRAG);
        let first = Ipv4Packet::new_checked(&f[0][14..]).unwrap();
        assert!(first.more_frags() && first.frag_offset() == 0 && first.is_fragment());
        let second = Ipv4Packet::new_checked(&f[1][14..]).unwrap();
        assert!(!second.more_frags() && second.frag_offset() == 1480);
        assert_eq!(first.ident(), second.ident());
    }

    #[test]
    fn rewrites_keep_checksums_valid() {
        let f = frames(UDP);
        let mut b = f[0][14..].to_vec();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src("192.0.2.7".parse().unwrap());
        p.set_dst("198.51.100.9".parse().unwrap());
        p.decrement_ttl();
        assert!(p.verify_checksum());
        let (src, dst, len) = (p.src(), p.dst(), p.payload().len() as u16);
        let udp = p.payload();
        let sum = checksum::pseudo_header(src, dst, Protocol::UDP, len) + checksum::sum(udp);
        assert_eq!(checksum::fold(sum), 0xffff, "UDP checksum still valid");
    }

    #[test]
    fn impossible_lengths() {
        let f = frames(ARP_ICMP);
        let ip = &f[2][14..];
        assert!(Ipv4Packet::new_checked(&ip[..19]).is_err());
        assert!(
            Ipv4Packet::new_checked(&ip[..60]).is_err(),
            "shorter than total length"
        );
        let mut bad = ip.to_vec();
        bad[0] = 0x44; // header length 16
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
        bad[0] = 0x65; // version 6
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
        let mut bad = ip.to_vec();
        bad[10] ^= 0xff;
        assert!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&bad[..]).unwrap()).is_err());
    }
}
