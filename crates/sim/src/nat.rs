//! NAT (floating IPs, dynamic SNAT and DNAT, their reverses, ICMP errors
//! through NAT) and the L4 load balancer, both recorded as NAT bindings
//! scoped by device.

use crate::engine::Sim;
use crate::flow::field;
use crate::result::{Action, Missing, Tag};
use crate::state::{NatBinding, NatKey, NatKind, StateWrite, nat_block_ports};
use crate::topology::{Id, NatTarget};
use std::net::Ipv4Addr;
use wire::ipv4::Protocol;

/// Default dynamic SNAT port range (MidoNet's translator uses 1024–65535).
const SNAT_PORTS: (u16, u16) = (1024, 65535);
const SNAT_PROBES: usize = 32;
/// Addresses of a NAT target range a new connection looks at beyond those
/// its worker already holds port blocks of: a range as wide as a /8 is
/// sampled, not walked (walking it took 0.3 s per connection).
const ADDRESSES_LOOKED_AT: u64 = 64;

impl Sim<'_, '_> {
    fn nat_lookup(&self, k: &NatKey) -> Option<NatBinding> {
        self.out
            .writes
            .iter()
            .rev()
            .find_map(|w| match w {
                StateWrite::Nat(key, b) if key == k => Some(*b),
                _ => None,
            })
            .or_else(|| {
                self.state
                    .nat
                    .get(k)
                    .filter(|(_, t)| *t > self.now)
                    .map(|(b, _)| *b)
            })
    }

    fn nat_taken(&self, k: &NatKey) -> bool {
        self.nat_lookup(k).is_some()
    }

