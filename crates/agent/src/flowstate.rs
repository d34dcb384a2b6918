//! Flow-state replication: the connection-tracking and NAT keys a simulation
//! wrote, pushed in-band to the other hosts that will see the connection's
//! packets (the owners of its egress ports and of the members of stateful
//! port groups), so a reply or an asymmetric return path finds its state.

use sim::{ConnKey, NatBinding, NatKey, NatKind, StateWrite, Topology};
use std::net::Ipv4Addr;
use uuid::Uuid;
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
use wire::flowstate::{ConnEntry, FlowStateRepr, NatEntry, UDP_PORT};
use wire::ipv4::{Ipv4Packet, Ipv4Repr, Protocol};
use wire::{UdpPacket, UdpRepr};

/// MidoNet's addresses for flow-state packets.
const SRC_MAC: Mac = Mac([0xac, 0xca, 0xba, 0x00, 0x15, 0x01]);
const DST_MAC: Mac = Mac([0xac, 0xca, 0xba, 0x00, 0x15, 0x02]);
const SRC_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 15, 1);
const DST_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 15, 2);

fn kind_code(k: NatKind) -> u8 {
    match k {
        NatKind::FwdSnat => 1,
        NatKind::FwdDnat => 2,
        NatKind::FwdStickyDnat => 3,
        NatKind::RevSnat => 4,
        NatKind::RevDnat => 5,
        NatKind::RevStickyDnat => 6,
    }
}

fn kind_of(c: u8) -> Option<NatKind> {
    Some(match c {
        1 => NatKind::FwdSnat,
        2 => NatKind::FwdDnat,
        3 => NatKind::FwdStickyDnat,
        4 => NatKind::RevSnat,
        5 => NatKind::RevDnat,
        6 => NatKind::RevStickyDnat,
        _ => return None,
    })
}

/// The state among `writes` worth sharing, as a frame; `None` if there is none.
pub fn encode(sender: Uuid, writes: &[StateWrite]) -> Option<Vec<u8>> {
    let mut r = FlowStateRepr {
        sender: *sender.as_bytes(),
        ..Default::default()
    };
    for w in writes {
        match *w {
            StateWrite::ConnTrack(k) => r.conntrack.push(ConnEntry {
                device: *k.device.as_bytes(),
                src: k.src,
                dst: k.dst,
                sport: k.sport,
                dport: k.dport,
                proto: k.proto,
            }),
            StateWrite::Nat(k, b) => r.nat.push(NatEntry {
                kind: kind_code(k.kind),
                proto: k.proto,
                device: *k.device.as_bytes(),
                src: k.src,
                dst: k.dst,
                sport: k.sport,
                dport: k.dport,
                to_ip: b.ip,
                to_port: b.port,
            }),
            _ => {}
        }
    }
    if r.conntrack.is_empty() && r.nat.is_empty() {
        return None;
    }
    let body = r.emit();
    let mut udp = vec![0u8; 8 + body.len()];
    UdpRepr {
        src_port: UDP_PORT,
        dst_port: UDP_PORT,
    }
    .emit(&mut udp, &body, SRC_IP, DST_IP);
    let mut f = vec![0u8; 34 + udp.len()];
    EthernetRepr {
        src: SRC_MAC,
        dst: DST_MAC,
        ethertype: EtherType::IPV4,
        vlan: None,
    }
    .emit(&mut f);
    Ipv4Repr {
        src: SRC_IP,
        dst: DST_IP,
        protocol: Protocol::UDP,
        payload_len: udp.len(),
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut f[14..]);
    f[34..].copy_from_slice(&udp);
    Some(f)
}

/// The sender and the state writes of a flow-state frame.
pub fn decode(frame: &[u8]) -> Option<(Uuid, Vec<StateWrite>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != UDP_PORT {
        return None;
    }
    let r = FlowStateRepr::parse(udp.payload()).ok()?;
    let mut writes = Vec::with_capacity(r.conntrack.len() + r.nat.len());
    for c in r.conntrack {
        writes.push(StateWrite::ConnTrack(ConnKey {
            src: c.src,
            sport: c.sport,
            dst: c.dst,
            dport: c.dport,
            proto: c.proto,
            device: Uuid::from_bytes(c.device),
        }));
    }
    for n in r.nat {
        let key = NatKey {
            kind: kind_of(n.kind)?,
            src: n.src,
            sport: n.sport,
            dst: n.dst,
            dport: n.dport,
            proto: n.proto,
            device: Uuid::from_bytes(n.device),
        };
        writes.push(StateWrite::Nat(
            key,
            NatBinding {
                ip: n.to_ip,
                port: n.to_port,
            },
        ));
    }
    Some((Uuid::from_bytes(r.sender), writes))
}

