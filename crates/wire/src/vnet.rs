//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that an
//! AF_PACKET socket with `PACKET_VNET_HDR` and a tap opened with
//! `IFF_VNET_HDR` put before every frame. It says what the kernel left
//! undone: an L4 checksum still to be summed (CHECKSUM_PARTIAL) and whether
//! the frame is a GSO super-frame to be cut into `gso_size` segments.
//!
//! [`VnetHeader`] is the raw header; [`Offload`] is what a frame really
//! carries once the header has been checked against the frame itself.

use crate::ethernet::{EtherType, EthernetFrame};
use crate::ipv4::{Ipv4Packet, Protocol};
use crate::ipv6::Ipv6Packet;
use crate::tcp::TcpPacket;
use crate::{Error, Result, checksum};

pub const HEADER: usize = 10;

mod field {
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: usize = 2;
    pub const GSO_SIZE: usize = 4;
    pub const CSUM_START: usize = 6;
    pub const CSUM_OFFSET: usize = 8;
}

pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;

pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

/// The TCP checksum field's offset in its header; UDP's.
pub const TCP_CSUM_OFFSET: u16 = 16;
pub const UDP_CSUM_OFFSET: u16 = 6;

/// The header as the kernel wrote it. The kernel writes it in the host's
/// byte order for virtio 1.0 on little-endian machines (`vio_le()`), which
/// is little-endian on every machine we run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl VnetHeader {
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER {
            return Err(Error);
        }
        Ok(VnetHeader {
            flags: b[field::FLAGS],
            gso_type: b[field::GSO_TYPE],
            hdr_len: le16(b, field::HDR_LEN),
            gso_size: le16(b, field::GSO_SIZE),
            csum_start: le16(b, field::CSUM_START),
            csum_offset: le16(b, field::CSUM_OFFSET),
        })
    }

    pub fn emit(&self, b: &mut [u8]) {
        b[field::FLAGS] = self.flags;
        b[field::GSO_TYPE] = self.gso_type;
        b[field::HDR_LEN..field::HDR_LEN + 2].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[field::GSO_SIZE..field::GSO_SIZE + 2].copy_from_slice(&self.gso_size.to_le_bytes());
        b[field::CSUM_START..field::CSUM_START + 2].copy_from_slice(&self.csum_start.to_le_bytes());
        b[field::CSUM_OFFSET..field::CSUM_OFFSET + 2]
            .copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    pub fn to_bytes(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        self.emit(&mut b);
        b
    }
}

/// A partial L4 checksum: the field at `start + offset` holds the
/// pseudo-header sum, and everything from `start` to the end of the frame
/// is still to be summed into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csum {
    pub start: u16,
    pub offset: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    Tcp4,
    Tcp6,
    /// UDP segmentation (each segment a datagram of its own).
    Udp,
}

/// A super-frame: its L4 payload is cut into segments of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    pub size: u16,
    /// Headers up to the end of the L4 header.
    pub hdr_len: u16,
    pub ecn: bool,
}

impl Gso {
    /// The IP and L4 header bytes of each segment: what a path MTU counts
    /// besides the `size` payload bytes.
    pub fn ip_headers(&self, frame: &[u8]) -> usize {
        usize::from(self.hdr_len).saturating_sub(l2_len(frame))
    }
}

/// What a frame still needs done, validated against the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    pub csum: Option<Csum>,
    pub gso: Option<Gso>,
}

/// Why a vnet header was refused: the frame is counted and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// `csum_start`/`csum_offset` outside the frame (or before L3).
    Checksum,
    /// A GSO type we do not know, `gso_size` 0, `hdr_len` past the frame,
    /// or a GSO type that does not match the frame's headers.
    Gso,
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OffloadError::Checksum => "vnet header: checksum offsets outside the frame",
            OffloadError::Gso => "vnet header: GSO does not match the frame",
        })
    }
}

impl std::error::Error for OffloadError {}

/// Where a frame's L4 header starts, and its protocol (IPv4 without
/// fragmentation, or IPv6 without extension headers).
pub fn l4_of(frame: &[u8]) -> Option<(usize, u8, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(&frame[l3..]).ok()?;
            if ip.is_fragment() {
                return None;
            }
            Some((l3 + ip.header_len(), ip.protocol(), true))
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(&frame[l3..]).ok()?;
            Some((l3 + 40, ip.next_header(), false))
        }
        _ => None,
    }
}

impl Offload {
    pub const NONE: Offload = Offload {
        csum: None,
        gso: None,
    };

    pub fn is_none(&self) -> bool {
        self.csum.is_none() && self.gso.is_none()
    }

