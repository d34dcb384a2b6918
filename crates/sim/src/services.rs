//! Packets the virtual network answers itself: DHCP on bridges, ICMP echo
//! replies and errors from routers; and reading the packet an ICMP error quotes.

use crate::engine::Sim;
use crate::flow::{Fields, Frag};
use crate::result::{Emit, Output, Verdict};
use crate::topology::{Id, Port, Prefix};
use std::net::Ipv4Addr;
use wire::dhcpv4::{self, DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr};
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
use wire::icmpv4::{self, Icmpv4Packet, Icmpv4Repr};
use wire::ipv4::{Ipv4Packet, Ipv4Repr, Protocol};
use wire::udp::{UdpPacket, UdpRepr};

/// MidoNet's DHCP server MAC and lease time.
pub const DHCP_SERVER_MAC: Mac = Mac([0x02, 0xa8, 0x9c, 0xde, 0x39, 0x27]);
pub const DHCP_LEASE_SECS: u32 = 86_400;
/// The MTU offered when a subnet sets none.
pub const DHCP_DEFAULT_MTU: u16 = 1500;

/// An IPv4 + payload frame.
fn ipv4_frame(src_mac: Mac, dst_mac: Mac, ip: Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + payload.len()];
    EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::IPV4,
        vlan: None,
    }
    .emit(&mut f);
    ip.emit(&mut f[14..]);
    f[34..].copy_from_slice(payload);
    f
}

/// The echo reply to an echo request frame whose fields at the router are
/// `f`, from the router port `mac`.
pub fn echo_reply(frame: &[u8], f: &Fields, mac: Mac) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    let Icmpv4Repr::EchoRequest { id, seq, data } = Icmpv4Repr::parse(&icmp).ok()? else {
        return None;
    };
    let reply = Icmpv4Repr::EchoReply { id, seq, data };
    let mut payload = vec![0u8; reply.buffer_len()];
    reply.emit(&mut payload);
    // Addressed as the packet reached the router (after the routers and
    // NAT before it rewrote it), not as it entered: the reply goes back
    // the way it came.
    let hdr = Ipv4Repr {
        src: f.nw_dst,
        dst: f.nw_src,
        protocol: Protocol::ICMP,
        payload_len: payload.len(),
        ttl: 64,
        tos: 0,
        ident: ip.ident(),
        dont_frag: false,
    };
    Some(ipv4_frame(mac, f.eth_src, hdr, &payload))
}

/// An ICMP error about `frame` (whose fields at router entry are `pre`),
/// from `src_ip`/`src_mac`; `None` where RFC 1812 forbids one.
pub fn icmp_error(
    frame: &[u8],
    pre: &Fields,
    src_mac: Mac,
    src_ip: Ipv4Addr,
    typ: u8,
    code: u8,
    mtu: u16,
) -> Option<Vec<u8>> {
    if !pre.is_ipv4() || pre.frag == Frag::Later {
        return None;
    }
    // Never about an ICMP error, nor to broadcast, multicast or unspecified.
    if pre.nw_proto == Protocol::ICMP
        && !matches!(pre.tp_src as u8, icmpv4::ECHO_REQUEST | icmpv4::ECHO_REPLY)
    {
        return None;
    }
    let (d, s) = (pre.nw_dst, pre.nw_src);
    if d.is_broadcast()
        || d.is_multicast()
        || s.is_unspecified()
        || s.is_multicast()
        || s.is_broadcast()
    {
        return None;
    }
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let quote = &eth.payload()[..ip.total_len() as usize];
    let repr = match typ {
        icmpv4::TIME_EXCEEDED => Icmpv4Repr::TimeExceeded { quote },
        _ => Icmpv4Repr::DstUnreachable { code, mtu, quote },
    };
    let mut payload = vec![0u8; repr.buffer_len()];
    repr.emit(&mut payload);
    let hdr = Ipv4Repr {
        src: src_ip,
        dst: s,
        protocol: Protocol::ICMP,
        payload_len: payload.len(),
        ttl: 64,
        tos: 0xc0,
        ident: 0,
        dont_frag: false,
    };
    Some(ipv4_frame(src_mac, pre.eth_src, hdr, &payload))
}

/// The connection an ICMP error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