/// The hosts other than `me` that must know the state of a connection whose
/// packet entered at `ingress` and left by `egress`: their owners, and the
/// owners of every member of the stateful port groups they belong to.
pub fn interested_hosts(
    topo: &Topology,
    me: Uuid,
    ingress: Uuid,
    egress: impl Iterator<Item = Uuid>,
) -> Vec<Uuid> {
    let mut hosts: Vec<Uuid> = Vec::new();
    let mut add = |h: Option<Uuid>| {
        if let Some(h) = h
            && h != me
            && !hosts.contains(&h)
        {
            hosts.push(h);
        }
    };
    for p in std::iter::once(ingress).chain(egress) {
        let Some(port) = topo.ports.get(&p) else {
            continue;
        };
        add(port.host);
        for g in port
            .groups
            .iter()
            .filter(|g| topo.stateful_groups.contains(g))
        {
            for member in topo.port_groups.get(g).into_iter().flatten() {
                add(topo.ports.get(member).and_then(|m| m.host));
            }
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_writes_round_trip_through_a_frame() {
        let me = Uuid::new_v4();
        let dev = Uuid::new_v4();
        let ct = StateWrite::ConnTrack(ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport: 80,
            dst: Ipv4Addr::new(10, 0, 0, 1),
            dport: 4000,
            proto: 6,
            device: dev,
        });
        let nat = StateWrite::Nat(
            NatKey {
                kind: NatKind::RevSnat,
                src: Ipv4Addr::new(1, 1, 1, 1),
                sport: 53,
                dst: Ipv4Addr::new(2, 2, 2, 2),
                dport: 1024,
                proto: 17,
                device: dev,
            },
            NatBinding {
                ip: Ipv4Addr::new(10, 0, 0, 1),
                port: 5353,
            },
        );
        let learned = StateWrite::ArpLearned {
            router: dev,
            ip: Ipv4Addr::new(10, 0, 0, 9),
            mac: Mac([2, 0, 0, 0, 0, 9]),
        };
        let frame = encode(me, &[ct.clone(), learned.clone(), nat.clone()]).unwrap();
        let (sender, writes) = decode(&frame).unwrap();
        assert_eq!(sender, me);
        assert_eq!(writes, vec![ct, nat], "only connection state travels");
        assert!(encode(me, &[learned]).is_none());
        assert!(decode(&frame[..40]).is_none());
    }

    #[test]
    fn stateful_port_group_members_hear_of_connections_plain_groups_do_not() {
        let (h1, h2, h3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let router = Uuid::new_v4();
        let port = |host| model::Port {
            id: Uuid::new_v4(),
            port_type: model::PortType::Router,
            device_id: router,
            admin_state_up: true,
            host_id: Some(host),
            interface_name: Some("x".into()),
            ..Default::default()
        };
        let (up1, up2, vm) = (port(h1), port(h2), port(h3));
        let group = |stateful| model::PortGroup {
            id: Uuid::new_v4(),
            stateful,
            port_ids: vec![up1.id, up2.id],
            ..Default::default()
        };
        let objects = |g| sim::Objects {
            routers: vec![model::Router {
                id: router,
                ..Default::default()
            }],
            ports: vec![up1.clone(), up2.clone(), vm.clone()],
            port_groups: vec![g],
            ..Default::default()
        };
        let topo = Topology::build(&objects(group(true)));
        // Entering by uplink 1 towards the VM: the VM's host, and the other
        // uplink's host (replies may come back that way).
        let mut got = interested_hosts(&topo, h1, up1.id, std::iter::once(vm.id));
        got.sort();
        let mut want = vec![h2, h3];
        want.sort();
        assert_eq!(got, want);
        let topo = Topology::build(&objects(group(false)));
        assert_eq!(
            interested_hosts(&topo, h1, up1.id, std::iter::once(vm.id)),
            vec![h3]
        );
    }
}
