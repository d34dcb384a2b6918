//! The datapath: where packets are forwarded once the simulation has decided.
//! This is the userspace implementation (AF_PACKET on the host side of VM
//! interfaces, VXLAN over a UDP socket between hosts, megaflows with an
//! exact-match cache); an eBPF fast path can implement the same trait later.

pub mod batch;
pub mod conns;
pub mod flows;
pub mod ring;
pub mod socket;
pub mod tap;

pub use batch::{BATCH, RxBatch, TxBatch};
pub use flows::{Flow, FlowId, FlowTable};
pub use ring::RingSocket;
pub use socket::{
    Features, PacketSocket, Waker, ifindex, interface_features, interface_mtu, set_buffers,
    wait_readable,
};
pub use wire::vnet::Offload;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// The agent-to-agent VXLAN port (MidoNet's default).
pub const VXLAN_OVERLAY_PORT: u16 = 6677;
/// The tunnel key reserved for flow-state messages.
pub const FLOW_STATE_KEY: u32 = 0xff_ffff;

/// One local port's traffic (a GSO super-frame counts once, as the kernel
/// counts it on a veth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Counters an operator reads to see what the datapath dropped and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx: u64,
    pub tx: u64,
    pub malformed: u64,
    pub unknown_tunnel_key: u64,
    pub no_route_to_host: u64,
    pub tunnel_rx: u64,
    pub tunnel_tx: u64,
    /// Tunnel datagrams from an address that is no tunnel-zone member's.
    pub tunnel_not_member: u64,
    /// Panics caught in a packet worker (each logged; the worker went on).
    pub worker_panics: u64,
    pub send_errors: u64,
    /// Frames refused for a hostile or inconsistent virtio-net header.
    pub bad_offload: u64,
    /// GSO super-frames cut into segments in software, and the segments.
    pub gso_split: u64,
    pub gso_segments: u64,
    /// Tunnel datagrams read coalesced (UDP_GRO), and super-frames rebuilt
    /// for local ports from tunnel segments.
    pub gro_rx: u64,
    pub gro_merged: u64,
    /// Frames larger than their path: answered with ICMP
    /// fragmentation-needed (DF set), or fragmented (DF clear).
    pub frag_needed: u64,
    pub fragmented: u64,
    pub flow_state_tx: u64,
    pub flow_state_rx: u64,
    /// New connections refused because a NAT rule had no free port.
    pub nat_exhausted: u64,
    /// Gauges, as of the last report: installed flows, tracked connections
    /// (return keys) and NAT bindings (both directions) held.
    pub flows: u64,
    pub conntrack: u64,
    pub nat: u64,
    /// Bytes of connection state (conntrack and NAT tables) and of flows.
    pub state_bytes: u64,
    pub flow_bytes: u64,
}

impl Stats {
    /// The sum of two sets of counters (workers of one host).
    pub fn plus(&self, b: &Stats) -> Stats {
        Stats {
            rx: self.rx + b.rx,
            tx: self.tx + b.tx,
            malformed: self.malformed + b.malformed,
            unknown_tunnel_key: self.unknown_tunnel_key + b.unknown_tunnel_key,
            no_route_to_host: self.no_route_to_host + b.no_route_to_host,
            tunnel_rx: self.tunnel_rx + b.tunnel_rx,
            tunnel_tx: self.tunnel_tx + b.tunnel_tx,
            tunnel_not_member: self.tunnel_not_member + b.tunnel_not_member,
            worker_panics: self.worker_panics + b.worker_panics,
            send_errors: self.send_errors + b.send_errors,
            bad_offload: self.bad_offload + b.bad_offload,
            gso_split: self.gso_split + b.gso_split,
            gso_segments: self.gso_segments + b.gso_segments,
            gro_rx: self.gro_rx + b.gro_rx,
            gro_merged: self.gro_merged + b.gro_merged,
            frag_needed: self.frag_needed + b.frag_needed,
            fragmented: self.fragmented + b.fragmented,
            flow_state_tx: self.flow_state_tx + b.flow_state_tx,
            flow_state_rx: self.flow_state_rx + b.flow_state_rx,
            nat_exhausted: self.nat_exhausted + b.nat_exhausted,
            flows: self.flows + b.flows,
            conntrack: self.conntrack + b.conntrack,
            nat: self.nat + b.nat,
            state_bytes: self.state_bytes + b.state_bytes,
            flow_bytes: self.flow_bytes + b.flow_bytes,
        }
    }
}