    /// Checks `h` against `frame` (the bytes after the header). Hostile
    /// values are refused here, so nothing later indexes out of the frame.
    pub fn from_header(h: &VnetHeader, frame: &[u8]) -> std::result::Result<Self, OffloadError> {
        let len = frame.len();
        let csum = if h.flags & F_NEEDS_CSUM != 0 {
            let (s, o) = (usize::from(h.csum_start), usize::from(h.csum_offset));
            if s < crate::ethernet::HEADER_LEN || s + o + 2 > len {
                return Err(OffloadError::Checksum);
            }
            Some(Csum {
                start: h.csum_start,
                offset: h.csum_offset,
            })
        } else {
            None
        };
        let gso = match h.gso_type & !GSO_ECN {
            GSO_NONE => None,
            t @ (GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4) => {
                if h.gso_size == 0 || usize::from(h.hdr_len) > len {
                    return Err(OffloadError::Gso);
                }
                let (l4, proto, v4) = l4_of(frame).ok_or(OffloadError::Gso)?;
                let (kind, off, l4_hdr) = match (t, proto, v4) {
                    (GSO_TCPV4, Protocol::TCP, true) | (GSO_TCPV6, Protocol::TCP, false) => {
                        let end = ip_end(frame).ok_or(OffloadError::Gso)?;
                        let th = TcpPacket::new_checked(&frame[l4..end])
                            .map_err(|_| OffloadError::Gso)?
                            .header_len();
                        let k = if v4 { GsoKind::Tcp4 } else { GsoKind::Tcp6 };
                        (k, TCP_CSUM_OFFSET, th)
                    }
                    (GSO_UDP_L4, Protocol::UDP, _) => (GsoKind::Udp, UDP_CSUM_OFFSET, 8),
                    _ => return Err(OffloadError::Gso),
                };
                // The kernel cuts the checksum it was told about: it must be
                // this L4 header's.
                match csum {
                    Some(c) if usize::from(c.start) == l4 && c.offset == off => {}
                    _ => return Err(OffloadError::Gso),
                }
                if l4 + l4_hdr > len {
                    return Err(OffloadError::Gso);
                }
                Some(Gso {
                    kind,
                    size: h.gso_size,
                    hdr_len: (l4 + l4_hdr) as u16,
                    ecn: h.gso_type & GSO_ECN != 0,
                })
            }
            _ => return Err(OffloadError::Gso),
        };
        Ok(Offload { csum, gso })
    }

    /// The header to send `self` with.
    pub fn header(&self) -> VnetHeader {
        let mut h = VnetHeader::default();
        if let Some(c) = self.csum {
            h.flags = F_NEEDS_CSUM;
            h.csum_start = c.start;
            h.csum_offset = c.offset;
        }
        if let Some(g) = self.gso {
            h.gso_type = match g.kind {
                GsoKind::Tcp4 => GSO_TCPV4,
                GsoKind::Tcp6 => GSO_TCPV6,
                GsoKind::Udp => GSO_UDP_L4,
            } | if g.ecn { GSO_ECN } else { 0 };
            h.gso_size = g.size;
            h.hdr_len = g.hdr_len;
        }
        h
    }

    /// The same offload after `delta` bytes were inserted (or removed)
    /// before L3: a VLAN tag pushed or popped.
    pub fn shifted(self, delta: isize) -> Offload {
        let mv = |v: u16| (v as isize + delta).clamp(0, u16::MAX as isize) as u16;
        Offload {
            csum: self.csum.map(|c| Csum {
                start: mv(c.start),
                offset: c.offset,
            }),
            gso: self.gso.map(|g| Gso {
                hdr_len: mv(g.hdr_len),
                ..g
            }),
        }
    }
}

/// The end of the IP packet in `frame` (past it: Ethernet padding).
pub fn ip_end(frame: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    match eth.ethertype() {
        EtherType::IPV4 => {
            Some(l3 + usize::from(Ipv4Packet::new_checked(&frame[l3..]).ok()?.total_len()))
        }
        EtherType::IPV6 => {
            Some(l3 + 40 + usize::from(Ipv6Packet::new_checked(&frame[l3..]).ok()?.payload_len()))
        }
        _ => None,
    }
}

/// The Ethernet header's length, VLAN tags included (14 if unreadable).
pub fn l2_len(frame: &[u8]) -> usize {
    EthernetFrame::new_checked(frame).map_or(crate::ethernet::HEADER_LEN, |e| e.header_len())
}

/// The length of the frame's IP packet (0 for what is not IP).
pub fn ip_len(frame: &[u8]) -> usize {
    ip_end(frame).map_or(0, |e| e.saturating_sub(l2_len(frame)))
}

/// Finishes a partial checksum in place: sums from `c.start` to the end
/// of the IP packet (the field already holds the pseudo-header sum).
pub fn complete_checksum(frame: &mut [u8], c: Csum) {
    let end = ip_end(frame).unwrap_or(frame.len()).min(frame.len());
    let (s, at) = (usize::from(c.start), usize::from(c.start + c.offset));
    if s >= end || at + 2 > end {
        return;
    }
    let mut ck = checksum::checksum(&frame[s..end]);
    // UDP sends "no checksum" as 0, so a computed 0 goes as 0xffff.
    if ck == 0 && c.offset == UDP_CSUM_OFFSET {
        ck = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&ck.to_be_bytes());
}

