//! `connrate`: new TCP connections per second, for bench/nat.sh.
//!
//!   connrate serve ADDR:PORT [THREADS]
//!       accepts, writes one byte, closes; until killed.
//!   connrate connect ADDR:PORT COUNT THREADS [TIMEOUT_MS]
//!       COUNT connections split over THREADS, each connect, read the byte,
//!       close with a reset (no TIME_WAIT, so client ports are not exhausted);
//!       prints `ok=N failed=N secs=S rate=R` (rate: successful per second).
//!
//! Bounded by COUNT and by the timeout per connection; std only, so the
//! generator costs as little CPU as a client can.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: connrate serve ADDR:PORT [THREADS] | connrate connect ADDR:PORT COUNT THREADS [TIMEOUT_MS]"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).map(|s| s.parse()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("connrate: {what} missing or invalid");
            usage()
        }
    }
}

/// Close with RST: neither side keeps the connection in TIME_WAIT.
fn reset_on_close(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn serve(addr: SocketAddr, threads: usize) {
    let l = match TcpListener::bind(addr) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("connrate: bind {addr}: {e}");
            std::process::exit(1)
        }
    };
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                loop {
                    if let Ok((mut c, _)) = l.accept() {
                        let _ = c.write_all(b"x");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn connect(addr: SocketAddr, count: u64, threads: u64, timeout: Duration) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let (ok, failed) = (ok.clone(), failed.clone());
            let n = count / threads.max(1) + u64::from(t < count % threads.max(1));
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                for _ in 0..n {
                    let r = TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
                        s.set_read_timeout(Some(timeout))?;
                        reset_on_close(&s);
                        s.read_exact(&mut b)
                    });
                    match r {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "ok={ok} failed={} secs={secs:.3} rate={:.0}",
        failed.load(Ordering::Relaxed),
        ok as f64 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(
            arg(&args, 2, "ADDR:PORT"),
            args.get(3).map_or(2, |_| arg(&args, 3, "THREADS")),
        ),
        Some("connect") => connect(
            arg(&args, 2, "ADDR:PORT"),
            arg(&args, 3, "COUNT"),
            arg(&args, 4, "THREADS"),
            Duration::from_millis(args.get(5).map_or(2000, |_| arg(&args, 5, "TIMEOUT_MS"))),
        ),
        _ => usage(),
    }
}
