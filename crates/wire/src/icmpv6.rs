//! ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861): solicitations and
//! advertisements with their link-layer address options.

use crate::checksum;
use crate::ethernet::Mac;
use crate::ipv6::Ipv6Packet;
use crate::{Error, Result};
use std::net::Ipv6Addr;

pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdRepr {
    /// Who has `target`? (with the sender's link-layer address, if given)
    Solicit {
        target: Ipv6Addr,
        source_mac: Option<Mac>,
    },
    /// `target` is at `target_mac`.
    Advert {
        target: Ipv6Addr,
        target_mac: Option<Mac>,
        solicited: bool,
        router: bool,
    },
}

impl NdRepr {
    /// Parses a neighbour-discovery message from an IPv6 packet, checking the
    /// ICMPv6 checksum and the hop limit of 255 that ND requires.
    pub fn parse<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) -> Result<Self> {
        let b = ip.payload();
        if ip.next_header() != 58 || ip.hop_limit() != 255 || b.len() < 24 {
            return Err(Error);
        }
        let mut sum = checksum::sum(&ip.src().octets()) + checksum::sum(&ip.dst().octets());
        sum += b.len() as u32 + 58 + checksum::sum(b);
        if checksum::fold(sum) != 0xffff {
            return Err(Error);
        }
        let mut t = [0u8; 16];
        t.copy_from_slice(&b[8..24]);
        let target = Ipv6Addr::from(t);
        // Options: type, length in 8-byte units, value.
        let lladdr = |want: u8| -> Result<Option<Mac>> {
            let mut at = 24;
            while at + 2 <= b.len() {
                let (ty, len) = (b[at], usize::from(b[at + 1]) * 8);
                if len == 0 || at + len > b.len() {
                    return Err(Error);
                }
                if ty == want && len >= 8 {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&b[at + 2..at + 8]);
                    return Ok(Some(Mac(m)));
                }
                at += len;
            }
            Ok(None)
        };
        match b[0] {
            NEIGHBOR_SOLICIT => Ok(NdRepr::Solicit {
                target,
                source_mac: lladdr(1)?,
            }),
            NEIGHBOR_ADVERT => Ok(NdRepr::Advert {
                target,
                target_mac: lladdr(2)?,
                solicited: b[4] & 0x40 != 0,
                router: b[4] & 0x80 != 0,
            }),
            _ => Err(Error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{ND, frames};

    #[test]
    fn real_solicit_and_advert() {
        let f = frames(ND);
        let ns = NdRepr::parse(&Ipv6Packet::new_checked(&f[0][14..]).unwrap()).unwrap();
        assert_eq!(
            ns,
            NdRepr::Solicit {
                target: "fd00::2".parse().unwrap(),
                source_mac: Some(Mac([2, 0, 0, 0, 0, 1]))
            }
        );
        let na = NdRepr::parse(&Ipv6Packet::new_checked(&f[1][14..]).unwrap()).unwrap();
        assert!(matches!(
            na,
            NdRepr::Advert {
                solicited: true,
                target_mac: Some(Mac([2, 0, 0, 0, 0, 2])),
                ..
            }
        ));
        let mut bad = f[0][14..].to_vec();
        bad[50] ^= 1;
        assert!(NdRepr::parse(&Ipv6Packet::new_checked(&bad[..]).unwrap()).is_err());
        // An echo request is not ND.
        assert!(NdRepr::parse(&Ipv6Packet::new_checked(&f[2][14..]).unwrap()).is_err());
    }
}
