//! What a simulation returns: a verdict, the actions and flow to install, the
//! packets to emit, the tags the flow depends on, and the state to write.

use crate::flow::{FieldSet, Fields};
use crate::state::{ConnKey, NatKey, StateWrite};
use crate::topology::Id;
use std::net::Ipv4Addr;
use wire::Mac;

/// Flow hard expiries, as MidoNet has them.
pub const FLOW_EXPIRY_MS: u64 = 60_000;
pub const STATEFUL_FLOW_EXPIRY_MS: u64 = 30_000;
pub const ERROR_FLOW_EXPIRY_MS: u64 = 5_000;

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    AdminDown,
    FilteredByChain(Id),
    RejectedByChain(Id),
    MulticastSource,
    HairpinDenied,
    Unplugged,
    LoopDetected,
    NotForRouter,
    UnsupportedEtherType,
    VlanOnRouter,
    NoRoute,
    BlackholeRoute,
    RejectRoute,
    TtlExpired,
    LocalDelivery,
    ArpHandled,
    OwnAddressWithoutLocalRoute,
    NoPoolMember,
    LoadBalancerDown,
    NatPortsExhausted,
    NoMacForNextHop,
}

/// The drop reasons an operator counts (`midonet_agent_drops_total`'s
/// `reason`), by [`DropReason::class`].
pub const DROP_CLASSES: [&str; 8] = [
    "rule",
    "no_route",
    "admin_down",
    "ttl_expired",
    "nat_exhausted",
    "malformed",
    "load_balancer",
    "other",
];

impl DropReason {
    /// Its index in [`DROP_CLASSES`].
    pub fn class(&self) -> usize {
        use DropReason::*;
        match self {
            FilteredByChain(_) | RejectedByChain(_) => 0,
            NoRoute | BlackholeRoute | RejectRoute | NoMacForNextHop => 1,
            AdminDown | Unplugged => 2,
            TtlExpired => 3,
            NatPortsExhausted => 4,
            Malformed | UnsupportedEtherType | VlanOnRouter => 5,
            NoPoolMember | LoadBalancerDown => 6,
            _ => 7,
        }
    }
}

/// Something the simulation needs that is not loaded yet: park the packet
/// and simulate again when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Port(Id),
    Bridge(Id),
    Router(Id),
    Chain(Id),
    LoadBalancer(Id),
    Pool(Id),
    /// An ARP request went out; the MAC of `ip` behind `router` is unknown.
    Arp {
        router: Id,
        ip: Ipv4Addr,
    },
    /// Dynamic SNAT on `device` to `ip` needs a port block (leased through
    /// the NSDB) with a free port in `ports`.
    NatBlock {
        device: Id,
        ip: Ipv4Addr,
        ports: (u16, u16),
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Install the flow and run its actions.
    #[default]
    Forward,
    /// Handled (an answer was emitted); no flow.
    Consumed,
    /// A drop flow with the normal expiry.
    Drop(DropReason),
    /// A drop flow that expires quickly (errors that may clear).
    ShortDrop(DropReason),
    /// A short drop flow, and the simulation's state writes are discarded.
    ErrorDrop(DropReason),
    NotYet(Missing),
}

impl Verdict {
    pub fn is_drop(&self) -> bool {
        matches!(
            self,
            Verdict::Drop(_) | Verdict::ShortDrop(_) | Verdict::ErrorDrop(_)
        )
    }
}

/// Where a packet leaves: a virtual exterior port, on its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Output {
    pub port: Id,
    /// The host the port is bound to; the caller outputs locally when it is
    /// itself, and tunnels with `tunnel_key` otherwise.
    pub host: Option<Id>,
    pub tunnel_key: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    SetEthSrc(Mac),
    SetEthDst(Mac),
    SetNwSrc(Ipv4Addr),
    SetNwDst(Ipv4Addr),
    SetTtl(u8),
    SetTpSrc(u16),
    SetTpDst(u16),
    SetIcmpId(u16),
    /// Rewrite the connection quoted inside an ICMP error (reverse NAT).
    SetIcmpQuoteSrc(Ipv4Addr, u16),
    SetIcmpQuoteDst(Ipv4Addr, u16),
    PushVlan(u16),
    PopVlan,
    Output(Output),
}

