//! The packet workflow, on its own thread: read from bound interfaces and the
//! tunnel, match the flow table, simulate misses, install flows, execute,
//! park packets that wait for ARP, and hand learned state back to the agent.

use crate::cache::Binding;
use crate::nat_leases::LeaseEvent;
use datapath::{
    Datapath, FlowTable, Offload, PortSocket, RxBatch, Stats, UserspaceDatapath, Waker,
    wait_readable,
};
use rustc_hash::{FxHashMap, FxHashSet};
use sim::{
    Action, Delta, Input, Missing, Outcome, Output, StateTables, StateWrite, Tag, Topology,
    Verdict, XorShift, simulate,
};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;
use uuid::Uuid;

/// Packets waiting for something (an ARP answer, a device) are kept this long.
const WAITING_ROOM_MS: u64 = 5_000;
const WAITING_ROOM_MAX: usize = 1024;

/// What the agent tells the worker; `P` is what a bound port is to the
/// worker's datapath.
pub enum Control<P = PortSocket> {
    /// The topology's changed entries (each worker keeps its own copy, so
    /// a change costs what it changed), and the flow tags they make stale.
    Topology {
        delta: Arc<Delta>,
        invalidate: Vec<Tag>,
    },
    /// The ports this worker serves, each with this worker's socket on it
    /// (opened by the agent in worker order, so fanout groups line up).
    Bindings(Vec<(Binding, Arc<P>)>),
    Peers(FxHashMap<Uuid, Ipv4Addr>),
    /// The bgpd links of this host's uplinks, each with this worker's
    /// socket on the near end of its veth.
    Speakers(Vec<crate::bgp::Link<P>>),
    /// Entries learned by other hosts.
    State(Vec<StateWrite>),
    /// An answer to this worker's SNAT port-block request.
    NatLease(NatLeaseUpdate),
    /// The enabled live trace requests, and the devices whose flows go
    /// (their packets must be simulated again to be matched).
    Traces(Arc<crate::trace::TraceSet>, Vec<Tag>),
    /// Forget every flow and learned entry (the benchmark's cold start).
    Flush,
    /// The installed flows, for `midonet flows` (each worker answers).
    DumpFlows(std::sync::mpsc::Sender<Vec<crate::metrics::FlowDump>>),
    /// A what-if trace of a probe from a port (one worker answers).
    Trace(
        Uuid,
        sim::probe::Probe,
        std::sync::mpsc::Sender<crate::trace::Reply>,
    ),
    Shutdown,
    /// A test's stand-in for a bug: the worker panics handling it.
    #[cfg(test)]
    Panic,
}