/// What the packet workflow needs from a datapath: ports to write, and
/// tunnels to other hosts. Sends may be queued until [`Datapath::flush`].
/// A frame travels with its [`Offload`]: what its checksum and
/// segmentation still need.
pub trait Datapath {
    /// What a bound port is to this datapath (an open socket, an ifindex).
    type Port: Send + Sync;
    /// Serves a bound port as `port_no`.
    fn add_port(&mut self, port_no: u32, port: std::sync::Arc<Self::Port>);
    fn remove_port(&mut self, port_no: u32);
    /// A local port's MTU (the largest IP packet it takes).
    fn port_mtu(&self, port_no: u32) -> Option<u32>;
    /// What a local port's interface finishes on transmit.
    fn port_features(&self, port_no: u32) -> Features;
    /// Re-reads every port's transmit offloads.
    fn refresh_features(&self);
    /// The largest inner IP packet the tunnel to `peer` carries.
    fn tunnel_mtu(&mut self, peer: Ipv4Addr) -> u16;
    /// Counts a frame received on a local port.
    fn count_rx(&mut self, port_no: u32, len: usize);
    /// Every local port's counters, by port number.
    fn port_counters(&self) -> Vec<(u32, PortCounters)>;
    /// Sends a frame out of a local port (by datapath port number); its
    /// offload goes along (the port takes partial checksums and GSO).
    fn output(&mut self, port_no: u32, frame: &[u8], off: Offload);
    /// As [`Datapath::output`], for a frame that lies in pieces (a
    /// super-frame rebuilt from tunnel segments where they were read).
    fn output_parts(&mut self, port_no: u32, parts: &[&[u8]], off: Offload);
    /// Sends a frame to another host's agent, VXLAN-encapsulated with `key`:
    /// its checksum completed, a super-frame cut into segments that fit the
    /// underlay, all of them in one message (UDP_SEGMENT).
    fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8], off: Offload);
    /// Sends whatever is queued.
    fn flush(&mut self);
    fn stats(&self) -> Stats;
    /// The counters the packet workflow moves too (drops, malformed frames).
    fn stats_mut(&mut self) -> &mut Stats;
}

/// The userspace datapath of one worker: its sockets on the bound ports, the
/// VXLAN endpoint, and the send batches (one `sendmmsg` per socket per flush).
pub struct UserspaceDatapath {
    /// Each local port's socket and its traffic, as the datapath saw it
    /// (one lookup per frame for both).
    ports: rustc_hash::FxHashMap<u32, (std::sync::Arc<PortSocket>, PortCounters)>,
    port_tx: rustc_hash::FxHashMap<u32, TxBatch>,
    tunnel: Tunnel,
    tunnel_tx: TxBatch,
    /// Whether this worker reads the tunnel port (one worker per host does).
    receives_tunnel: bool,
    /// The largest inner IP packet each peer's tunnel carries unfragmented.
    peer_mtu: rustc_hash::FxHashMap<Ipv4Addr, u16>,
    /// Segment headers of the super-frame being sent (reused).
    seg_heads: Vec<u8>,
    pub stats: Stats,
}

