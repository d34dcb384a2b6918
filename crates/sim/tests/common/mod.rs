//! Small topologies built in code, and packets to send through them.

#![allow(dead_code)]

use model::*;
use serde_json::json;
use sim::*;
use std::net::Ipv4Addr;
use uuid::Uuid;
use wire::ethernet::{EtherType, EthernetRepr, Mac};
use wire::ipv4::{Ipv4Repr, Protocol};
use wire::{ArpOp, ArpRepr, Icmpv4Repr, UdpRepr};

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

#[derive(Default)]
pub struct Net {
    pub o: Objects,
    pub host: Uuid,
    next_iface: u32,
    next_key: u64,
}

impl Net {
    pub fn new() -> Self {
        Net {
            host: Uuid::new_v4(),
            ..Default::default()
        }
    }

    pub fn bridge(&mut self) -> Uuid {
        let b: Bridge = serde_json::from_value(json!({"id": Uuid::new_v4()})).unwrap();
        let id = b.id;
        self.o.bridges.push(b);
        id
    }

    pub fn router(&mut self) -> Uuid {
        let r: Router = serde_json::from_value(json!({"id": Uuid::new_v4()})).unwrap();
        let id = r.id;
        self.o.routers.push(r);
        id
    }

    fn port(&mut self, v: serde_json::Value) -> Uuid {
        let mut p: Port = serde_json::from_value(v).unwrap();
        self.next_key += 1;
        p.tunnel_key = self.next_key;
        let id = p.id;
        self.o.ports.push(p);
        id
    }

    /// An exterior bridge port bound on this host (a VM's port).
    pub fn vm_port(&mut self, bridge: Uuid) -> Uuid {
        self.next_iface += 1;
        let iface = format!("tap{}", self.next_iface);
        self.port(json!({"id": Uuid::new_v4(), "type": "Bridge", "deviceId": bridge, "hostId": self.host, "interfaceName": iface}))
    }

    /// An exterior bridge port on another host.
    pub fn remote_vm_port(&mut self, bridge: Uuid, host: Uuid) -> Uuid {
        self.next_iface += 1;
        let iface = format!("tap{}", self.next_iface);
        self.port(json!({"id": Uuid::new_v4(), "type": "Bridge", "deviceId": bridge, "hostId": host, "interfaceName": iface}))
    }

    pub fn bridge_port(&mut self, bridge: Uuid) -> Uuid {
        self.port(json!({"id": Uuid::new_v4(), "type": "Bridge", "deviceId": bridge}))
    }

    /// A router port `addr`/`len` with MAC `mac`.
    pub fn router_port(&mut self, router: Uuid, addr: &str, len: u8, m: Mac) -> Uuid {
        let net =
            Ipv4Addr::from(u32::from(ip(addr)) & if len == 0 { 0 } else { u32::MAX << (32 - len) });
        self.port(
            json!({"id": Uuid::new_v4(), "type": "Router", "deviceId": router, "portAddress": addr,
            "networkAddress": net.to_string(), "networkLength": len, "portMac": m.to_string()}),
        )
    }

    /// An exterior router port (an uplink) bound on this host.
    pub fn uplink(&mut self, router: Uuid, addr: &str, len: u8, m: Mac) -> Uuid {
        let id = self.router_port(router, addr, len, m);
        self.next_iface += 1;
        let p = self.o.ports.iter_mut().find(|p| p.id == id).unwrap();
        p.host_id = Some(self.host);
        p.interface_name = Some(format!("up{}", self.next_iface));
        id
    }

    pub fn link(&mut self, a: Uuid, b: Uuid) {
        for p in self.o.ports.iter_mut() {
            if p.id == a {
                p.peer_id = Some(b);
            } else if p.id == b {
                p.peer_id = Some(a);
            }
        }
    }

    /// A bridge behind a router port: router port `addr/len` linked to a new bridge.
    pub fn subnet(&mut self, router: Uuid, addr: &str, len: u8, m: Mac) -> (Uuid, Uuid) {
        let b = self.bridge();
        let rp = self.router_port(router, addr, len, m);
        let bp = self.bridge_port(b);
        self.link(rp, bp);
        let net = Ipv4Addr::from(u32::from(ip(addr)) & (u32::MAX << (32 - len)));
        self.route(router, &net.to_string(), len, rp, None, 100);
        (b, rp)
    }

