//! UDP (RFC 768).

use crate::checksum;
use crate::ipv4::Protocol;
use crate::{Error, Result, be16, put16};
use std::net::Ipv4Addr;

pub const HEADER: usize = 8;

pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER {
            return Err(Error);
        }
        let len = usize::from(be16(b, 4));
        if len < HEADER || len > b.len() {
            return Err(Error);
        }
        Ok(UdpPacket { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER..self.len() as usize]
    }
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let b = &self.buf.as_ref()[..self.len() as usize];
        checksum::fold(
            checksum::pseudo_header(src, dst, Protocol::UDP, self.len()) + checksum::sum(b),
        ) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, p: u16) {
        let old = self.src_port();
        let b = self.buf.as_mut();
        put16(b, 0, p);
        if be16(b, 6) != 0 {
            let ck = checksum::update16(be16(b, 6), old, p);
            put16(b, 6, ck);
        }
    }
    pub fn set_dst_port(&mut self, p: u16) {
        let old = self.dst_port();
        let b = self.buf.as_mut();
        put16(b, 2, p);
        if be16(b, 6) != 0 {
            let ck = checksum::update16(be16(b, 6), old, p);
            put16(b, 6, ck);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Writes header and payload with the checksum for `src`/`dst`.
    pub fn emit(&self, b: &mut [u8], payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
        let len = (HEADER + payload.len()) as u16;
        put16(b, 0, self.src_port);
        put16(b, 2, self.dst_port);
        put16(b, 4, len);
        put16(b, 6, 0);
        b[HEADER..HEADER + payload.len()].copy_from_slice(payload);
        let sum = checksum::pseudo_header(src, dst, Protocol::UDP, len)
            + checksum::sum(&b[..len as usize]);
        let ck = match !checksum::fold(sum) {
            0 => 0xffff,
            c => c,
        };
        put16(b, 6, ck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{UDP, frames};

    #[test]
    fn real_datagram() {
        let f = frames(UDP);
        let p = UdpPacket::new_checked(&f[0][34..]).unwrap();
        assert_eq!((p.dst_port(), p.payload()), (5555, &b"hello\n"[..]));
        let (src, dst) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(p.verify_checksum(src, dst));
        let mut out = vec![0u8; 14];
        UdpRepr {
            src_port: p.src_port(),
            dst_port: 5555,
        }
        .emit(&mut out, b"hello\n", src, dst);
        assert_eq!(&out[..], &f[0][34..]);
        assert!(UdpPacket::new_checked(&f[0][34..40]).is_err());
    }
}
