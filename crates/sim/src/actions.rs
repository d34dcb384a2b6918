//! Running a flow's actions on a frame: the header rewrites, then a copy per
//! output. The userspace datapath and generated packets both use this.

use crate::result::{Action, Output};
use std::net::Ipv4Addr;
use wire::ethernet::{self, EtherType, EthernetFrame};
use wire::ipv4::{Ipv4Packet, Protocol};
use wire::{Icmpv4Packet, TcpPacket, UdpPacket, checksum};

fn ip_mut(frame: &mut [u8]) -> Option<Ipv4Packet<&mut [u8]>> {
    let eth = EthernetFrame::new_checked(&*frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let h = eth.header_len();
    Ipv4Packet::new_checked(&mut frame[h..]).ok()
}

fn set_port(frame: &mut [u8], src: bool, port: u16) {
    let Some(mut ip) = ip_mut(frame) else { return };
    if ip.frag_offset() != 0 {
        return;
    }
    let proto = ip.protocol();
    let l4 = ip.payload_mut();
    match proto {
        Protocol::TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(l4) {
                if src {
                    t.set_src_port(port)
                } else {
                    t.set_dst_port(port)
                }
            }
        }
        Protocol::UDP => {
            if let Ok(mut u) = UdpPacket::new_checked(l4) {
                if src {
                    u.set_src_port(port)
                } else {
                    u.set_dst_port(port)
                }
            }
        }
        _ => {}
    }
}

/// Rewrites the IPv4 header and L4 ports quoted in an ICMP error.
fn set_quote(frame: &mut [u8], src: bool, addr: Ipv4Addr, port: u16) {
    let Some(mut ip) = ip_mut(frame) else { return };
    if ip.protocol() != Protocol::ICMP {
        return;
    }
    let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
        return;
    };
    if !icmp.is_error() {
        return;
    }
    let q = icmp.data_mut();
    if q.len() < 20 {
        return;
    }
    let hl = usize::from(q[0] & 0x0f) * 4;
    let at = if src { 12 } else { 16 };
    q[at..at + 4].copy_from_slice(&addr.octets());
    // The quoted header's checksum, then its ports (TCP/UDP or echo id).
    q[10] = 0;
    q[11] = 0;
    if hl >= 20 && q.len() >= hl {
        let ck = checksum::checksum(&q[..hl]);
        q[10..12].copy_from_slice(&ck.to_be_bytes());
    }
    if q.len() >= hl + 4 {
        let pat = if src { hl } else { hl + 2 };
        match q[9] {
            Protocol::TCP | Protocol::UDP => q[pat..pat + 2].copy_from_slice(&port.to_be_bytes()),
            Protocol::ICMP if q.len() >= hl + 6 => {
                q[hl + 4..hl + 6].copy_from_slice(&port.to_be_bytes())
            }
            _ => {}
        }
    }
    icmp.fill_checksum();
}

/// Applies `actions` to `frame` in order; each output gets the frame as
/// rewritten so far.
pub fn execute(actions: &[Action], frame: &[u8]) -> Vec<(Output, Vec<u8>)> {
    let mut f = frame.to_vec();
    let mut out = Vec::new();
    for a in actions {
        match *a {
            Action::SetEthSrc(m) => {
                if f.len() >= 14 {
                    EthernetFrame::new_unchecked(&mut f[..]).set_src(m)
                }
            }
            Action::SetEthDst(m) => {
                if f.len() >= 14 {
                    EthernetFrame::new_unchecked(&mut f[..]).set_dst(m)
                }
            }
            Action::SetNwSrc(ip) => {
                if let Some(mut p) = ip_mut(&mut f) {
                    p.set_src(ip)
                }
            }
            Action::SetNwDst(ip) => {
                if let Some(mut p) = ip_mut(&mut f) {
                    p.set_dst(ip)
                }
            }
            Action::SetTtl(t) => {
                if let Some(mut p) = ip_mut(&mut f) {
                    p.set_ttl(t)
                }
            }
            Action::SetTpSrc(p) => set_port(&mut f, true, p),
            Action::SetTpDst(p) => set_port(&mut f, false, p),
            Action::SetIcmpId(id) => {
                if let Some(mut ip) = ip_mut(&mut f)
                    && ip.protocol() == Protocol::ICMP
                    && let Ok(mut i) = Icmpv4Packet::new_checked(ip.payload_mut())
                    && !i.is_error()
                {
                    i.set_echo_id(id);
                }
            }
            Action::SetIcmpQuoteSrc(a, p) => set_quote(&mut f, true, a, p),
            Action::SetIcmpQuoteDst(a, p) => set_quote(&mut f, false, a, p),
            Action::PushVlan(v) => ethernet::push_vlan(&mut f, v),
            Action::PopVlan => ethernet::pop_vlan(&mut f),
            Action::Output(o) => out.push((o, f.clone())),
        }
    }
    out
}
