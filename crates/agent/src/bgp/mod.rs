//! BGP on gateway hosts, the part without I/O: which speakers this host
//! runs and the FRR configuration of each (issue 13). A speaker is one
//! local, exterior router port whose subnet holds peers of its router
//! (`asNumber` on the router, `bgp_peers`, `bgp_networks`): its bgpd speaks
//! from the port's address to those peers and advertises the router's
//! networks. Running bgpd in a namespace wired to the port, and reading
//! its learned routes (zebra's FPM), build on this.

pub mod fpm;
pub mod frr;

use model::bgp::learned;
use model::{BgpNetwork, BgpPeer, Port, Router};
use std::fmt::Write;
use std::net::Ipv4Addr;
use uuid::Uuid;

/// What one bgpd is told: this side, its neighbors, what it advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speaker {
    /// The uplink port it speaks through.
    pub port: Uuid,
    pub router: Uuid,
    pub local_as: u32,
    /// The port's address: bgpd's router id and the sessions' source.
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The port's MAC: bgpd's interface has it, as the router port does.
    pub mac: Option<model::MacAddr>,
    /// By address.
    pub neighbors: Vec<Neighbor>,
    /// The router's networks, as `(address, length)`, sorted.
    pub networks: Vec<(Ipv4Addr, u8)>,
    /// Routes to one prefix through different uplinks installed at once.
    pub maximum_paths: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub peer: Uuid,
    pub address: Ipv4Addr,
    pub remote_as: u32,
    /// Keepalive and hold times, seconds (FRR's defaults when unset: 60/180).
    pub timers: Option<(u32, u32)>,
    pub connect_retry: Option<u32>,
    pub password: Option<String>,
    /// Prefixes accepted from this peer at most.
    pub max_prefixes: u32,
    /// BFD's interval (ms) and multiplier, when on.
    pub bfd: Option<(u32, u8)>,
}

impl Neighbor {
    /// The bfdd profile this neighbor's BFD uses: named by its settings, so
    /// neighbors alike share one and a changed setting is a new profile.
    fn bfd_profile(&self) -> Option<String> {
        self.bfd.map(|(i, m)| format!("mn-{i}x{m}"))
    }
}

/// One speaker's link to the datapath, as a worker sees it: the near end
/// of the veth to its bgpd namespace, the uplink it speaks through, and
/// whose traffic is bgpd's.
pub struct Link<P = datapath::PortSocket> {
    pub uplink: Uuid,
    pub address: Ipv4Addr,
    pub peers: Vec<Ipv4Addr>,
    pub sock: std::sync::Arc<P>,
}

impl<P> Clone for Link<P> {
    fn clone(&self) -> Self {
        Link {
            uplink: self.uplink,
            address: self.address,
            peers: self.peers.clone(),
            sock: self.sock.clone(),
        }
    }
}

impl<P> Link<P> {
    /// The same link (a new list from the controller keeps it).
    pub fn same(&self, o: &Link<P>) -> bool {
        self.uplink == o.uplink
            && self.address == o.address
            && self.peers == o.peers
            && std::sync::Arc::ptr_eq(&self.sock, &o.sock)
    }
}

/// Where a frame that arrived on an uplink with a speaker goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Not the speaker's: the simulation's, as any other.
    Datapath,
    /// Only bgpd's: its sessions (TCP 179), BFD (UDP 3784) and pings
    /// between the port address and its peers.
    Speaker,
    /// Both: an ARP reply to the port address (bgpd's kernel asked; the
    /// router learns the peer's MAC from it too).
    Both,
}

/// What of an uplink's traffic is bgpd's (as MidoNet's agent wired its
/// bgpd namespace): everything else stays in the datapath.
pub fn steer(f: &sim::Fields, address: Ipv4Addr, peers: &[Ipv4Addr]) -> Steer {
    const ARP_REPLY: u8 = 2;
    const TCP: u8 = 6;
    const ICMP: u8 = 1;
    const UDP: u8 = 17;
    const BGP_PORT: u16 = 179;
    // BFD single-hop control packets (RFC 5881).
    const BFD_PORT: u16 = 3784;
    if f.is_arp() {
        return if f.nw_proto == ARP_REPLY && f.nw_dst == address {
            Steer::Both
        } else {
            Steer::Datapath
        };
    }
    if f.eth_type != 0x0800 || f.nw_dst != address || !peers.contains(&f.nw_src) {
        return Steer::Datapath;
    }
    match f.nw_proto {
        TCP if f.tp_src == BGP_PORT || f.tp_dst == BGP_PORT => Steer::Speaker,
        UDP if f.tp_dst == BFD_PORT => Steer::Speaker,
        ICMP => Steer::Speaker,
        _ => Steer::Datapath,
    }
}

