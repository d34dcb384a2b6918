//! A TPACKET_V3 receive ring: the kernel writes frames into blocks of a
//! memory map shared with us, and hands a block over when it is full or its
//! retire timer fires. No copy into user buffers and no system call per
//! frame; the price is up to one retire period of latency when traffic is
//! light (see BENCHMARKS.md for both measured side by side).

use crate::socket::PacketSocket;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

const PACKET_VERSION: libc::c_int = 10;
const PACKET_RX_RING: libc::c_int = 5;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;

/// struct tpacket_req3
#[repr(C)]
struct Req3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

// Offsets in struct tpacket_block_desc (version, offset_to_priv, then hdr_v1).
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
// Offsets in struct tpacket3_hdr.
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_MAC: usize = 24;

pub struct RingSocket {
    sock: PacketSocket,
    map: *mut u8,
    block_size: usize,
    block_nr: usize,
    next: AtomicUsize,
    /// Frames the ring could not hold whole (counted as malformed).
    pub truncated: AtomicU64,
}

// SAFETY: the map is owned by this value and only read and handed back
// block by block by the one thread that polls it.
unsafe impl Send for RingSocket {}
unsafe impl Sync for RingSocket {}

impl RingSocket {
    /// Opens `name` with an RX ring of `block_nr` blocks of `block_size`
    /// bytes, handed over at the latest `retire_ms` after their first frame.
    pub fn open(name: &str, fanout: bool, retire_ms: u32) -> io::Result<Self> {
        let (block_size, block_nr, frame_size) = (1usize << 18, 16usize, 1usize << 11);
        let sock = PacketSocket::open_with(name, fanout, |fd| {
            let v: libc::c_int = TPACKET_V3;
            setopt(fd, libc::SOL_PACKET, PACKET_VERSION, &v)?;
            let req = Req3 {
                block_size: block_size as u32,
                block_nr: block_nr as u32,
                frame_size: frame_size as u32,
                frame_nr: (block_size * block_nr / frame_size) as u32,
                retire_blk_tov: retire_ms,
                sizeof_priv: 0,
                feature_req_word: 0,
            };
            setopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req)
        })?;
        let len = block_size * block_nr;
        // SAFETY: maps the ring the kernel just set up on this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RingSocket {
            sock,
            map: map as *mut u8,
            block_size,
            block_nr,
            next: AtomicUsize::new(0),
            truncated: AtomicU64::new(0),
        })
    }

    pub fn socket(&self) -> &PacketSocket {
        &self.sock
    }

    fn read_u32(&self, at: usize) -> u32 {
        // SAFETY: `at` is inside the map (callers stay within a block).
        unsafe { std::ptr::read_volatile(self.map.add(at) as *const u32) }
    }

    /// Calls `f` on every frame of every block the kernel has handed over,
    /// its virtio-net header included (the kernel writes it just before the
    /// frame), and gives the blocks back. Returns the number of frames.
    pub fn drain(&self, mut f: impl FnMut(&mut [u8])) -> usize {
        let mut frames = 0;
        loop {
            let b = self.next.load(Ordering::Relaxed);
            let base = b * self.block_size;
            if self.read_u32(base + BD_STATUS) & TP_STATUS_USER == 0 {
                return frames;
            }
            fence(Ordering::Acquire);
            let n = self.read_u32(base + BD_NUM_PKTS) as usize;
            let mut at = base + self.read_u32(base + BD_FIRST) as usize;
            for _ in 0..n {
                let snap = self.read_u32(at + H_SNAPLEN) as usize;
                // SAFETY: tp_mac is a u16 inside the frame header.
                let mac = unsafe { std::ptr::read_volatile(self.map.add(at + H_MAC) as *const u16) }
                    as usize;
                let vnet = wire::vnet::HEADER;
                if snap < self.read_u32(at + H_LEN) as usize {
                    self.truncated.fetch_add(1, Ordering::Relaxed);
                } else if mac >= vnet && at + mac + snap <= base + self.block_size {
                    // SAFETY: header and frame lie inside this block, which is
                    // ours (and only this thread's) until released.
                    let frame = unsafe {
                        std::slice::from_raw_parts_mut(self.map.add(at + mac - vnet), snap + vnet)
                    };
                    f(frame);
                    frames += 1;
                }
                let next = self.read_u32(at + H_NEXT) as usize;
                if next == 0 {
                    break;
                }
                at += next;
            }
            fence(Ordering::Release);
            // SAFETY: writing the block status hands the block back to the kernel.
            unsafe {
                std::ptr::write_volatile(
                    self.map.add(base + BD_STATUS) as *mut u32,
                    TP_STATUS_KERNEL,
                )
            };
            self.next.store((b + 1) % self.block_nr, Ordering::Relaxed);
        }
    }
}

impl Drop for RingSocket {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what open() mapped.
        unsafe {
            libc::munmap(
                self.map as *mut libc::c_void,
                self.block_size * self.block_nr,
            )
        };
    }
}

impl AsRawFd for RingSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn setopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
