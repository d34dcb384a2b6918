//! The datapath: where packets are forwarded once the simulation has decided.
//! This is the userspace implementation (AF_PACKET on the host side of VM
//! interfaces, VXLAN over a UDP socket between hosts, megaflows with an
//! exact-match cache); an eBPF fast path can implement the same trait later.

pub mod batch;
pub mod conns;
pub mod flows;
pub mod ring;
pub mod socket;

pub use batch::{BATCH, RxBatch, TxBatch};
pub use flows::{Flow, FlowId, FlowTable};
pub use ring::RingSocket;
pub use socket::{PacketSocket, Waker, ifindex, set_buffers, wait_readable};

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// The agent-to-agent VXLAN port (MidoNet's default).
pub const VXLAN_OVERLAY_PORT: u16 = 6677;
/// The tunnel key reserved for flow-state messages.
pub const FLOW_STATE_KEY: u32 = 0xff_ffff;

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
    pub send_errors: u64,
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
            send_errors: self.send_errors + b.send_errors,
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
pub trait Datapath {
    /// Sends a frame out of a local port (by datapath port number).
    fn output(&mut self, port_no: u32, frame: &[u8]);
    /// Sends a frame to another host's agent, VXLAN-encapsulated with `key`.
    fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8]);
    /// Sends whatever is queued.
    fn flush(&mut self);
    fn stats(&self) -> Stats;
}

/// The userspace datapath of one worker: its sockets on the bound ports, the
/// VXLAN endpoint, and the send batches (one `sendmmsg` per socket per flush).
pub struct UserspaceDatapath {
    ports: rustc_hash::FxHashMap<u32, std::sync::Arc<PortSocket>>,
    port_tx: rustc_hash::FxHashMap<u32, TxBatch>,
    tunnel: Tunnel,
    tunnel_tx: TxBatch,
    /// Whether this worker reads the tunnel port (one worker per host does).
    receives_tunnel: bool,
    pub stats: Stats,
}

impl UserspaceDatapath {
    pub fn new(tunnel: Tunnel, receives_tunnel: bool) -> Self {
        UserspaceDatapath {
            ports: Default::default(),
            port_tx: Default::default(),
            tunnel,
            tunnel_tx: TxBatch::default(),
            receives_tunnel,
            stats: Stats::default(),
        }
    }

    pub fn add_port(&mut self, port_no: u32, sock: std::sync::Arc<PortSocket>) {
        self.ports.insert(port_no, sock);
    }

    pub fn remove_port(&mut self, port_no: u32) {
        self.ports.remove(&port_no);
        self.port_tx.remove(&port_no);
    }

    pub fn port(&self, port_no: u32) -> Option<std::sync::Arc<PortSocket>> {
        self.ports.get(&port_no).cloned()
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
        fds.extend(order.iter().map(|n| self.ports[n].as_raw_fd()));
    }
}

impl Datapath for UserspaceDatapath {
    fn output(&mut self, port_no: u32, frame: &[u8]) {
        if self.ports.contains_key(&port_no)
            && self
                .port_tx
                .entry(port_no)
                .or_default()
                .push(None, &[], frame)
        {
            self.flush();
        }
    }

    fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8]) {
        let mut head = [0u8; wire::vxlan::HEADER];
        wire::vxlan::emit(&mut head, key);
        if self.tunnel_tx.push(
            Some(SocketAddrV4::new(peer, self.tunnel.port)),
            &head,
            frame,
        ) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        use std::os::fd::AsRawFd;
        for (n, b) in self.port_tx.iter_mut() {
            if let Some(s) = self.ports.get(n)
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
        set_buffers(std::os::fd::AsRawFd::as_raw_fd(&sock));
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

impl std::os::fd::AsRawFd for PortSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PortSocket::Plain(s) => s.as_raw_fd(),
            PortSocket::Ring(r) => r.as_raw_fd(),
        }
    }
}
