//! Batched socket I/O: recvmmsg/sendmmsg, so a busy worker pays one system
//! call per batch instead of one per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

pub const BATCH: usize = 64;
const FRAME: usize = 65536;

/// Receive buffers for one batch.
pub struct RxBatch {
    pub bufs: Vec<Vec<u8>>,
    pub lens: Vec<usize>,
    pub from: Vec<Ipv4Addr>,
    addrs: Vec<libc::sockaddr_in>,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; FRAME]).collect(),
            lens: vec![0; BATCH],
            from: vec![Ipv4Addr::UNSPECIFIED; BATCH],
            // SAFETY: an all-zero sockaddr_in is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }
}

impl RxBatch {
    /// Reads up to [`BATCH`] datagrams or frames without blocking; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|i| {
                // SAFETY: an all-zero msghdr is valid; fields set below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
                h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: `msgs` points at BATCH headers whose iovecs and names are live.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for (i, m) in msgs.iter().enumerate().take(n as usize) {
            self.lens[i] = m.msg_len as usize;
            self.from[i] = Ipv4Addr::from(u32::from_be(self.addrs[i].sin_addr.s_addr));
        }
        Ok(n as usize)
    }
}

/// Frames waiting to be sent on one socket (to one or several UDP peers).
#[derive(Default)]
pub struct TxBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<Option<SocketAddrV4>>,
    n: usize,
}

impl TxBatch {
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Queues `head` + `body` (to `dest` on a UDP socket). Returns true when
    /// the batch is full and should be flushed.
    pub fn push(&mut self, dest: Option<SocketAddrV4>, head: &[u8], body: &[u8]) -> bool {
        if self.n == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(2048));
            self.dests.push(None);
        }
        let b = &mut self.bufs[self.n];
        b.clear();
        b.extend_from_slice(head);
        b.extend_from_slice(body);
        self.dests[self.n] = dest;
        self.n += 1;
        self.n >= BATCH
    }

    /// Sends everything queued; returns (sent, failed).
    pub fn flush(&mut self, fd: RawFd) -> (usize, usize) {
        if self.n == 0 {
            return (0, 0);
        }
        let n = self.n;
        let mut addrs: Vec<libc::sockaddr_in> = self.dests[..n]
            .iter()
            .map(|d| {
                // SAFETY: an all-zero sockaddr_in is valid.
                let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                if let Some(d) = d {
                    a.sin_family = libc::AF_INET as u16;
                    a.sin_port = d.port().to_be();
                    a.sin_addr.s_addr = u32::from(*d.ip()).to_be();
                }
                a
            })
            .collect();
        let mut iov: Vec<libc::iovec> = self.bufs[..n]
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: an all-zero msghdr is valid; fields set below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
                if self.dests[i].is_some() {
                    h.msg_name = &mut addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                }
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        let mut sent = 0usize;
        let mut failed = 0usize;
        while sent + failed < n {
            let off = sent + failed;
            // SAFETY: `msgs[off..n]` are valid headers over live buffers.
            let r = unsafe { libc::sendmmsg(fd, msgs[off..].as_mut_ptr(), (n - off) as u32, 0) };
            if r <= 0 {
                // Skip the message that failed (a full buffer drops it, as a NIC would).
                failed += 1;
            } else {
                sent += r as usize;
            }
        }
        self.n = 0;
        (sent, failed)
    }
}