impl<P> Clone for Control<P> {
    fn clone(&self) -> Self {
        match self {
            Control::Topology { delta, invalidate } => Control::Topology {
                delta: delta.clone(),
                invalidate: invalidate.clone(),
            },
            Control::Bindings(b) => Control::Bindings(b.clone()),
            Control::Peers(p) => Control::Peers(p.clone()),
            Control::Speakers(l) => Control::Speakers(l.clone()),
            Control::State(w) => Control::State(w.clone()),
            Control::NatLease(u) => Control::NatLease(u.clone()),
            Control::Traces(t, tags) => Control::Traces(t.clone(), tags.clone()),
            Control::Flush => Control::Flush,
            Control::DumpFlows(tx) => Control::DumpFlows(tx.clone()),
            Control::Trace(port, probe, tx) => Control::Trace(*port, probe.clone(), tx.clone()),
            Control::Shutdown => Control::Shutdown,
            #[cfg(test)]
            Control::Panic => Control::Panic,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatLeaseUpdate {
    Granted {
        device: Uuid,
        ip: Ipv4Addr,
        block: u16,
    },
    /// No block: refuse new connections to this address for a while.
    Refused { device: Uuid, ip: Ipv4Addr },
    /// The block is someone else's now.
    Lost {
        device: Uuid,
        ip: Ipv4Addr,
        block: u16,
    },
}

/// New SNAT connections are refused this long after a lease failed.
const NAT_REFUSED_MS: u64 = 1_000;
/// A block is kept at least this long after its lease, used or not.
const NAT_BLOCK_MIN_MS: u64 = 10_000;

/// What the worker tells the agent.
#[derive(Debug)]
pub enum Event {
    Learned(StateWrite),
    Stats(usize, Stats),
    Metrics(usize, Box<crate::metrics::WorkerMetrics>),
    Lease(LeaseEvent),
    /// A live trace request's record of one packet, for the cluster.
    Trace(Uuid, Box<serde_json::Value>),
}

/// Another worker of this host: its control channel and its waker.
pub type Sibling<P> = (std::sync::mpsc::Sender<Control<P>>, Arc<Waker>);

struct LocalPort<P> {
    id: Uuid,
    sock: Arc<P>,
    binding: Binding,
}

struct Parked {
    port_no: u32,
    frame: Vec<u8>,
    off: Offload,
    missing: Missing,
    deadline: u64,
}

/// What one turn of a worker's loop reuses from the last.
#[derive(Default)]
struct Turn {
    ready: Vec<bool>,
    fds: Vec<std::os::fd::RawFd>,
    order: Vec<u32>,
    last_tick: u64,
}

/// The packet workflow of one worker over its datapath `D`: the events it
/// handles (a frame from a port, a tunnel buffer, a control message, a
/// tick) are methods, so a test drives it without sockets.
pub struct Worker<D: Datapath = UserspaceDatapath> {
    me: Uuid,
    /// Where this worker keeps its connection state across restarts.
    state_file: std::path::PathBuf,
    /// Connection state changed since it was last saved.
    state_dirty: bool,
    /// Log every simulation step by step (MIDONET_TRACE=1; for debugging).
    trace: bool,
    /// The live trace requests and their budgets on this host.
    traces: Arc<crate::trace::TraceSet>,
    /// This worker's index; worker 0 also receives tunnel traffic and
    /// reports port state.
    index: usize,
    topo: Topology,
    state: StateTables,
    flows: FlowTable,
    ports: FxHashMap<u32, LocalPort<D::Port>>,
    by_id: FxHashMap<Uuid, u32>,
    by_key: FxHashMap<u32, u32>,
    /// bgpd links by their port number, and the uplinks they serve.
    speakers: FxHashMap<u32, crate::bgp::Link<D::Port>>,
    to_speaker: FxHashMap<Uuid, u32>,
    next_port_no: u32,
    dp: D,
    peers: FxHashMap<Uuid, Ipv4Addr>,
    /// The tunnel-zone members' addresses: the only senders accepted on
    /// the VXLAN socket.
    members: FxHashSet<Ipv4Addr>,
    waiting: Vec<Parked>,
    /// A flow hit's actions (reused, so a hit allocates nothing).
    hit_actions: Vec<Action>,
    /// SNAT port blocks asked for and not answered yet.
    lease_pending: FxHashSet<(Uuid, Ipv4Addr)>,
    /// When each owned block was leased.
    leased_at: FxHashMap<(Uuid, Ipv4Addr, u16), u64>,
    /// Receive buffers (taken while a batch is processed).
    rx: Option<RxBatch>,
    rng: XorShift,
    out: Outcome,
    /// Simulations, their latency and their drops, for the metrics.
    meter: sim::meter::Meter,
    start: Instant,
    /// Milliseconds since `start`, as of this turn.
    now: u64,
    ctl: Receiver<Control<D::Port>>,
    /// Control messages read early (see `take_queued_state`), handled at the
    /// next drain.
    deferred: Vec<Control<D::Port>>,
    waker: Arc<Waker>,
    /// The other workers of this host: state pushed by other hosts goes to
    /// them directly, queued before the data packets it belongs to.
    siblings: Vec<Sibling<D::Port>>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl<D: Datapath> Worker<D> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: Uuid,
        index: usize,
        state_file: std::path::PathBuf,
        dp: D,
        ctl: Receiver<Control<D::Port>>,
        waker: Arc<Waker>,
        siblings: Vec<Sibling<D::Port>>,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Self {
        Worker {
            me,
            index,
            state_file,
            state_dirty: false,
            trace: std::env::var_os("MIDONET_TRACE").is_some(),
            traces: Arc::default(),
            topo: Topology::default(),
            state: StateTables {
                nat_leasing: true,
                ..Default::default()
            },
            flows: FlowTable::default(),
            ports: FxHashMap::default(),
            by_id: FxHashMap::default(),
            by_key: FxHashMap::default(),
            speakers: FxHashMap::default(),
            to_speaker: FxHashMap::default(),
            next_port_no: 1,
            dp,
            peers: FxHashMap::default(),
            members: FxHashSet::default(),
            waiting: Vec::new(),
            hit_actions: Vec::new(),
            lease_pending: Default::default(),
            leased_at: Default::default(),
            rx: Some(RxBatch::default()),
            rng: XorShift((me.as_u128() as u64).wrapping_add(index as u64) | 1),
            out: Outcome::default(),
            meter: Default::default(),
            start: Instant::now(),
            now: 0,
            ctl,
            deferred: Vec::new(),
            waker,
            siblings,
            events,
        }
    }

    /// The time of the event being handled (ms): set by the I/O loop once
    /// per turn, by a test as it likes.
    fn now(&self) -> u64 {
        self.now
    }

    fn recover(&mut self, panic: Box<dyn std::any::Any + Send>) {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        self.dp.stats_mut().worker_panics += 1;
        tracing::error!(
            worker = self.index,
            panics = self.dp.stats_mut().worker_panics,
            "datapath worker panicked ({why}); its flows are dropped and it goes on"
        );
        self.flows.clear();
        self.waiting.clear();
    }

    fn tick(&mut self, now: u64) {
        self.flows.expire(now);
        self.dp.refresh_features();
        let before = self.state.conntrack.len() + self.state.nat.len();
        // Connection state lives while a flow needs it, then idles out.
        let flows = &self.flows;
        self.state.expire_unreferenced(now, |t| flows.has_tag(t));
        self.state_dirty |= before != self.state.conntrack.len() + self.state.nat.len();
        self.waiting.retain(|p| p.deadline > now);
        self.release_unused_blocks(now);
        self.save_state();
        let mut stats = self.dp.stats();
        stats.flows = self.flows.len() as u64;
        stats.conntrack = self.state.conntrack.len() as u64;
        stats.nat = self.state.nat.len() as u64;
        stats.state_bytes = self.state.connection_bytes() as u64;
        stats.flow_bytes = self.flows.bytes() as u64;
        let _ = self.events.send(Event::Stats(self.index, stats));
        let m = crate::metrics::WorkerMetrics {
            ports: self
                .dp
                .port_counters()
                .into_iter()
                .filter_map(|(n, c)| Some((self.ports.get(&n)?.id, c)))
                .collect(),
            meter: self.meter.clone(),
            flow_drops: self.flows.drops,
            flow_hits: self.flows.hits,
            flow_misses: self.flows.misses,
            parked: self.waiting.len() as u64,
            nat_blocks: self.leased_at.len() as u64,
        };
        let _ = self.events.send(Event::Metrics(self.index, Box::new(m)));
    }

    /// A probe simulated as if it came in on `port`, traced; its state
    /// writes and flow are reported, not applied.
    fn trace_probe(&mut self, port: Uuid, probe: &sim::probe::Probe) -> crate::trace::Reply {
        self.take_queued_state();
        let frame = probe.frame();
        let mut out = Outcome::default();
        // Its own generator: the live one's sequence is not disturbed.
        let mut rng = XorShift(self.rng.0 ^ 0x9e37_79b9_7f4a_7c15 | 1);
        let input = Input {
            in_port: port,
            frame: &frame,
            now: self.now(),
            trace: true,
        };
        simulate(&self.topo, &self.state, &input, &mut rng, &mut out);
        crate::trace::Reply::of(&out, &self.topo)
    }

    /// What `midonet flows` shows of this worker's flows.
    fn dump_flows(&self) -> Vec<crate::metrics::FlowDump> {
        let now = self.now();
        let dump = |key: &sim::Fields, mask, actions: Vec<String>| crate::metrics::FlowDump {
            worker: self.index,
            in_port: self.ports.get(&key.in_port).map(|p| p.id),
            matches: key
                .describe(mask)
                .into_iter()
                .filter(|(k, _)| *k != "in_port")
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            actions,
            drop: None,
            packets: None,
            bytes: None,
            age_ms: None,
            expires_in_ms: 0,
            tags: 0,
            connection: false,
        };
        let general = self.flows.dump().map(|f| crate::metrics::FlowDump {
            drop: f
                .drop
                .and_then(|c| sim::DROP_CLASSES.get(usize::from(c)).copied()),
            packets: Some(f.packets),
            bytes: Some(f.bytes),
            age_ms: Some(now.saturating_sub(f.installed)),
            expires_in_ms: f.expires.saturating_sub(now),
            tags: f.tags.len(),
            ..dump(
                &f.key,
                f.mask,
                f.actions.iter().map(ToString::to_string).collect(),
            )
        });
        let connections = self
            .flows
            .dump_connections(now)
            .map(|c| crate::metrics::FlowDump {
                expires_in_ms: c.expires.saturating_sub(now),
                tags: c.tags,
                connection: true,
                ..dump(
                    &c.key,
                    c.mask,
                    c.actions.iter().map(ToString::to_string).collect(),
                )
            });
        general.chain(connections).collect()
    }

    /// Gives back owned SNAT blocks no live binding uses (once their
    /// connections have idled out), so addresses do not fill with leases.
    fn release_unused_blocks(&mut self, now: u64) {
        if self.leased_at.is_empty() {
            return;
        }
        let mut used: rustc_hash::FxHashSet<(Uuid, Ipv4Addr, u16)> = Default::default();
        for k in self.state.nat.keys() {
            if k.kind == sim::NatKind::RevSnat {
                used.insert((k.device, k.dst, k.dport / sim::NAT_BLOCK_PORTS));
            }
        }
        let unused: Vec<(Uuid, Ipv4Addr, u16)> = self
            .leased_at
            .iter()
            .filter(|(k, t)| now >= **t + NAT_BLOCK_MIN_MS && !used.contains(*k))
            .map(|(k, _)| *k)
            .collect();
        for (device, ip, block) in unused {
            self.drop_block(device, ip, block);
            self.lease(|worker| LeaseEvent::Unused {
                worker,
                device,
                ip,
                block,
            });
        }
    }

    /// Tells the agent's lease task something about this worker's blocks.
    fn lease(&self, e: impl FnOnce(usize) -> LeaseEvent) {
        let _ = self.events.send(Event::Lease(e(self.index)));
    }

    fn drop_block(&mut self, device: Uuid, ip: Ipv4Addr, block: u16) {
        self.leased_at.remove(&(device, ip, block));
        if let Some(v) = self.state.nat_blocks.get_mut(&(device, ip)) {
            v.retain(|b| *b != block);
            if v.is_empty() {
                self.state.nat_blocks.remove(&(device, ip));
            }
        }
    }

    fn on_nat_lease(&mut self, u: NatLeaseUpdate) {
        let now = self.now();
        let (device, ip) = match u {
            NatLeaseUpdate::Granted { device, ip, block } => {
                let v = self.state.nat_blocks.entry((device, ip)).or_default();
                if !v.contains(&block) {
                    v.push(block);
                }
                self.leased_at.insert((device, ip, block), now);
                (device, ip)
            }
            NatLeaseUpdate::Refused { device, ip } => {
                self.state
                    .nat_refused
                    .insert((device, ip), now + NAT_REFUSED_MS);
                (device, ip)
            }
            NatLeaseUpdate::Lost { device, ip, block } => {
                self.drop_block(device, ip, block);
                return;
            }
        };
        self.lease_pending.remove(&(device, ip));
        self.retry(
            |m| matches!(m, Missing::NatBlock { device: d, ip: i, .. } if *d == device && *i == ip),
        );
    }

    /// Writes the live conntrack and NAT entries (the flow-state message
    /// format) so that a restarted agent re-imports them: a `kill -9` of the
    /// agent does not break established connections.
    fn save_state(&mut self) {
        if !self.state_dirty {
            return;
        }
        self.state_dirty = false;
        let tmp = self.state_file.with_extension("tmp");
        let written = std::fs::File::create(&tmp).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            crate::flowstate::write_file(&mut w, self.me, self.connection_state())?;
            std::io::Write::flush(&mut w)
        });
        match written {
            Ok(()) => {
                let _ = std::fs::rename(&tmp, &self.state_file);
            }
            Err(e) => tracing::warn!(error = %e, "connection state not saved"),
        }
    }

    fn drain_control(&mut self) -> bool {
        let mut deferred = std::mem::take(&mut self.deferred).into_iter();
        loop {
            let c = match deferred.next() {
                Some(c) => c,
                None => match self.ctl.try_recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            match c {
                Control::Shutdown => return false,
                #[cfg(test)]
                Control::Panic => panic!("a bug the test planted"),
                Control::Flush => {
                    self.flows.clear();
                    // Learned entries go; leased port blocks stay this worker's.
                    self.state = StateTables {
                        nat_leasing: true,
                        nat_blocks: std::mem::take(&mut self.state.nat_blocks),
                        ..Default::default()
                    };
                    self.waiting.clear();
                }
                Control::Topology { delta, invalidate } => {
                    self.topo.apply(&delta);
                    let n = self.flows.invalidate(&invalidate);
                    tracing::debug!(flows = n, tags = invalidate.len(), "topology update");
                    self.retry(|_| true);
                }
                Control::Traces(set, devices) => {
                    self.topo.traces = set.requests.clone();
                    self.traces = set;
                    self.flows.invalidate(&devices);
                    self.retry(|_| true);
                }
                Control::Bindings(b) => self.set_bindings(b),
                Control::Speakers(links) => self.set_speakers(links),
                Control::DumpFlows(reply) => {
                    let _ = reply.send(self.dump_flows());
                }
                Control::Trace(port, probe, reply) => {
                    let _ = reply.send(self.trace_probe(port, &probe));
                }
                Control::NatLease(u) => self.on_nat_lease(u),
                Control::Peers(p) => {
                    self.members = p.values().copied().collect();
                    self.peers = p;
                }
                Control::State(writes) => {
                    self.apply_state(&writes, self.now());
                    self.retry(|m| matches!(m, Missing::Arp { .. }));
                }
            }
        }
        true
    }

    fn set_bindings(&mut self, bound: Vec<(Binding, Arc<D::Port>)>) {
        // Forget what is no longer bound here (or bound differently).
        let stale: Vec<u32> = self
            .ports
            .iter()
            .filter(|(_, p)| {
                !bound
                    .iter()
                    .any(|(b, s)| *b == p.binding && Arc::ptr_eq(s, &p.sock))
            })
            .map(|(n, _)| *n)
            .collect();
        for n in stale {
            if let Some(p) = self.ports.remove(&n) {
                self.by_id.remove(&p.id);
                self.by_key.remove(&p.binding.tunnel_key);
                self.dp.remove_port(n);
                self.flows.invalidate(&[Tag::Device(p.id)]);
            }
        }
        for (b, sock) in bound {
            if self.by_id.contains_key(&b.port) {
                continue;
            }
            let n = self.next_port_no;
            self.next_port_no += 1;
            self.by_id.insert(b.port, n);
            self.by_key.insert(b.tunnel_key, n);
            tracing::debug!(worker = self.index, port = %b.port, port_no = n, "serving port");
            // A port that moved here: its previous host has its connections'
            // state (worker 0 receives tunnel traffic, so it asks).
            if self.index == 0
                && let Some(prev) = b.previous_host.filter(|h| *h != self.me)
            {
                match self.peers.get(&prev).copied() {
                    Some(ip) => {
                        tracing::info!(port = %b.port, from = %prev, "asking the previous host for connection state");
                        self.dp.tunnel(
                            ip,
                            datapath::FLOW_STATE_KEY,
                            &crate::flowstate::encode_request(self.me),
                            Offload::NONE,
                        );
                    }
                    None => {
                        tracing::warn!(port = %b.port, from = %prev, "previous host has no tunnel address; its connection state is not fetched")
                    }
                }
            }
            self.dp.add_port(n, sock.clone());
            self.ports.insert(
                n,
                LocalPort {
                    id: b.port,
                    sock,
                    binding: b,
                },
            );
        }
    }

    fn set_speakers(&mut self, links: Vec<crate::bgp::Link<D::Port>>) {
        let stale: Vec<u32> = self
            .speakers
            .iter()
            .filter(|(_, l)| !links.iter().any(|n| n.same(l)))
            .map(|(n, _)| *n)
            .collect();
        for n in stale {
            if let Some(l) = self.speakers.remove(&n) {
                self.to_speaker.remove(&l.uplink);
                self.dp.remove_port(n);
            }
        }
        for l in links {
            if self.speakers.values().any(|x| x.same(&l)) {
                continue;
            }
            let n = self.next_port_no;
            self.next_port_no += 1;
            tracing::debug!(worker = self.index, uplink = %l.uplink, port_no = n, "serving a bgpd link");
            self.dp.add_port(n, l.sock.clone());
            self.to_speaker.insert(l.uplink, n);
            self.speakers.insert(n, l);
        }
    }

    /// bgpd's frames go out of its uplink as they are; an uplink's frames
    /// for bgpd go to it (see [`crate::bgp::steer`]). True when the frame
    /// was bgpd's only.
    fn steer(&mut self, port_no: u32, frame: &[u8], off: Offload) -> bool {
        if let Some(l) = self.speakers.get(&port_no) {
            if let Some(n) = self.by_id.get(&l.uplink).copied() {
                let mtu = self.dp.port_mtu(n).unwrap_or(u32::MAX);
                self.out_of_port(n, frame, off, mtu, None);
            }
            return true;
        }
        let Some(n) = self
            .ports
            .get(&port_no)
            .and_then(|p| self.to_speaker.get(&p.id))
            .copied()
        else {
            return false;
        };
        let Some(l) = self.speakers.get(&n) else {
            return false;
        };
        let Some(f) = sim::Fields::parse(frame, port_no) else {
            return false;
        };
        let to = crate::bgp::steer(&f, l.address, &l.peers);
        if to != crate::bgp::Steer::Datapath {
            let mtu = self.dp.port_mtu(n).unwrap_or(u32::MAX);
            self.out_of_port(n, frame, off, mtu, None);
        }
        to == crate::bgp::Steer::Speaker
    }

    /// A frame from a VM, after its virtio-net header: the flow table, else
    /// the simulation. A header that does not match its frame is counted
    /// and the frame dropped.
    fn on_port_frame(&mut self, port_no: u32, buf: &mut [u8]) {
        self.dp.stats_mut().rx += 1;
        self.dp
            .count_rx(port_no, buf.len().saturating_sub(wire::vnet::HEADER));
        let Ok(h) = wire::vnet::VnetHeader::parse(buf) else {
            self.dp.stats_mut().malformed += 1;
            return;
        };
        let frame = &mut buf[wire::vnet::HEADER..];
        let off = match Offload::from_header(&h, frame) {
            Ok(o) => o,
            Err(e) => {
                self.dp.stats_mut().bad_offload += 1;
                tracing::debug!(port_no, error = %e, "frame dropped");
                return;
            }
        };
        if !self.speakers.is_empty() && self.steer(port_no, frame, off) {
            return;
        }
        self.process(port_no, frame, off);
    }

    fn process(&mut self, port_no: u32, frame: &[u8], off: Offload) {
        let now = self.now();
        let Some(fields) = sim::Fields::parse(frame, port_no) else {
            self.dp.stats_mut().malformed += 1;
            return;
        };
        let mut actions = std::mem::take(&mut self.hit_actions);
        let hit = self.flows.lookup(&fields, now, frame.len(), &mut actions);
        if hit {
            self.execute(&actions, port_no, frame, off);
        }
        self.hit_actions = actions;
        if !hit {
            self.simulate(port_no, frame, off);
        }
    }

    fn simulate(&mut self, port_no: u32, frame: &[u8], off: Offload) {
        let Some(port) = self.ports.get(&port_no).map(|p| p.id) else {
            return;
        };
        self.take_queued_state();
        let now = self.now();
        let mut out = std::mem::take(&mut self.out);
        // The simulation sees the frame as the wire would: what it quotes
        // (ICMP errors) carries a complete checksum.
        let completed;
        let sim_frame = match off.csum {
            Some(c) => {
                let mut f = frame.to_vec();
                wire::vnet::complete_checksum(&mut f, c);
                completed = f;
                &completed[..]
            }
            None => frame,
        };
        let input = Input {
            in_port: port,
            frame: sim_frame,
            now,
            trace: self.trace,
        };
        let (topo, state, rng) = (&self.topo, &self.state, &mut self.rng);
        self.meter
            .run(|| simulate(topo, state, &input, rng, &mut out));
        let drop_class = self.meter.verdict(&out.verdict);
        for step in &out.trace {
            tracing::info!(device = ?step.device, "trace: {}", step.what);
        }
        let traced = !out.traced.is_empty() && self.record_traced(port, sim_frame, &out);
        if !out.writes.is_empty() {
            self.apply_state(&out.writes, now);
            for w in &out.writes {
                if matches!(
                    w,
                    StateWrite::MacLearned { .. }
                        | StateWrite::ArpLearned { .. }
                        | StateWrite::Ip4Mac { .. }
                ) {
                    let _ = self.events.send(Event::Learned(w.clone()));
                }
            }
        }
        // Connection state goes to the hosts that will see the connection,
        // ahead of the packet itself, and to this host's other workers: a
        // translated reply hashes to whichever worker its new 5-tuple picks.
        if out.writes.iter().any(is_connection_state) {
            if !self.siblings.is_empty() {
                let conn: Vec<StateWrite> = out
                    .writes
                    .iter()
                    .filter(|w| is_connection_state(w))
                    .cloned()
                    .collect();
                self.to_siblings(&conn);
            }
            let hosts = crate::flowstate::interested_hosts(
                &self.topo,
                self.me,
                port,
                out.outputs().map(|o| o.port),
            );
            if !hosts.is_empty()
                && let Some(msg) = crate::flowstate::encode(self.me, &out.writes)
            {
                for h in hosts {
                    if let Some(ip) = self.peers.get(&h).copied() {
                        self.dp
                            .tunnel(ip, datapath::FLOW_STATE_KEY, &msg, Offload::NONE);
                        self.dp.stats_mut().flow_state_tx += 1;
                    }
                }
            }
        }
        // What it learned goes to every peer in-band as well as to the
        // cluster: a host whose packet waits for this ARP answer gets it
        // even while the cluster is down.
        // (Most simulations learn nothing: no allocation for those.)
        let learned = |w: &&StateWrite| crate::flowstate::is_learned(w);
        if out.writes.iter().any(|w| learned(&w))
            && let Some(msg) = crate::flowstate::encode(
                self.me,
                &out.writes
                    .iter()
                    .filter(learned)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        {
            for (h, ip) in &self.peers {
                if *h != self.me {
                    self.dp
                        .tunnel(*ip, datapath::FLOW_STATE_KEY, &msg, Offload::NONE);
                    self.dp.stats_mut().flow_state_tx += 1;
                }
            }
        }
        for e in &out.emits {
            self.deliver(&e.output, &e.frame, Offload::NONE, None);
        }
        if out.verdict == Verdict::Drop(sim::DropReason::NatPortsExhausted) {
            self.dp.stats_mut().nat_exhausted += 1;
            // Rate-limited by the drop flow: one line per refused flow.
            tracing::warn!(port = %port, "NAT port exhaustion: new connection refused");
        }
        match out.verdict {
            Verdict::Forward | Verdict::Drop(_) | Verdict::ShortDrop(_) | Verdict::ErrorDrop(_) => {
                // A traced packet's flow is not cached: the next packet
                // is matched (and traced) again, until the budget is spent.
                if let Some(spec) = &out.flow
                    && !spec.userspace_only
                    && !traced
                {
                    let mut key = spec.key.clone();
                    key.in_port = port_no;
                    let actions = if out.verdict == Verdict::Forward {
                        out.actions.clone()
                    } else {
                        Vec::new()
                    };
                    self.flows.install_at(
                        spec.mask,
                        key,
                        actions,
                        out.tags.clone(),
                        now + spec.expiry_ms,
                        now,
                        drop_class,
                    );
                }
                if out.verdict == Verdict::Forward {
                    let actions = out.actions.clone();
                    self.execute(&actions, port_no, frame, off);
                }
            }
            Verdict::NotYet(missing) => {
                if let Missing::NatBlock { device, ip, ports } = missing
                    && self.lease_pending.insert((device, ip))
                {
                    self.lease(|worker| LeaseEvent::Wanted {
                        worker,
                        device,
                        ip,
                        ports,
                    });
                }
                if self.waiting.len() < WAITING_ROOM_MAX {
                    self.waiting.push(Parked {
                        port_no,
                        frame: frame.to_vec(),
                        off,
                        missing,
                        deadline: now + WAITING_ROOM_MS,
                    });
                }
            }
            Verdict::Consumed => {}
        }
        // Packets parked for an ARP answer this simulation learned go again.
        let learned: Vec<Missing> = out
            .writes
            .iter()
            .filter_map(|w| match w {
                StateWrite::ArpLearned { router, ip, .. } => Some(Missing::Arp {
                    router: *router,
                    ip: *ip,
                }),
                _ => None,
            })
            .collect();
        self.out = out;
        if !learned.is_empty() {
            self.retry(|m| learned.contains(m));
        }
    }

    /// Sends the record of a packet that matched live trace requests, for
    /// each whose budget on this host is not spent; a spent one is matched
    /// no more. `true` when a record went.
    fn record_traced(&mut self, port: Uuid, frame: &[u8], out: &Outcome) -> bool {
        let Some(fields) = sim::Fields::parse(frame, 0) else {
            return false;
        };
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut sent = false;
        for &request in &out.traced {
            if self.traces.take(request) {
                let r =
                    crate::trace::record(request, self.me, port, time_ms, &fields, out, &self.topo);
                let _ = self.events.send(Event::Trace(request, Box::new(r)));
                sent = true;
            } else {
                self.topo.traces.remove(request);
            }
        }
        sent
    }

    fn retry(&mut self, which: impl Fn(&Missing) -> bool) {
        let (go, keep): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|p| which(&p.missing));
        self.waiting = keep;
        // Through the flow table first: once one parked packet of a flow has
        // been simulated and installed, the others of that flow just hit it.
        for p in go {
            self.process(p.port_no, &p.frame, p.off);
        }
    }

    /// Runs a flow's actions on a frame from local port `in_port`.
    fn execute(&mut self, actions: &[Action], in_port: u32, frame: &[u8], off: Offload) {
        let from = Some((in_port, frame));
        // The common case: no rewrites, one output.
        if let [Action::Output(o)] = actions {
            let o = *o;
            self.deliver(&o, frame, off, from);
            return;
        }
        for (o, mut f) in sim::actions::execute(actions, frame) {
            // VLAN pushes and pops move the L4 header; rewritten addresses
            // change a partial checksum's pseudo-header.
            let off = off.shifted(f.len() as isize - frame.len() as isize);
            if let Some(c) = off.csum {
                wire::vnet::refresh_partial(&mut f, c);
            }
            self.deliver(&o, &f, off, from);
        }
    }

    /// Sends a frame where the simulation said. `from` is the local port
    /// and frame (as received) it came from, where an ICMP
    /// fragmentation-needed goes when the frame is too large for its path.
    fn deliver(&mut self, o: &Output, frame: &[u8], off: Offload, from: Option<(u32, &[u8])>) {
        if o.host == Some(self.me) {
            if let Some(n) = self.by_id.get(&o.port).copied() {
                let mtu = self.dp.port_mtu(n).unwrap_or(u32::MAX);
                self.out_of_port(n, frame, off, mtu, from);
            }
            return;
        }
        match o.host.and_then(|h| self.peers.get(&h)).copied() {
            Some(ip) => {
                let mtu = u32::from(self.dp.tunnel_mtu(ip));
                // A super-frame is cut to fit the tunnel; a single frame
                // that does not fit is answered or fragmented first.
                if off.gso.is_none() && ip_len(frame) > mtu {
                    for f in self.fragments_of(frame, off, mtu, from) {
                        self.dp.tunnel(ip, o.tunnel_key, &f, Offload::NONE);
                    }
                    return;
                }
                self.dp.tunnel(ip, o.tunnel_key, frame, off)
            }
            None => self.dp.stats_mut().no_route_to_host += 1,
        }
    }

    /// Out of local port `n` (MTU `mtu`): as it is when it fits; a
    /// super-frame whose segments do not fit is cut in software; a single
    /// frame that does not fit is answered or fragmented.
    fn out_of_port(
        &mut self,
        n: u32,
        frame: &[u8],
        off: Offload,
        mtu: u32,
        from: Option<(u32, &[u8])>,
    ) {
        let can = self.dp.port_features(n);
        match off.gso {
            Some(g) => {
                let hdrs = g.ip_headers(frame) as u32;
                let fits = u32::from(g.size) + hdrs <= mtu;
                if fits && can.tso && can.csum {
                    self.dp.output(n, frame, off);
                    return;
                }
                // Segments that fit, finished here: the interface would not.
                let mss = u32::from(g.size).min(mtu.saturating_sub(hdrs)).max(8) as usize;
                let mut cut = Vec::new();
                match wire::gso::segment(frame, &g, mss, &[], &mut cut) {
                    Ok(c) => {
                        self.dp.stats_mut().gso_split += 1;
                        self.dp.stats_mut().gso_segments += c.count as u64;
                        for seg in cut.chunks(c.size) {
                            self.dp.output(n, seg, Offload::NONE);
                        }
                    }
                    Err(_) => self.dp.stats_mut().bad_offload += 1,
                }
            }
            None if ip_len(frame) > mtu => {
                for f in self.fragments_of(frame, off, mtu, from) {
                    self.dp.output(n, &f, Offload::NONE);
                }
            }
            None => match off.csum {
                Some(c) if !can.csum => {
                    let mut f = frame.to_vec();
                    wire::vnet::complete_checksum(&mut f, c);
                    self.dp.output(n, &f, Offload::NONE);
                }
                _ => self.dp.output(n, frame, off),
            },
        }
    }

    /// A single frame larger than `mtu` (IP bytes): with DF set, the sender
    /// is told (ICMP fragmentation-needed, to the port it came from) and
    /// nothing is returned; without, its fragments. Counted either way.
    fn fragments_of(
        &mut self,
        frame: &[u8],
        off: Offload,
        mtu: u32,
        from: Option<(u32, &[u8])>,
    ) -> Vec<Vec<u8>> {
        let mut f = frame.to_vec();
        if let Some(c) = off.csum {
            wire::vnet::complete_checksum(&mut f, c);
        }
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        if wire::gso::fragment_ipv4(&f, mtu as usize, &mut out, &mut spans).is_ok() {
            self.dp.stats_mut().fragmented += 1;
            return spans.iter().map(|&(s, n)| out[s..s + n].to_vec()).collect();
        }
        self.dp.stats_mut().frag_needed += 1;
        if let Some((in_port, orig)) = from
            && let Some(fields) = sim::Fields::parse(orig, in_port)
            && let Some(reply) = sim::services::icmp_error(
                orig,
                &fields,
                fields.eth_dst,
                fields.nw_dst,
                wire::icmpv4::DST_UNREACHABLE,
                wire::icmpv4::unreachable::FRAG_NEEDED,
                mtu.min(65535) as u16,
            )
        {
            self.dp.output(in_port, &reply, Offload::NONE);
        }
        Vec::new()
    }

    /// A buffer read from the tunnel: one datagram, or (UDP_GRO) several of
    /// `seg` bytes each, the last maybe shorter. Consecutive TCP segments
    /// for one port that takes super-frames are merged back into one
    /// (where they lie in `buf`: no copy).
    /// A tunnel datagram from `from`, or a GRO buffer of datagrams `seg`
    /// bytes each (0: one datagram).
    fn on_tunnel_buffer(&mut self, from: Ipv4Addr, buf: &[u8], seg: u16) {
        // Only tunnel-zone members may send us frames and flow state.
        if !self.members.contains(&from) {
            self.dp.stats_mut().tunnel_not_member += 1;
            return;
        }
        let seg = if seg == 0 {
            buf.len().max(1)
        } else {
            usize::from(seg)
        };
        if buf.len() > seg {
            self.dp.stats_mut().gro_rx += 1;
        }
        let mut merge = wire::gso::Coalescer::default();
        let mut to: Option<u32> = None;
        for d in buf.chunks(seg) {
            let Some((n, frame)) = self.on_tunnel_datagram(d) else {
                continue;
            };
            if to == Some(n) && merge.push(frame) {
                continue;
            }
            self.send_merged(&mut merge, &mut to);
            let mtu = self.dp.port_mtu(n).unwrap_or(u32::MAX);
            let can = self.dp.port_features(n);
            if can.tso && can.csum && ip_len(frame) <= mtu && merge.push(frame) {
                to = Some(n);
            } else {
                self.out_of_port(n, frame, Offload::NONE, mtu, None);
            }
        }
        self.send_merged(&mut merge, &mut to);
    }

    fn send_merged(&mut self, merge: &mut wire::gso::Coalescer<'_>, to: &mut Option<u32>) {
        let Some(n) = to.take() else {
            return;
        };
        if merge.segments() > 1 {
            self.dp.stats_mut().gro_merged += 1;
        }
        if let Some((m, off)) = merge.finish() {
            if let [one] = m.parts {
                // A segment that merged with nothing: no list to build.
                self.dp.output_parts(n, &[m.head, one], off);
            } else {
                let mut parts: Vec<&[u8]> = Vec::with_capacity(m.parts.len() + 1);
                parts.push(m.head);
                parts.extend_from_slice(m.parts);
                self.dp.output_parts(n, &parts, off);
            }
        }
        merge.clear();
    }

    /// A datagram from another host: its key names the local port; no
    /// simulation. Returns the port and frame to deliver, if any.
    fn on_tunnel_datagram<'d>(&mut self, datagram: &'d [u8]) -> Option<(u32, &'d [u8])> {
        self.dp.stats_mut().tunnel_rx += 1;
        let Ok(v) = wire::VxlanPacket::new_checked(datagram) else {
            self.dp.stats_mut().malformed += 1;
            return None;
        };
        let key = v.vni();
        if key == datapath::FLOW_STATE_KEY {
            match crate::flowstate::decode(v.payload()) {
                Some(m) if m.request => self.answer_state_request(m.sender),
                Some(m) => {
                    self.dp.stats_mut().flow_state_rx += 1;
                    if m.last {
                        tracing::info!(from = %m.sender, "connection state of a rebound port received");
                    }
                    self.apply_state(&m.writes, self.now());
                    self.to_siblings(&m.writes);
                    // Packets parked for an ARP answer another host got.
                    if m.writes
                        .iter()
                        .any(|w| matches!(w, StateWrite::ArpLearned { .. }))
                    {
                        self.retry(|w| matches!(w, Missing::Arp { .. }));
                    }
                }
                None => self.dp.stats_mut().malformed += 1,
            }
            return None;
        }
        let frame = &datagram[wire::vxlan::HEADER..];
        if wire::EthernetFrame::new_checked(frame).is_err() {
            self.dp.stats_mut().malformed += 1;
            return None;
        }
        match self.by_key.get(&key).copied() {
            Some(n) => Some((n, frame)),
            None => {
                self.dp.stats_mut().unknown_tunnel_key += 1;
                None
            }
        }
    }
}

impl<D: Datapath> Worker<D> {
    /// Takes state writes (a simulation's, a sibling's, another host's) into
    /// the tables: flows that depended on what changed go, and changed
    /// connection state is saved at the next tick.
    fn apply_state(&mut self, writes: &[StateWrite], now: u64) {
        self.state_dirty |= writes.iter().any(is_connection_state);
        // A binding that now translates elsewhere: the flows made from the
        // old one would send the new connection's packets the old way.
        for w in writes {
            if let StateWrite::Nat(k, b) = w
                && self.state.nat.get(k).is_some_and(|(old, _)| old != b)
            {
                let had_flow = self.flows.forget_binding(k);
                tracing::debug!(key = ?k, to = ?b, had_flow, "NAT binding replaced");
            }
        }
        self.state.apply(writes, now);
        let tags: Vec<Tag> = writes.iter().filter_map(tag_of).collect();
        self.flows.invalidate(&tags);
    }

