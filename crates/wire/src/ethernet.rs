//! Ethernet II frames with an optional 802.1Q tag.

use crate::{Error, Result, be16, put16};
use std::fmt;

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// Group bit set: multicast or broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn as_u64(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
    }
    pub fn from_u64(v: u64) -> Mac {
        let b = v.to_be_bytes();
        Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An untagged Ethernet header's length.
pub const HEADER_LEN: usize = 14;

pub struct EtherType;
impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    pub const DST: std::ops::Range<usize> = 0..6;
    pub const SRC: std::ops::Range<usize> = 6..12;
    pub const TYPE: usize = 12;
    pub const HEADER: usize = 14;
    pub const TAG: usize = 4;
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }
    pub fn new_checked(buf: T) -> Result<Self> {
        let f = Self::new_unchecked(buf);
        f.check_len()?;
        Ok(f)
    }
    pub fn check_len(&self) -> Result<()> {
        let b = self.buf.as_ref();
        if b.len() < field::HEADER {
            return Err(Error);
        }
        if self.is_tagged() && b.len() < field::HEADER + field::TAG {
            return Err(Error);
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub fn dst(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::DST]);
        Mac(m)
    }
    pub fn src(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SRC]);
        Mac(m)
    }
    fn outer_type(&self) -> u16 {
        be16(self.buf.as_ref(), field::TYPE)
    }
    pub fn is_tagged(&self) -> bool {
        matches!(self.outer_type(), EtherType::VLAN | EtherType::QINQ)
    }
    /// The outermost VLAN id, if tagged.
    pub fn vlan(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| be16(self.buf.as_ref(), field::HEADER) & 0x0fff)
    }
    /// The payload's ethertype, past one tag.
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            be16(self.buf.as_ref(), field::HEADER + 2)
        } else {
            self.outer_type()
        }
    }
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::HEADER + field::TAG
        } else {
            field::HEADER
        }
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: Mac) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }
    pub fn set_src(&mut self, m: Mac) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
    pub fn set_ethertype(&mut self, t: u16) {
        let at = if self.is_tagged() {
            field::HEADER + 2
        } else {
            field::TYPE
        };
        put16(self.buf.as_mut(), at, t);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buf.as_mut()[h..]
    }
}

/// A validated Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src: Mac,
    pub dst: Mac,
    pub ethertype: u16,
    pub vlan: Option<u16>,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Result<Self> {
        f.check_len()?;
        Ok(EthernetRepr {
            src: f.src(),
            dst: f.dst(),
            ethertype: f.ethertype(),
            vlan: f.vlan(),
        })
    }
    pub fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            field::HEADER + field::TAG
        } else {
            field::HEADER
        }
    }
    /// Writes the header into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        match self.vlan {
            Some(v) => {
                put16(buf, field::TYPE, EtherType::VLAN);
                put16(buf, field::HEADER, v & 0x0fff);
                put16(buf, field::HEADER + 2, self.ethertype);
            }
            None => put16(buf, field::TYPE, self.ethertype),
        }
    }
}

/// Inserts an 802.1Q tag into a frame.
pub fn push_vlan(frame: &mut Vec<u8>, vid: u16) {
    if frame.len() < field::HEADER {
        return;
    }
    let mut tag = [0u8; 4];
    put16(&mut tag, 0, EtherType::VLAN);
    put16(&mut tag, 2, vid & 0x0fff);
    frame.splice(12..12, tag);
}

/// Removes the outer 802.1Q tag of a frame, if any.
pub fn pop_vlan(frame: &mut Vec<u8>) {
    if frame.len() >= field::HEADER + field::TAG
        && EthernetFrame::new_unchecked(&frame[..]).is_tagged()
    {
        frame.drain(12..16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real frame: ARP request from a veth (captured with tcpdump).
    const ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn deconstruct_and_construct() {
        let f = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src().to_string(), "02:00:00:00:00:01");
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.vlan(), None);
        let r = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 14];
        r.emit(&mut out);
        assert_eq!(out, ARP_FRAME[..14]);
    }

    #[test]
    fn vlan_push_pop_round_trip() {
        let mut v = ARP_FRAME.to_vec();
        push_vlan(&mut v, 100);
        let f = EthernetFrame::new_checked(&v[..]).unwrap();
        assert_eq!(
            (f.vlan(), f.ethertype(), f.header_len()),
            (Some(100), EtherType::ARP, 18)
        );
        pop_vlan(&mut v);
        assert_eq!(v, ARP_FRAME);
    }

    #[test]
    fn impossible_len() {
        assert_eq!(
            EthernetFrame::new_checked(&ARP_FRAME[..13]).err(),
            Some(Error)
        );
        let mut tagged = [0u8; 16];
        tagged[12] = 0x81;
        assert!(EthernetFrame::new_checked(&tagged[..]).is_err());
    }
}
