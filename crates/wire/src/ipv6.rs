//! IPv6 (RFC 8200): the fixed header. Virtual routers drop IPv6; bridges
//! forward it and chains match its ethertype, so this is all we read.

use crate::{Error, Result, be16};
use std::net::Ipv6Addr;

pub const HEADER: usize = 40;

pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER || b[0] >> 4 != 6 || HEADER + usize::from(be16(b, 4)) > b.len() {
            return Err(Error);
        }
        Ok(Ipv6Packet { buf })
    }
    pub fn payload_len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }
    fn addr(&self, at: usize) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[at..at + 16]);
        Ipv6Addr::from(a)
    }
    pub fn src(&self) -> Ipv6Addr {
        self.addr(8)
    }
    pub fn dst(&self) -> Ipv6Addr {
        self.addr(24)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER..HEADER + usize::from(self.payload_len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{ND, frames};

    #[test]
    fn real_solicitation_header() {
        let f = frames(ND);
        let p = Ipv6Packet::new_checked(&f[0][14..]).unwrap();
        assert_eq!(p.next_header(), 58);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src(), "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert!(Ipv6Packet::new_checked(&f[0][14..50]).is_err());
    }
}