    /// Applies connection state a sibling queued since the last drain. A
    /// batch read after that drain may hold a reply whose state was queued
    /// ahead of it (the sibling handled the packet it answers); simulating
    /// it without would send it on untranslated. Other messages wait for
    /// the next drain, in order.
    fn take_queued_state(&mut self) {
        let mut applied = false;
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Control::State(writes) => {
                    self.apply_state(&writes, self.now());
                    applied = true;
                }
                other => self.deferred.push(other),
            }
        }
        // Packets parked for an ARP answer are retried at the next drain,
        // as when the state arrives there.
        if applied {
            self.deferred.push(Control::State(Vec::new()));
        }
    }

    /// Connection state for this host's other workers, queued ahead of the
    /// packets it concerns.
    fn to_siblings(&self, writes: &[StateWrite]) {
        for (tx, waker) in &self.siblings {
            let _ = tx.send(Control::State(writes.to_vec()));
            waker.wake();
        }
    }

    /// Every tracked connection and NAT binding this worker holds (with the
    /// sibling sharing, every one of this host).
    fn connection_state(&self) -> impl Iterator<Item = StateWrite> + '_ {
        self.state
            .conntrack
            .keys()
            .map(|k| StateWrite::ConnTrack(*k))
            .chain(
                self.state
                    .nat
                    .iter()
                    .map(|(k, (b, _))| StateWrite::Nat(*k, *b)),
            )
    }

    /// A host a port was rebound to asks for the state this one held: all
    /// of it goes, in bounded messages (the receiver keeps what it needs
    /// until idle expiry).
    fn answer_state_request(&mut self, from: Uuid) {
        let Some(ip) = self.peers.get(&from).copied() else {
            return;
        };
        let frames = crate::flowstate::encode_all(self.me, self.connection_state());
        tracing::info!(to = %from, messages = frames.len(), "sending connection state for a rebound port");
        for f in frames {
            self.dp
                .tunnel(ip, datapath::FLOW_STATE_KEY, &f, Offload::NONE);
            self.dp.stats_mut().flow_state_tx += 1;
        }
    }
}