impl std::fmt::Display for Action {
    /// As a flow dump shows it: `set_nw_src=10.0.0.1`, `output=PORT@HOST`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::SetEthSrc(m) => write!(f, "set_eth_src={m}"),
            Action::SetEthDst(m) => write!(f, "set_eth_dst={m}"),
            Action::SetNwSrc(a) => write!(f, "set_nw_src={a}"),
            Action::SetNwDst(a) => write!(f, "set_nw_dst={a}"),
            Action::SetTtl(t) => write!(f, "set_ttl={t}"),
            Action::SetTpSrc(p) => write!(f, "set_tp_src={p}"),
            Action::SetTpDst(p) => write!(f, "set_tp_dst={p}"),
            Action::SetIcmpId(i) => write!(f, "set_icmp_id={i}"),
            Action::SetIcmpQuoteSrc(a, p) => write!(f, "set_icmp_quote_src={a}:{p}"),
            Action::SetIcmpQuoteDst(a, p) => write!(f, "set_icmp_quote_dst={a}:{p}"),
            Action::PushVlan(v) => write!(f, "push_vlan={v}"),
            Action::PopVlan => write!(f, "pop_vlan"),
            Action::Output(o) => match o.host {
                Some(h) => write!(f, "output={}@{h} key={}", o.port, o.tunnel_key),
                None => write!(f, "output={} key={}", o.port, o.tunnel_key),
            },
        }
    }
}

/// A packet the simulation generated (ARP reply or request, ICMP, DHCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emit {
    pub output: Output,
    pub frame: Vec<u8>,
}

/// What the flow's validity depends on; a change to any of these removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    Device(Id),
    /// The learned port of a MAC (and its absence: a flooded flow).
    MacPort {
        bridge: Id,
        vlan: u16,
        mac: Mac,
    },
    BridgeArp(Id),
    Route(Id),
    DstIp {
        router: Id,
        ip: Ipv4Addr,
    },
    Arp {
        router: Id,
        ip: Ipv4Addr,
    },
    ConnTrack(ConnKey),
    Nat(NatKey),
}

/// The datapath flow: the packet's fields under the mask of what was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    pub key: Fields,
    pub mask: FieldSet,
    pub expiry_ms: u64,
    /// ICMP ids or payloads were read: no datapath flow, every packet comes up.
    pub userspace_only: bool,
}

/// What one step of a trace found, structured (`midonet trace -o json`
/// reads these, not the text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    PortIngress,
    PortEgress,
    Bridge,
    /// The bridge's MAC table sent the frame to `port`.
    MacForward {
        port: Id,
    },
    Flood,
    Router,
    /// The route chosen (its next-hop port, if any).
    Route {
        route: Id,
        port: Option<Id>,
    },
    NoRoute {
        dst: Ipv4Addr,
    },
    /// A rule matched: its chain, its position there (1-based) and id.
    Rule {
        chain: Id,
        chain_name: String,
        position: usize,
        rule: Id,
        action: String,
    },
    /// A NAT binding chosen (or found): the address and port before and after.
    Nat {
        dnat: bool,
        from: (Ipv4Addr, u16),
        to: (Ipv4Addr, u16),
    },
    /// The outcome.
    Result(Verdict),
    /// Any other step (ARP, ICMP answers, DHCP, load balancers...).
    Note,
}

/// One step of a trace (`midonet trace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    pub device: Option<Id>,
    pub step: Step,
    pub what: String,
}

/// Everything a simulation produced. Reused across simulations to avoid
/// allocating on the hot path: [`Outcome::clear`] keeps the capacity.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub verdict: Verdict,
    pub actions: Vec<Action>,
    pub emits: Vec<Emit>,
    pub flow: Option<FlowSpec>,
    pub tags: Vec<Tag>,
    pub writes: Vec<StateWrite>,
    pub trace: Vec<TraceStep>,
    /// The live trace requests this packet matched (its walk is in `trace`).
    pub traced: Vec<Id>,
}

impl Outcome {
    pub fn clear(&mut self) {
        self.verdict = Verdict::Forward;
        self.actions.clear();
        self.emits.clear();
        self.flow = None;
        self.tags.clear();
        self.writes.clear();
        self.trace.clear();
        self.traced.clear();
    }

    /// The outputs of a forwarding verdict.
    pub fn outputs(&self) -> impl Iterator<Item = &Output> {
        self.actions.iter().filter_map(|a| match a {
            Action::Output(o) => Some(o),
            _ => None,
        })
    }
}
