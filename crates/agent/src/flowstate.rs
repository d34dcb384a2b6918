//! Flow-state replication: the connection-tracking and NAT keys a simulation
//! wrote, pushed in-band to the other hosts that will see the connection's
//! packets (the owners of its egress ports and of the members of stateful
//! port groups), so a reply or an asymmetric return path finds its state.
//! What a simulation learned (ARP, MAC and IP-to-MAC entries) goes to every
//! peer the same way: a host waiting for an ARP answer that arrived at
//! another host gets it even while the cluster is down.

use sim::{ConnKey, NatBinding, NatKey, NatKind, StateWrite, Topology};
use std::net::Ipv4Addr;
use uuid::Uuid;
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
use wire::flowstate::{
    ConnEntry, FLAG_LAST, FLAG_REQUEST, FlowStateRepr, LearnedEntry, LearnedKind, NatEntry,
    UDP_PORT,
};
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
    }
}

fn kind_of(c: u8) -> Option<NatKind> {
    Some(match c {
        1 => NatKind::FwdSnat,
        2 => NatKind::FwdDnat,
        3 => NatKind::FwdStickyDnat,
        4 => NatKind::RevSnat,
        5 => NatKind::RevDnat,
        // 6 was a sticky VIP's reverse key (now per connection, as 5).
        _ => return None,
    })
}

/// Entries per message: a frame stays under the tunnel's inner MTU.
const PER_MESSAGE: usize = 30;

/// The entries of a message: connection state, and what was learned.
type Entries = (Vec<ConnEntry>, Vec<NatEntry>, Vec<LearnedEntry>);

fn entries(writes: &[StateWrite]) -> Entries {
    let (mut ct, mut nat, mut learned) = (Vec::new(), Vec::new(), Vec::new());
    let entry = |kind, vlan, device: Uuid, mac: Mac, ip, port: Option<Uuid>| LearnedEntry {
        kind,
        vlan,
        device: *device.as_bytes(),
        mac: mac.0,
        ip,
        port: port.map_or([0; 16], |p| *p.as_bytes()),
    };
    for w in writes {
        match *w {
            StateWrite::ConnTrack(k) => ct.push(ConnEntry {
                device: *k.device.as_bytes(),
                src: k.src,
                dst: k.dst,
                sport: k.sport,
                dport: k.dport,
                proto: k.proto,
            }),
            StateWrite::Nat(k, b) => nat.push(NatEntry {
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
            StateWrite::ArpLearned { router, ip, mac } => {
                learned.push(entry(LearnedKind::Arp, 0, router, mac, ip, None))
            }
            StateWrite::MacLearned {
                bridge,
                vlan,
                mac,
                port,
            } => learned.push(entry(
                LearnedKind::Mac,
                vlan,
                bridge,
                mac,
                Ipv4Addr::UNSPECIFIED,
                Some(port),
            )),
            StateWrite::Ip4Mac { bridge, ip, mac } => {
                learned.push(entry(LearnedKind::Ip4Mac, 0, bridge, mac, ip, None))
            }
        }
    }
    (ct, nat, learned)
}

/// Whether a write is something a simulation learned (shared with every
/// peer, see [`encode`]).
pub fn is_learned(w: &StateWrite) -> bool {
    matches!(
        w,
        StateWrite::ArpLearned { .. } | StateWrite::MacLearned { .. } | StateWrite::Ip4Mac { .. }
    )
}

/// The state among `writes` worth sharing, as a frame; `None` if there is none.
pub fn encode(sender: Uuid, writes: &[StateWrite]) -> Option<Vec<u8>> {
    let (conntrack, nat, learned) = entries(writes);
    if conntrack.is_empty() && nat.is_empty() && learned.is_empty() {
        return None;
    }
    Some(frame(&FlowStateRepr {
        flags: 0,
        sender: *sender.as_bytes(),
        conntrack,
        nat,
        learned,
    }))
}

/// A request for the receiver's connection state.
pub fn encode_request(sender: Uuid) -> Vec<u8> {
    frame(&FlowStateRepr {
        flags: FLAG_REQUEST,
        sender: *sender.as_bytes(),
        ..Default::default()
    })
}

/// Connection state in messages of bounded size, each handed to `each`; the
/// last (possibly empty) one is flagged as such. Entries are taken a
/// message's worth at a time: no copy of the whole table is made.
pub fn for_each_message<E>(
    sender: Uuid,
    writes: impl Iterator<Item = StateWrite>,
    mut each: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut batch = Vec::with_capacity(PER_MESSAGE);
    let message = |batch: &[StateWrite], last: bool| {
        let (conntrack, nat, _) = entries(batch);
        frame(&FlowStateRepr {
            flags: if last { FLAG_LAST } else { 0 },
            sender: *sender.as_bytes(),
            conntrack,
            nat,
            learned: Vec::new(),
        })
    };
    for w in writes.filter(|w| matches!(w, StateWrite::ConnTrack(_) | StateWrite::Nat(..))) {
        batch.push(w);
        if batch.len() == PER_MESSAGE {
            each(message(&batch, false))?;
            batch.clear();
        }
    }
    each(message(&batch, true))
}

/// All of `writes` that is connection state, as frames (see
/// [`for_each_message`]).
pub fn encode_all(sender: Uuid, writes: impl Iterator<Item = StateWrite>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let _ = for_each_message(sender, writes, |f| {
        out.push(f);
        Ok::<(), ()>(())
    });
    out
}

fn frame(r: &FlowStateRepr) -> Vec<u8> {
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
    f
}

/// A decoded flow-state frame.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub sender: Uuid,
    pub writes: Vec<StateWrite>,
    pub request: bool,
    pub last: bool,
}

/// The sender, flags and state writes of a flow-state frame.
pub fn decode(frame: &[u8]) -> Option<Message> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != UDP_PORT {
        return None;
    }
    let r = FlowStateRepr::parse(udp.payload()).ok()?;
    let mut writes = Vec::with_capacity(r.conntrack.len() + r.nat.len() + r.learned.len());
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
    for l in r.learned {
        let (device, mac) = (Uuid::from_bytes(l.device), Mac(l.mac));
        writes.push(match l.kind {
            LearnedKind::Arp => StateWrite::ArpLearned {
                router: device,
                ip: l.ip,
                mac,
            },
            LearnedKind::Mac => StateWrite::MacLearned {
                bridge: device,
                vlan: l.vlan,
                mac,
                port: Uuid::from_bytes(l.port),
            },
            LearnedKind::Ip4Mac => StateWrite::Ip4Mac {
                bridge: device,
                ip: l.ip,
                mac,
            },
        });
    }
    Some(Message {
        sender: Uuid::from_bytes(r.sender),
        writes,
        request: r.flags & FLAG_REQUEST != 0,
        last: r.flags & FLAG_LAST != 0,
    })
}

