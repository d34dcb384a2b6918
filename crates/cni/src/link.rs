//! The container's veth, over rtnetlink: made in the host's namespace with
//! its peer straight in the container's (named `CNI_IFNAME`, with the
//! port's MAC and the MTU), then given its address and default route from
//! a netlink socket opened inside the container's namespace.
//! Offloads stay as the kernel sets them.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {0} already exists")]
    Exists(String),
}

impl LinkError {
    /// The errno of a netlink refusal.
    fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Netlink(rtnetlink::Error::NetlinkError(m)) => Some(-m.raw_code()),
            _ => None,
        }
    }
}

/// A netlink handle whose socket lives in the namespace it was opened in.
fn connect() -> Result<Handle, LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

fn open_netns(path: &Path) -> Result<OwnedFd, LinkError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| LinkError::Netns {
            path: path.display().to_string(),
            source,
        })
}

fn setns(fd: &OwnedFd, path: &str) -> Result<(), LinkError> {
    // SAFETY: setns(2) on a namespace fd this process holds; the plugin is
    // one thread (a current-thread runtime), which is what moves.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(LinkError::Netns {
            path: path.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The host's and one container's namespaces, each with its own socket.
pub struct Namespaces {
    pub host: Handle,
    /// The container's namespace (None: it is gone).
    pub inside: Option<(Handle, OwnedFd)>,
}

impl Namespaces {
    /// Opens both; a missing container namespace is `inside: None` when
    /// `must_exist` is false (DEL).
    pub fn open(netns: Option<&Path>, must_exist: bool) -> Result<Namespaces, LinkError> {
        let host = connect()?;
        let Some(path) = netns else {
            return Ok(Namespaces { host, inside: None });
        };
        let target = match open_netns(path) {
            Ok(f) => f,
            Err(_) if !must_exist => return Ok(Namespaces { host, inside: None }),
            Err(e) => return Err(e),
        };
        let own = open_netns(Path::new("/proc/self/ns/net"))?;
        setns(&target, &path.display().to_string())?;
        let inside = connect();
        // Back home whatever happened: the rest of the plugin (the API, the
        // agent's socket) works from the host's namespace.
        setns(&own, "/proc/self/ns/net")?;
        Ok(Namespaces {
            host,
            inside: Some((inside?, target)),
        })
    }
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<LinkMessage>, LinkError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(e) => {
            let e = LinkError::from(e);
            if e.errno() == Some(libc::ENODEV) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A link's MAC, as `aa:bb:..`.
fn mac_of(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => Some(crate::ipam::mac_string(b)),
        _ => None,
    })
}

/// What ADD asks for.
pub struct Veth<'a> {
    pub host: &'a str,
    pub ifname: &'a str,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Whether the container already has `ifname`.
pub async fn exists_inside(ns: &Namespaces, ifname: &str) -> Result<bool, LinkError> {
    match &ns.inside {
        Some((h, _)) => Ok(index_of(h, ifname).await?.is_some()),
        None => Ok(false),
    }
}

/// Makes the veth and configures its container end; the host end's MAC.
pub async fn create(ns: &Namespaces, v: &Veth<'_>) -> Result<String, LinkError> {
    let Some((inside, fd)) = &ns.inside else {
        return Err(LinkError::Netns {
            path: "(container)".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
    };
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(v.ifname.to_string()),
        LinkAttribute::NetNsFd(fd.as_raw_fd()),
        LinkAttribute::Address(v.mac.to_vec()),
        LinkAttribute::Mtu(v.mtu),
    ];
    let mut msg = LinkUnspec::new_with_name(v.host).mtu(v.mtu).up().build();
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        rtnetlink::packet_route::link::LinkInfo::Kind(InfoKind::Veth),
        rtnetlink::packet_route::link::LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    if let Err(e) = ns.host.link().add(msg).execute().await {
        let e = LinkError::from(e);
        return Err(if e.errno() == Some(libc::EEXIST) {
            LinkError::Exists(format!("{} or {}", v.host, v.ifname))
        } else {
            e
        });
    }
    let host = index_of(&ns.host, v.host).await?;
    let host_mac = host.as_ref().and_then(mac_of).unwrap_or_default();
    let Some(link) = index_of(inside, v.ifname).await? else {
        return Err(LinkError::Exists(format!("{} vanished", v.ifname)));
    };
    let idx = link.header.index;
    inside
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await?;
    inside
        .address()
        .add(idx, IpAddr::V4(v.address), v.prefix_len)
        .execute()
        .await?;
    if let Some(gw) = v.gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(idx)
            .gateway(gw)
            .build();
        inside.route().add(route).execute().await?;
    }
    Ok(host_mac)
}

/// Deletes the host end (the container end goes with it); false when it
/// was not there.
pub async fn delete(ns: &Namespaces, host: &str) -> Result<bool, LinkError> {
    let Some(m) = index_of(&ns.host, host).await? else {
        return Ok(false);
    };
    match ns.host.link().del(m.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) => {
            let e = LinkError::from(e);
            if e.errno() == Some(libc::ENODEV) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// What the container's interface is: its MAC and IPv4 addresses (None:
/// no such interface).
pub async fn inspect_inside(
    ns: &Namespaces,
    ifname: &str,
) -> Result<Option<(String, Vec<String>)>, LinkError> {
    let Some((h, _)) = &ns.inside else {
        return Ok(None);
    };
    let Some(link) = index_of(h, ifname).await? else {
        return Ok(None);
    };
    let mut addrs = Vec::new();
    let mut s = h
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute();
    while let Some(a) = s.try_next().await? {
        let len = a.header.prefix_len;
        for at in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = at {
                addrs.push(format!("{ip}/{len}"));
            }
        }
    }
    Ok(Some((mac_of(&link).unwrap_or_default(), addrs)))
}

/// Whether the host end exists.
pub async fn host_exists(ns: &Namespaces, host: &str) -> Result<bool, LinkError> {
    Ok(index_of(&ns.host, host).await?.is_some())
}
