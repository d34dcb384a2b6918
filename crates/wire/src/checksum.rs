//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::Ipv4Addr;

/// One's-complement sum of `data` folded into 16 bits, not yet inverted.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data` (to store in the header).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The IPv4 pseudo-header sum for TCP/UDP checksums.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + u32::from(proto) + u32::from(len)
}

/// Updates checksum `old_ck` after a 16-bit word changed from `old` to `new`.
pub fn update16(old_ck: u16, old: u16, new: u16) -> u16 {
    // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
    !fold(u32::from(!old_ck) + u32::from(!old) + u32::from(new))
}

/// Updates a checksum after a 32-bit field (an IPv4 address) changed.
pub fn update32(ck: u16, old: u32, new: u32) -> u16 {
    let ck = update16(ck, (old >> 16) as u16, (new >> 16) as u16);
    update16(ck, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_incremental_update() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        let mut d = data;
        let ck = checksum(&d);
        d[2] = 0x12;
        d[3] = 0x34;
        assert_eq!(update16(ck, 0xf203, 0x1234), checksum(&d));
        assert_eq!(checksum(&[0x01]), !0x0100);
    }
}