/// The kinds speakers are made from (a batch changing none of them leaves
/// the speakers as they are).
pub const KINDS: [&str; 4] = ["Port", "Router", "BgpPeer", "BgpNetwork"];

/// Default `maximum-prefix` of every peer.
pub const MAX_PREFIXES: u32 = 10_000;

/// Routes of one prefix kept for ECMP across uplinks.
pub const MAXIMUM_PATHS: u8 = 8;

fn in_subnet(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

/// The speakers of host `me`: one per active, exterior router port bound
/// to it whose router has an AS number and peers in the port's subnet.
pub fn speakers(
    me: Uuid,
    max_prefixes: u32,
    routers: &[Router],
    ports: &[Port],
    peers: &[BgpPeer],
    networks: &[BgpNetwork],
) -> Vec<Speaker> {
    let mut out = Vec::new();
    for p in ports {
        let (Some(address), Some(len)) = (p.port_address, p.network_length) else {
            continue;
        };
        if p.host_id != Some(me)
            || p.interface_name.is_none()
            || !p.is_router_port()
            || !p.admin_state_up
        {
            continue;
        }
        let Some(r) = routers.iter().find(|r| r.id == p.device_id) else {
            continue;
        };
        let Ok(local_as) = u32::try_from(r.as_number) else {
            continue;
        };
        if local_as == 0 {
            continue;
        }
        let mut neighbors: Vec<Neighbor> = peers
            .iter()
            .filter(|b| b.router_id == Some(r.id))
            .filter_map(|b| {
                let a = b.address?;
                (in_subnet(a, address, len) && a != address).then(|| Neighbor {
                    peer: b.id,
                    address: a,
                    remote_as: u32::try_from(b.as_number).unwrap_or(0),
                    timers: match (b.keep_alive, b.hold_time) {
                        (None, None) => None,
                        (k, h) => {
                            let k = k.unwrap_or(60).clamp(1, 65535) as u32;
                            Some((k, h.map_or(k * 3, |h| h.clamp(3, 65535) as u32)))
                        }
                    },
                    connect_retry: b.connect_retry.map(|c| c.clamp(1, 65535) as u32),
                    password: b.password.clone().filter(|p| !p.is_empty()),
                    max_prefixes,
                    bfd: b.bfd(),
                })
            })
            .filter(|n| n.remote_as != 0)
            .collect();
        if neighbors.is_empty() {
            continue;
        }
        neighbors.sort_by_key(|n| n.address);
        let mut nets: Vec<(Ipv4Addr, u8)> = networks
            .iter()
            .filter(|n| n.router_id == Some(r.id))
            .filter_map(|n| Some((n.subnet_address?, n.subnet_length.min(32))))
            .collect();
        nets.sort();
        nets.dedup();
        out.push(Speaker {
            port: p.id,
            router: r.id,
            local_as,
            address,
            prefix_len: len,
            mac: p.port_mac,
            neighbors,
            networks: nets,
            maximum_paths: MAXIMUM_PATHS,
        });
    }
    out.sort_by_key(|s| s.port);
    out
}

/// A password as FRR reads it on one line: printable, no spaces (the API
/// takes any string; what bgpd could not read is left out, and logged by
/// the caller).
fn frr_word(s: &str) -> Option<&str> {
    (!s.is_empty() && s.chars().all(|c| c.is_ascii_graphic())).then_some(s)
}

/// zebra's configuration beside each bgpd (loaded with `-M dplane_fpm_nl`):
/// the routes bgpd selects go to the agent over FPM, as plain routes (FRR
/// 8's next-hop groups are messages netlink-packet-route cannot read). As
/// proven live in the stack notes; `zebra -C` cannot check it (the FPM
/// module crashes a dry run).
pub const ZEBRA_CONFIG: &str = "\
frr defaults traditional
fpm address 127.0.0.1 port 2620
no fpm use-next-hop-groups
";

/// bfdd's configuration beside each bgpd: the profiles its neighbors' BFD
/// uses (bgpd asks bfdd, through zebra, for a session per neighbor).
pub fn bfd_config(s: &Speaker) -> String {
    let mut c = String::from("frr defaults traditional\n");
    for l in bfd_profile_lines(&s.neighbors) {
        let _ = writeln!(c, "{l}");
    }
    c
}

/// The `bfd` node defining the profiles of `neighbors` (none: no lines).
fn bfd_profile_lines<'a>(neighbors: impl IntoIterator<Item = &'a Neighbor>) -> Vec<String> {
    let mut ps: Vec<(String, u32, u8)> = neighbors
        .into_iter()
        .filter_map(|n| Some((n.bfd_profile()?, n.bfd?.0, n.bfd?.1)))
        .collect();
    ps.sort();
    ps.dedup();
    if ps.is_empty() {
        return Vec::new();
    }
    let mut v = vec!["bfd".to_string()];
    for (name, interval, mult) in ps {
        v.push(format!(" profile {name}"));
        v.push(format!("  detect-multiplier {mult}"));
        v.push(format!("  receive-interval {interval}"));
        v.push(format!("  transmit-interval {interval}"));
        v.push(" exit".into());
    }
    v.push("exit".into());
    v
}

