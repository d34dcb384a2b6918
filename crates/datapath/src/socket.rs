//! AF_PACKET sockets on the host side of VM interfaces (veth/tap), and the
//! UDP socket that carries VXLAN between hosts.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// `PACKET_VNET_HDR` (linux/if_packet.h): a virtio-net header before every
/// frame read or written, so partial checksums and GSO super-frames keep
/// what they are instead of being forwarded as if complete.
const PACKET_VNET_HDR: libc::c_int = 15;

/// A raw packet socket bound to one interface, non-blocking. It sees every
/// frame the interface receives (promiscuous) and none it sends. Every
/// frame comes and goes with a virtio-net header (`wire::vnet`).
pub struct PacketSocket {
    fd: OwnedFd,
    pub ifindex: u32,
    /// The interface's MTU when the socket was opened.
    pub mtu: u32,
    name: String,
    /// What the interface takes on transmit ([`Features`] bits), re-read
    /// by [`PacketSocket::refresh_features`]: an operator may switch
    /// offloads off with ethtool while the port is bound.
    features: std::sync::atomic::AtomicU8,
}

/// Transmit offloads of an interface (ethtool's tx-checksumming and
/// tcp-segmentation-offload): what the datapath may leave to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Frames with a partial checksum are finished by the interface.
    pub csum: bool,
    /// TCP super-frames are cut by the interface.
    pub tso: bool,
}

impl Features {
    pub const ALL: Features = Features {
        csum: true,
        tso: true,
    };
    fn bits(self) -> u8 {
        u8::from(self.csum) | u8::from(self.tso) << 1
    }
    fn from_bits(b: u8) -> Self {
        Features {
            csum: b & 1 != 0,
            tso: b & 2 != 0,
        }
    }
}

// linux/sockios.h, linux/ethtool.h
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GTSO: u32 = 0x1e;

/// The transmit offloads of interface `name` (legacy ethtool get
/// commands); what cannot be read is taken as on: the kernel then finishes
/// in software whatever the device cannot.
pub fn interface_features(name: &str) -> Features {
    let Ok(fd) = ioctl_socket() else {
        return Features::ALL;
    };
    let get = |cmd: u32| -> bool {
        let Ok(mut ifr) = ifreq(name) else {
            return true;
        };
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        let mut v = EthtoolValue { cmd, data: 0 };
        ifr.ifr_ifru.ifru_data = &mut v as *mut EthtoolValue as *mut libc::c_char;
        // SAFETY: SIOCETHTOOL reads the name and the command, and writes
        // `data` of the live value ifr_data points at.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
        r < 0 || v.data != 0
    };
    Features {
        csum: get(ETHTOOL_GTXCSUM),
        tso: get(ETHTOOL_GTSO),
    }
}

/// A socket to address interface ioctls to.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An ifreq naming interface `name`.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: a zeroed ifreq is valid; the name is copied in below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name",
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(ifr)
}

/// The MTU of interface `name` (SIOCGIFMTU).
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let mut ifr = ifreq(name)?;
    let fd = ioctl_socket()?;
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu in `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) })?;
    // SAFETY: the kernel filled the mtu member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

impl PacketSocket {
    /// Opens a socket on `name`. With `fanout`, the socket joins that
    /// interface's PACKET_FANOUT_HASH group: the kernel spreads flows over the
    /// group's sockets by a symmetric flow hash, so both directions of a
    /// connection reach the same socket index on every interface.
    pub fn open(name: &str, fanout: bool) -> io::Result<Self> {
        Self::open_with(name, fanout, |_| Ok(()))
    }

    /// As [`PacketSocket::open`], with `setup` run on the socket before it is
    /// bound (where ring options must be set).
    pub fn open_with(
        name: &str,
        fanout: bool,
        setup: impl FnOnce(RawFd) -> io::Result<()>,
    ) -> io::Result<Self> {
        let ifindex = ifindex(name)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket takes no packets until bind(2) names the
        // protocol, so neither the ring's setup nor the bind has to unhook a
        // running socket (each unhooking waits for an RCU grace period,
        // milliseconds on a VM, and a port is not served until they end).
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh, valid descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mtu = interface_mtu(name)?;
        let s = PacketSocket {
            fd,
            ifindex,
            mtu,
            name: name.to_string(),
            features: std::sync::atomic::AtomicU8::new(interface_features(name).bits()),
        };
        let one: libc::c_int = 1;
        // Before any ring: the kernel refuses to change it once one is set.
        s.setsockopt(libc::SOL_PACKET, PACKET_VNET_HDR, &one)?;
        // Transmit straight to the driver, and do not read our own transmissions back.
        s.setsockopt(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)?;
        s.setsockopt(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
        set_buffers(s.fd.as_raw_fd());
        setup(s.fd.as_raw_fd())?;
        // SAFETY: zeroed sockaddr_ll is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a properly initialised sockaddr_ll of the given size.
        cvt(unsafe {
            libc::bind(
                s.fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        // SAFETY: zeroed packet_mreq is valid; fields set below.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex as i32;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        s.setsockopt(libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)?;
        if fanout {
            // One group per interface: its id is the ifindex (unique in the netns).
            let arg: libc::c_int = (ifindex & 0xffff) as libc::c_int
                | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
            s.setsockopt(libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
        }
        Ok(s)
    }

    pub fn features(&self) -> Features {
        Features::from_bits(self.features.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Reads the interface's transmit offloads again.
    pub fn refresh_features(&self) {
        let f = interface_features(&self.name).bits();
        self.features.store(f, std::sync::atomic::Ordering::Relaxed);
    }

    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` points to a live value of the size we pass.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                v as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as u32,
            )
        })
        .map(|_| ())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Large socket buffers absorb bursts while the worker is busy: the *FORCE
/// options (root) pass the netns's rmem_max/wmem_max; plain ones are the fallback.
pub fn set_buffers(fd: RawFd) {
    let size: libc::c_int = 8 << 20;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let p = &size as *const libc::c_int as *const libc::c_void;
        let n = std::mem::size_of::<libc::c_int>() as u32;
        // SAFETY: `p` points to a live c_int of size `n`.
        if unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, force, p, n) } != 0 {
            // SAFETY: as above.
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, n) };
        }
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns the
/// readiness flags in `ready` (same order).
pub fn wait_readable(fds: &[RawFd], ready: &mut Vec<bool>, timeout_ms: i32) -> io::Result<usize> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            ready.clear();
            ready.resize(fds.len(), false);
            return Ok(0);
        }
        return Err(e);
    }
    ready.clear();
    ready.extend(
        p.iter()
            .map(|x| x.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0),
    );
    Ok(n as usize)
}

/// An eventfd: how other threads wake the datapath loop.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain eventfd(2); owned right away.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fresh descriptor we own.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