/// The length of a frame's IP packet (0 for what is not IP).
fn ip_len(frame: &[u8]) -> u32 {
    wire::vnet::ip_len(frame) as u32
}

/// Conntrack and NAT entries: what is saved, shared and pushed to peers.
fn is_connection_state(w: &StateWrite) -> bool {
    matches!(w, StateWrite::ConnTrack(_) | StateWrite::Nat(..))
}

/// The flow tag a state change invalidates.
fn tag_of(w: &StateWrite) -> Option<Tag> {
    Some(match *w {
        StateWrite::MacLearned {
            bridge, vlan, mac, ..
        } => Tag::MacPort { bridge, vlan, mac },
        StateWrite::ArpLearned { router, ip, .. } => Tag::Arp { router, ip },
        StateWrite::Ip4Mac { bridge, .. } => Tag::BridgeArp(bridge),
        StateWrite::ConnTrack(k) => Tag::ConnTrack(k),
        StateWrite::Nat(k, _) => Tag::Nat(k),
    })
}

/// The worker's I/O loop on the userspace datapath: poll its sockets and
/// hand what they read to the packet workflow.
impl Worker<UserspaceDatapath> {
    /// Runs until told to stop. A panic while handling a batch is caught,
    /// counted and logged, the flows are dropped (they are simulated again)
    /// and the worker goes on: a bug hit by one packet costs that batch,
    /// not the host's datapath.
    pub fn run(mut self) {
        let mut t = Turn::default();
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.turn(&mut t))) {
                Ok(true) => {}
                Ok(false) => break,
                Err(p) => self.recover(p),
            }
        }
        // What changed since the last tick survives a clean stop too.
        self.save_state();
        tracing::info!("datapath worker stopped");
    }

    /// One poll and what it made ready; false once told to stop.
    fn turn(&mut self, t: &mut Turn) -> bool {
        t.fds.clear();
        t.order.clear();
        t.fds.push(self.waker.as_raw_fd());
        self.dp.poll_set(&mut t.fds, &mut t.order);
        if let Err(e) = wait_readable(&t.fds, &mut t.ready, 100) {
            tracing::error!(error = %e, "poll failed");
            std::thread::sleep(std::time::Duration::from_millis(10));
            return true;
        }
        self.now = self.start.elapsed().as_millis() as u64;
        if t.ready.first() == Some(&true) {
            self.waker.drain();
        }
        if !self.drain_control() {
            return false;
        }
        let mut rx = self.rx.take().unwrap_or_default();
        if t.ready.get(1) == Some(&true) {
            match rx.recv(t.fds[1]) {
                Ok(n) => {
                    for i in 0..n {
                        if rx.truncated[i] {
                            self.dp.stats_mut().malformed += 1;
                            continue;
                        }
                        self.on_tunnel_buffer(rx.from[i], &rx.bufs[i][..rx.lens[i]], rx.segs[i]);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "tunnel receive failed"),
            }
        }
        for (i, port_no) in t.order.iter().enumerate() {
            if t.ready.get(i + 2) != Some(&true) {
                continue;
            }
            let Some(sock) = self.dp.port(*port_no) else {
                continue;
            };
            match &*sock {
                PortSocket::Ring(ring) => {
                    ring.drain(|f| self.on_port_frame(*port_no, f));
                    self.dp.stats_mut().malformed +=
                        ring.truncated.swap(0, std::sync::atomic::Ordering::Relaxed);
                }
                PortSocket::Plain(_) => match rx.recv(t.fds[i + 2]) {
                    Ok(n) => {
                        for j in 0..n {
                            if rx.truncated[j] {
                                self.dp.stats_mut().malformed += 1;
                                continue;
                            }
                            self.on_port_frame(*port_no, &mut rx.bufs[j][..rx.lens[j]]);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, port_no, "receive failed"),
                },
            }
        }
        self.rx = Some(rx);
        self.dp.flush();
        let now = self.now();
        if now >= t.last_tick + 1000 {
            t.last_tick = now;
            self.tick(now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::{Features, PortCounters};
    use wire::ethernet::{EtherType, EthernetRepr, Mac};
    use wire::ipv4::{Ipv4Repr, Protocol};

    /// A datapath that only records what the workflow sends: the worker's
    /// packet handling, tested without sockets.
    #[derive(Default)]
    struct Recorder {
        ports: FxHashMap<u32, PortCounters>,
        sent: Vec<(u32, Vec<u8>)>,
        tunneled: Vec<(Ipv4Addr, u32, Vec<u8>)>,
        stats: Stats,
    }

    impl Datapath for Recorder {
        /// The interface's name.
        type Port = String;
        fn add_port(&mut self, port_no: u32, _: Arc<String>) {
            self.ports.insert(port_no, PortCounters::default());
        }
        fn remove_port(&mut self, port_no: u32) {
            self.ports.remove(&port_no);
        }
        fn port_mtu(&self, port_no: u32) -> Option<u32> {
            self.ports.contains_key(&port_no).then_some(1450)
        }
        fn port_features(&self, _: u32) -> Features {
            Features::ALL
        }
        fn refresh_features(&self) {}
        fn tunnel_mtu(&mut self, _: Ipv4Addr) -> u16 {
            1450
        }
        fn count_rx(&mut self, port_no: u32, len: usize) {
            if let Some(c) = self.ports.get_mut(&port_no) {
                c.rx_packets += 1;
                c.rx_bytes += len as u64;
            }
        }
        fn port_counters(&self) -> Vec<(u32, PortCounters)> {
            self.ports.iter().map(|(n, c)| (*n, *c)).collect()
        }
        fn output(&mut self, port_no: u32, frame: &[u8], _: Offload) {
            self.sent.push((port_no, frame.to_vec()));
        }
        fn output_parts(&mut self, port_no: u32, parts: &[&[u8]], _: Offload) {
            self.sent.push((port_no, parts.concat()));
        }
        fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8], _: Offload) {
            self.tunneled.push((peer, key, frame.to_vec()));
        }
        fn flush(&mut self) {}
        fn stats(&self) -> Stats {
            self.stats
        }
        fn stats_mut(&mut self) -> &mut Stats {
            &mut self.stats
        }
    }

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    /// A UDP datagram from 10.0.0.`from` to 10.0.0.`to`, after a virtio-net
    /// header saying nothing is left to do.
    fn udp(from: u8, to: u8) -> Vec<u8> {
        let payload = b"payload!";
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, from), Ipv4Addr::new(10, 0, 0, to));
        let mut f = vec![0u8; wire::vnet::HEADER + 34 + 8 + payload.len()];
        let e = &mut f[wire::vnet::HEADER..];
        EthernetRepr {
            src: mac(from),
            dst: mac(to),
            ethertype: EtherType::IPV4,
            vlan: None,
        }
        .emit(e);
        Ipv4Repr {
            src,
            dst,
            protocol: Protocol::UDP,
            payload_len: 8 + payload.len(),
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: false,
        }
        .emit(&mut e[14..]);
        wire::UdpRepr {
            src_port: 4000,
            dst_port: 5000,
        }
        .emit(&mut e[34..], payload, src, dst);
        f
    }

    struct Bench {
        w: Worker<Recorder>,
        ctl: std::sync::mpsc::Sender<Control<String>>,
        /// Local ports 1 and 2 (vm1, vm2); vm3 is on another host.
        no: [u32; 2],
        key3: u32,
        h2: Ipv4Addr,
        bound: Vec<(Binding, Arc<String>)>,
        _dir: tempfile::TempDir,
    }

    /// One bridge with vm1 and vm2 bound here and vm3 on host h2.
    fn bench() -> Bench {
        use serde_json::json;
        let me = Uuid::new_v4();
        let h2 = Uuid::new_v4();
        let bridge = Uuid::new_v4();
        let mut o = model::Objects::default();
        o.bridges
            .push(serde_json::from_value(json!({"id": bridge})).unwrap());
        let mut ids = Vec::new();
        for (i, host) in [(1, me), (2, me), (3, h2)] {
            let id = Uuid::new_v4();
            o.ports.push(
                serde_json::from_value(json!({"id": id, "type": "Bridge", "deviceId": bridge,
                    "hostId": host, "interfaceName": format!("tap{i}"), "tunnelKey": 100 + i}))
                .unwrap(),
            );
            ids.push(id);
        }
        let dir = tempfile::tempdir().unwrap();
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
        let (ev_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let mut w = Worker::new(
            me,
            0,
            dir.path().join("flowstate-0.bin"),
            Recorder::default(),
            ctl_rx,
            Arc::new(Waker::new().unwrap()),
            Vec::new(),
            ev_tx,
        );
        w.topo = Topology::build(&o);
        let h2_ip = Ipv4Addr::new(192, 0, 2, 2);
        let bind = |i: usize| {
            let b = Binding {
                port: ids[i],
                interface: format!("tap{}", i + 1),
                tunnel_key: 101 + i as u32,
                previous_host: None,
            };
            let name = Arc::new(b.interface.clone());
            (b, name)
        };
        ctl_tx
            .send(Control::Peers([(h2, h2_ip)].into_iter().collect()))
            .unwrap();
        let bound = vec![bind(0), bind(1)];
        ctl_tx.send(Control::Bindings(bound.clone())).unwrap();
        assert!(w.drain_control());
        let no = [w.by_id[&ids[0]], w.by_id[&ids[1]]];
        Bench {
            w,
            ctl: ctl_tx,
            no,
            key3: 103,
            h2: h2_ip,
            bound,
            _dir: dir,
        }
    }

    #[test]
    fn a_frame_floods_then_its_flow_forwards_without_a_simulation() {
        let mut b = bench();
        let [p1, p2] = b.no;
        // vm1 -> vm2, whose MAC the bridge has not learned: flooded to vm2
        // here and to vm3 through the tunnel to h2, with vm3's key.
        b.w.on_port_frame(p1, &mut udp(1, 2));
        assert_eq!(b.w.dp.sent.len(), 1);
        assert_eq!(b.w.dp.sent[0].0, p2);
        assert_eq!(b.w.dp.sent[0].1, udp(1, 2)[wire::vnet::HEADER..]);
        let to_h2: Vec<_> = b.w.dp.tunneled.iter().map(|t| (t.0, t.1)).collect();
        // And vm1's MAC, learned, goes to h2 as flow state.
        assert_eq!(
            to_h2,
            [(b.h2, datapath::FLOW_STATE_KEY), (b.h2, b.key3)],
            "{to_h2:?}"
        );
        // vm2 answers: vm1's MAC was learned on port 1, so only port 1.
        b.w.dp.sent.clear();
        b.w.dp.tunneled.clear();
        b.w.on_port_frame(p2, &mut udp(2, 1));
        assert_eq!(b.w.dp.sent.iter().map(|s| s.0).collect::<Vec<_>>(), [p1]);
        assert!(
            b.w.dp
                .tunneled
                .iter()
                .all(|t| t.1 == datapath::FLOW_STATE_KEY),
            "nothing but flow state to h2"
        );
        // The same again: the installed flow forwards it, no simulation.
        let sims = b.w.meter.simulations;
        b.w.on_port_frame(p2, &mut udp(2, 1));
        assert_eq!(b.w.meter.simulations, sims, "a flow hit");
        assert_eq!(b.w.dp.sent.len(), 2);
        assert_eq!(b.w.dp.sent[1], b.w.dp.sent[0]);
        assert_eq!(b.w.dp.stats.rx, 3);
        // An hour later (time is the test's) the flow has expired at the
        // tick: the next frame is simulated again.
        b.w.now = 3_600_000;
        b.w.tick(b.w.now);
        assert_eq!(b.w.flows.len(), 0, "expired");
        b.w.on_port_frame(p2, &mut udp(2, 1));
        assert_eq!(b.w.meter.simulations, sims + 1);
        assert_eq!(b.w.dp.sent.len(), 3);
        // vm1 unbound: the flows through its port go, so vm2's next frame
        // to it is simulated again, and not sent to the stale port.
        let keep = b.bound[1].clone();
        b.ctl.send(Control::Bindings(vec![keep])).unwrap();
        assert!(b.w.drain_control());
        assert!(!b.w.dp.ports.contains_key(&p1));
        let sims = b.w.meter.simulations;
        b.w.on_port_frame(p2, &mut udp(2, 1));
        assert_eq!(b.w.meter.simulations, sims + 1, "simulated again");
        assert_eq!(b.w.dp.sent.len(), 3, "nothing out of an unbound port");
    }

    #[test]
    fn tunneled_frames_reach_their_port_only_from_members() {
        let mut b = bench();
        let [p1, _] = b.no;
        let inner = &udp(3, 1)[wire::vnet::HEADER..];
        let mut d = vec![0u8; wire::vxlan::HEADER + inner.len()];
        wire::vxlan::emit(&mut d, 101);
        d[wire::vxlan::HEADER..].copy_from_slice(inner);
        // From a stranger: counted, dropped.
        b.w.on_tunnel_buffer(Ipv4Addr::new(198, 51, 100, 7), &d, 0);
        assert!(b.w.dp.sent.is_empty());
        assert_eq!(b.w.dp.stats.tunnel_not_member, 1);
        // From h2: to vm1's port, as it came (the sender simulated it).
        b.w.on_tunnel_buffer(b.h2, &d, 0);
        assert_eq!(b.w.dp.sent, [(p1, inner.to_vec())]);
        // An unknown key and a runt are counted, not sent.
        wire::vxlan::emit(&mut d, 999);
        b.w.on_tunnel_buffer(b.h2, &d, 0);
        b.w.on_tunnel_buffer(b.h2, &d[..5], 0);
        assert_eq!(b.w.dp.sent.len(), 1);
        assert_eq!(b.w.dp.stats.unknown_tunnel_key, 1);
        assert_eq!(b.w.dp.stats.malformed, 1);
    }

    #[test]
    fn a_hostile_vnet_header_is_counted_and_dropped() {
        let mut b = bench();
        let [p1, _] = b.no;
        let mut f = udp(1, 2);
        // GSO TCPv4 on a UDP frame, with a segment size of 0.
        f[0] = 0;
        f[1] = 1;
        let mut short = f[..4].to_vec();
        b.w.on_port_frame(p1, &mut f);
        b.w.on_port_frame(p1, &mut short);
        assert!(b.w.dp.sent.is_empty() && b.w.dp.tunneled.is_empty());
        assert_eq!(b.w.dp.stats.bad_offload + b.w.dp.stats.malformed, 2);
        assert_eq!(b.w.meter.simulations, 0);
    }

    #[test]
    fn a_panic_is_caught_counted_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
        let waker = Arc::new(Waker::new().unwrap());
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Worker::new(
            Uuid::new_v4(),
            0,
            dir.path().join("flowstate-0.bin"),
            UserspaceDatapath::new(datapath::Tunnel::sender(0).unwrap(), true),
            ctl_rx,
            waker.clone(),
            Vec::new(),
            ev_tx,
        );
        let t = std::thread::spawn(move || w.run());
        let send = |c| {
            ctl_tx.send(c).unwrap();
            waker.wake();
        };
        send(Control::Panic);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut panics = 0;
        while panics == 0 && std::time::Instant::now() < deadline {
            match ev_rx.try_recv() {
                Ok(Event::Stats(_, s)) => panics = s.worker_panics,
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        assert_eq!(panics, 1, "the panic is counted in the worker's stats");
        // It still handles messages, and stops when told.
        send(Control::Flush);
        send(Control::Shutdown);
        assert!(t.join().is_ok(), "the worker ended cleanly");
    }
}
