//! The simulation proper: a packet's walk through ports, bridges, routers
//! and chains. Sans-I/O: topology, state, time and randomness come in; a
//! verdict, actions, emitted packets, tags and state writes go out.

use crate::flow::{Fields, Frag, Match, field};
use crate::result::*;
use crate::state::{ConnKey, StateTables, StateWrite};
use crate::topology::{Device, Id, Port, RuleKind, Topology};
use model::{FlowAction, FragmentPolicy, RouteType};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use wire::ethernet::{EtherType, Mac};
use wire::ipv4::Protocol;
use wire::{ArpOp, ArpPacket, ArpRepr, EthernetFrame};

/// Ingress into more ports than this is a loop (MidoNet: 12).
pub const MAX_HOPS: u32 = 12;
/// Chains nested deeper than this by jumps: the packet is dropped, never
/// let through by skipping the rest. (A chain already run in this
/// evaluation is skipped, as MidoNet does: so a cycle ends, and each chain
/// runs at most once per packet.)
const MAX_JUMP_DEPTH: usize = 32;

/// A source of randomness, passed in so simulations are reproducible.
pub trait Random {
    fn next_u32(&mut self) -> u32;
}

/// A small xorshift generator, for tests and benchmarks.
pub struct XorShift(pub u64);

impl Random for XorShift {
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 16) as u32
    }
}

/// A packet arriving on a virtual port.
pub struct Input<'a> {
    pub in_port: Id,
    pub frame: &'a [u8],
    /// Milliseconds, on any monotonic clock.
    pub now: u64,
    /// Record each step for `midonet trace`.
    pub trace: bool,
}

/// The outcome of a chain (or a list of chains) for the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChainVerdict {
    Accept,
    Continue,
    Return,
    Drop(Id),
    Reject(Id),
    Redirect { port: Id, ingress: bool },
}

pub(crate) struct Sim<'a, 'o> {
    pub topo: &'a Topology,
    pub state: &'a StateTables,
    pub now: u64,
    pub rng: &'o mut dyn Random,
    pub out: &'o mut Outcome,
    pub frame: &'a [u8],
    pub m: Match,
    pub orig: Fields,
    /// Header state as last emitted: actions are diffs against it.
    emitted: Fields,
    pub in_port: Id,
    pub in_groups: &'a [Id],
    /// Groups of the exterior port the packet entered by.
    pub ingress_groups: &'a [Id],
    pub out_port: Option<Id>,
    /// Device of the first ingress port: conntrack looks up forward flows there.
    pub ingress_device: Option<Id>,
    hops: u32,
    pub dst_rewritten: bool,
    forward: Option<bool>,
    /// A generated packet: always "return" traffic, never creates state.
    pub generated: bool,
    trace: bool,
    pub stateful: bool,
    /// Fields at router entry, for ICMP errors.
    pub pre_routing: Option<Fields>,
    /// The bridge or router processing the packet now (NAT is scoped by it).
    pub device: Option<Id>,
    /// Rewrites of an ICMP error's quoted packet, emitted with the next output.
    pub quote_actions: Vec<Action>,
    /// A NAT rule found no free port.
    pub nat_exhausted: bool,
}

/// Simulates `input` through `topo`; the result goes into `out` (cleared first).
/// A packet that matches a live trace request on a device it passes is
/// simulated again from the start with tracing on (the simulation has no
/// side effects, so the second walk is the first one, recorded).
pub fn simulate(
    topo: &Topology,
    state: &StateTables,
    input: &Input<'_>,
    rng: &mut dyn Random,
    out: &mut Outcome,
) {
    run(topo, state, input, input.trace, rng, out);
    if !input.trace && !out.traced.is_empty() {
        run(topo, state, input, true, rng, out);
    }
}

fn run(
    topo: &Topology,
    state: &StateTables,
    input: &Input<'_>,
    trace: bool,
    rng: &mut dyn Random,
    out: &mut Outcome,
) {
    out.clear();
    let Some(fields) = Fields::parse(input.frame, 0) else {
        out.verdict = Verdict::ErrorDrop(DropReason::Malformed);
        return;
    };
    let mut sim = Sim::new(
        topo,
        state,
        input.now,
        rng,
        out,
        input.frame,
        fields,
        input.in_port,
    );
    sim.trace = trace;
    let v = sim.ingress(input.in_port);
    sim.finish(v);
}

