//! The state tables a simulation reads (learned MACs, ARP entries,
//! connection tracking, NAT bindings) and the writes it asks for. The caller
//! owns the tables and applies the writes; the simulation never mutates them.

use crate::topology::Id;
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use wire::Mac;

/// Idle lifetime of connection-tracking and NAT entries (MidoNet: 60 s).
pub const STATE_IDLE_MS: u64 = 60_000;
/// ARP entries expire after 90 s and go stale after 60 s.
pub const ARP_EXPIRY_MS: u64 = 90_000;
pub const ARP_STALE_MS: u64 = 60_000;

/// Dynamic SNAT ports are handed out in blocks of this many, each leased by
/// one host (and within it, one worker) so no two allocate the same port.
pub const NAT_BLOCK_PORTS: u16 = 64;

/// The ports of block `b`.
pub fn nat_block_ports(b: u16) -> (u16, u16) {
    let lo = b.saturating_mul(NAT_BLOCK_PORTS);
    (lo, lo.saturating_add(NAT_BLOCK_PORTS - 1))
}

/// A tracked connection, per device: (src, sport, dst, dport, proto, device).
/// ICMP echo uses its identifier as both ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub proto: u8,
    pub device: Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    FwdSnat,
    FwdDnat,
    FwdStickyDnat,
    RevSnat,
    RevDnat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatKey {
    pub kind: NatKind,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub proto: u8,
    pub device: Id,
}

/// Where a NAT key translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatBinding {
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpEntry {
    pub mac: Mac,
    pub expires: u64,
}

/// A state change a simulation asks the caller to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateWrite {
    /// `mac` was seen on `port` of `bridge` in `vlan`.
    MacLearned {
        bridge: Id,
        vlan: u16,
        mac: Mac,
        port: Id,
    },
    /// A router learned `ip` is at `mac`.
    ArpLearned {
        router: Id,
        ip: Ipv4Addr,
        mac: Mac,
    },
    /// A gratuitous ARP on a bridge: `ip` is at `mac`.
    Ip4Mac {
        bridge: Id,
        ip: Ipv4Addr,
        mac: Mac,
    },
    /// The return direction of a forward connection.
    ConnTrack(ConnKey),
    Nat(NatKey, NatBinding),
}

/// The tables, as the agent keeps them.
#[derive(Clone, Debug, Default)]
pub struct StateTables {
    pub macs: FxHashMap<(Id, u16, Mac), Id>,
    pub ip4mac: FxHashMap<(Id, Ipv4Addr), Mac>,
    pub arp: FxHashMap<(Id, Ipv4Addr), ArpEntry>,
    /// Return keys of tracked connections, with their idle deadline.
    pub conntrack: FxHashMap<ConnKey, u64>,
    pub nat: FxHashMap<NatKey, (NatBinding, u64)>,
    /// Dynamic SNAT draws ports only from leased blocks (the agent); off, it
    /// draws from the whole range (a single simulator, unit tests).
    pub nat_leasing: bool,
    /// The port blocks this worker leased, per (device, NAT address).
    pub nat_blocks: FxHashMap<(Id, Ipv4Addr), Vec<u16>>,
    /// No block could be leased for (device, NAT address) until this time:
    /// new connections are refused meanwhile instead of waiting.
    pub nat_refused: FxHashMap<(Id, Ipv4Addr), u64>,
}

/// Bytes a hashbrown table of this capacity allocates for entries of
/// `entry` bytes: a power-of-two bucket count (7/8 of it usable) with one
/// control byte per bucket.
pub fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1)
}

impl StateTables {
    /// Bytes held for connection state: the conntrack and NAT tables.
    pub fn connection_bytes(&self) -> usize {
        use std::mem::size_of;
        table_bytes(self.conntrack.capacity(), size_of::<(ConnKey, u64)>())
            + table_bytes(
                self.nat.capacity(),
                size_of::<(NatKey, (NatBinding, u64))>(),
            )
    }

    pub fn apply(&mut self, writes: &[StateWrite], now: u64) {
        for w in writes {
            match *w {
                StateWrite::MacLearned {
                    bridge,
                    vlan,
                    mac,
                    port,
                } => {
                    self.macs.insert((bridge, vlan, mac), port);
                }
                StateWrite::ArpLearned { router, ip, mac } => {
                    self.arp.insert(
                        (router, ip),
                        ArpEntry {
                            mac,
                            expires: now + ARP_EXPIRY_MS,
                        },
                    );
                }
                StateWrite::Ip4Mac { bridge, ip, mac } => {
                    self.ip4mac.insert((bridge, ip), mac);
                }
                StateWrite::ConnTrack(k) => {
                    self.conntrack.insert(k, now + STATE_IDLE_MS);
                }
                StateWrite::Nat(k, b) => {
                    self.nat.insert(k, (b, now + STATE_IDLE_MS));
                }
            }
        }
    }

    /// Drops entries idle past their deadline.
    pub fn expire(&mut self, now: u64) {
        self.expire_unreferenced(now, |_| false);
    }

    /// MidoNet's lifecycle for connection state: an entry some installed
    /// flow depends on (`referenced`, by the flow tag of its key) stays, its
    /// idle deadline pushed out; once no flow needs it, it expires after the
    /// idle time. ARP entries expire on their own clock.
    pub fn expire_unreferenced(&mut self, now: u64, referenced: impl Fn(&crate::Tag) -> bool) {
        self.conntrack.retain(|k, t| {
            if referenced(&crate::Tag::ConnTrack(*k)) {
                *t = (*t).max(now + STATE_IDLE_MS);
            }
            *t > now
        });
        self.nat.retain(|k, (_, t)| {
            if referenced(&crate::Tag::Nat(*k)) {
                *t = (*t).max(now + STATE_IDLE_MS);
            }
            *t > now
        });
        self.arp.retain(|_, e| e.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lives_while_a_flow_needs_it_then_idles_out() {
        let key = |sport| ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 1),
            sport,
            dst: Ipv4Addr::new(10, 0, 0, 2),
            dport: 80,
            proto: 6,
            device: Id::nil(),
        };
        let mut t = StateTables::default();
        t.apply(
            &[StateWrite::ConnTrack(key(1)), StateWrite::ConnTrack(key(2))],
            0,
        );
        let held = |tag: &crate::Tag| *tag == crate::Tag::ConnTrack(key(1));
        // Long past the idle time: the referenced entry stays, the other goes.
        t.expire_unreferenced(STATE_IDLE_MS * 5, held);
        assert!(t.conntrack.contains_key(&key(1)));
        assert!(!t.conntrack.contains_key(&key(2)));
        // Its flow is gone: it idles out one idle time later, not at once.
        t.expire(STATE_IDLE_MS * 5 + 1);
        assert!(t.conntrack.contains_key(&key(1)));
        t.expire(STATE_IDLE_MS * 6 + 1);
        assert!(t.conntrack.is_empty());
    }
}
