//! The routes a gateway's bgpd selects, as zebra streams them over FPM
//! (TCP, each frame a 4-byte header — version 1, type 1 for netlink, the
//! frame's length big-endian — then one rtnetlink message). Sans I/O:
//! bytes in, route events out; the caller owns the socket.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use std::net::Ipv4Addr;

/// The FPM frame header: version, message type, length.
pub const HEADER: usize = 4;
const VERSION: u8 = 1;
const TYPE_NETLINK: u8 = 1;

/// A change to the routes bgpd selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteEvent {
    /// A route to `prefix/len` through these gateways (several: ECMP).
    Learned {
        prefix: Ipv4Addr,
        len: u8,
        gateways: Vec<Ipv4Addr>,
    },
    Withdrawn {
        prefix: Ipv4Addr,
        len: u8,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FpmError {
    #[error("FPM frame of version {0} (only 1 is known)")]
    Version(u8),
    #[error("FPM frame length {0} is shorter than its header")]
    Length(u16),
    #[error("undecodable netlink message in an FPM frame: {0}")]
    Netlink(String),
}

/// Reassembles frames from a byte stream.
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// Feeds bytes read from the connection; returns the events of the
    /// frames they complete. After an error the stream cannot be trusted:
    /// the caller closes it (zebra reconnects and sends every route again).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<RouteEvent>, FpmError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= HEADER {
            let (version, kind) = (self.buf[at], self.buf[at + 1]);
            let len = u16::from_be_bytes([self.buf[at + 2], self.buf[at + 3]]);
            if version != VERSION {
                self.buf.clear();
                return Err(FpmError::Version(version));
            }
            if usize::from(len) < HEADER {
                self.buf.clear();
                return Err(FpmError::Length(len));
            }
            if self.buf.len() - at < usize::from(len) {
                break;
            }
            let frame = &self.buf[at + HEADER..at + usize::from(len)];
            if kind == TYPE_NETLINK {
                match route_event(frame) {
                    Ok(Some(ev)) => out.push(ev),
                    Ok(None) => {}
                    Err(e) => {
                        self.buf.clear();
                        return Err(e);
                    }
                }
            }
            at += usize::from(len);
        }
        self.buf.drain(..at);
        Ok(out)
    }
}

/// The event of one netlink message: IPv4 routes only; anything else none.
fn route_event(frame: &[u8]) -> Result<Option<RouteEvent>, FpmError> {
    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame)
        .map_err(|e| FpmError::Netlink(e.to_string()))?;
    Ok(match m.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
            destination(&r).map(|(prefix, len)| RouteEvent::Learned {
                prefix,
                len,
                gateways: gateways(&r),
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
            destination(&r).map(|(prefix, len)| RouteEvent::Withdrawn { prefix, len })
        }
        _ => None,
    })
}

fn destination(r: &RouteMessage) -> Option<(Ipv4Addr, u8)> {
    let len = r.header.destination_prefix_length;
    if len > 32 {
        return None;
    }
    let dst = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    });
    match dst {
        Some(ip) => Some((ip, len)),
        // A default route carries no destination.
        None if len == 0
            && r.header.address_family == netlink_packet_route::AddressFamily::Inet =>
        {
            Some((Ipv4Addr::UNSPECIFIED, 0))
        }
        None => None,
    }
}

fn gateways(r: &RouteMessage) -> Vec<Ipv4Addr> {
    let gw = |attrs: &[RouteAttribute]| {
        attrs.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        })
    };
    let mut out: Vec<Ipv4Addr> = gw(&r.attributes).into_iter().collect();
    for a in &r.attributes {
        if let RouteAttribute::MultiPath(hops) = a {
            out.extend(hops.iter().filter_map(|h| gw(&h.attributes)));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::RouteNextHop;

    /// An FPM frame of a route message, as zebra sends it.
    fn frame(new: bool, dst: Option<&str>, len: u8, attrs: Vec<RouteAttribute>) -> Vec<u8> {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        if let Some(d) = dst {
            r.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    d.parse().unwrap(),
                )));
        }
        r.attributes.extend(attrs);
        let inner = if new {
            RouteNetlinkMessage::NewRoute(r)
        } else {
            RouteNetlinkMessage::DelRoute(r)
        };
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut nl = vec![0u8; m.buffer_len()];
        m.serialize(&mut nl);
        let mut f = vec![VERSION, TYPE_NETLINK];
        f.extend_from_slice(&((nl.len() + HEADER) as u16).to_be_bytes());
        f.extend(nl);
        f
    }

    fn gw(ip: &str) -> RouteAttribute {
        RouteAttribute::Gateway(RouteAddress::Inet(ip.parse().unwrap()))
    }

    #[test]
    fn learned_ecmp_default_and_withdrawn_routes() {
        let hop = |ip: &str| {
            let mut h = RouteNextHop::default();
            h.attributes.push(gw(ip));
            h
        };
        let mut bytes = frame(
            true,
            Some("10.201.0.0"),
            24,
            vec![gw("10.97.0.2"), RouteAttribute::Oif(2)],
        );
        bytes.extend(frame(
            true,
            Some("10.202.0.0"),
            24,
            vec![RouteAttribute::MultiPath(vec![
                hop("10.97.0.6"),
                hop("10.97.0.2"),
            ])],
        ));
        bytes.extend(frame(true, None, 0, vec![gw("10.97.0.2")]));
        bytes.extend(frame(false, Some("10.201.0.0"), 24, vec![]));
        let mut r = Reader::default();
        // Split anywhere: frames are reassembled.
        let (a, b) = bytes.split_at(7);
        let mut ev = r.push(a).unwrap();
        ev.extend(r.push(b).unwrap());
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            ev,
            vec![
                RouteEvent::Learned {
                    prefix: ip("10.201.0.0"),
                    len: 24,
                    gateways: vec![ip("10.97.0.2")]
                },
                RouteEvent::Learned {
                    prefix: ip("10.202.0.0"),
                    len: 24,
                    gateways: vec![ip("10.97.0.2"), ip("10.97.0.6")]
                },
                RouteEvent::Learned {
                    prefix: ip("0.0.0.0"),
                    len: 0,
                    gateways: vec![ip("10.97.0.2")]
                },
                RouteEvent::Withdrawn {
                    prefix: ip("10.201.0.0"),
                    len: 24
                },
            ]
        );
        assert!(r.buf.is_empty());
    }

    #[test]
    fn a_broken_stream_is_an_error_not_a_panic() {
        let mut r = Reader::default();
        assert_eq!(r.push(&[2, 1, 0, 8, 0, 0, 0, 0]), Err(FpmError::Version(2)));
        assert_eq!(r.push(&[1, 1, 0, 2]), Err(FpmError::Length(2)));
        assert!(matches!(
            r.push(&[1, 1, 0, 8, 1, 2, 3, 4]),
            Err(FpmError::Netlink(_))
        ));
        // Random bytes never panic.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let n = (x % 64) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8 ^ i as u8
                })
                .collect();
            let mut r = Reader::default();
            let mut framed = vec![VERSION, TYPE_NETLINK];
            framed.extend_from_slice(&((n + HEADER) as u16).to_be_bytes());
            framed.extend(bytes);
            let _ = r.push(&framed);
        }
    }
}
