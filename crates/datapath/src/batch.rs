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

/// Points `msgs[i]` at `bufs[i]` through `iov[i]`, with `names(i)` as its
/// address (null: none). The headers live on the caller's stack: a batch
/// costs no allocation.
fn headers(
    bufs: &mut [Vec<u8>],
    iov: &mut [libc::iovec; BATCH],
    msgs: &mut [libc::mmsghdr; BATCH],
    mut names: impl FnMut(usize) -> *mut libc::sockaddr_in,
) {
    for (i, b) in bufs.iter_mut().enumerate().take(BATCH) {
        iov[i] = libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
        let h = &mut msgs[i].msg_hdr;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        let name = names(i);
        h.msg_name = name as *mut libc::c_void;
        h.msg_namelen = if name.is_null() {
            0
        } else {
            std::mem::size_of::<libc::sockaddr_in>() as u32
        };
        msgs[i].msg_len = 0;
    }
}

/// Zeroed iovecs and message headers for one batch.
fn zeroed_headers() -> ([libc::iovec; BATCH], [libc::mmsghdr; BATCH]) {
    // SAFETY: all-zero iovecs and message headers are valid values.
    unsafe { (std::mem::zeroed(), std::mem::zeroed()) }
}

impl RxBatch {
    /// Reads up to [`BATCH`] datagrams or frames without blocking; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let (mut iov, mut msgs) = zeroed_headers();
        let addrs = &mut self.addrs;
        headers(&mut self.bufs, &mut iov, &mut msgs, |i| &mut addrs[i]);
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
        let (mut sent, mut failed) = (0usize, 0usize);
        let mut start = 0;
        while start < self.n {
            let n = (self.n - start).min(BATCH);
            // SAFETY: an all-zero sockaddr_in is valid.
            let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
            for (a, d) in addrs.iter_mut().zip(&self.dests[start..start + n]) {
                if let Some(d) = d {
                    a.sin_family = libc::AF_INET as u16;
                    a.sin_port = d.port().to_be();
                    a.sin_addr.s_addr = u32::from(*d.ip()).to_be();
                }
            }
            let (mut iov, mut msgs) = zeroed_headers();
            let dests = &self.dests[start..start + n];
            headers(&mut self.bufs[start..start + n], &mut iov, &mut msgs, |i| {
                if dests[i].is_some() {
                    &mut addrs[i]
                } else {
                    std::ptr::null_mut()
                }
            });
            let mut done = 0;
            while done < n {
                // SAFETY: `msgs[done..n]` are valid headers over live buffers.
                let r =
                    unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
                if r <= 0 {
                    // Skip the message that failed (a full buffer drops it, as a NIC would).
                    failed += 1;
                    done += 1;
                } else {
                    sent += r as usize;
                    done += r as usize;
                }
            }
            start += n;
        }
        self.n = 0;
        (sent, failed)
    }
}
