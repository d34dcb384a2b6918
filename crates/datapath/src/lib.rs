//! The datapath: where packets are forwarded once the simulation has decided.
//! This is the userspace implementation (AF_PACKET on the host side of VM
//! interfaces, VXLAN over a UDP socket between hosts, megaflows with an
//! exact-match cache); an eBPF fast path can implement the same trait later.

pub mod batch;
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
}

/// What the packet workflow needs from a datapath: ports to read and write,
/// and tunnels to other hosts.
pub trait Datapath {
    /// Sends a frame out of a local port (by datapath port number).
    fn output(&mut self, port_no: u32, frame: &[u8]);
    /// Sends a frame to another host's agent, VXLAN-encapsulated with `key`.
    fn tunnel(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8]);
    fn stats(&self) -> Stats;
}

/// The VXLAN endpoint of this host.
pub struct Tunnel {
    pub sock: UdpSocket,
    pub port: u16,
    buf: Vec<u8>,
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
        Ok(Tunnel {
            sock,
            port,
            buf: vec![0u8; 65536],
        })
    }

    pub fn send(&mut self, peer: Ipv4Addr, key: u32, frame: &[u8]) -> std::io::Result<()> {
        let n = wire::vxlan::HEADER + frame.len();
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        wire::vxlan::emit(&mut self.buf, key);
        self.buf[wire::vxlan::HEADER..n].copy_from_slice(frame);
        self.sock
            .send_to(&self.buf[..n], SocketAddrV4::new(peer, self.port))
            .map(|_| ())
    }

    /// One datagram: (source, key, inner frame range in `buf`), or `None`.
    pub fn recv<'b>(
        &self,
        buf: &'b mut [u8],
    ) -> std::io::Result<Option<(Ipv4Addr, u32, &'b [u8])>> {
        match self.sock.recv_from(buf) {
            Ok((n, from)) => {
                let src = match from {
                    std::net::SocketAddr::V4(a) => *a.ip(),
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                match wire::VxlanPacket::new_checked(&buf[..n]) {
                    Ok(v) => {
                        let key = v.vni();
                        Ok(Some((src, key, &buf[wire::vxlan::HEADER..n])))
                    }
                    Err(_) => Ok(Some((src, u32::MAX, &buf[..0]))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
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
