//! A probe packet for a what-if trace (`midonet trace`): the frame a VM
//! would send, built from the fields an operator names.

use std::net::Ipv4Addr;
use wire::ethernet::{EtherType, EthernetRepr, Mac};
use wire::ipv4::{Ipv4Repr, Protocol};
use wire::{Icmpv4Repr, UdpRepr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub proto: Proto,
    pub src_port: u16,
    pub dst_port: u16,
    pub ttl: u8,
}

impl Probe {
    /// The probe as a frame: a TCP SYN, a UDP datagram or an ICMP echo
    /// request, checksums complete.
    pub fn frame(&self) -> Vec<u8> {
        let payload: Vec<u8> = match self.proto {
            Proto::Udp => {
                let data = b"midonet trace";
                let mut u = vec![0u8; 8 + data.len()];
                UdpRepr {
                    src_port: self.src_port,
                    dst_port: self.dst_port,
                }
                .emit(&mut u, data, self.ip_src, self.ip_dst);
                u
            }
            Proto::Tcp => {
                let mut t = vec![0u8; 20];
                t[0..2].copy_from_slice(&self.src_port.to_be_bytes());
                t[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
                t[12] = 0x50; // 5 words of header
                t[13] = 0x02; // SYN
                t[14..16].copy_from_slice(&64240u16.to_be_bytes());
                let sum =
                    wire::checksum::pseudo_header(self.ip_src, self.ip_dst, Protocol::TCP, 20)
                        + wire::checksum::sum(&t);
                let ck = !wire::checksum::fold(sum);
                t[16..18].copy_from_slice(&ck.to_be_bytes());
                t
            }
            Proto::Icmp => {
                let r = Icmpv4Repr::EchoRequest {
                    id: self.src_port,
                    seq: 1,
                    data: b"midonet trace",
                };
                let mut p = vec![0u8; r.buffer_len()];
                r.emit(&mut p);
                p
            }
        };
        let protocol = match self.proto {
            Proto::Tcp => Protocol::TCP,
            Proto::Udp => Protocol::UDP,
            Proto::Icmp => Protocol::ICMP,
        };
        let mut f = vec![0u8; 34 + payload.len()];
        EthernetRepr {
            src: self.eth_src,
            dst: self.eth_dst,
            ethertype: EtherType::IPV4,
            vlan: None,
        }
        .emit(&mut f);
        Ipv4Repr {
            src: self.ip_src,
            dst: self.ip_dst,
            protocol,
            payload_len: payload.len(),
            ttl: self.ttl,
            tos: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut f[14..]);
        f[34..].copy_from_slice(&payload);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_as_what_they_say() {
        for (proto, p) in [(Proto::Tcp, 6), (Proto::Udp, 17), (Proto::Icmp, 1)] {
            let probe = Probe {
                eth_src: Mac([2, 0, 0, 0, 0, 1]),
                eth_dst: Mac([2, 0, 0, 0, 0, 2]),
                ip_src: Ipv4Addr::new(10, 0, 0, 1),
                ip_dst: Ipv4Addr::new(10, 0, 0, 2),
                proto,
                src_port: 40000,
                dst_port: 80,
                ttl: 64,
            };
            let f = crate::Fields::parse(&probe.frame(), 1).expect("parses");
            assert_eq!(
                (f.nw_src, f.nw_dst, f.nw_proto),
                (probe.ip_src, probe.ip_dst, p)
            );
            if proto != Proto::Icmp {
                assert_eq!((f.tp_src, f.tp_dst), (40000, 80));
            }
        }
    }
}
