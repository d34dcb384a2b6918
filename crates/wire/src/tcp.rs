//! TCP (RFC 793): the header fields a virtual network reads and rewrites.

use crate::checksum;
use crate::ipv4::Protocol;
use crate::{Error, Result, be16, be32, put16};
use std::net::Ipv4Addr;

pub const MIN_HEADER: usize = 20;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER {
            return Err(Error);
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < MIN_HEADER || off > b.len() {
            return Err(Error);
        }
        Ok(TcpPacket { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }
    pub fn ack(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[12] >> 4) * 4
    }
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[13]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buf.as_ref();
        checksum::fold(
            checksum::pseudo_header(src, dst, Protocol::TCP, b.len() as u16) + checksum::sum(b),
        ) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, p: u16) {
        let old = self.src_port();
        let b = self.buf.as_mut();
        put16(b, 0, p);
        let ck = checksum::update16(be16(b, 16), old, p);
        put16(b, 16, ck);
    }
    pub fn set_dst_port(&mut self, p: u16) {
        let old = self.dst_port();
        let b = self.buf.as_mut();
        put16(b, 2, p);
        let ck = checksum::update16(be16(b, 16), old, p);
        put16(b, 16, ck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{TCP, frames};

    #[test]
    fn real_syn_and_rst() {
        let f = frames(TCP);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let syn = TcpPacket::new_checked(&f[0][34..]).unwrap();
        assert_eq!(
            (syn.dst_port(), syn.flags() & flags::SYN, syn.header_len()),
            (5556, flags::SYN, 40)
        );
        assert!(syn.verify_checksum(a, b));
        let rst = TcpPacket::new_checked(&f[1][34..]).unwrap();
        assert_eq!(rst.flags(), flags::RST | flags::ACK);
        assert_eq!(rst.ack(), syn.seq().wrapping_add(1));
        let mut m = f[0][34..].to_vec();
        let mut p = TcpPacket::new_checked(&mut m[..]).unwrap();
        p.set_src_port(40000);
        p.set_dst_port(80);
        assert!(p.verify_checksum(a, b));
        let mut bad = f[0][34..].to_vec();
        bad[12] = 0xf0; // 60-byte header in a 40-byte segment
        assert!(TcpPacket::new_checked(&bad[..]).is_err());
    }
}
