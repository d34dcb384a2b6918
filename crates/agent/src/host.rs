//! This host: its persisted id and the interfaces it reports.

use std::ffi::CStr;
use std::path::Path;
use uuid::Uuid;

/// The host id, kept in `state_dir/host_id` so a restarted agent is the same host.
pub fn host_id(state_dir: &Path) -> std::io::Result<Uuid> {
    std::fs::create_dir_all(state_dir)?;
    let f = state_dir.join("host_id");
    if let Ok(s) = std::fs::read_to_string(&f)
        && let Ok(id) = Uuid::parse_str(s.trim())
    {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    let tmp = state_dir.join("host_id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(tmp, f)?;
    Ok(id)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub addresses: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The interfaces of this network namespace, with their IPv4/IPv6 addresses.
pub fn interfaces() -> Vec<Interface> {
    let mut out: Vec<Interface> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        out.push(Interface {
            mac: read(&p.join("address")),
            mtu: read(&p.join("mtu")).parse().unwrap_or(0),
            up: read(&p.join("operstate")) != "down",
            addresses: Vec::new(),
            name,
        });
    }
    for (name, addr) in addresses() {
        if let Some(i) = out.iter_mut().find(|i| i.name == name) {
            i.addresses.push(addr);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// (interface, address) pairs from getifaddrs(3).
fn addresses() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: ifa_addr is non-null; the family says how to read it.
            let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if fam == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push((
                    name,
                    std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string(),
                ));
            } else if fam == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push((
                    name,
                    std::net::Ipv6Addr::from(sin.sin6_addr.s6_addr).to_string(),
                ));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: frees the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(ifap) };
    out
}