    /// The (sport, dport) of the current packet for NAT: L4 ports, or the
    /// echo id for ICMP echo. `None` for what NAT does not translate.
    fn nat_ports(&mut self) -> Option<(u16, u16)> {
        if !self.m.is_ipv4() {
            return None;
        }
        match self.m.nw_proto() {
            Protocol::TCP | Protocol::UDP => {
                if self.m.frag() == crate::flow::Frag::Later {
                    return None;
                }
                Some((self.m.tp_src(), self.m.tp_dst()))
            }
            Protocol::ICMP => {
                let t = self.m.tp_src() as u8;
                if t == wire::icmpv4::ECHO_REQUEST || t == wire::icmpv4::ECHO_REPLY {
                    let id = self.m.icmp_id();
                    Some((id, id))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn key(&self, kind: NatKind, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> NatKey {
        self.key_at(
            self.device.unwrap_or_default(),
            kind,
            src,
            sport,
            dst,
            dport,
        )
    }

    fn key_at(
        &self,
        device: Id,
        kind: NatKind,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
    ) -> NatKey {
        NatKey {
            kind,
            src,
            sport,
            dst,
            dport,
            proto: self.m.peek().nw_proto,
            device,
        }
    }

    /// Uniform in `lo..=hi`; the span is counted in 64 bits, so the whole
    /// address space (0.0.0.0-255.255.255.255) is a range like any other.
    fn random_in(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            lo
        } else {
            let span = u64::from(hi - lo) + 1;
            lo + (u64::from(self.random()) % span) as u32
        }
    }

    /// Applies a forward NAT rule. `Some(true)`: translated; `Some(false)`:
    /// refused (no free port); `None`: the rule does not apply to this packet.
    pub(crate) fn forward_nat(
        &mut self,
        dnat: bool,
        targets: &[NatTarget],
        is_static: bool,
    ) -> Result<Option<bool>, Missing> {
        if targets.is_empty() || !self.m.is_ipv4() {
            return Ok(None);
        }
        if is_static {
            // A floating IP: stateless, address only.
            let ip = targets[0].ip_from;
            let f = self.m.fields_mut();
            if dnat {
                f.nw_dst = ip;
                self.dst_rewritten = true;
            } else {
                f.nw_src = ip;
            }
            self.m.mark(field::NW_SRC | field::NW_DST);
            return Ok(Some(true));
        }
        let Some((sport, dport)) = self.nat_ports() else {
            return Ok(None);
        };
        let (src, dst) = (self.m.nw_src(), self.m.nw_dst());
        let icmp = self.m.peek().nw_proto == Protocol::ICMP;
        let fwd = self.key(
            if dnat {
                NatKind::FwdDnat
            } else {
                NatKind::FwdSnat
            },
            src,
            sport,
            dst,
            dport,
        );
        self.tag(Tag::Nat(fwd));
        self.stateful = true;
        let binding = match self.nat_lookup(&fwd) {
            Some(b) => b,
            None => match self.allocate(dnat, targets, sport, dst, dport, icmp)? {
                Some(b) => b,
                None => {
                    self.nat_exhausted = true;
                    return Ok(Some(false));
                }
            },
        };
        // Written on reuse too: it refreshes the idle timers here and on the
        // hosts the state is pushed to.
        let rev = if dnat {
            (
                self.key(NatKind::RevDnat, binding.ip, binding.port, src, sport),
                NatBinding {
                    ip: dst,
                    port: dport,
                },
            )
        } else {
            (
                self.key(NatKind::RevSnat, dst, dport, binding.ip, binding.port),
                NatBinding {
                    ip: src,
                    port: sport,
                },
            )
        };
        self.write(StateWrite::Nat(fwd, binding));
        self.write(StateWrite::Nat(rev.0, rev.1));
        self.tag(Tag::Nat(rev.0));
        self.step(self.device, || {
            let from = if dnat { (dst, dport) } else { (src, sport) };
            (
                crate::result::Step::Nat {
                    dnat,
                    from,
                    to: (binding.ip, binding.port),
                },
                format!(
                    "{} {}:{} -> {}:{}",
                    if dnat { "DNAT" } else { "SNAT" },
                    from.0,
                    from.1,
                    binding.ip,
                    binding.port
                ),
            )
        });
        let f = self.m.fields_mut();
        if dnat {
            f.nw_dst = binding.ip;
            if !icmp {
                f.tp_dst = binding.port;
            }
            self.dst_rewritten = true;
        } else {
            f.nw_src = binding.ip;
            if !icmp {
                f.tp_src = binding.port;
            }
        }
        Ok(Some(true))
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &mut self,
        dnat: bool,
        targets: &[NatTarget],
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        icmp: bool,
    ) -> Result<Option<NatBinding>, Missing> {
        let t = &targets[self.random() as usize % targets.len()];
        let (ip_lo, ip_hi) = (
            u32::from(t.ip_from),
            u32::from(t.ip_to).max(u32::from(t.ip_from)),
        );
        let keep_ports = t.port_from == 0 && t.port_to == 0;
        if dnat {
            let ip = Ipv4Addr::from(self.random_in(ip_lo, ip_hi));
            let port = if icmp || keep_ports {
                dport
            } else {
                self.random_in(t.port_from.into(), t.port_to.into()) as u16
            };
            return Ok(Some(NatBinding { ip, port }));
        }
        let (plo, phi) = if keep_ports {
            SNAT_PORTS
        } else {
            (t.port_from.max(1), t.port_to.max(t.port_from))
        };
        if icmp {
            return Ok(Some(NatBinding {
                ip: Ipv4Addr::from(self.random_in(ip_lo, ip_hi)),
                port: sport,
            }));
        }
        // A port is free for this destination if no reply key uses it yet.
        let free = |s: &Self, ip: Ipv4Addr, port: u16| {
            !s.nat_taken(&s.key(NatKind::RevSnat, dst, dport, ip, port))
        };
        if self.state.nat_leasing {
            return self.allocate_leased((ip_lo, ip_hi), (plo, phi), free);
        }
        for _ in 0..SNAT_PROBES {
            let ip = Ipv4Addr::from(self.random_in(ip_lo, ip_hi));
            let port = self.random_in(plo.into(), phi.into()) as u16;
            if free(self, ip, port) {
                return Ok(Some(NatBinding { ip, port }));
            }
        }
        // Crowded: scan every port of some addresses from a random start.
        let ports = u32::from(phi - plo) + 1;
        let start = self.random() % ports;
        let ips = u64::from(ip_hi - ip_lo) + 1;
        let first = u64::from(self.random()) % ips;
        for n in 0..ips.min(ADDRESSES_LOOKED_AT) {
            let ip = ip_lo + ((first + n) % ips) as u32;
            for i in 0..ports {
                let port = (u32::from(plo) + (start + i) % ports) as u16;
                if free(self, Ipv4Addr::from(ip), port) {
                    return Ok(Some(NatBinding {
                        ip: Ipv4Addr::from(ip),
                        port,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Dynamic SNAT from the port blocks this worker leased: random ports of
    /// owned blocks first, then every port of the newest blocks (older ones
    /// are full or nearly so; scanning them all per connection would make
    /// allocation quadratic). With none free, asks for a new block (the packet
    /// waits for the lease), unless leasing just failed for every address:
    /// then every owned port is tried before the connection is refused.
    fn allocate_leased(
        &mut self,
        (ip_lo, ip_hi): (u32, u32),
        (plo, phi): (u16, u16),
        free: impl Fn(&Self, Ipv4Addr, u16) -> bool,
    ) -> Result<Option<NatBinding>, Missing> {
        /// Blocks scanned whole before a new one is leased.
        const NEWEST: usize = 2;
        /// Random tries over all owned blocks first: they find ports freed
        /// in older blocks without scanning those.
        const PROBES: usize = 4;
        let device = self.device.unwrap_or_default();
        let ips = u64::from(ip_hi - ip_lo) + 1;
        let first = u64::from(self.random()) % ips;
        // The addresses looked at: every one of a small range from a random
        // start; of a wide one, those this worker holds blocks of, then a
        // sample (a new block is leased on one of them).
        let mut candidates: Vec<Ipv4Addr> = Vec::new();
        if ips > ADDRESSES_LOOKED_AT {
            candidates.extend(
                self.state
                    .nat_blocks
                    .keys()
                    .filter(|(d, ip)| *d == device && (ip_lo..=ip_hi).contains(&u32::from(*ip)))
                    .map(|(_, ip)| *ip),
            );
            candidates.sort_unstable();
        }
        let held = candidates.len();
        for n in 0..ips.min(ADDRESSES_LOOKED_AT) {
            let ip = Ipv4Addr::from(ip_lo + ((first + n) % ips) as u32);
            if !candidates[..held].contains(&ip) {
                candidates.push(ip);
            }
        }
        let owned = |s: &Self, ip: Ipv4Addr| -> Vec<(u16, u16)> {
            s.state
                .nat_blocks
                .get(&(device, ip))
                .into_iter()
                .flatten()
                .map(|b| {
                    let (lo, hi) = nat_block_ports(*b);
                    (lo.max(plo), hi.min(phi))
                })
                .filter(|(lo, hi)| lo <= hi)
                .collect()
        };
        let scan = |s: &Self, ip: Ipv4Addr, blocks: &[(u16, u16)]| {
            blocks
                .iter()
                .flat_map(|(lo, hi)| *lo..=*hi)
                .find(|p| free(s, ip, *p))
                .map(|port| NatBinding { ip, port })
        };
        let mut wanted = None;
        for &ip in &candidates {
            let blocks = owned(self, ip);
            for _ in 0..if blocks.is_empty() { 0 } else { PROBES } {
                let (lo, hi) = blocks[self.random() as usize % blocks.len()];
                let port = self.random_in(lo.into(), hi.into()) as u16;
                if free(self, ip, port) {
                    return Ok(Some(NatBinding { ip, port }));
                }
            }
            if let Some(b) = scan(self, ip, &blocks[blocks.len().saturating_sub(NEWEST)..]) {
                return Ok(Some(b));
            }
            let refused = self
                .state
                .nat_refused
                .get(&(device, ip))
                .is_some_and(|t| *t > self.now);
            if !refused && wanted.is_none() {
                wanted = Some(ip);
            }
        }
        if let Some(ip) = wanted {
            return Err(Missing::NatBlock {
                device,
                ip,
                ports: (plo, phi),
            });
        }
        // No more blocks to be had: the last resort is any owned port.
        for &ip in &candidates {
            if let Some(b) = scan(self, ip, &owned(self, ip)) {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Applies a reverse NAT rule: translates replies (and ICMP errors about
    /// the connection) back. `false` when there is no binding.
    pub(crate) fn reverse_nat(&mut self, dnat: bool) -> bool {
        if !self.m.is_ipv4() {
            return false;
        }
        let kind = if dnat {
            NatKind::RevDnat
        } else {
            NatKind::RevSnat
        };
        if self.m.nw_proto() == Protocol::ICMP {
            let t = self.m.tp_src() as u8;
            if t != wire::icmpv4::ECHO_REQUEST && t != wire::icmpv4::ECHO_REPLY {
                return self.reverse_nat_icmp_error(kind, dnat);
            }
        }
        let Some((sport, dport)) = self.nat_ports() else {
            return false;
        };
        let (src, dst) = (self.m.nw_src(), self.m.nw_dst());
        let icmp = self.m.peek().nw_proto == Protocol::ICMP;
        let key = self.key(kind, src, sport, dst, dport);
        self.tag(Tag::Nat(key));
        let Some(b) = self.nat_lookup(&key) else {
            return false;
        };
        self.stateful = true;
        // A reply keeps its connection alive like a forward packet does (as
        // conntrack counts either direction): both keys' idle timers restart
        // here and on the hosts the state goes to. Sticky bindings are kept
        // by their clients' forward traffic.
        let fwd = if dnat {
            self.key(NatKind::FwdDnat, dst, dport, b.ip, b.port)
        } else {
            self.key(NatKind::FwdSnat, b.ip, b.port, src, sport)
        };
        let there = NatBinding {
            ip: if dnat { src } else { dst },
            port: if dnat { sport } else { dport },
        };
        if self.nat_lookup(&fwd) == Some(there) {
            self.write(StateWrite::Nat(fwd, there));
            self.write(StateWrite::Nat(key, b));
        }
        let f = self.m.fields_mut();
        if dnat {
            f.nw_src = b.ip;
            if !icmp {
                f.tp_src = b.port;
            }
        } else {
            f.nw_dst = b.ip;
            if !icmp {
                f.tp_dst = b.port;
            }
            self.dst_rewritten = true;
        }
        self.note(self.device, || {
            format!(
                "reverse {} to {}:{}",
                if dnat { "DNAT" } else { "SNAT" },
                b.ip,
                b.port
            )
        });
        true
    }

    /// An ICMP error about a NATed connection: the key comes from the quoted
    /// packet, and both the outer header and the quote are rewritten.
    fn reverse_nat_icmp_error(&mut self, kind: NatKind, dnat: bool) -> bool {
        self.m.mark(field::ICMP_DATA);
        let Some(q) = crate::services::quoted(self.frame) else {
            return false;
        };
        let key = NatKey {
            kind,
            src: q.dst,
            sport: q.dport,
            dst: q.src,
            dport: q.sport,
            proto: q.proto,
            device: self.device.unwrap_or_default(),
        };
        self.tag(Tag::Nat(key));
        let Some(b) = self.nat_lookup(&key) else {
            return false;
        };
        let f = self.m.fields_mut();
        if dnat {
            f.nw_src = b.ip;
            self.quote_actions
                .push(Action::SetIcmpQuoteDst(b.ip, b.port));
        } else {
            f.nw_dst = b.ip;
            self.quote_actions
                .push(Action::SetIcmpQuoteSrc(b.ip, b.port));
            self.dst_rewritten = true;
        }
        true
    }

    /// The load balancer in front of the router's inbound filter: a TCP
    /// packet for an admin-up VIP is DNATed to a pool member. `Some(true)`:
    /// balanced; `Some(false)`: drop (no member, or balancer down); `None`:
    /// not for a VIP.
    pub(crate) fn lb_inbound(&mut self, lb_id: Id) -> Result<Option<bool>, Missing> {
        let lb = self
            .topo
            .load_balancers
            .get(&lb_id)
            .ok_or(Missing::LoadBalancer(lb_id))?;
        // Whether a packet is for a VIP depends on the balancer's VIPs: a
        // flow that found none goes when one is added.
        self.tag(Tag::Device(lb_id));
        if !self.m.is_ipv4() || self.m.nw_proto() != Protocol::TCP {
            return Ok(None);
        }
        let (dst, dport) = (self.m.nw_dst(), self.m.tp_dst());
        let Some(vip) = lb
            .vips
            .iter()
            .find(|v| v.admin_up && v.ip == dst && v.port == dport)
        else {
            return Ok(None);
        };
        self.tag(Tag::Device(vip.id));
        if !lb.admin_up {
            return Ok(Some(false));
        }
        let pool = self
            .topo
            .pools
            .get(&vip.pool)
            .ok_or(Missing::Pool(vip.pool))?;
        self.tag(Tag::Device(pool.id));
        let src = self.m.nw_src();
        let sport = if vip.sticky { 0 } else { self.m.tp_src() };
        let kind = if vip.sticky {
            NatKind::FwdStickyDnat
        } else {
            NatKind::FwdDnat
        };
        let fwd = self.key_at(lb_id, kind, src, sport, dst, dport);
        self.tag(Tag::Nat(fwd));
        self.stateful = true;
        // Keep a connection on its member while that member is valid: for
        // sticky VIPs only while it takes new traffic; otherwise while it is
        // admin-up, so disabled members drain.
        let existing = self.nat_lookup(&fwd).filter(|b| {
            pool.admin_up
                && pool.members.iter().any(|m| {
                    m.ip == b.ip
                        && m.port == b.port
                        && if vip.sticky { m.usable() } else { m.admin_up }
                })
        });
        let b = match existing {
            Some(b) => b,
            None => {
                let usable: Vec<_> = if pool.admin_up {
                    pool.members.iter().filter(|m| m.usable()).collect()
                } else {
                    Vec::new()
                };
                // In 64 bits: weights summing past u32 must not wrap to 0.
                let total: u64 = usable.iter().map(|m| u64::from(m.weight)).sum();
                if total == 0 {
                    self.note(Some(lb_id), || {
                        format!("VIP {}:{} has no usable member", vip.ip, vip.port)
                    });
                    return Ok(Some(false));
                }
                let wide = u64::from(self.random()) << 32 | u64::from(self.random());
                let mut pick = wide % total;
                let member = usable
                    .iter()
                    .find(|m| {
                        if pick < u64::from(m.weight) {
                            true
                        } else {
                            pick -= u64::from(m.weight);
                            false
                        }
                    })
                    .unwrap_or(&usable[0]);
                NatBinding {
                    ip: member.ip,
                    port: member.port,
                }
            }
        };
        // Written on reuse too (refresh here and on peers). The reverse key
        // is per connection even for a sticky VIP: the same client port may
        // have reached this member through another VIP moments ago, and the
        // newest connection's binding must be the one replies find.
        let rev = self.key_at(
            lb_id,
            NatKind::RevDnat,
            b.ip,
            b.port,
            src,
            self.m.peek().tp_src,
        );
        self.write(StateWrite::Nat(fwd, b));
        self.write(StateWrite::Nat(
            rev,
            NatBinding {
                ip: dst,
                port: dport,
            },
        ));
        self.note(Some(lb_id), || {
            format!("VIP {}:{} -> member {}:{}", vip.ip, vip.port, b.ip, b.port)
        });
        let f = self.m.fields_mut();
        f.nw_dst = b.ip;
        f.tp_dst = b.port;
        self.dst_rewritten = true;
        Ok(Some(true))
    }

    /// Replies from pool members get the VIP back as their source.
    pub(crate) fn lb_outbound(&mut self, lb_id: Id) -> Result<bool, Missing> {
        if !self.topo.load_balancers.contains_key(&lb_id) {
            return Err(Missing::LoadBalancer(lb_id));
        }
        if !self.m.is_ipv4() || self.m.nw_proto() != Protocol::TCP {
            return Ok(false);
        }
        let (src, sport, dst, dport) = (
            self.m.nw_src(),
            self.m.tp_src(),
            self.m.nw_dst(),
            self.m.tp_dst(),
        );
        let rev = self.key_at(lb_id, NatKind::RevDnat, src, sport, dst, dport);
        self.tag(Tag::Nat(rev));
        let Some(b) = self.nat_lookup(&rev) else {
            return Ok(false);
        };
        self.stateful = true;
        let f = self.m.fields_mut();
        f.nw_src = b.ip;
        f.tp_src = b.port;
        Ok(true)
    }
}
