//! Batched socket I/O: recvmmsg/sendmmsg, so a busy worker pays one system
//! call per batch instead of one per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

pub const BATCH: usize = 64;
/// The largest frame: a 64 KiB GSO super-frame, its Ethernet header, VLAN
/// tags and virtio-net header.
const FRAME: usize = 65536 + 128;
/// `UDP_SEGMENT` and `UDP_GRO` (linux/udp.h), at level SOL_UDP.
pub const UDP_SEGMENT: libc::c_int = 103;
pub const UDP_GRO: libc::c_int = 104;
/// A control message holding one int, as CMSG_SPACE(4) lays it out.
const CMSG_INT: usize = 24;

/// Receive buffers for one batch.
pub struct RxBatch {
    pub bufs: Vec<Vec<u8>>,
    pub lens: Vec<usize>,
    pub from: Vec<Ipv4Addr>,
    /// Per datagram: the size of each coalesced segment (UDP_GRO), 0 when
    /// the datagram is a single one.
    pub segs: Vec<u16>,
    /// Per message: the kernel had more than the buffer holds.
    pub truncated: Vec<bool>,
    addrs: Vec<libc::sockaddr_in>,
    ctl: Vec<[u64; CMSG_INT / 8]>,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; FRAME]).collect(),
            lens: vec![0; BATCH],
            from: vec![Ipv4Addr::UNSPECIFIED; BATCH],
            segs: vec![0; BATCH],
            truncated: vec![false; BATCH],
            // SAFETY: an all-zero sockaddr_in is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            ctl: vec![[0; CMSG_INT / 8]; BATCH],
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
        for (m, c) in msgs.iter_mut().zip(self.ctl.iter_mut()) {
            m.msg_hdr.msg_control = c.as_mut_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_controllen = CMSG_INT;
        }
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
            self.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.segs[i] = gro_size(&m.msg_hdr);
        }
        Ok(n as usize)
    }
}

/// The segment size a UDP_GRO control message reports, or 0.
fn gro_size(h: &libc::msghdr) -> u16 {
    // SAFETY: the kernel filled msg_control up to msg_controllen; the CMSG
    // macros stay inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                return v.clamp(0, u16::MAX as libc::c_int) as u16;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

/// Frames waiting to be sent on one socket (to one or several UDP peers).
/// A message may carry several equal datagrams for the kernel to cut
/// (UDP_SEGMENT): one system call and one trip through the stack for a
/// whole segmented super-frame.
#[derive(Default)]
pub struct TxBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<Option<SocketAddrV4>>,
    segs: Vec<u16>,
    n: usize,
}

impl TxBatch {
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Queues `head` + `body` (to `dest` on a UDP socket). Returns true when
    /// the batch is full and should be flushed.
    pub fn push(&mut self, dest: Option<SocketAddrV4>, head: &[u8], body: &[u8]) -> bool {
        self.push_with(dest, 0, |b| {
            b.extend_from_slice(head);
            b.extend_from_slice(body);
        })
    }

    /// Queues a message `fill` writes into an empty buffer; `seg` > 0 asks
    /// the kernel to cut it into datagrams of `seg` bytes (UDP_SEGMENT).
    /// Returns true when the batch is full and should be flushed.
    pub fn push_with(
        &mut self,
        dest: Option<SocketAddrV4>,
        seg: u16,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        if self.n == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(2048));
            self.dests.push(None);
            self.segs.push(0);
        }
        let b = &mut self.bufs[self.n];
        b.clear();
        fill(b);
        self.dests[self.n] = dest;
        self.segs[self.n] = seg;
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
            let mut ctl = [[0u64; CMSG_INT / 8]; BATCH];
            for (i, seg) in self.segs[start..start + n].iter().enumerate() {
                if *seg > 0 {
                    segment_cmsg(&mut msgs[i].msg_hdr, &mut ctl[i], *seg);
                }
            }
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

/// Sends `parts`, one after the other, as one frame on `fd` without
/// copying them into a batch (a super-frame: the copy would cost more than
/// the system call). Returns false when the send failed.
pub fn send_gather(fd: RawFd, parts: &[&[u8]]) -> bool {
    send_parts(fd, None, 0, parts)
}

/// Sends `parts` as one message, to `dest` (a UDP socket) and cut by the
/// kernel into datagrams of `seg` bytes when `seg` > 0 (UDP_SEGMENT).
pub fn send_parts(fd: RawFd, dest: Option<SocketAddrV4>, seg: u16, parts: &[&[u8]]) -> bool {
    const MAX: usize = 160;
    if parts.len() > MAX {
        return send_parts(fd, dest, seg, &[&parts.concat()]);
    }
    // SAFETY: all-zero iovecs, address and message header are valid values.
    let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
    for (v, p) in iov.iter_mut().zip(parts) {
        *v = libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        };
    }
    // SAFETY: as above.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = iov.as_mut_ptr();
    h.msg_iovlen = parts.len();
    // SAFETY: as above.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    if let Some(d) = dest {
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_port = d.port().to_be();
        addr.sin_addr.s_addr = u32::from(*d.ip()).to_be();
        h.msg_name = &mut addr as *mut libc::sockaddr_in as *mut libc::c_void;
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    }
    let mut ctl = [0u64; CMSG_INT / 8];
    if seg > 0 {
        segment_cmsg(&mut h, &mut ctl, seg);
    }
    // SAFETY: the iovecs, address and control message point at live
    // buffers the kernel only reads.
    unsafe { libc::sendmsg(fd, &h, 0) >= 0 }
}

/// Attaches a UDP_SEGMENT control message (segment size `seg`) to `h`.
fn segment_cmsg(h: &mut libc::msghdr, buf: &mut [u64; CMSG_INT / 8], seg: u16) {
    h.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: `buf` is CMSG_INT bytes, enough for one header and a u16;
    // CMSG_FIRSTHDR points into it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
    }
}