/// What VXLAN over IPv4 adds to an inner IP packet: outer IP, UDP, VXLAN
/// and the inner Ethernet header.
pub const TUNNEL_OVERHEAD: u16 = 20 + 8 + 8 + 14;
/// The most datagrams one UDP_SEGMENT message may carry (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// The largest UDP payload of one message.
const MAX_UDP_PAYLOAD: usize = 65507;

impl UserspaceDatapath {
    pub fn new(tunnel: Tunnel, receives_tunnel: bool) -> Self {
        UserspaceDatapath {
            ports: Default::default(),
            port_tx: Default::default(),
            tunnel,
            tunnel_tx: TxBatch::default(),
            receives_tunnel,
            peer_mtu: Default::default(),
            seg_heads: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn port(&self, port_no: u32) -> Option<std::sync::Arc<PortSocket>> {
        self.ports.get(&port_no).map(|(p, _)| p.clone())
    }

    /// The descriptors to poll: the tunnel's (or -1 if this worker does not
    /// read it), then each port's, with the port numbers in `order`.
    pub fn poll_set(&self, fds: &mut Vec<std::os::fd::RawFd>, order: &mut Vec<u32>) {
        use std::os::fd::AsRawFd;
        fds.push(if self.receives_tunnel {
            self.tunnel.sock.as_raw_fd()
        } else {
            -1
        });
        order.extend(self.ports.keys().copied());
        fds.extend(order.iter().map(|n| self.ports[n].0.as_raw_fd()));
    }
}

/// The MTU of the route to `peer` (IP_MTU on a UDP socket connected to it).
fn route_mtu(peer: Ipv4Addr, port: u16) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(SocketAddrV4::new(peer, port)).ok()?;
    let mut v: libc::c_int = 0;
    let mut n = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: IP_MTU writes one int into `v`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            &mut v as *mut libc::c_int as *mut libc::c_void,
            &mut n,
        )
    };
    (r == 0 && v > 0).then_some(v as u32)
}

impl Datapath for UserspaceDatapath {
    type Port = PortSocket;

    /// The largest inner IP packet the tunnel to `peer` carries: the route's
    /// MTU (IP_MTU of a socket connected to it) less the VXLAN overhead.
    fn tunnel_mtu(&mut self, peer: Ipv4Addr) -> u16 {
        if let Some(m) = self.peer_mtu.get(&peer) {
            return *m;
        }
        let m = route_mtu(peer, self.tunnel.port)
            .unwrap_or(1500)
            .saturating_sub(u32::from(TUNNEL_OVERHEAD))
            .clamp(576, 65535) as u16;
        self.peer_mtu.insert(peer, m);
        m
    }

    /// The MTU of a local port's interface (as opened).
    #[inline]
    fn port_mtu(&self, port_no: u32) -> Option<u32> {
        self.ports.get(&port_no).map(|(p, _)| p.mtu())
    }

    /// What a local port's interface finishes on transmit.
    #[inline]
    fn port_features(&self, port_no: u32) -> Features {
        self.ports
            .get(&port_no)
            .map_or(Features::ALL, |(p, _)| p.packet_socket().features())
    }

    /// Re-reads every port's transmit offloads (once a second).
    fn refresh_features(&self) {
        for (p, _) in self.ports.values() {
            p.packet_socket().refresh_features();
        }
    }

    fn add_port(&mut self, port_no: u32, sock: std::sync::Arc<PortSocket>) {
        self.ports.insert(port_no, (sock, PortCounters::default()));
    }

    fn remove_port(&mut self, port_no: u32) {
        self.ports.remove(&port_no);
        self.port_tx.remove(&port_no);
    }

    /// A frame of `len` bytes came in on local port `port_no`.
    #[inline]
    fn count_rx(&mut self, port_no: u32, len: usize) {
        if let Some((_, c)) = self.ports.get_mut(&port_no) {
            c.rx_packets += 1;
            c.rx_bytes += len as u64;
        }
    }

    /// Every local port's counters, by port number.
    fn port_counters(&self) -> Vec<(u32, PortCounters)> {
        self.ports.iter().map(|(n, (_, c))| (*n, *c)).collect()
    }

