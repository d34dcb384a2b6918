//! `taprelay TAP IFACE`: plays the hypervisor for a tap-attached VM. It
//! holds tap TAP open as qemu does (vnet headers, checksum and TSO
//! offloads on) and relays every frame, header and all, to and from
//! interface IFACE (a veth whose far end is the VM's eth0), until killed.
//! The agent binds TAP's interface; the test talks through the VM.

use datapath::PacketSocket;
use datapath::tap::Tap;
use std::os::fd::AsRawFd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: taprelay TAP IFACE");
        std::process::exit(2);
    }
    let tap = Tap::open(&args[1]).unwrap_or_else(|e| {
        eprintln!("taprelay: tap {}: {e}", args[1]);
        std::process::exit(1)
    });
    let sock = PacketSocket::open(&args[2], false).unwrap_or_else(|e| {
        eprintln!("taprelay: {}: {e}", args[2]);
        std::process::exit(1)
    });
    let mut buf = vec![0u8; 65536 + 128];
    let fds = [tap.as_raw_fd(), sock.as_raw_fd()];
    let mut ready = Vec::new();
    loop {
        if datapath::wait_readable(&fds, &mut ready, 1000).is_err() {
            continue;
        }
        // Each side in bounded bursts, so neither starves the other.
        for _ in 0..64 {
            match tap.recv(&mut buf) {
                Ok(0) | Err(_) => break,
                // SAFETY: sends `n` bytes of a live buffer.
                Ok(n) => unsafe {
                    libc::send(sock.as_raw_fd(), buf.as_ptr() as *const _, n, 0);
                },
            }
        }
        for _ in 0..64 {
            // SAFETY: reads into a live buffer of its length.
            let n = unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            let _ = tap.send(&buf[..n as usize]);
        }
    }
}