/// The bgpd configuration of `s` (FRR 8 syntax; `bgpd -C` accepts it).
pub fn frr_config(s: &Speaker) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "frr defaults traditional");
    let _ = writeln!(
        c,
        "! midonet agent: uplink port {} of router {}",
        s.port, s.router
    );
    let _ = writeln!(c, "router bgp {}", s.local_as);
    let _ = writeln!(c, " bgp router-id {}", s.address);
    // Accept and send routes without a policy (eBGP default-deny off):
    // what is advertised is exactly the router's networks, which bgpd's
    // own namespace does not route (no import check).
    let _ = writeln!(c, " no bgp ebgp-requires-policy");
    let _ = writeln!(c, " no bgp network import-check");
    // No graceful-restart capability: a peer of a dead gateway must drop
    // its routes when the hold time ends, not keep them stale for minutes.
    let _ = writeln!(c, " bgp graceful-restart-disable");
    for line in s.neighbors.iter().flat_map(neighbor_lines) {
        let _ = writeln!(c, " {line}");
    }
    let _ = writeln!(c, " address-family ipv4 unicast");
    for line in s.neighbors.iter().flat_map(neighbor_af_lines) {
        let _ = writeln!(c, "  {line}");
    }
    for (a, l) in &s.networks {
        let _ = writeln!(c, "  network {a}/{l}");
    }
    let _ = writeln!(c, "  maximum-paths {}", s.maximum_paths);
    let _ = writeln!(c, " exit-address-family");
    let _ = writeln!(c, "exit");
    c
}

/// The sessions of `s` as bgpd's `show bgp ipv4 unicast summary json`
/// tells them (`now` in Unix seconds): one status per neighbor, by peer id;
/// a neighbor bgpd does not list is reported as not configured. `bfd` is
/// bfdd's `show bfd peers json`, read when a neighbor has BFD on.
pub fn status_of(
    s: &Speaker,
    summary: &str,
    bfd: Option<&str>,
    now: u64,
) -> Vec<(Uuid, learned::PeerStatus)> {
    let bfd: Vec<serde_json::Value> = bfd
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(summary).unwrap_or_default();
    // `show bgp summary json` nests it under the address family.
    let peers = match &v["ipv4Unicast"]["peers"] {
        serde_json::Value::Null => &v["peers"],
        p => p,
    };
    s.neighbors
        .iter()
        .map(|n| {
            let p = &peers[n.address.to_string()];
            let state = p["state"].as_str().unwrap_or("NotConfigured").to_string();
            let up = state == "Established";
            let uptime_ms = p["peerUptimeMsec"].as_u64().unwrap_or(0);
            let count = |k: &str| p[k].as_u64().unwrap_or(0);
            let message = if state.contains("PfxCt") {
                Some(format!(
                    "cut off: the peer sent more than {} prefixes (maximum-prefix); retried after a minute",
                    n.max_prefixes
                ))
            } else {
                match p["lastResetDueTo"].as_str() {
                    Some(why) if !up => Some(why.to_string()),
                    _ => None,
                }
            };
            (
                n.peer,
                learned::PeerStatus {
                    port_id: Some(s.port),
                    host_id: None,
                    state,
                    established_at: up.then(|| now.saturating_sub(uptime_ms / 1000)),
                    prefixes_received: count("pfxRcd"),
                    prefixes_sent: count("pfxSnt"),
                    message,
                    bfd: n.bfd.map(|_| {
                        bfd.iter()
                            .find(|b| b["peer"].as_str() == Some(&n.address.to_string()))
                            .and_then(|b| b["status"].as_str())
                            .unwrap_or("down")
                            .to_string()
                    }),
                },
            )
        })
        .collect()
}