pub fn quoted(frame: &[u8]) -> Option<Quote> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != Protocol::ICMP {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    if !icmp.is_error() {
        return None;
    }
    let q = icmp.data();
    if q.len() < 28 || q[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(q[0] & 0x0f) * 4;
    if q.len() < hl + 8 {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(q[at], q[at + 1], q[at + 2], q[at + 3]);
    let be = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    let proto = q[9];
    let (sport, dport) = match proto {
        Protocol::TCP | Protocol::UDP => (be(hl), be(hl + 2)),
        Protocol::ICMP => (be(hl + 4), be(hl + 4)),
        _ => (0, 0),
    };
    Some(Quote {
        src: addr(12),
        dst: addr(16),
        proto,
        sport,
        dport,
    })
}

impl Sim<'_, '_> {
    /// Answers a DHCP request on an exterior bridge port from the bridge's
    /// DHCP subnets; `None` if it is not DHCP or no subnet knows the client.
    pub(crate) fn dhcp(&mut self, port: &Port, bridge: Id) -> Option<Verdict> {
        let f = self.m.peek();
        if !(f.is_ipv4()
            && f.nw_proto == Protocol::UDP
            && f.tp_src == dhcpv4::CLIENT_PORT
            && f.tp_dst == dhcpv4::SERVER_PORT)
        {
            return None;
        }
        let eth = EthernetFrame::new_checked(self.frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        let req = DhcpRepr::parse(&DhcpPacket::new_checked(udp.payload()).ok()?).ok()?;
        let br = self.topo.bridges.get(&bridge)?;
        let mac = model::MacAddr(req.client_mac.0);
        let (subnet, host) = br.dhcp.iter().filter(|s| s.enabled).find_map(|s| {
            s.hosts
                .iter()
                .find(|h| h.mac_addr == Some(mac) && h.ip_addr.is_some())
                .map(|h| (s, h))
        })?;
        let your_ip = host.ip_addr?;
        let reply_type = match req.message_type()? {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request => {
                let asked = req.requested_ip().unwrap_or(req.client_ip);
                if asked == your_ip || asked.is_unspecified() {
                    DhcpMessageType::Ack
                } else {
                    DhcpMessageType::Nak
                }
            }
            _ => return Some(Verdict::Consumed),
        };
        let net = Prefix::new(
            subnet.subnet_prefix.unwrap_or(Ipv4Addr::UNSPECIFIED),
            subnet.subnet_length,
        );
        let server = subnet
            .server_addr
            .or(subnet.default_gateway)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut options = vec![
            DhcpOption::MessageType(reply_type),
            DhcpOption::ServerId(server),
        ];
        if reply_type != DhcpMessageType::Nak {
            options.push(DhcpOption::LeaseTime(DHCP_LEASE_SECS));
            options.push(DhcpOption::SubnetMask(Ipv4Addr::from(net.mask())));
            options.push(DhcpOption::Broadcast(net.broadcast()));
            let mtu = if subnet.interface_mtu > 0 {
                subnet.interface_mtu.min(65535) as u16
            } else {
                DHCP_DEFAULT_MTU
            };
            options.push(DhcpOption::InterfaceMtu(mtu));
            if let Some(gw) = subnet.default_gateway {
                options.push(DhcpOption::Router(vec![gw]));
            }
            if let Some(dns) = subnet.dns_server_addrs.as_ref().filter(|d| !d.is_empty()) {
                options.push(DhcpOption::DnsServers(dns.clone()));
            }
            if let Some(name) = &host.name {
                options.push(DhcpOption::HostName(name.clone()));
            }
            if !subnet.opt121_routes.is_empty() {
                // With option 121 a client ignores option 3, so the default
                // route goes in it too (RFC 3442).
                let mut routes: Vec<(Ipv4Addr, u8, Ipv4Addr)> = subnet
                    .opt121_routes
                    .iter()
                    .filter_map(|r| {
                        Some((r.destination_prefix?, r.destination_length, r.gateway_addr?))
                    })
                    .collect();
                if let Some(gw) = subnet.default_gateway {
                    routes.push((Ipv4Addr::UNSPECIFIED, 0, gw));
                }
                options.push(DhcpOption::ClasslessRoutes(routes));
            }
        }
        let reply = DhcpRepr {
            op: 2,
            xid: req.xid,
            flags: req.flags,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: if reply_type == DhcpMessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                your_ip
            },
            server_ip: server,
            relay_ip: req.relay_ip,
            client_mac: req.client_mac,
            options,
        };
        let body = reply.emit();
        let mut udp_bytes = vec![0u8; 8 + body.len()];
        let dst_ip = Ipv4Addr::BROADCAST;
        UdpRepr {
            src_port: dhcpv4::SERVER_PORT,
            dst_port: dhcpv4::CLIENT_PORT,
        }
        .emit(&mut udp_bytes, &body, server, dst_ip);
        let hdr = Ipv4Repr {
            src: server,
            dst: dst_ip,
            protocol: Protocol::UDP,
            payload_len: udp_bytes.len(),
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: false,
        };
        let frame = ipv4_frame(DHCP_SERVER_MAC, req.client_mac, hdr, &udp_bytes);
        self.note(Some(bridge), || {
            format!("DHCP {reply_type:?} {your_ip} to {}", req.client_mac)
        });
        self.out.emits.push(Emit {
            output: Output {
                port: port.id,
                host: port.host,
                tunnel_key: port.tunnel_key,
            },
            frame,
        });
        Some(Verdict::Consumed)
    }
}
