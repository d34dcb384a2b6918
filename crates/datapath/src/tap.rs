//! A tap device opened as a hypervisor opens it for a VM (qemu, Nova's
//! os-vif `midonet` plug): `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, with the
//! offloads the VM side takes (`TUNSETOFFLOAD`: checksum, TSO4, TSO6), so
//! frames cross in both directions with their virtio-net header, partial
//! checksums and GSO super-frames intact. The agent binds the tap's
//! interface like a veth (AF_PACKET); this is the far end.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

pub struct Tap {
    fd: OwnedFd,
}

impl Tap {
    /// Attaches to tap `name` (creating it if it does not exist, as qemu
    /// does), non-blocking; reads and writes carry a virtio-net header.
    pub fn open(name: &str) -> io::Result<Self> {
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: open(2) on a NUL-terminated path; owned right away.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = crate::socket::ifreq(name)?;
        ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        // SAFETY: TUNSETIFF reads the ifreq we pass.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap { fd })
    }

    /// Reads one frame (virtio-net header first); `Ok(0)` when none waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len()) };
        would_block_is_zero(n)
    }

    /// Writes one frame (virtio-net header first).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: writes from a live buffer of the given length.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr() as *const _, buf.len()) };
        would_block_is_zero(n)
    }
}

fn would_block_is_zero(n: isize) -> io::Result<usize> {
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(e)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