/// What to do to go from the speakers running to the speakers wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New speakers, and those whose AS or address changed (restarted:
    /// bgpd's AS and router id are its identity).
    pub start: Vec<Speaker>,
    /// Speakers to stop, by port (restarted ones included).
    pub stop: Vec<Uuid>,
    /// Running speakers changed in place: the port and the vtysh lines
    /// (`configure terminal` is the caller's). Neighbors not named in them
    /// keep their sessions.
    pub reconfigure: Vec<(Uuid, Vec<String>)>,
}

fn neighbor_lines(n: &Neighbor) -> Vec<String> {
    let mut v = vec![format!("neighbor {} remote-as {}", n.address, n.remote_as)];
    if let Some((k, h)) = n.timers {
        v.push(format!("neighbor {} timers {k} {h}", n.address));
    }
    if let Some(r) = n.connect_retry {
        v.push(format!("neighbor {} timers connect {r}", n.address));
    }
    if let Some(p) = n.password.as_deref().and_then(frr_word) {
        v.push(format!("neighbor {} password {p}", n.address));
    }
    v.extend(bfd_line(n));
    v
}

/// The neighbor's BFD line, when BFD is on (`bfd profile` turns it on).
fn bfd_line(n: &Neighbor) -> Option<String> {
    Some(format!(
        "neighbor {} bfd profile {}",
        n.address,
        n.bfd_profile()?
    ))
}

/// The address-family lines of a neighbor: a peer that sends more than
/// `max` prefixes is cut off (bgpd tears the session down and says why).
fn neighbor_af_lines(n: &Neighbor) -> Vec<String> {
    // bgpd tries the session again after a minute.
    vec![format!(
        "neighbor {} maximum-prefix {} restart 1",
        n.address, n.max_prefixes
    )]
}