    fn output(&mut self, port_no: u32, frame: &[u8], off: Offload) {
        self.output_parts(port_no, &[frame], off);
    }

    fn output_parts(&mut self, port_no: u32, parts: &[&[u8]], off: Offload) {
        use std::os::fd::AsRawFd;
        let Some((sock, c)) = self.ports.get_mut(&port_no) else {
            return;
        };
        let sock = &*sock;
        c.tx_packets += 1;
        c.tx_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let head = off.header().to_bytes();
        if off.gso.is_some() {
            // After what is queued for the port, so frames keep their order.
            let b = self.port_tx.entry(port_no).or_default();
            if !b.is_empty() {
                let (ok, bad) = b.flush(sock.as_raw_fd());
                self.stats.tx += ok as u64;
                self.stats.send_errors += bad as u64;
            }
            let mut all: [&[u8]; 72] = [&[]; 72];
            let sent = if parts.len() < all.len() {
                all[0] = &head;
                all[1..=parts.len()].copy_from_slice(parts);
                batch::send_gather(sock.as_raw_fd(), &all[..=parts.len()])
            } else {
                let mut v = vec![&head[..]];
                v.extend_from_slice(parts);
                batch::send_gather(sock.as_raw_fd(), &v)
            };
            if sent {
                self.stats.tx += 1;
            } else {
                self.stats.send_errors += 1;
            }
            return;
        }
        // A single frame joins the port's batch (one system call for many).
        let full = self
            .port_tx
            .entry(port_no)
            .or_default()
            .push_with(None, 0, |b| {
                b.extend_from_slice(&head);
                for p in parts {
                    b.extend_from_slice(p);
                }
            });
        if full {
            self.flush();
        }
    }

    fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8], off: Offload) {
        let mut head = [0u8; wire::vxlan::HEADER];
        wire::vxlan::emit(&mut head, key);
        let dest = Some(SocketAddrV4::new(peer, self.tunnel.port));
        if let Some(g) = off.gso {
            // Segments that fit the tunnel: the VM's size, or less.
            let room = usize::from(self.tunnel_mtu(peer)).saturating_sub(g.ip_headers(frame));
            let mss = usize::from(g.size).min(room.max(8));
            // Each segment's headers are made here; its payload is sent from
            // where it lies in the super-frame (gathered), a message per up
            // to MAX_SEGMENTS datagrams that the kernel splits (UDP_SEGMENT).
            match wire::gso::Segmenter::new(frame, &g, mss) {
                Ok(cut) => {
                    use std::os::fd::AsRawFd;
                    let (count, size) = (cut.count(), cut.size(head.len()));
                    self.stats.gso_split += 1;
                    self.stats.gso_segments += count as u64;
                    // What is queued goes first, so frames keep their order.
                    if !self.tunnel_tx.is_empty() {
                        let (ok, bad) = self.tunnel_tx.flush(self.tunnel.sock.as_raw_fd());
                        self.stats.tunnel_tx += ok as u64;
                        self.stats.send_errors += bad as u64;
                    }
                    let per = MAX_SEGMENTS.min(MAX_UDP_PAYLOAD / size).max(1);
                    let hlen = size - mss;
                    let mut heads = std::mem::take(&mut self.seg_heads);
                    let mut first = 0;
                    while first < count {
                        let last = (first + per).min(count);
                        heads.clear();
                        let mut chunks: [&[u8]; MAX_SEGMENTS] = [&[]; MAX_SEGMENTS];
                        for (k, i) in (first..last).enumerate() {
                            chunks[k] = cut.header(i, &head, &mut heads);
                        }
                        let mut parts: [&[u8]; 2 * MAX_SEGMENTS] = [&[]; 2 * MAX_SEGMENTS];
                        for k in 0..last - first {
                            parts[2 * k] = &heads[k * hlen..(k + 1) * hlen];
                            parts[2 * k + 1] = chunks[k];
                        }
                        let seg = if last - first > 1 { size as u16 } else { 0 };
                        let n = 2 * (last - first);
                        if batch::send_parts(self.tunnel.sock.as_raw_fd(), dest, seg, &parts[..n]) {
                            self.stats.tunnel_tx += 1;
                        } else {
                            self.stats.send_errors += 1;
                        }
                        first = last;
                    }
                    self.seg_heads = heads;
                }
                Err(_) => self.stats.bad_offload += 1,
            }
            return;
        }
        let full = self.tunnel_tx.push_with(dest, 0, |b| {
            b.extend_from_slice(&head);
            b.extend_from_slice(frame);
            if let Some(c) = off.csum {
                // The peer's agent and the wire want the checksum whole.
                wire::vnet::complete_checksum(&mut b[head.len()..], c);
            }
        });
        if full {
            self.flush();
        }
    }

    fn flush(&mut self) {
        use std::os::fd::AsRawFd;
        for (n, b) in self.port_tx.iter_mut() {
            if let Some((s, _)) = self.ports.get(n)
                && !b.is_empty()
            {
                let (ok, bad) = b.flush(s.as_raw_fd());
                self.stats.tx += ok as u64;
                self.stats.send_errors += bad as u64;
            }
        }
        if !self.tunnel_tx.is_empty() {
            let (ok, bad) = self.tunnel_tx.flush(self.tunnel.sock.as_raw_fd());
            self.stats.tunnel_tx += ok as u64;
            self.stats.send_errors += bad as u64;
        }
    }

    fn stats(&self) -> Stats {
        self.stats
    }
    #[inline]
    fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}