    pub fn route(
        &mut self,
        router: Uuid,
        dst: &str,
        len: u8,
        port: Uuid,
        gw: Option<&str>,
        weight: i64,
    ) -> Uuid {
        let r: Route = serde_json::from_value(json!({"id": Uuid::new_v4(), "type": "Normal",
            "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0, "dstNetworkAddr": dst, "dstNetworkLength": len,
            "nextHopPort": port, "nextHopGateway": gw, "weight": weight, "routerId": router})).unwrap();
        let id = r.id;
        self.o.routes.push(r);
        id
    }

    pub fn special_route(&mut self, router: Uuid, dst: &str, len: u8, kind: &str) {
        let r: Route = serde_json::from_value(json!({"id": Uuid::new_v4(), "type": kind,
            "srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": dst, "dstNetworkLength": len, "routerId": router})).unwrap();
        self.o.routes.push(r);
    }

    pub fn chain(&mut self) -> Uuid {
        let c = Chain {
            id: Uuid::new_v4(),
            name: Some("c".into()),
            ..Default::default()
        };
        let id = c.id;
        self.o.chains.push(c);
        id
    }

    /// Appends a rule given as REST JSON (normalized as the API would).
    pub fn rule(&mut self, chain: Uuid, v: serde_json::Value) -> Uuid {
        self.try_rule(chain, v).expect("a rule the API accepts")
    }

    /// Appends a rule the API would accept (its JSON decodes and passes the
    /// API's validation); `None`, and nothing added, for one it refuses.
    pub fn try_rule(&mut self, chain: Uuid, mut v: serde_json::Value) -> Option<Uuid> {
        let id = Uuid::new_v4();
        v["id"] = json!(id);
        v["chainId"] = json!(chain);
        let mut r: Rule = serde_json::from_value(v).ok()?;
        r.normalize();
        r.validate().ok()?;
        self.o.rules.push(r);
        self.o
            .chains
            .iter_mut()
            .find(|c| c.id == chain)
            .unwrap()
            .rule_ids
            .push(id);
        Some(id)
    }

    pub fn set_port(&mut self, port: Uuid, f: impl FnOnce(&mut Port)) {
        f(self.o.ports.iter_mut().find(|p| p.id == port).unwrap());
    }
    pub fn set_bridge(&mut self, b: Uuid, f: impl FnOnce(&mut Bridge)) {
        f(self.o.bridges.iter_mut().find(|x| x.id == b).unwrap());
    }
    pub fn set_router(&mut self, r: Uuid, f: impl FnOnce(&mut Router)) {
        f(self.o.routers.iter_mut().find(|x| x.id == r).unwrap());
    }

    pub fn topo(&self) -> Topology {
        Topology::build(&self.o)
    }
}

/// Runs one simulation.
pub struct Run {
    pub topo: Topology,
    pub state: StateTables,
    pub rng: XorShift,
    pub now: u64,
}

impl Run {
    pub fn new(net: &Net) -> Self {
        Run {
            topo: net.topo(),
            state: StateTables::default(),
            rng: XorShift(42),
            now: 1_000,
        }
    }
    pub fn sim(&mut self, port: Uuid, frame: &[u8]) -> Outcome {
        self.sim_traced(port, frame, true)
    }
    /// As a packet worker simulates live traffic: tracing off unless a live
    /// trace request matches.
    pub fn sim_live(&mut self, port: Uuid, frame: &[u8]) -> Outcome {
        self.sim_traced(port, frame, false)
    }
    fn sim_traced(&mut self, port: Uuid, frame: &[u8], trace: bool) -> Outcome {
        let mut out = Outcome::default();
        simulate(
            &self.topo,
            &self.state,
            &Input {
                in_port: port,
                frame,
                now: self.now,
                trace,
            },
            &mut self.rng,
            &mut out,
        );
        out
    }
    /// Simulates and applies the state writes, as the agent does.
    pub fn send(&mut self, port: Uuid, frame: &[u8]) -> Outcome {
        let out = self.sim(port, frame);
        self.state.apply(&out.writes, self.now);
        out
    }
    pub fn learn(&mut self, bridge: Uuid, m: Mac, port: Uuid) {
        self.state.apply(
            &[StateWrite::MacLearned {
                bridge,
                vlan: 0,
                mac: m,
                port,
            }],
            self.now,
        );
    }
    pub fn arp(&mut self, router: Uuid, addr: &str, m: Mac) {
        self.state.apply(
            &[StateWrite::ArpLearned {
                router,
                ip: ip(addr),
                mac: m,
            }],
            self.now,
        );
    }
}

