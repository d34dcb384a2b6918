//! ICMPv4 (RFC 792): echo and the errors a router sends.

use crate::checksum;
use crate::{Error, Result, be16, put16};

pub const ECHO_REPLY: u8 = 0;
pub const DST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAM_PROBLEM: u8 = 12;

/// Destination-unreachable codes.
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// How much of the original datagram an error quotes (576-byte minimum MTU
/// less the IP and ICMP headers), as Linux does.
pub const MAX_QUOTE: usize = 548;

pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < 8 {
            return Err(Error);
        }
        Ok(Icmpv4Packet { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Echo identifier (echo request/reply only).
    pub fn echo_id(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[8..]
    }
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DST_UNREACHABLE | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buf.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_echo_id(&mut self, id: u16) {
        let b = self.buf.as_mut();
        let old = be16(b, 4);
        put16(b, 4, id);
        let ck = checksum::update16(be16(b, 2), old, id);
        put16(b, 2, ck);
    }
    pub fn fill_checksum(&mut self) {
        let b = self.buf.as_mut();
        put16(b, 2, 0);
        let ck = checksum::checksum(b);
        put16(b, 2, ck);
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[8..]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        id: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        id: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// `quote` is the original IP header and leading data; `mtu` only for FRAG_NEEDED.
    DstUnreachable {
        code: u8,
        mtu: u16,
        quote: &'a [u8],
    },
    TimeExceeded {
        quote: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &'a Icmpv4Packet<&'a T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error);
        }
        let b = p.buf.as_ref();
        Ok(match (b[0], b[1]) {
            (ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                id: be16(b, 4),
                seq: be16(b, 6),
                data: &b[8..],
            },
            (ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                id: be16(b, 4),
                seq: be16(b, 6),
                data: &b[8..],
            },
            (DST_UNREACHABLE, code) => Icmpv4Repr::DstUnreachable {
                code,
                mtu: be16(b, 6),
                quote: &b[8..],
            },
            (TIME_EXCEEDED, _) => Icmpv4Repr::TimeExceeded { quote: &b[8..] },
            _ => return Err(Error),
        })
    }

    pub fn buffer_len(&self) -> usize {
        8 + match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => data.len(),
            Icmpv4Repr::DstUnreachable { quote, .. } | Icmpv4Repr::TimeExceeded { quote } => {
                quote.len().min(MAX_QUOTE)
            }
        }
    }

    pub fn emit(&self, b: &mut [u8]) {
        b[..8].fill(0);
        match *self {
            Icmpv4Repr::EchoRequest { id, seq, data } | Icmpv4Repr::EchoReply { id, seq, data } => {
                b[0] = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    ECHO_REQUEST
                } else {
                    ECHO_REPLY
                };
                put16(b, 4, id);
                put16(b, 6, seq);
                b[8..8 + data.len()].copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable { code, mtu, quote } => {
                b[0] = DST_UNREACHABLE;
                b[1] = code;
                put16(b, 6, mtu);
                let n = quote.len().min(MAX_QUOTE);
                b[8..8 + n].copy_from_slice(&quote[..n]);
            }
            Icmpv4Repr::TimeExceeded { quote } => {
                b[0] = TIME_EXCEEDED;
                let n = quote.len().min(MAX_QUOTE);
                b[8..8 + n].copy_from_slice(&quote[..n]);
            }
        }
        let n = self.buffer_len();
        let ck = checksum::checksum(&b[..n]);
        put16(b, 2, ck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{ARP_ICMP, UDP, frames};

    #[test]
    fn real_echo_reply_is_rebuilt_exactly() {
        let f = frames(ARP_ICMP);
        let req = Icmpv4Packet::new_checked(&f[2][34..]).unwrap();
        let Icmpv4Repr::EchoRequest { id, seq, data } = Icmpv4Repr::parse(&req).unwrap() else {
            panic!()
        };
        let reply = Icmpv4Repr::EchoReply { id, seq, data };
        let mut out = vec![0u8; reply.buffer_len()];
        reply.emit(&mut out);
        assert_eq!(&out[..], &f[3][34..]);
    }

    #[test]
    fn real_port_unreachable() {
        let f = frames(UDP);
        let p = Icmpv4Packet::new_checked(&f[1][34..]).unwrap();
        let Icmpv4Repr::DstUnreachable { code, quote, .. } = Icmpv4Repr::parse(&p).unwrap() else {
            panic!()
        };
        assert_eq!(code, unreachable::PORT);
        assert_eq!(
            quote,
            &f[0][14..],
            "the error quotes the whole small datagram"
        );
        let rebuilt = Icmpv4Repr::DstUnreachable {
            code,
            mtu: 0,
            quote,
        };
        let mut out = vec![0u8; rebuilt.buffer_len()];
        rebuilt.emit(&mut out);
        assert_eq!(&out[..], &f[1][34..]);
    }

    #[test]
    fn bad_checksum_and_short() {
        assert!(Icmpv4Packet::new_checked(&[0u8; 7][..]).is_err());
        let f = frames(ARP_ICMP);
        let mut b = f[2][34..].to_vec();
        b[9] ^= 1;
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert!(Icmpv4Repr::parse(&p).is_err());
    }
}