/// Streams connection state to `w` as a file: length-prefixed frames (any
/// number of entries).
pub fn write_file(
    w: &mut impl std::io::Write,
    sender: Uuid,
    writes: impl Iterator<Item = StateWrite>,
) -> std::io::Result<()> {
    for_each_message(sender, writes, |f| {
        w.write_all(&(f.len() as u32).to_be_bytes())?;
        w.write_all(&f)
    })
}

/// The state writes of a file written by [`write_file`]; a torn tail is
/// ignored (what was read before it is kept).
pub fn decode_file(mut b: &[u8]) -> Vec<StateWrite> {
    let mut writes = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let Some(f) = b.get(4..4 + n) else { break };
        match decode(f) {
            Some(m) => writes.extend(m.writes),
            None => break,
        }
        b = &b[4 + n..];
    }
    writes
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
            for member in topo.port_groups.get(g).into_iter().flat_map(|s| s.iter()) {
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
        let mac = StateWrite::MacLearned {
            bridge: dev,
            vlan: 7,
            mac: Mac([2, 0, 0, 0, 0, 8]),
            port: Uuid::new_v4(),
        };
        let ip4mac = StateWrite::Ip4Mac {
            bridge: dev,
            ip: Ipv4Addr::new(10, 0, 0, 8),
            mac: Mac([2, 0, 0, 0, 0, 8]),
        };
        let frame = encode(me, &[ct.clone(), learned.clone(), nat.clone()]).unwrap();
        let m = decode(&frame).unwrap();
        assert_eq!(m.sender, me);
        assert_eq!(
            m.writes,
            vec![ct.clone(), nat.clone(), learned.clone()],
            "connection state, then what was learned"
        );
        assert!(!m.request && !m.last);
        let only_learned = [learned, mac, ip4mac];
        let m = decode(&encode(me, &only_learned).unwrap()).unwrap();
        assert_eq!(m.writes, only_learned);
        assert!(only_learned.iter().all(is_learned) && !is_learned(&ct));
        assert!(encode(me, &[]).is_none());
        assert!(decode(&frame[..40]).is_none());
        let req = decode(&encode_request(me)).unwrap();
        assert!(req.request && req.writes.is_empty());
    }

    #[test]
    fn any_amount_of_state_moves_in_bounded_frames_and_files() {
        let me = Uuid::new_v4();
        let dev = Uuid::new_v4();
        // More entries than a u16 count could say in one message.
        let writes: Vec<StateWrite> = (0..70_000u32)
            .map(|i| {
                StateWrite::ConnTrack(ConnKey {
                    src: Ipv4Addr::from(i),
                    sport: 80,
                    dst: Ipv4Addr::new(10, 0, 0, 1),
                    dport: 4000,
                    proto: 6,
                    device: dev,
                })
            })
            .collect();
        let frames = encode_all(me, writes.iter().cloned());
        assert!(frames.iter().all(|f| f.len() <= 1400));
        let decoded: Vec<Message> = frames.iter().map(|f| decode(f).unwrap()).collect();
        assert!(decoded.last().unwrap().last);
        assert_eq!(decoded.iter().filter(|m| m.last).count(), 1);
        let back: Vec<StateWrite> = decoded.into_iter().flat_map(|m| m.writes).collect();
        assert_eq!(back, writes);
        let mut file = Vec::new();
        write_file(&mut file, me, writes.iter().cloned()).unwrap();
        assert_eq!(decode_file(&file), writes);
        // A torn write loses only the torn tail.
        let torn = decode_file(&file[..file.len() - 10]);
        assert!(torn.len() >= writes.len() - PER_MESSAGE && torn.len() < writes.len());
        assert_eq!(decode_file(&[]), vec![]);
        // Nothing to send still ends with a last (empty) message.
        let none = encode_all(me, std::iter::empty());
        assert_eq!(none.len(), 1);
        assert!(decode(&none[0]).unwrap().last);
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