pub fn out_ports(o: &Outcome) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = o.outputs().map(|o| o.port).collect();
    v.sort();
    v
}

pub fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

/// Applies the outcome's actions to the frame; the frames per output.
pub fn deliver(o: &Outcome, frame: &[u8]) -> Vec<(Uuid, Vec<u8>)> {
    sim::actions::execute(&o.actions, frame)
        .into_iter()
        .map(|(out, f)| (out.port, f))
        .collect()
}

fn ipv4_frame(src: Mac, dst: Mac, ip: Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 34 + payload.len()];
    EthernetRepr {
        src,
        dst,
        ethertype: EtherType::IPV4,
        vlan: None,
    }
    .emit(&mut f);
    ip.emit(&mut f[14..]);
    f[34..].copy_from_slice(payload);
    f
}

fn hdr(src: &str, dst: &str, proto: u8, len: usize, ttl: u8) -> Ipv4Repr {
    Ipv4Repr {
        src: ip(src),
        dst: ip(dst),
        protocol: proto,
        payload_len: len,
        ttl,
        tos: 0,
        ident: 7,
        dont_frag: false,
    }
}

pub fn udp(sm: Mac, dm: Mac, src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let payload = b"payload!";
    let mut u = vec![0u8; 8 + payload.len()];
    UdpRepr {
        src_port: sport,
        dst_port: dport,
    }
    .emit(&mut u, payload, ip(src), ip(dst));
    ipv4_frame(sm, dm, hdr(src, dst, Protocol::UDP, u.len(), 64), &u)
}

pub fn tcp(sm: Mac, dm: Mac, src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = 0x02; // SYN
    let sum = wire::checksum::pseudo_header(ip(src), ip(dst), Protocol::TCP, 20)
        + wire::checksum::sum(&t);
    let ck = !wire::checksum::fold(sum);
    t[16..18].copy_from_slice(&ck.to_be_bytes());
    ipv4_frame(sm, dm, hdr(src, dst, Protocol::TCP, 20, 64), &t)
}

pub fn ping(sm: Mac, dm: Mac, src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    let r = Icmpv4Repr::EchoRequest {
        id: 0x1234,
        seq: 1,
        data: b"abcdefgh",
    };
    let mut p = vec![0u8; r.buffer_len()];
    r.emit(&mut p);
    ipv4_frame(sm, dm, hdr(src, dst, Protocol::ICMP, p.len(), ttl), &p)
}

pub fn pong(sm: Mac, dm: Mac, src: &str, dst: &str) -> Vec<u8> {
    let r = Icmpv4Repr::EchoReply {
        id: 0x1234,
        seq: 1,
        data: b"abcdefgh",
    };
    let mut p = vec![0u8; r.buffer_len()];
    r.emit(&mut p);
    ipv4_frame(sm, dm, hdr(src, dst, Protocol::ICMP, p.len(), 64), &p)
}

/// An IPv4 fragment: `first` = offset 0 with more-fragments, else offset 1480.
pub fn fragment(sm: Mac, dm: Mac, src: &str, dst: &str, first: bool) -> Vec<u8> {
    let mut f = udp(sm, dm, src, dst, 1000, 2000);
    let (b6, b7) = if first { (0x20, 0) } else { (0x00, 185) };
    f[20] = b6;
    f[21] = b7;
    f[24] = 0;
    f[25] = 0;
    let ck = wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ck.to_be_bytes());
    f
}

pub fn arp_request(sm: Mac, spa: &str, tpa: &str) -> Vec<u8> {
    ArpRepr {
        op: ArpOp::Request,
        sha: sm,
        spa: ip(spa),
        tha: Mac::ZERO,
        tpa: ip(tpa),
    }
    .to_frame(sm, Mac::BROADCAST)
}

pub fn arp_reply(sm: Mac, spa: &str, dm: Mac, tpa: &str) -> Vec<u8> {
    ArpRepr {
        op: ArpOp::Reply,
        sha: sm,
        spa: ip(spa),
        tha: dm,
        tpa: ip(tpa),
    }
    .to_frame(sm, dm)
}

pub fn ipv6(sm: Mac, dm: Mac) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 8];
    EthernetRepr {
        src: sm,
        dst: dm,
        ethertype: EtherType::IPV6,
        vlan: None,
    }
    .emit(&mut f);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&8u16.to_be_bytes());
    f[20] = 17;
    f[21] = 64;
    f
}