/// The changes from `running` to `wanted`, each speaker by its port.
pub fn plan(running: &[Speaker], wanted: &[Speaker]) -> Plan {
    let mut p = Plan::default();
    for old in running {
        if !wanted.iter().any(|w| w.port == old.port) {
            p.stop.push(old.port);
        }
    }
    for w in wanted {
        let Some(old) = running.iter().find(|o| o.port == w.port) else {
            p.start.push(w.clone());
            continue;
        };
        if old.local_as != w.local_as || old.address != w.address {
            p.stop.push(w.port);
            p.start.push(w.clone());
            continue;
        }
        let mut lines = Vec::new();
        let mut af = Vec::new();
        // BFD profiles new neighbors' settings need (bfdd's node; vtysh
        // sends it there).
        let mut profiles = bfd_profile_lines(w.neighbors.iter().filter(|n| {
            !old.neighbors
                .iter()
                .any(|o| o.bfd_profile() == n.bfd_profile())
        }));
        for n in &old.neighbors {
            if !w.neighbors.iter().any(|x| x.address == n.address) {
                lines.push(format!("no neighbor {}", n.address));
            }
        }
        for n in &w.neighbors {
            match old.neighbors.iter().find(|x| x.address == n.address) {
                Some(o) if o == n => {}
                // Only BFD changed: the session stays up.
                Some(o)
                    if Neighbor {
                        bfd: n.bfd,
                        ..o.clone()
                    } == *n =>
                {
                    lines.push(
                        bfd_line(n).unwrap_or_else(|| format!("no neighbor {} bfd", n.address)),
                    )
                }
                // A changed neighbor is set anew (its session restarts).
                Some(_) => {
                    lines.push(format!("no neighbor {}", n.address));
                    lines.extend(neighbor_lines(n));
                    af.extend(neighbor_af_lines(n).into_iter().map(|l| format!(" {l}")));
                }
                None => {
                    lines.extend(neighbor_lines(n));
                    af.extend(neighbor_af_lines(n).into_iter().map(|l| format!(" {l}")));
                }
            }
        }
        for (a, l) in &old.networks {
            if !w.networks.contains(&(*a, *l)) {
                af.push(format!(" no network {a}/{l}"));
            }
        }
        for (a, l) in &w.networks {
            if !old.networks.contains(&(*a, *l)) {
                af.push(format!(" network {a}/{l}"));
            }
        }
        if old.maximum_paths != w.maximum_paths {
            af.push(format!(" maximum-paths {}", w.maximum_paths));
        }
        if !af.is_empty() {
            lines.push("address-family ipv4 unicast".into());
            lines.extend(af);
            lines.push("exit-address-family".into());
        }
        if !lines.is_empty() {
            profiles.push(format!("router bgp {}", w.local_as));
            profiles.extend(lines);
            profiles.push("exit".into());
            p.reconfigure.push((w.port, profiles));
        }
    }
    p.stop.sort();
    p.stop.dedup();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Uuid, Vec<Router>, Vec<Port>, Vec<BgpPeer>, Vec<BgpNetwork>) {
        let me = Uuid::from_u128(1);
        let r = Router {
            id: Uuid::from_u128(2),
            as_number: 64512,
            ..Default::default()
        };
        let uplink = |id: u128, host: Uuid, addr: &str| Port {
            id: Uuid::from_u128(id),
            port_type: model::PortType::Router,
            device_id: r.id,
            admin_state_up: true,
            host_id: Some(host),
            interface_name: Some("uplink0".into()),
            port_address: Some(addr.parse().unwrap()),
            network_address: Some("198.51.100.0".parse().unwrap()),
            network_length: Some(24),
            ..Default::default()
        };
        let ports = vec![
            uplink(10, me, "198.51.100.1"),
            uplink(11, Uuid::from_u128(9), "198.51.100.2"), // another host's
        ];
        let peer = |id: u128, addr: &str, asn: i64| BgpPeer {
            id: Uuid::from_u128(id),
            router_id: Some(r.id),
            as_number: asn,
            address: Some(addr.parse().unwrap()),
            ..Default::default()
        };
        let peers = vec![
            BgpPeer {
                keep_alive: Some(10),
                hold_time: Some(30),
                connect_retry: Some(5),
                password: Some("s3cret".into()),
                ..peer(20, "198.51.100.254", 65000)
            },
            peer(21, "203.0.113.9", 65001), // not in the uplink's subnet
        ];
        let nets = vec![BgpNetwork {
            id: Uuid::from_u128(30),
            router_id: Some(r.id),
            subnet_address: Some("192.0.2.0".parse().unwrap()),
            subnet_length: 24,
        }];
        (me, vec![r], ports, peers, nets)
    }

    #[test]
    fn one_speaker_per_local_uplink_with_peers_in_its_subnet() {
        let (me, routers, ports, peers, nets) = fixture();
        let s = speakers(me, 1000, &routers, &ports, &peers, &nets);
        assert_eq!(s.len(), 1, "the other host's uplink is not ours: {s:?}");
        let s = &s[0];
        assert_eq!(
            (s.local_as, s.address),
            (64512, "198.51.100.1".parse().unwrap())
        );
        assert_eq!(
            s.neighbors.len(),
            1,
            "the peer outside the subnet is not this port's"
        );
        assert_eq!(s.neighbors[0].timers, Some((10, 30)));
        assert_eq!(s.networks, vec![("192.0.2.0".parse().unwrap(), 24)]);
        // No AS number on the router: no speaker.
        let mut r2 = routers.clone();
        r2[0].as_number = 0;
        assert!(speakers(me, 1000, &r2, &ports, &peers, &nets).is_empty());
    }

    #[test]
    fn frr_configuration_byte_exact() {
        let (me, routers, ports, peers, nets) = fixture();
        let s = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        let want = "\
frr defaults traditional
! midonet agent: uplink port 00000000-0000-0000-0000-00000000000a of router 00000000-0000-0000-0000-000000000002
router bgp 64512
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart-disable
 neighbor 198.51.100.254 remote-as 65000
 neighbor 198.51.100.254 timers 10 30
 neighbor 198.51.100.254 timers connect 5
 neighbor 198.51.100.254 password s3cret
 address-family ipv4 unicast
  neighbor 198.51.100.254 maximum-prefix 1000 restart 1
  network 192.0.2.0/24
  maximum-paths 8
 exit-address-family
exit
";
        assert_eq!(frr_config(s), want);
    }

    #[test]
    fn a_password_bgpd_cannot_read_is_left_out() {
        let (me, routers, ports, mut peers, nets) = fixture();
        peers[0].password = Some("two words\nneighbor 1.2.3.4 remote-as 1".into());
        let s = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        let c = frr_config(s);
        assert!(!c.contains("password") && !c.contains("1.2.3.4"), "{c}");
    }

    #[test]
    fn a_change_touches_only_what_changed() {
        let (me, routers, ports, mut peers, mut nets) = fixture();
        // Two neighbors in the uplink's subnet.
        peers.push(BgpPeer {
            id: Uuid::from_u128(22),
            router_id: Some(routers[0].id),
            as_number: 65002,
            address: Some("198.51.100.253".parse().unwrap()),
            ..Default::default()
        });
        let before = speakers(me, 1000, &routers, &ports, &peers, &nets);
        assert_eq!(
            plan(&before, &before),
            Plan::default(),
            "no change, nothing to do"
        );
        assert_eq!(plan(&[], &before).start, before);
        assert_eq!(plan(&before, &[]).stop, vec![before[0].port]);

        // One neighbor's AS changes, a network is added: the other
        // neighbor is not named, so its session stays.
        peers[2].as_number = 65003;
        nets.push(BgpNetwork {
            id: Uuid::from_u128(31),
            router_id: Some(routers[0].id),
            subnet_address: Some("192.0.3.0".parse().unwrap()),
            subnet_length: 24,
        });
        let after = speakers(me, 1000, &routers, &ports, &peers, &nets);
        let p = plan(&before, &after);
        assert!(p.start.is_empty() && p.stop.is_empty(), "{p:?}");
        assert_eq!(
            p.reconfigure,
            vec![(
                before[0].port,
                vec![
                    "router bgp 64512".to_string(),
                    "no neighbor 198.51.100.253".into(),
                    "neighbor 198.51.100.253 remote-as 65003".into(),
                    "address-family ipv4 unicast".into(),
                    " neighbor 198.51.100.253 maximum-prefix 1000 restart 1".into(),
                    " network 192.0.3.0/24".into(),
                    "exit-address-family".into(),
                    "exit".into(),
                ]
            )]
        );
        assert!(
            !p.reconfigure[0]
                .1
                .iter()
                .any(|l| l.contains("198.51.100.254"))
        );

        // A new AS on the router: bgpd restarts.
        let mut r2 = routers.clone();
        r2[0].as_number = 64513;
        let p = plan(&after, &speakers(me, 1000, &r2, &ports, &peers, &nets));
        assert_eq!(
            (p.stop.len(), p.start.len(), p.reconfigure.len()),
            (1, 1, 0)
        );
    }

    #[test]
    fn session_status_from_bgpd_summary() {
        let (me, routers, ports, peers, nets) = fixture();
        let s = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        // As FRR 8.4's `show bgp ipv4 unicast summary json` prints it.
        let up = r#"{"routerId":"198.51.100.1","as":64512,"peers":{"198.51.100.254":{
            "remoteAs":65000,"state":"Established","peerUptimeMsec":42000,"pfxRcd":3,"pfxSnt":1}}}"#;
        let st = status_of(s, up, None, 1_000_000);
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].0, Uuid::from_u128(20));
        assert_eq!(
            st[0].1,
            learned::PeerStatus {
                port_id: Some(s.port),
                host_id: None,
                state: "Established".into(),
                established_at: Some(1_000_000 - 42),
                prefixes_received: 3,
                prefixes_sent: 1,
                message: None,
                bfd: None,
            }
        );
        let cut =
            r#"{"ipv4Unicast":{"peers":{"198.51.100.254":{"state":"Idle (PfxCt)","pfxRcd":0}}}}"#;
        let st = &status_of(s, cut, None, 5)[0].1;
        assert_eq!(
            (st.state.as_str(), st.established_at),
            ("Idle (PfxCt)", None)
        );
        assert!(st.message.as_deref().unwrap().contains("1000 prefixes"));
        // Nothing bgpd said (not running yet, or garbage): not configured.
        assert_eq!(status_of(s, "garbage", None, 5)[0].1.state, "NotConfigured");
    }

    #[test]
    fn bfd_profiles_for_bfdd_and_neighbors_that_use_them() {
        let (me, routers, ports, mut peers, nets) = fixture();
        peers[0].bfd_enabled = true;
        peers[0].bfd_interval = Some(100);
        let s = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        assert_eq!(
            bfd_config(s),
            "\
frr defaults traditional
bfd
 profile mn-100x3
  detect-multiplier 3
  receive-interval 100
  transmit-interval 100
 exit
exit
"
        );
        assert!(
            frr_config(s).contains(" neighbor 198.51.100.254 bfd profile mn-100x3\n"),
            "{}",
            frr_config(s)
        );
        // Without BFD, bfdd runs with no profile and bgpd names none.
        peers[0].bfd_enabled = false;
        let off = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        assert_eq!(bfd_config(off), "frr defaults traditional\n");
        assert!(!frr_config(off).contains("bfd"));
    }

    #[test]
    fn turning_bfd_on_or_off_keeps_the_session() {
        let (me, routers, ports, mut peers, nets) = fixture();
        let off = speakers(me, 1000, &routers, &ports, &peers, &nets);
        peers[0].bfd_enabled = true;
        let on = speakers(me, 1000, &routers, &ports, &peers, &nets);
        let p = plan(&off, &on);
        assert!(p.start.is_empty() && p.stop.is_empty(), "{p:?}");
        assert_eq!(
            p.reconfigure[0].1,
            vec![
                "bfd",
                " profile mn-300x3",
                "  detect-multiplier 3",
                "  receive-interval 300",
                "  transmit-interval 300",
                " exit",
                "exit",
                "router bgp 64512",
                "neighbor 198.51.100.254 bfd profile mn-300x3",
                "exit",
            ]
        );
        // No `no neighbor`: the BGP session is not reset.
        assert!(
            !p.reconfigure[0]
                .1
                .iter()
                .any(|l| l == "no neighbor 198.51.100.254")
        );
        let p = plan(&on, &off);
        assert_eq!(
            p.reconfigure[0].1,
            vec!["router bgp 64512", "no neighbor 198.51.100.254 bfd", "exit"]
        );
    }

    #[test]
    fn bfd_state_in_the_peer_status() {
        let (me, routers, ports, mut peers, nets) = fixture();
        peers[0].bfd_enabled = true;
        let s = &speakers(me, 1000, &routers, &ports, &peers, &nets)[0];
        let summary =
            r#"{"peers":{"198.51.100.254":{"state":"Established","peerUptimeMsec":1000}}}"#;
        // As FRR 8.4's `show bfd peers json` prints it.
        let bfd = r#"[{"multihop":false,"peer":"198.51.100.254","local":"198.51.100.1","vrf":"default",
            "interface":"eth0","status":"up","uptime":7,"diagnostic":"ok","detect-multiplier":3}]"#;
        let st = status_of(s, summary, Some(bfd), 10);
        assert_eq!(st[0].1.bfd.as_deref(), Some("up"));
        // bfdd not answering: down, not absent.
        assert_eq!(
            status_of(s, summary, None, 10)[0].1.bfd.as_deref(),
            Some("down")
        );
    }

    #[test]
    fn bgp_bfd_pings_and_arp_replies_go_to_the_speaker() {
        let me: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let peer: Ipv4Addr = "198.51.100.254".parse().unwrap();
        let ip = |proto: u8, tp_src: u16, tp_dst: u16, src: Ipv4Addr| sim::Fields {
            eth_type: 0x0800,
            nw_src: src,
            nw_dst: me,
            nw_proto: proto,
            tp_src,
            tp_dst,
            ..Default::default()
        };
        let peers = [peer];
        assert_eq!(steer(&ip(6, 40000, 179, peer), me, &peers), Steer::Speaker);
        assert_eq!(steer(&ip(6, 179, 40000, peer), me, &peers), Steer::Speaker);
        assert_eq!(
            steer(&ip(17, 49152, 3784, peer), me, &peers),
            Steer::Speaker
        );
        assert_eq!(steer(&ip(1, 0, 0, peer), me, &peers), Steer::Speaker);
        // Other traffic of the peer, and BGP from a stranger: the datapath's.
        assert_eq!(steer(&ip(17, 49152, 53, peer), me, &peers), Steer::Datapath);
        let stranger = "198.51.100.7".parse().unwrap();
        assert_eq!(
            steer(&ip(6, 40000, 179, stranger), me, &peers),
            Steer::Datapath
        );
    }
}