impl<'a, 'o> Sim<'a, 'o> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        topo: &'a Topology,
        state: &'a StateTables,
        now: u64,
        rng: &'o mut dyn Random,
        out: &'o mut Outcome,
        frame: &'a [u8],
        fields: Fields,
        in_port: Id,
    ) -> Self {
        Sim {
            topo,
            state,
            now,
            rng,
            out,
            frame,
            orig: fields.clone(),
            emitted: fields.clone(),
            m: Match::new(fields),
            in_port,
            in_groups: &[],
            ingress_groups: &[],
            out_port: None,
            ingress_device: None,
            hops: 0,
            dst_rewritten: false,
            forward: None,
            generated: false,
            trace: false,
            stateful: false,
            pre_routing: None,
            device: None,
            quote_actions: Vec::new(),
            nat_exhausted: false,
        }
    }

    pub fn note(&mut self, device: Option<Id>, what: impl FnOnce() -> String) {
        self.step(device, || (Step::Note, what()));
    }

    /// A structured step (built only when tracing).
    pub fn step(&mut self, device: Option<Id>, f: impl FnOnce() -> (Step, String)) {
        if self.trace {
            let (step, what) = f();
            self.out.trace.push(TraceStep { device, step, what });
        }
    }

    /// Matches the packet against the live trace requests on `device`.
    /// Reading a condition's fields widens the flow's mask as a rule does:
    /// a flow installed for an untraced packet never covers a traced one.
    fn trace_point(&mut self, device: Id) {
        if self.topo.traces.is_empty() {
            return;
        }
        let topo = self.topo;
        for (request, cond) in topo.traces.at(device) {
            if !self.out.traced.contains(request) && self.matches(cond) {
                self.out.traced.push(*request);
            }
        }
    }

    pub fn tag(&mut self, t: Tag) {
        self.out.tags.push(t);
    }

    pub fn write(&mut self, w: StateWrite) {
        self.out.writes.push(w);
    }

    /// Sets the verdict, the flow to install, and discards state on errors.
    fn finish(&mut self, v: Verdict) {
        self.step(None, || (Step::Result(v), format!("result: {v:?}")));
        self.out.verdict = v;
        if matches!(v, Verdict::ErrorDrop(_)) {
            self.out.writes.clear();
        }
        let mut mask = self.m.seen();
        let sets_l3 = self.out.actions.iter().any(|a| {
            matches!(
                a,
                Action::SetNwSrc(_)
                    | Action::SetNwDst(_)
                    | Action::SetTtl(_)
                    | Action::SetTpSrc(_)
                    | Action::SetTpDst(_)
            )
        });
        if sets_l3 {
            mask.0 |= field::ETH_TYPE | field::NW_PROTO;
        }
        let expiry_ms = match v {
            Verdict::Forward if self.stateful => STATEFUL_FLOW_EXPIRY_MS,
            Verdict::Forward | Verdict::Drop(_) => FLOW_EXPIRY_MS,
            Verdict::ShortDrop(_) | Verdict::ErrorDrop(_) => ERROR_FLOW_EXPIRY_MS,
            Verdict::Consumed | Verdict::NotYet(_) => return,
        };
        // A short drop keeps what it read of the topology (a route or rule
        // change removes it at once, not at its expiry), but pins no
        // connection state.
        if matches!(v, Verdict::ShortDrop(_) | Verdict::ErrorDrop(_)) {
            self.out
                .tags
                .retain(|t| !matches!(t, Tag::ConnTrack(_) | Tag::Nat(_)));
        }
        self.out.flow = Some(FlowSpec {
            key: self.orig.masked(mask),
            mask,
            expiry_ms,
            userspace_only: mask.any(field::USERSPACE_ONLY),
        });
    }

    // ---- ports ----------------------------------------------------------

    pub fn port(&self, id: Id) -> Result<&'a Port, Missing> {
        self.topo
            .ports
            .get(&id)
            .map(|p| &**p)
            .ok_or(Missing::Port(id))
    }

    pub fn ingress(&mut self, id: Id) -> Verdict {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return Verdict::ErrorDrop(DropReason::LoopDetected);
        }
        let port = match self.port(id) {
            Ok(p) => p,
            Err(m) => return Verdict::NotYet(m),
        };
        self.tag(Tag::Device(id));
        self.in_port = id;
        self.in_groups = &port.groups;
        if port.is_exterior() || self.ingress_device.is_none() {
            self.ingress_groups = &port.groups;
        }
        if self.ingress_device.is_none() {
            self.ingress_device = Some(port.device.id());
        }
        self.dst_rewritten = false;
        self.step(Some(id), || (Step::PortIngress, "port ingress".into()));
        self.trace_point(id);
        if !port.admin_up {
            return Verdict::Drop(DropReason::AdminDown);
        }
        if !self.generated
            && port.is_exterior()
            && let Device::Bridge(b) = port.device
            && let Some(v) = self.dhcp(port, b)
        {
            return v;
        }
        if let Some(c) = port.in_filter
            && let Some(v) = self.filter(&[c], None, false)
        {
            return v;
        }
        match port.device {
            Device::Bridge(b) => self.bridge(b, port),
            Device::Router(r) => self.router(r, port),
        }
    }

    pub fn egress(&mut self, id: Id) -> Verdict {
        let port = match self.port(id) {
            Ok(p) => p,
            Err(m) => return Verdict::NotYet(m),
        };
        self.tag(Tag::Device(id));
        self.out_port = Some(id);
        self.step(Some(id), || (Step::PortEgress, "port egress".into()));
        if !port.admin_up {
            return Verdict::Drop(DropReason::AdminDown);
        }
        if let Some(c) = port.out_filter
            && let Some(v) = self.filter(&[c], None, false)
        {
            return v;
        }
        if port.is_exterior() {
            self.emit_to(port);
            Verdict::Forward
        } else if let Some(peer) = port.peer {
            self.ingress(peer)
        } else {
            Verdict::ErrorDrop(DropReason::Unplugged)
        }
    }

    fn redirect(&mut self, port: Id, ingress: bool) -> Verdict {
        // Egress to egress recurses without an ingress: counted here too,
        // so a port whose own outbound filter redirects to it is a loop.
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return Verdict::ErrorDrop(DropReason::LoopDetected);
        }
        self.note(Some(port), || {
            format!(
                "redirected to port {} ({})",
                port,
                if ingress { "ingress" } else { "egress" }
            )
        });
        if ingress {
            self.ingress(port)
        } else {
            self.egress(port)
        }
    }

    fn filtered(&mut self, v: ChainVerdict) -> Verdict {
        if self.nat_exhausted {
            return Verdict::Drop(DropReason::NatPortsExhausted);
        }
        match v {
            ChainVerdict::Drop(c) => Verdict::Drop(DropReason::FilteredByChain(c)),
            ChainVerdict::Reject(c) => Verdict::Drop(DropReason::RejectedByChain(c)),
            _ => Verdict::ErrorDrop(DropReason::LoopDetected),
        }
    }

    /// Header rewrites since the last emission, then the output.
    fn emit_to(&mut self, port: &Port) {
        let cur = self.m.peek().clone();
        let e = &self.emitted;
        let acts = &mut self.out.actions;
        if cur.eth_src != e.eth_src {
            acts.push(Action::SetEthSrc(cur.eth_src));
        }
        if cur.eth_dst != e.eth_dst {
            acts.push(Action::SetEthDst(cur.eth_dst));
        }
        if cur.vlan != e.vlan {
            if e.vlan.is_some() {
                acts.push(Action::PopVlan);
            }
            if let Some(v) = cur.vlan {
                acts.push(Action::PushVlan(v));
            }
        }
        if cur.is_ipv4() {
            if cur.nw_src != e.nw_src {
                acts.push(Action::SetNwSrc(cur.nw_src));
            }
            if cur.nw_dst != e.nw_dst {
                acts.push(Action::SetNwDst(cur.nw_dst));
            }
            if cur.nw_ttl != e.nw_ttl {
                acts.push(Action::SetTtl(cur.nw_ttl));
            }
            if cur.nw_proto == Protocol::ICMP {
                if cur.icmp_id != e.icmp_id {
                    acts.push(Action::SetIcmpId(cur.icmp_id));
                }
            } else {
                if cur.tp_src != e.tp_src {
                    acts.push(Action::SetTpSrc(cur.tp_src));
                }
                if cur.tp_dst != e.tp_dst {
                    acts.push(Action::SetTpDst(cur.tp_dst));
                }
            }
        }
        acts.append(&mut self.quote_actions);
        acts.push(Action::Output(Output {
            port: port.id,
            host: port.host,
            tunnel_key: port.tunnel_key,
        }));
        self.emitted = cur;
        // A forward connection leaving a device: record its return key there.
        if !self.generated && self.forward == Some(true) {
            let f = self.m.peek();
            if let Some(k) = conn_key(f, port.device.id(), true) {
                self.write(StateWrite::ConnTrack(k));
                self.tag(Tag::ConnTrack(k));
                self.stateful = true;
            }
        }
    }

    /// Sends a generated packet out of `port` (through the topology beyond
    /// it), traced as part of the packet that made it.
    pub fn emit_generated(&mut self, port: Id, frame: Vec<u8>) {
        let mut out = Outcome::default();
        if let Some(fields) = Fields::parse(&frame, 0) {
            let mut sim = Sim::new(
                self.topo,
                self.state,
                self.now,
                &mut *self.rng,
                &mut out,
                &frame,
                fields,
                port,
            );
            sim.generated = true;
            sim.trace = self.trace;
            sim.note(None, || "generated packet".into());
            let v = sim.egress(port);
            sim.note(None, || format!("generated packet: {v:?}"));
            if v == Verdict::Forward {
                let sent = crate::actions::execute(&out.actions, &frame);
                out.emits.extend(
                    sent.into_iter()
                        .map(|(output, frame)| Emit { output, frame }),
                );
            }
        }
        self.out.trace.append(&mut out.trace);
        self.out.emits.append(&mut out.emits);
    }

    // ---- bridges ----------------------------------------------------------

    fn bridge(&mut self, id: Id, in_port: &'a Port) -> Verdict {
        let Some(br) = self.topo.bridges.get(&id) else {
            return Verdict::NotYet(Missing::Bridge(id));
        };
        self.tag(Tag::Device(id));
        self.device = Some(id);
        self.step(Some(id), || (Step::Bridge, "bridge".into()));
        self.trace_point(id);
        let src = self.m.eth_src();
        if src.is_multicast() {
            return Verdict::Drop(DropReason::MulticastSource);
        }
        if !br.admin_up {
            return Verdict::Drop(DropReason::AdminDown);
        }
        // VLAN-aware bridging: a frame from a VLAN's interior port joins that
        // VLAN (tagged towards the trunks); a tagged frame from a trunk for a
        // VLAN with an interior port leaves through it, untagged.
        if in_port.vlan != 0 && in_port.peer.is_some() && self.m.peek().vlan.is_none() {
            self.m.fields_mut().vlan = Some(in_port.vlan);
        }
        if let Some(v) = self.m.vlan()
            && let Some(p) = br.vlan_ports.get(&v).copied()
            && p != in_port.id
        {
            self.m.fields_mut().vlan = None;
            self.note(Some(id), || {
                format!("VLAN {v} to its interior port {p}, untagged")
            });
            return self.egress(p);
        }
        let tagged = self.m.vlan().is_some();
        let vlan = self.m.peek().vlan.unwrap_or(in_port.vlan);
        // Bridges never apply chains to tagged frames.
        let in_verdict = match (tagged, br.in_filter) {
            (false, Some(c)) => match self.run_chains(&[c]) {
                Ok(v) => v,
                Err(m) => return Verdict::NotYet(m),
            },
            _ => ChainVerdict::Accept,
        };
        // Learn the source, whatever the filter said; never a router's MAC.
        if !self.generated && !br.router_macs.contains_key(&src) {
            let known = self.state.macs.get(&(id, vlan, src));
            if known != Some(&in_port.id) {
                self.write(StateWrite::MacLearned {
                    bridge: id,
                    vlan,
                    mac: src,
                    port: in_port.id,
                });
            }
        }
        match in_verdict {
            ChainVerdict::Accept => {}
            ChainVerdict::Redirect { port, ingress } => return self.redirect(port, ingress),
            v => return self.filtered(v),
        }
        let dst = self.m.eth_dst();
        let target = if dst.is_multicast() {
            if self.m.is_arp()
                && let Some(v) = self.bridge_arp(id, br, in_port, tagged)
            {
                return v;
            }
            None
        } else if let Some(p) = br.router_macs.get(&dst) {
            Some(*p)
        } else if dst == src {
            Some(in_port.id)
        } else {
            self.tag(Tag::MacPort {
                bridge: id,
                vlan,
                mac: dst,
            });
            // A MAC learned on a port since deleted or moved is unknown
            // again: flooded, so its new port (which may not have spoken
            // yet) receives it.
            self.state.macs.get(&(id, vlan, dst)).copied().filter(|p| {
                self.topo
                    .ports
                    .get(p)
                    .is_some_and(|x| x.device == Device::Bridge(id))
            })
        };
        match target {
            Some(p) if p == in_port.id => Verdict::ErrorDrop(DropReason::HairpinDenied),
            Some(p) => {
                if let Some(v) = self.bridge_out_filter(br.out_filter, tagged) {
                    return v;
                }
                self.step(Some(id), || {
                    (Step::MacForward { port: p }, format!("forward to port {p}"))
                });
                self.egress(p)
            }
            None => {
                if let Some(v) = self.bridge_out_filter(br.out_filter, tagged) {
                    return v;
                }
                self.step(Some(id), || (Step::Flood, "flood".into()));
                self.flood(&br.exterior_ports, in_port.id)
            }
        }
    }

    fn bridge_out_filter(&mut self, chain: Option<Id>, tagged: bool) -> Option<Verdict> {
        let c = chain.filter(|_| !tagged)?;
        self.filter(&[c], None, false)
    }

    /// Runs filter chains: `None` to go on, or what becomes of the packet.
    /// On a router (`router_port`, the ingress port) a REJECT answers with
    /// ICMP admin-prohibited, and with `frag_needed` a dropped first fragment
    /// tells the sender to stop fragmenting.
    fn filter(
        &mut self,
        chains: &[Id],
        router_port: Option<&'a Port>,
        frag_needed: bool,
    ) -> Option<Verdict> {
        use wire::icmpv4::{DST_UNREACHABLE, unreachable};
        match self.run_chains(chains) {
            Ok(ChainVerdict::Accept) => None,
            Ok(ChainVerdict::Redirect { port, ingress }) => Some(self.redirect(port, ingress)),
            Ok(ChainVerdict::Reject(c)) if let Some(p) = router_port => {
                self.icmp_error(p, DST_UNREACHABLE, unreachable::ADMIN_PROHIBITED, 0);
                Some(Verdict::Drop(DropReason::RejectedByChain(c)))
            }
            Ok(ChainVerdict::Drop(c))
                if frag_needed && !self.nat_exhausted && self.m.frag() == Frag::First =>
            {
                if let Some(p) = router_port {
                    self.icmp_error(p, DST_UNREACHABLE, unreachable::FRAG_NEEDED, 1500);
                }
                Some(Verdict::ErrorDrop(DropReason::FilteredByChain(c)))
            }
            Ok(v) => Some(self.filtered(v)),
            Err(m) => Some(Verdict::NotYet(m)),
        }
    }

    /// ARP on a bridge: answer requests for known addresses (suppression),
    /// learn gratuitous announcements, flood the rest.
    fn bridge_arp(
        &mut self,
        id: Id,
        br: &'a crate::topology::Bridge,
        in_port: &Port,
        tagged: bool,
    ) -> Option<Verdict> {
        let Some(req) = arp_of(self.frame) else {
            return Some(Verdict::ErrorDrop(DropReason::Malformed));
        };
        self.m
            .mark(field::NW_PROTO | field::NW_SRC | field::NW_DST | field::ETH_TYPE);
        self.tag(Tag::BridgeArp(id));
        if req.op != ArpOp::Request || tagged {
            return None;
        }
        if req.is_gratuitous() {
            self.write(StateWrite::Ip4Mac {
                bridge: id,
                ip: req.spa,
                mac: req.sha,
            });
            return None;
        }
        let known = br
            .router_ips
            .get(&req.tpa)
            .or_else(|| self.state.ip4mac.get(&(id, req.tpa)))
            .copied();
        let mac = known?;
        self.note(Some(id), || {
            format!("ARP suppression: {} is at {mac}", req.tpa)
        });
        let reply = req.reply_from(mac).to_frame(mac, req.sha);
        self.emit_generated(in_port.id, reply);
        Some(Verdict::Consumed)
    }

    /// Copies to every exterior port but the ingress one; the branches share
    /// nothing but the outcome.
    fn flood(&mut self, ports: &'a [Id], in_port: Id) -> Verdict {
        let saved_m = self.m.peek().clone();
        let (saved_out, saved_in, saved_rw) = (self.out_port, self.in_port, self.dst_rewritten);
        let mut result: Option<Verdict> = None;
        for p in ports {
            if *p == in_port {
                continue;
            }
            let v = self.egress(*p);
            *self.m.fields_mut() = saved_m.clone();
            (self.out_port, self.in_port, self.dst_rewritten) = (saved_out, saved_in, saved_rw);
            result = Some(match result {
                None => v,
                Some(prev) => merge(prev, v),
            });
        }
        // Flooding to nobody is a drop that a new port will undo.
        result.unwrap_or(Verdict::Drop(DropReason::Unplugged))
    }

    // ---- routers ----------------------------------------------------------

    fn router(&mut self, id: Id, in_port: &'a Port) -> Verdict {
        let Some(rt) = self.topo.routers.get(&id) else {
            return Verdict::NotYet(Missing::Router(id));
        };
        self.tag(Tag::Device(id));
        self.device = Some(id);
        self.step(Some(id), || (Step::Router, "router".into()));
        self.trace_point(id);
        if self.m.vlan().is_some() {
            return Verdict::Drop(DropReason::VlanOnRouter);
        }
        let et = self.m.eth_type();
        if et != EtherType::IPV4 && et != EtherType::ARP {
            return Verdict::Drop(DropReason::UnsupportedEtherType);
        }
        let dst = self.m.eth_dst();
        if dst.is_broadcast() {
            if et != EtherType::ARP {
                return Verdict::Drop(DropReason::NotForRouter);
            }
        } else if dst != in_port.mac {
            return Verdict::Drop(DropReason::NotForRouter);
        }
        if et == EtherType::ARP {
            return self.router_arp(id, in_port);
        }
        if !rt.admin_up {
            self.icmp_error(
                in_port,
                wire::icmpv4::DST_UNREACHABLE,
                wire::icmpv4::unreachable::ADMIN_PROHIBITED,
                0,
            );
            return Verdict::Drop(DropReason::AdminDown);
        }
        self.pre_routing = Some(self.m.peek().clone());

        // The load balancer runs first; when it acted, the inbound filter is skipped.
        let mut skip_in_filter = false;
        if let Some(lb) = rt.load_balancer {
            match self.lb_inbound(lb) {
                Ok(None) => {}
                Ok(Some(true)) => skip_in_filter = true,
                Ok(Some(false)) => {
                    let up = self
                        .topo
                        .load_balancers
                        .get(&lb)
                        .is_some_and(|l| l.admin_up);
                    return Verdict::Drop(if up {
                        DropReason::NoPoolMember
                    } else {
                        DropReason::LoadBalancerDown
                    });
                }
                Err(m) => return Verdict::NotYet(m),
            }
        }
        if !skip_in_filter && let Some(v) = self.filter(&rt.in_chains, Some(in_port), true) {
            return v;
        }

        let (src, dst_ip) = (self.m.nw_src(), self.m.nw_dst());
        let m = &self.m;
        let route = rt.routes.lookup(src, dst_ip, || {
            let f = (m.nw_src(), m.nw_dst(), m.nw_proto(), m.tp_src(), m.tp_dst());
            let mut h = rustc_hash::FxHasher::default();
            f.hash(&mut h);
            h.finish() as u32
        });
        let Some(route) = route else {
            self.step(Some(id), || {
                (
                    Step::NoRoute { dst: dst_ip },
                    format!("no route to {dst_ip}"),
                )
            });
            self.icmp_error(
                in_port,
                wire::icmpv4::DST_UNREACHABLE,
                wire::icmpv4::unreachable::NET,
                0,
            );
            return Verdict::ShortDrop(DropReason::NoRoute);
        };
        self.tag(Tag::Route(route.id));
        if route.dst.len < 32 {
            self.tag(Tag::DstIp {
                router: id,
                ip: dst_ip,
            });
        }
        self.step(Some(id), || {
            (
                Step::Route {
                    route: route.id,
                    port: route.port,
                },
                format!(
                    "route {:?} to {}/{} via {:?}",
                    route.kind,
                    Ipv4Addr::from(route.dst.net),
                    route.dst.len,
                    route.port
                ),
            )
        });
        match route.kind {
            RouteType::Local => return self.router_local(in_port),
            RouteType::BlackHole => return Verdict::ErrorDrop(DropReason::BlackholeRoute),
            RouteType::Reject => {
                self.icmp_error(
                    in_port,
                    wire::icmpv4::DST_UNREACHABLE,
                    wire::icmpv4::unreachable::ADMIN_PROHIBITED,
                    0,
                );
                return Verdict::ShortDrop(DropReason::RejectRoute);
            }
            RouteType::Normal => {}
        }
        let ttl = self.m.nw_ttl();
        if ttl <= 1 {
            self.icmp_error(in_port, wire::icmpv4::TIME_EXCEEDED, 0, 0);
            return Verdict::ErrorDrop(DropReason::TtlExpired);
        }
        self.m.fields_mut().nw_ttl = ttl - 1;
        let Some(out_id) = route.port else {
            return Verdict::ErrorDrop(DropReason::NoRoute);
        };
        let out_port = match self.port(out_id) {
            Ok(p) => p,
            Err(m) => return Verdict::NotYet(m),
        };
        let Some(out_ip) = out_port.ip else {
            return Verdict::ErrorDrop(DropReason::NoRoute);
        };
        if self.m.peek().nw_dst == out_ip {
            return Verdict::Drop(DropReason::OwnAddressWithoutLocalRoute);
        }
        self.out_port = Some(out_id);

        let mut skip_out_filter = false;
        if let Some(lb) = rt.load_balancer {
            match self.lb_outbound(lb) {
                Ok(acted) => skip_out_filter = acted,
                Err(m) => return Verdict::NotYet(m),
            }
        }
        if !skip_out_filter && let Some(v) = self.filter(&rt.out_chains, Some(in_port), false) {
            return v;
        }

        let next_hop = route.gateway.unwrap_or(self.m.peek().nw_dst);
        let mac = match self.next_hop_mac(id, out_port, next_hop) {
            Ok(Some(mac)) => mac,
            Ok(None) => {
                self.icmp_error(
                    in_port,
                    wire::icmpv4::DST_UNREACHABLE,
                    wire::icmpv4::unreachable::HOST,
                    0,
                );
                return Verdict::ErrorDrop(DropReason::NoMacForNextHop);
            }
            Err(m) => return Verdict::NotYet(m),
        };
        let f = self.m.fields_mut();
        f.eth_src = out_port.mac;
        f.eth_dst = mac;
        self.egress(out_id)
    }

    /// The MAC of `ip` on the far side of `port`: a peer router port, a
    /// bridge's known addresses, or the router's ARP table (asking when
    /// unknown).
    fn next_hop_mac(
        &mut self,
        router: Id,
        port: &'a Port,
        ip: Ipv4Addr,
    ) -> Result<Option<Mac>, Missing> {
        if let Some(peer) = port.peer.and_then(|p| self.topo.ports.get(&p)) {
            match peer.device {
                Device::Router(_) => return Ok(Some(peer.mac)),
                Device::Bridge(b) => {
                    if let Some(br) = self.topo.bridges.get(&b)
                        && let Some(mac) = br
                            .router_ips
                            .get(&ip)
                            .or_else(|| self.state.ip4mac.get(&(b, ip)))
                    {
                        return Ok(Some(*mac));
                    }
                }
            }
        }
        self.tag(Tag::Arp { router, ip });
        if let Some(e) = self.state.arp.get(&(router, ip))
            && e.expires > self.now
        {
            // A stale entry is still used, and refreshed with a new request.
            let learned = e.expires.saturating_sub(crate::state::ARP_EXPIRY_MS);
            if self.now >= learned + crate::state::ARP_STALE_MS {
                self.arp_request(port, ip);
            }
            return Ok(Some(e.mac));
        }
        if port.subnet.is_some_and(|s| !s.contains(ip)) && port.peer.is_none() {
            return Ok(None);
        }
        // Ask, and park the packet until the answer comes.
        if self.arp_request(port, ip) {
            self.note(Some(router), || format!("ARP request for {ip}"));
        }
        Err(Missing::Arp { router, ip })
    }

    /// Broadcasts "who has `ip`" out of router `port`; false when the port
    /// has no address to ask from.
    fn arp_request(&mut self, port: &'a Port, ip: Ipv4Addr) -> bool {
        let Some(src_ip) = port.ip else { return false };
        let req = ArpRepr {
            op: ArpOp::Request,
            sha: port.mac,
            spa: src_ip,
            tha: Mac::ZERO,
            tpa: ip,
        };
        self.emit_generated(port.id, req.to_frame(port.mac, Mac::BROADCAST));
        true
    }

    /// ARP addressed to a router port: answer requests for its address,
    /// learn senders inside its subnet.
    fn router_arp(&mut self, id: Id, port: &'a Port) -> Verdict {
        let Some(a) = arp_of(self.frame) else {
            return Verdict::ErrorDrop(DropReason::Malformed);
        };
        self.m.mark(field::NW_PROTO | field::NW_SRC | field::NW_DST);
        let in_subnet = port.subnet.is_none_or(|s| s.contains(a.spa));
        let Some(port_ip) = port.ip else {
            return Verdict::Drop(DropReason::ArpHandled);
        };
        match a.op {
            ArpOp::Request if a.tpa == port_ip && in_subnet => {
                self.write(StateWrite::ArpLearned {
                    router: id,
                    ip: a.spa,
                    mac: a.sha,
                });
                self.note(Some(id), || {
                    format!("ARP reply: {port_ip} is at {}", port.mac)
                });
                let reply = a.reply_from(port.mac).to_frame(port.mac, a.sha);
                self.emit_generated(port.id, reply);
                Verdict::Consumed
            }
            ArpOp::Request if a.is_gratuitous() && in_subnet => {
                self.write(StateWrite::ArpLearned {
                    router: id,
                    ip: a.spa,
                    mac: a.sha,
                });
                Verdict::Consumed
            }
            ArpOp::Reply if in_subnet && (a.tpa == port_ip || a.is_gratuitous()) => {
                self.write(StateWrite::ArpLearned {
                    router: id,
                    ip: a.spa,
                    mac: a.sha,
                });
                Verdict::Consumed
            }
            _ => Verdict::Drop(DropReason::ArpHandled),
        }
    }

    /// Traffic for the router itself: answer pings to its addresses.
    fn router_local(&mut self, in_port: &'a Port) -> Verdict {
        let f = self.m.peek().clone();
        self.m.mark(field::NW_PROTO | field::TP_SRC);
        if f.nw_proto == Protocol::ICMP
            && f.tp_src == u16::from(wire::icmpv4::ECHO_REQUEST)
            && f.frag == Frag::None
        {
            self.m.mark(field::ICMP_ID | field::ICMP_DATA);
            if let Some(reply) = crate::services::echo_reply(self.frame, &f, in_port.mac) {
                self.note(in_port.device.id().into(), || {
                    format!("echo reply from {}", f.nw_dst)
                });
                self.emit_generated(in_port.id, reply);
                return Verdict::Consumed;
            }
        }
        Verdict::ErrorDrop(DropReason::LocalDelivery)
    }

    /// Sends an ICMP error about the current packet back out of `port`.
    pub fn icmp_error(&mut self, port: &'a Port, typ: u8, code: u8, mtu: u16) {
        if self.generated {
            return;
        }
        let Some(src) = port.ip else { return };
        let pre = self
            .pre_routing
            .clone()
            .unwrap_or_else(|| self.m.peek().clone());
        if let Some(frame) =
            crate::services::icmp_error(self.frame, &pre, port.mac, src, typ, code, mtu)
        {
            self.note(Some(port.id), || {
                format!("ICMP error type {typ} code {code} to {}", pre.nw_src)
            });
            self.emit_generated(port.id, frame);
        }
    }

    // ---- chains -----------------------------------------------------------

    /// Runs chains in order; the first decisive verdict wins, and running off
    /// the end (or RETURN) means ACCEPT.
    pub fn run_chains(&mut self, chains: &[Id]) -> Result<ChainVerdict, Missing> {
        for c in chains {
            let mut visited: Vec<Id> = Vec::new();
            match self.run_chain(*c, &mut visited, 1)? {
                ChainVerdict::Accept | ChainVerdict::Continue | ChainVerdict::Return => {}
                v => return Ok(v),
            }
        }
        Ok(ChainVerdict::Accept)
    }

    /// Runs chain `id`, `depth` jumps deep (the first chain is 1 deep).
    fn run_chain(
        &mut self,
        id: Id,
        visited: &mut Vec<Id>,
        depth: usize,
    ) -> Result<ChainVerdict, Missing> {
        let chain = self.topo.chains.get(&id).ok_or(Missing::Chain(id))?;
        if visited.contains(&id) {
            return Ok(ChainVerdict::Continue);
        }
        if depth > MAX_JUMP_DEPTH {
            self.note(Some(id), || {
                format!(
                    "chain {} is more than {MAX_JUMP_DEPTH} jumps deep: dropped",
                    chain.name
                )
            });
            return Ok(ChainVerdict::Drop(id));
        }
        visited.push(id);
        self.tag(Tag::Device(id));
        for (i, rule) in chain.rules.iter().enumerate() {
            if !self.matches(&rule.cond) {
                continue;
            }
            self.step(Some(id), || {
                (
                    Step::Rule {
                        chain: id,
                        chain_name: chain.name.clone(),
                        position: i + 1,
                        rule: rule.id,
                        action: format!("{:?}", rule.kind),
                    },
                    format!(
                        "chain {} rule {} ({}) matched: {:?}",
                        chain.name,
                        i + 1,
                        rule.id,
                        rule.kind
                    ),
                )
            });
            let v = match &rule.kind {
                RuleKind::Accept => ChainVerdict::Accept,
                RuleKind::Drop => ChainVerdict::Drop(id),
                RuleKind::Reject => ChainVerdict::Reject(id),
                RuleKind::Return => ChainVerdict::Return,
                RuleKind::Trace => ChainVerdict::Continue,
                RuleKind::Jump(target) => match self.run_chain(*target, visited, depth + 1)? {
                    ChainVerdict::Continue | ChainVerdict::Return => ChainVerdict::Continue,
                    v => v,
                },
                RuleKind::Nat {
                    dnat,
                    targets,
                    is_static,
                    action,
                } => match self.forward_nat(*dnat, targets, *is_static)? {
                    Some(true) => flow_action(*action),
                    Some(false) => ChainVerdict::Drop(id),
                    None => ChainVerdict::Continue,
                },
                RuleKind::RevNat { dnat, action } => {
                    if self.reverse_nat(*dnat) {
                        flow_action(*action)
                    } else {
                        ChainVerdict::Continue
                    }
                }
                RuleKind::L2Transform {
                    pop_vlan,
                    push_vlan,
                    target,
                    ingress,
                    action,
                } => {
                    let f = self.m.fields_mut();
                    if *pop_vlan {
                        f.vlan = None;
                    }
                    if let Some(v) = push_vlan {
                        f.vlan = Some(*v);
                    }
                    match (action, target) {
                        (FlowAction::Redirect, Some(p)) => ChainVerdict::Redirect {
                            port: *p,
                            ingress: *ingress,
                        },
                        _ => ChainVerdict::Accept,
                    }
                }
            };
            if v != ChainVerdict::Continue {
                return Ok(v);
            }
        }
        Ok(ChainVerdict::Continue)
    }

    /// Is this the forward direction of a connection (or untracked)? Looks
    /// for a return key recorded at the ingress device.
    pub fn is_forward(&mut self) -> bool {
        if let Some(f) = self.forward {
            return f;
        }
        if self.generated {
            self.forward = Some(false);
            return false;
        }
        self.m
            .mark(field::NW_SRC | field::NW_DST | field::NW_PROTO | field::TP_SRC | field::TP_DST);
        let key = self
            .ingress_device
            .and_then(|d| conn_key(&self.orig, d, false));
        let fwd = match key {
            None => true,
            Some(k) => {
                if self.orig.nw_proto == Protocol::ICMP {
                    self.m.mark(field::ICMP_ID);
                }
                self.tag(Tag::ConnTrack(k));
                let seen = self.state.conntrack.get(&k).is_some_and(|t| *t > self.now)
                    || self.out.writes.contains(&StateWrite::ConnTrack(k));
                !seen
            }
        };
        self.forward = Some(fwd);
        fwd
    }

    /// Evaluates a condition: fragment policy first (not inverted), then each
    /// set clause; the first failing clause decides, through `condInvert`.
    fn matches(&mut self, cond: &crate::topology::Condition) -> bool {
        let frag_ok = match cond.fragment_policy {
            FragmentPolicy::Any => true,
            p => {
                let f = if self.m.is_ipv4() {
                    self.m.frag()
                } else {
                    Frag::None
                };
                match p {
                    FragmentPolicy::Header => f != Frag::Later,
                    FragmentPolicy::Nonheader => f == Frag::Later,
                    FragmentPolicy::Unfragmented => f == Frag::None,
                    FragmentPolicy::Any => true,
                }
            }
        };
        if !frag_ok {
            return false;
        }
        let c = &cond.c;
        let inv = c.cond_invert;
        macro_rules! clause {
            ($test:expr, $invert:expr) => {
                if !($test ^ $invert) {
                    return inv;
                }
            };
        }
        if c.match_forward_flow || c.match_return_flow {
            let fwd = self.is_forward();
            if c.match_forward_flow && !fwd {
                return inv;
            }
            if c.match_return_flow && fwd {
                return inv;
            }
        }
        if c.no_vlan && self.m.vlan().is_some() {
            return inv;
        }
        if let Some(v) = c.vlan
            && self.m.vlan() != Some(v)
        {
            return inv;
        }
        if let Some(g) = c.port_group {
            clause!(self.ingress_groups.contains(&g), c.inv_port_group);
        }
        if let Some(g) = c.in_port_group {
            clause!(self.in_groups.contains(&g), c.inv_in_port_group);
        }
        if let Some(g) = c.out_port_group {
            let groups = self
                .out_port
                .and_then(|p| self.topo.ports.get(&p))
                .map(|p| p.groups.as_slice())
                .unwrap_or(&[]);
            clause!(groups.contains(&g), c.inv_out_port_group);
        }
        if !c.in_ports.is_empty() {
            clause!(c.in_ports.contains(&self.in_port), c.inv_in_ports);
        }
        if !c.out_ports.is_empty() {
            clause!(
                self.out_port.is_some_and(|p| c.out_ports.contains(&p)),
                c.inv_out_ports
            );
        }
        if let Some(t) = c.dl_type {
            clause!(u32::from(self.m.eth_type()) == t, c.inv_dl_type);
        }
        if let Some(mac) = c.dl_src {
            let m = cond.dl_src_mask;
            clause!(
                self.m.eth_src().as_u64() & m == mac_u64(&mac) & m,
                c.inv_dl_src
            );
        }
        if let Some(mac) = c.dl_dst {
            let m = cond.dl_dst_mask;
            clause!(
                self.m.eth_dst().as_u64() & m == mac_u64(&mac) & m,
                c.inv_dl_dst
            );
        }
        if let Some(t) = c.nw_tos {
            clause!(self.m.is_ipv4() && self.m.nw_tos() == t, c.inv_nw_tos);
        }
        if let Some(p) = c.nw_proto {
            clause!(self.m.is_ipv4() && self.m.nw_proto() == p, c.inv_nw_proto);
        }
        if let Some((a, len)) = cond.nw_src {
            clause!(self.ip_in(a, len, true), c.inv_nw_src);
        }
        if let Some((a, len)) = cond.nw_dst {
            clause!(self.ip_in(a, len, false), c.inv_nw_dst);
        }
        if let Some(r) = c.tp_src {
            let inside = !self.m.peek().has_l4() || r.contains(self.m.tp_src());
            clause!(inside, c.inv_tp_src);
        }
        if let Some(r) = c.tp_dst {
            let inside = !self.m.peek().has_l4() || r.contains(self.m.tp_dst());
            clause!(inside, c.inv_tp_dst);
        }
        if let Some(g) = c.ip_addr_group_src {
            let ip = IpAddr::V4(self.m.nw_src());
            let member = self
                .topo
                .ip_addr_groups
                .get(&g)
                .is_some_and(|s| s.contains(&ip));
            clause!(self.m.is_ipv4() && member, c.inv_ip_addr_group_src);
        }
        if let Some(g) = c.ip_addr_group_dst {
            let ip = IpAddr::V4(self.m.nw_dst());
            let member = self
                .topo
                .ip_addr_groups
                .get(&g)
                .is_some_and(|s| s.contains(&ip));
            clause!(self.m.is_ipv4() && member, c.inv_ip_addr_group_dst);
        }
        if let Some(d) = c.traversed_device {
            clause!(
                self.out.tags.contains(&Tag::Device(d)),
                c.inv_traversed_device
            );
        }
        if cond.icmp_src.is_some() || cond.icmp_dst.is_some() {
            self.m.mark(field::ICMP_DATA);
            let q = crate::services::quoted(self.frame);
            if let Some(p) = cond.icmp_src {
                clause!(q.is_some_and(|q| p.contains(q.src)), c.inv_icmp_data_src_ip);
            }
            if let Some(p) = cond.icmp_dst {
                clause!(q.is_some_and(|q| p.contains(q.dst)), c.inv_icmp_data_dst_ip);
            }
        }
        !inv
    }

    fn ip_in(&mut self, a: IpAddr, len: u8, src: bool) -> bool {
        if !(self.m.is_ipv4() || self.m.is_arp()) {
            return false;
        }
        let ip = if src {
            self.m.nw_src()
        } else {
            self.m.nw_dst()
        };
        match a {
            IpAddr::V4(net) => crate::topology::Prefix::new(net, len).contains(ip),
            IpAddr::V6(_) => false,
        }
    }

    pub fn random(&mut self) -> u32 {
        self.rng.next_u32()
    }
}