/// The VXLAN endpoint of this host: a UDP socket (bound to the overlay port
/// on the worker that receives, ephemeral on the others).
pub struct Tunnel {
    pub sock: UdpSocket,
    /// The peers' VXLAN port.
    pub port: u16,
}

impl Tunnel {
    pub fn bind(port: u16) -> std::io::Result<Self> {
        Self::bind_local(port, port)
    }

    /// A tunnel that sends to peers' `port` from an ephemeral local port
    /// (extra workers send; one worker receives on the well-known port).
    pub fn sender(port: u16) -> std::io::Result<Self> {
        Self::bind_local(0, port)
    }

    fn bind_local(local: u16, port: u16) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local))?;
        sock.set_nonblocking(true)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        set_buffers(fd);
        // Read a peer's segmented super-frames as one buffer of equal
        // datagrams (UDP_GRO); a kernel without it hands them one by one.
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live int of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_UDP,
                batch::UDP_GRO,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        Ok(Tunnel { sock, port })
    }
}

/// A bound port's socket: plain (batched `recvmmsg`) or with an RX ring.
pub enum PortSocket {
    Plain(PacketSocket),
    Ring(RingSocket),
}

impl PortSocket {
    /// Opens `name`; `ring_retire_ms` selects a TPACKET_V3 ring.
    pub fn open(name: &str, fanout: bool, ring_retire_ms: Option<u32>) -> std::io::Result<Self> {
        Ok(match ring_retire_ms {
            Some(ms) => PortSocket::Ring(RingSocket::open(name, fanout, ms)?),
            None => PortSocket::Plain(PacketSocket::open(name, fanout)?),
        })
    }
}

impl PortSocket {
    pub fn packet_socket(&self) -> &PacketSocket {
        match self {
            PortSocket::Plain(s) => s,
            PortSocket::Ring(r) => r.socket(),
        }
    }

    pub fn mtu(&self) -> u32 {
        self.packet_socket().mtu
    }
}

impl std::os::fd::AsRawFd for PortSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PortSocket::Plain(s) => s.as_raw_fd(),
            PortSocket::Ring(r) => r.as_raw_fd(),
        }
    }
}
