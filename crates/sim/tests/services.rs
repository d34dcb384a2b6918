//! DHCP served from a bridge's subnets.

mod common;
use common::*;
use serde_json::json;
use sim::*;
use std::net::Ipv4Addr;
use wire::dhcpv4::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr};
use wire::ipv4::{Ipv4Packet, Ipv4Repr, Protocol};
use wire::{EthernetFrame, EthernetRepr, UdpPacket, UdpRepr};

fn dhcp_request(client: wire::Mac, t: DhcpMessageType, requested: Option<&str>) -> Vec<u8> {
    let mut options = vec![DhcpOption::MessageType(t)];
    if let Some(r) = requested {
        options.push(DhcpOption::RequestedIp(ip(r)));
    }
    let body = DhcpRepr {
        op: 1,
        xid: 0xabcd,
        flags: 0,
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: Ipv4Addr::UNSPECIFIED,
        relay_ip: Ipv4Addr::UNSPECIFIED,
        client_mac: client,
        options,
    }
    .emit();
    let mut u = vec![0u8; 8 + body.len()];
    UdpRepr {
        src_port: 68,
        dst_port: 67,
    }
    .emit(&mut u, &body, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    let mut f = vec![0u8; 34 + u.len()];
    EthernetRepr {
        src: client,
        dst: wire::Mac::BROADCAST,
        ethertype: 0x0800,
        vlan: None,
    }
    .emit(&mut f);
    Ipv4Repr {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::BROADCAST,
        protocol: Protocol::UDP,
        payload_len: u.len(),
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut f[14..]);
    f[34..].copy_from_slice(&u);
    f
}

fn reply_of(frame: &[u8]) -> DhcpRepr {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum(ip.src(), ip.dst()));
    assert_eq!((u.src_port(), u.dst_port()), (67, 68));
    DhcpRepr::parse(&DhcpPacket::new_checked(u.payload()).unwrap()).unwrap()
}

fn net_with_dhcp() -> (Net, uuid::Uuid, uuid::Uuid) {
    let mut n = Net::new();
    let b = n.bridge();
    let p = n.vm_port(b);
    let d: model::DhcpSubnet = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "bridgeId": b, "subnetPrefix": "10.0.0.0", "subnetLength": 24,
        "defaultGateway": "10.0.0.1", "serverAddr": "10.0.0.2", "dnsServerAddrs": ["10.0.0.53"], "interfaceMTU": 1450,
        "opt121Routes": [{"destinationPrefix": "169.254.169.254", "destinationLength": 32, "gatewayAddr": "10.0.0.1"}],
        "hosts": [{"macAddr": "02:00:00:00:00:01", "ipAddr": "10.0.0.10", "name": "vm1"}]
    }))
    .unwrap();
    n.o.dhcp.push(d);
    (n, b, p)
}

#[test]
fn discover_gets_an_offer_with_every_option_and_request_an_ack() {
    let (n, _b, p) = net_with_dhcp();
    let mut r = Run::new(&n);
    let o = r.sim(p, &dhcp_request(mac(1), DhcpMessageType::Discover, None));
    assert_eq!(o.verdict, Verdict::Consumed);
    assert_eq!(o.emits.len(), 1);
    assert_eq!(o.emits[0].output.port, p);
    let offer = reply_of(&o.emits[0].frame);
    assert_eq!(offer.message_type(), Some(DhcpMessageType::Offer));
    assert_eq!(
        (offer.your_ip, offer.xid, offer.client_mac),
        (ip("10.0.0.10"), 0xabcd, mac(1))
    );
    for want in [
        DhcpOption::SubnetMask(ip("255.255.255.0")),
        DhcpOption::Router(vec![ip("10.0.0.1")]),
        DhcpOption::DnsServers(vec![ip("10.0.0.53")]),
        DhcpOption::InterfaceMtu(1450),
        DhcpOption::LeaseTime(86400),
        DhcpOption::ServerId(ip("10.0.0.2")),
        DhcpOption::Broadcast(ip("10.0.0.255")),
        DhcpOption::ClasslessRoutes(vec![
            (ip("169.254.169.254"), 32, ip("10.0.0.1")),
            (ip("0.0.0.0"), 0, ip("10.0.0.1")),
        ]),
    ] {
        assert!(
            offer.options.contains(&want),
            "missing {want:?} in {:?}",
            offer.options
        );
    }
    let eth = EthernetFrame::new_checked(&o.emits[0].frame[..]).unwrap();
    assert_eq!(eth.src(), sim::services::DHCP_SERVER_MAC);
    let ack = reply_of(
        &r.sim(
            p,
            &dhcp_request(mac(1), DhcpMessageType::Request, Some("10.0.0.10")),
        )
        .emits[0]
            .frame,
    );
    assert_eq!(ack.message_type(), Some(DhcpMessageType::Ack));
    let nak = reply_of(
        &r.sim(
            p,
            &dhcp_request(mac(1), DhcpMessageType::Request, Some("10.0.0.99")),
        )
        .emits[0]
            .frame,
    );
    assert_eq!(nak.message_type(), Some(DhcpMessageType::Nak));
}

#[test]
fn unknown_clients_and_disabled_subnets_are_not_answered() {
    let (mut n, _b, p) = net_with_dhcp();
    let mut r = Run::new(&n);
    let o = r.sim(p, &dhcp_request(mac(9), DhcpMessageType::Discover, None));
    assert!(
        o.emits.is_empty(),
        "no host entry: flooded like any broadcast"
    );
    n.o.dhcp[0].enabled = false;
    let mut r = Run::new(&n);
    assert!(
        r.sim(p, &dhcp_request(mac(1), DhcpMessageType::Discover, None))
            .emits
            .is_empty()
    );
}