fn arp_of(frame: &[u8]) -> Option<ArpRepr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()
}

fn flow_action(a: FlowAction) -> ChainVerdict {
    match a {
        FlowAction::Continue => ChainVerdict::Continue,
        FlowAction::Return => ChainVerdict::Return,
        _ => ChainVerdict::Accept,
    }
}

fn mac_u64(m: &model::MacAddr) -> u64 {
    Mac(m.0).as_u64()
}

/// Combines the verdicts of two flood branches.
fn merge(a: Verdict, b: Verdict) -> Verdict {
    use Verdict::*;
    match (a, b) {
        (ErrorDrop(r), _) | (_, ErrorDrop(r)) => ErrorDrop(r),
        (Forward, _) | (_, Forward) => Forward,
        (NotYet(m), _) | (_, NotYet(m)) => NotYet(m),
        (Consumed, x) | (x, Consumed) => x,
        (x, _) => x,
    }
}

/// The conntrack key of a packet at `device`; `reverse` swaps the ends (the
/// key a reply will carry). Only IPv4 TCP, UDP and ICMP are tracked.
pub(crate) fn conn_key(f: &Fields, device: Id, reverse: bool) -> Option<ConnKey> {
    if !f.is_ipv4() {
        return None;
    }
    let (sp, dp) = match f.nw_proto {
        Protocol::TCP | Protocol::UDP => (f.tp_src, f.tp_dst),
        Protocol::ICMP => (f.icmp_id, f.icmp_id),
        _ => return None,
    };
    Some(if reverse {
        ConnKey {
            src: f.nw_dst,
            sport: dp,
            dst: f.nw_src,
            dport: sp,
            proto: f.nw_proto,
            device,
        }
    } else {
        ConnKey {
            src: f.nw_src,
            sport: sp,
            dst: f.nw_dst,
            dport: dp,
            proto: f.nw_proto,
            device,
        }
    })
}
