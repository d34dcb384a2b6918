//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::Ipv4Addr;

/// One's-complement sum of `data` folded into 16 bits, not yet inverted.
/// It runs on every byte a super-frame is cut into, so it is wide: the sum
/// is independent of byte order (RFC 1071 §2(B)), so words are added as
/// native 32-bit halves of 64-bit loads into four accumulators, and the
/// folded result is swapped back to network order at the end.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            let v = u64::from_ne_bytes(b[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
            *a += (v >> 32) + (v & 0xffff_ffff);
        }
    }
    let mut total = acc
        .iter()
        .fold(0u64, |t, a| t + (a & 0xffff_ffff) + (a >> 32));
    let mut words = blocks.remainder().chunks_exact(2);
    for c in &mut words {
        total += u64::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = words.remainder() {
        total += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    u32::from(u16::from_be(total as u16))
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

    /// The word-at-a-time sum equals RFC 1071's 16-bit definition.
    #[test]
    fn wide_sum_matches_the_definition() {
        fn reference(d: &[u8]) -> u16 {
            let mut acc: u64 = 0;
            for c in d.chunks(2) {
                acc += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
            }
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        let mut x: u32 = 12345;
        let data: Vec<u8> = (0..70_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for len in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1499, 65_535, 70_000] {
            assert_eq!(
                fold(sum(&data[..len])),
                reference(&data[..len]),
                "len {len}"
            );
        }
        assert_eq!(fold(sum(&[0xff; 64])), 0xffff);
    }
}