/// After a frame's addresses were rewritten: a partial checksum's field
/// holds the pseudo-header sum of the new addresses (an incremental update
/// meant for a complete checksum would be wrong here).
pub fn refresh_partial(frame: &mut [u8], c: Csum) {
    let Some((l4, proto, true)) = l4_of(frame) else {
        return;
    };
    let at = usize::from(c.start + c.offset);
    if usize::from(c.start) != l4 || at + 2 > frame.len() {
        return;
    }
    let eth = EthernetFrame::new_unchecked(&frame[..]);
    let ip = Ipv4Packet::new_unchecked(&frame[eth.header_len()..]);
    let l4_len = ip.total_len().saturating_sub(ip.header_len() as u16);
    let p = checksum::fold(checksum::pseudo_header(ip.src(), ip.dst(), proto, l4_len));
    frame[at..at + 2].copy_from_slice(&p.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures;

    #[test]
    fn header_round_trip_little_endian() {
        // As the kernel writes it for a TSO frame from a veth: NEEDS_CSUM,
        // TCPV4, hdr_len 66, gso_size 1398, csum_start 34, csum_offset 16.
        let raw = [1u8, 1, 66, 0, 0x76, 0x05, 34, 0, 16, 0];
        let h = VnetHeader::parse(&raw).unwrap();
        assert_eq!(
            h,
            VnetHeader {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1398,
                csum_start: 34,
                csum_offset: 16
            }
        );
        assert_eq!(h.to_bytes(), raw);
        assert!(VnetHeader::parse(&raw[..9]).is_err());
    }

    fn tcp_frame() -> Vec<u8> {
        captures::frames(captures::TCP)
            .into_iter()
            .find(|f| f.len() > 66)
            .expect("a TCP data frame")
            .to_vec()
    }

    /// A frame made partial the way a sender's stack leaves it.
    pub(crate) fn make_partial(f: &mut [u8]) -> Csum {
        let (l4, proto, _) = l4_of(f).unwrap();
        let c = Csum {
            start: l4 as u16,
            offset: if proto == Protocol::TCP {
                TCP_CSUM_OFFSET
            } else {
                UDP_CSUM_OFFSET
            },
        };
        refresh_partial(f, c);
        c
    }

    #[test]
    fn partial_checksum_completes_to_the_original() {
        let orig = tcp_frame();
        let mut f = orig.clone();
        let c = make_partial(&mut f);
        assert_ne!(f, orig);
        complete_checksum(&mut f, c);
        assert_eq!(f, orig);
    }

    #[test]
    fn rewrite_on_a_partial_checksum_then_completion_is_valid() {
        let mut f = tcp_frame();
        let c = make_partial(&mut f);
        let l3 = 14;
        let mut ip = Ipv4Packet::new_checked(&mut f[l3..]).unwrap();
        ip.set_src(std::net::Ipv4Addr::new(203, 0, 113, 7));
        refresh_partial(&mut f, c);
        complete_checksum(&mut f, c);
        let ip = Ipv4Packet::new_checked(&f[l3..]).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(ip.src(), ip.dst()));
        assert!(ip.verify_checksum());
    }

    #[test]
    fn hostile_headers_are_refused() {
        let f = tcp_frame();
        let ok = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 16,
        };
        assert!(Offload::from_header(&ok, &f).is_ok());
        let bad = |h: VnetHeader| Offload::from_header(&h, &f).unwrap_err();
        let n = f.len() as u16;
        assert_eq!(
            bad(VnetHeader {
                csum_start: n,
                ..ok
            }),
            OffloadError::Checksum
        );
        assert_eq!(
            bad(VnetHeader {
                csum_offset: n,
                ..ok
            }),
            OffloadError::Checksum
        );
        assert_eq!(
            bad(VnetHeader {
                csum_start: 3,
                gso_type: 0,
                ..ok
            }),
            OffloadError::Checksum
        );
        assert_eq!(bad(VnetHeader { gso_size: 0, ..ok }), OffloadError::Gso);
        assert_eq!(
            bad(VnetHeader {
                hdr_len: n + 1,
                ..ok
            }),
            OffloadError::Gso
        );
        assert_eq!(
            bad(VnetHeader {
                gso_type: GSO_TCPV6,
                ..ok
            }),
            OffloadError::Gso
        );
        assert_eq!(
            bad(VnetHeader {
                gso_type: GSO_UDP_L4,
                ..ok
            }),
            OffloadError::Gso
        );
        assert_eq!(bad(VnetHeader { gso_type: 9, ..ok }), OffloadError::Gso);
        // GSO without the checksum it cuts, or with another one.
        assert_eq!(bad(VnetHeader { flags: 0, ..ok }), OffloadError::Gso);
        assert_eq!(
            bad(VnetHeader {
                csum_start: 36,
                ..ok
            }),
            OffloadError::Gso
        );
    }
}
