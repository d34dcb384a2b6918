//! VXLAN (RFC 7348): the 8-byte header in front of the inner Ethernet frame.

use crate::{Error, Result, be32, put32};

pub const HEADER: usize = 8;
const FLAG_VNI: u8 = 0x08;

pub struct VxlanPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Requires the I flag (a valid VNI) and room for the header.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER || b[0] & FLAG_VNI == 0 {
            return Err(Error);
        }
        Ok(VxlanPacket { buf })
    }
    pub fn vni(&self) -> u32 {
        be32(self.buf.as_ref(), 4) >> 8
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER..]
    }
}

/// Writes a VXLAN header for `vni` (24 bits).
pub fn emit(b: &mut [u8], vni: u32) {
    b[..HEADER].fill(0);
    b[0] = FLAG_VNI;
    put32(b, 4, (vni & 0x00ff_ffff) << 8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{VXLAN, frames};
    use crate::ethernet::{EtherType, EthernetFrame};

    #[test]
    fn real_kernel_vxlan() {
        let f = frames(VXLAN);
        let v = VxlanPacket::new_checked(&f[0][42..]).unwrap();
        assert_eq!(v.vni(), 42);
        let inner = EthernetFrame::new_checked(v.payload()).unwrap();
        assert_eq!(inner.ethertype(), EtherType::IPV6);
        let mut h = [0u8; 8];
        emit(&mut h, 42);
        assert_eq!(&h[..], &f[0][42..50]);
        assert!(VxlanPacket::new_checked(&[0u8; 8][..]).is_err());
    }
}
