//! Connection flows: the flows of NAT'd connections, kept compactly.
//!
//! A NAT'd TCP or UDP connection gets two exact flows (one per direction)
//! that differ from every other connection on the same path only in the
//! 5-tuple they match and the address and port they rewrite. Kept as full
//! flows they cost ~740 bytes each; here a flow is a 5-tuple key, the
//! rewrite, an expiry and the index of a shared template (mask, the other
//! matched fields, the remaining actions, the topology tags): ~40 bytes.
//!
//! What a connection flow does not keep: tags naming its own connection
//! state (conntrack and NAT keys). Only flows that found a NAT binding (they
//! rewrite) and read no conntrack entry are kept here. A binding changes
//! only when a new connection takes over its key (a client port reused
//! towards the same member through another VIP); the caller then
//! [forgets](ConnFlows::forget) the flow of that 5-tuple.

use crate::flows::TagHash;
use rustc_hash::FxHashMap;
use sim::flow::field;
use sim::{Action, FieldSet, Fields};
use std::net::Ipv4Addr;

/// The fields a connection flow matches exactly (every one must be in the
/// mask): the 5-tuple is the key, the port is checked on lookup.
const FIVE_TUPLE: u32 = field::IN_PORT
    | field::NW_SRC
    | field::NW_DST
    | field::NW_PROTO
    | field::TP_SRC
    | field::TP_DST;

/// A connection's 5-tuple, as a flow matches it. One flow per tuple: the
/// same tuple arriving on another port replaces it (a moved VM), so a
/// replaced binding finds its flow without knowing the port.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Key {
    fn of(f: &Fields) -> Option<Key> {
        (f.is_ipv4() && matches!(f.nw_proto, 6 | 17)).then(|| Key {
            src: f.nw_src.into(),
            dst: f.nw_dst.into(),
            sport: f.tp_src,
            dport: f.tp_dst,
            proto: f.nw_proto,
        })
    }
}

/// Which of the packet's fields a connection flow rewrites.
const RW_NW_SRC: u8 = 1;
const RW_TP_SRC: u8 = 2;
const RW_NW_DST: u8 = 4;
const RW_TP_DST: u8 = 8;

#[derive(Clone, Copy)]
struct Conn {
    in_port: u32,
    template: u32,
    /// Hard expiry, in tenths of a second (u32: 13 years of uptime).
    expires: u32,
    addr: u32,
    port: u16,
    rewrite: u8,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TemplateKey {
    mask: FieldSet,
    /// The masked fields other than the 5-tuple.
    rest: Fields,
    /// The actions other than the rewrites, ending with the single output.
    actions: Box<[Action]>,
    tags: Box<[TagHash]>,
}

struct Template {
    key: TemplateKey,
    live: bool,
}

/// A connection flow as `midonet flows` lists it. It keeps no counters and
/// no install time (that is what makes it small).
pub struct ConnFlow {
    pub mask: FieldSet,
    pub key: Fields,
    pub actions: Vec<Action>,
    /// Hard expiry (ms, the worker's clock; to a tenth of a second).
    pub expires: u64,
    pub tags: usize,
}

/// A connection flow's actions: the template's, with the connection's
/// rewrites before the output.
fn actions_of(c: &Conn, t: &Template, out: &mut Vec<Action>) {
    let (body, last) = t.key.actions.split_at(t.key.actions.len() - 1);
    out.clear();
    out.extend_from_slice(body);
    let addr = Ipv4Addr::from(c.addr);
    if c.rewrite & RW_NW_SRC != 0 {
        out.push(Action::SetNwSrc(addr));
    }
    if c.rewrite & RW_NW_DST != 0 {
        out.push(Action::SetNwDst(addr));
    }
    if c.rewrite & RW_TP_SRC != 0 {
        out.push(Action::SetTpSrc(c.port));
    }
    if c.rewrite & RW_TP_DST != 0 {
        out.push(Action::SetTpDst(c.port));
    }
    out.extend_from_slice(last);
}

#[derive(Default)]
pub struct ConnFlows {
    conns: FxHashMap<Key, Conn>,
    templates: Vec<Option<Template>>,
    free: Vec<u32>,
    index: FxHashMap<TemplateKey, u32>,
    by_tag: FxHashMap<TagHash, Vec<u32>>,
}

fn tenths(ms: u64) -> u32 {
    (ms / 100).min(u32::MAX as u64) as u32
}

fn rest_of(f: &Fields, mask: FieldSet) -> Fields {
    let mut r = f.masked(FieldSet(mask.0 & !FIVE_TUPLE));
    r.in_port = 0;
    r
}

/// The rewrite a flow's actions make, and the actions without it, if the
/// flow has a connection flow's shape: rewrites of one side's address and
/// port (at least one), other header rewrites (Ethernet, TTL: independent of
/// them, so the order may change), and exactly one output, last.
fn split(actions: &[Action]) -> Option<(u8, u32, u16, Vec<Action>)> {
    let (last, body) = actions.split_last()?;
    if !matches!(last, Action::Output(_)) {
        return None;
    }
    let (mut rw, mut addr, mut port) = (0u8, 0u32, 0u16);
    let mut rest = Vec::with_capacity(actions.len());
    for a in body {
        match *a {
            Action::SetNwSrc(ip) => (rw, addr) = (rw | RW_NW_SRC, ip.into()),
            Action::SetNwDst(ip) => (rw, addr) = (rw | RW_NW_DST, ip.into()),
            Action::SetTpSrc(p) => (rw, port) = (rw | RW_TP_SRC, p),
            Action::SetTpDst(p) => (rw, port) = (rw | RW_TP_DST, p),
            // VLAN tags move the headers the rewrites apply to: keep the
            // original order (a general flow).
            Action::Output(_)
            | Action::SetIcmpQuoteSrc(..)
            | Action::SetIcmpQuoteDst(..)
            | Action::PushVlan(_)
            | Action::PopVlan => {
                return None;
            }
            other => rest.push(other),
        }
    }
    let src = rw & (RW_NW_SRC | RW_TP_SRC) != 0;
    let dst = rw & (RW_NW_DST | RW_TP_DST) != 0;
    if rw == 0 || (src && dst) {
        return None;
    }
    rest.push(*last);
    Some((rw, addr, port, rest))
}

impl ConnFlows {
    pub fn len(&self) -> usize {
        self.conns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Keeps the flow here if it has a connection flow's shape (see the
    /// module); `false` leaves it to the general table. `shared_tags` (the
    /// hashes of its topology tags) is only asked for a flow that fits.
    pub fn install(
        &mut self,
        mask: FieldSet,
        key: &Fields,
        actions: &[Action],
        expires: u64,
        shared_tags: impl FnOnce() -> Vec<TagHash>,
    ) -> bool {
        if !mask.contains(FIVE_TUPLE) {
            return false;
        }
        let (Some(k), Some((rewrite, addr, port, rest))) = (Key::of(key), split(actions)) else {
            return false;
        };
        let tkey = TemplateKey {
            mask,
            rest: rest_of(key, mask),
            actions: rest.into_boxed_slice(),
            tags: shared_tags().into_boxed_slice(),
        };
        let template = match self.index.get(&tkey) {
            Some(t) => *t,
            None => {
                let t = match self.free.pop() {
                    Some(t) => t,
                    None => {
                        self.templates.push(None);
                        (self.templates.len() - 1) as u32
                    }
                };
                for tag in tkey.tags.iter() {
                    self.by_tag.entry(*tag).or_default().push(t);
                }
                self.index.insert(tkey.clone(), t);
                self.templates[t as usize] = Some(Template {
                    key: tkey,
                    live: true,
                });
                t
            }
        };
        self.conns.insert(
            k,
            Conn {
                in_port: key.in_port,
                template,
                expires: tenths(expires),
                addr,
                port,
                rewrite,
            },
        );
        true
    }

    /// The actions of the connection flow matching `f`, into `out`.
    pub fn lookup(&mut self, f: &Fields, now: u64, out: &mut Vec<Action>) -> bool {
        let Some(k) = Key::of(f) else { return false };
        let Some(c) = self.conns.get(&k).copied() else {
            return false;
        };
        if c.in_port != f.in_port {
            return false;
        }
        let t = match self.templates.get(c.template as usize) {
            Some(Some(t)) if t.live && c.expires > tenths(now) => t,
            _ => {
                self.conns.remove(&k);
                return false;
            }
        };
        if rest_of(f, t.key.mask) != t.key.rest {
            return false;
        }
        actions_of(&c, t, out);
        true
    }

    /// Every live connection flow, as a flow dump shows one.
    pub fn dump(&self, now: u64) -> impl Iterator<Item = ConnFlow> + '_ {
        self.conns.iter().filter_map(move |(k, c)| {
            let t = self.templates.get(c.template as usize)?.as_ref()?;
            if !t.live || c.expires <= tenths(now) {
                return None;
            }
            let mut key = t.key.rest.clone();
            key.in_port = c.in_port;
            key.nw_src = Ipv4Addr::from(k.src);
            key.nw_dst = Ipv4Addr::from(k.dst);
            key.nw_proto = k.proto;
            key.tp_src = k.sport;
            key.tp_dst = k.dport;
            let mut actions = Vec::new();
            actions_of(c, t, &mut actions);
            Some(ConnFlow {
                mask: t.key.mask,
                key,
                actions,
                expires: u64::from(c.expires) * 100,
                tags: t.key.tags.len(),
            })
        })
    }

    /// Removes the flow matching this 5-tuple, on whatever port: the NAT
    /// binding it rewrites by was replaced. Returns whether there was one.
    pub fn forget(&mut self, k: &sim::NatKey) -> bool {
        let key = Key {
            src: k.src.into(),
            dst: k.dst.into(),
            sport: k.sport,
            dport: k.dport,
            proto: k.proto,
        };
        self.conns.remove(&key).is_some()
    }

    /// Retires the templates carrying any of `tags` (their connection flows
    /// then miss, and go at the next expiry); returns how many templates.
    pub fn invalidate(&mut self, tags: &[TagHash]) -> usize {
        let mut dead = Vec::new();
        for t in tags {
            if let Some(ids) = self.by_tag.remove(t) {
                dead.extend(ids);
            }
        }
        if dead.is_empty() {
            return 0;
        }
        let mut n = 0;
        for t in &dead {
            if let Some(Some(tmpl)) = self.templates.get_mut(*t as usize)
                && tmpl.live
            {
                tmpl.live = false;
                self.index.remove(&tmpl.key);
                n += 1;
            }
        }
        n
    }

    /// Drops expired flows and flows of retired templates, then templates no
    /// flow uses.
    pub fn expire(&mut self, now: u64) -> usize {
        let now = tenths(now);
        let templates = &self.templates;
        let before = self.conns.len();
        self.conns.retain(|_, c| {
            c.expires > now && matches!(templates.get(c.template as usize), Some(Some(t)) if t.live)
        });
        let mut used = vec![false; self.templates.len()];
        for c in self.conns.values() {
            used[c.template as usize] = true;
        }
        for (i, slot) in self.templates.iter_mut().enumerate() {
            if slot.is_some() && !used[i] {
                let t = slot.take().expect("checked");
                if t.live {
                    self.index.remove(&t.key);
                }
                for tag in t.key.tags.iter() {
                    if let Some(v) = self.by_tag.get_mut(tag) {
                        v.retain(|x| *x as usize != i);
                        if v.is_empty() {
                            self.by_tag.remove(tag);
                        }
                    }
                }
                self.free.push(i as u32);
            }
        }
        before - self.conns.len()
    }

    pub fn clear(&mut self) {
        *self = ConnFlows::default();
    }

    /// Bytes held: the connection table by capacity, and the templates.
    pub fn bytes(&self) -> usize {
        use std::mem::size_of;
        let templates: usize = self
            .templates
            .iter()
            .flatten()
            .map(|t| {
                size_of::<Template>()
                    + t.key.actions.len() * size_of::<Action>()
                    + t.key.tags.len() * size_of::<TagHash>()
            })
            .sum();
        sim::table_bytes(self.conns.capacity(), size_of::<(Key, Conn)>()) + templates
    }
}

#[cfg(test)]
mod tests {
    use crate::flows::FlowTable;
    use sim::flow::field;
    use sim::{Action, ConnKey, FieldSet, Fields, NatKey, NatKind, Output, Tag};
    use std::net::Ipv4Addr;
    use uuid::Uuid;
    use wire::Mac;

    const MASK: u32 = super::FIVE_TUPLE | field::ETH_TYPE | field::ETH_DST | field::NW_TTL;

    fn pkt(sport: u16) -> Fields {
        Fields {
            in_port: 3,
            eth_type: 0x0800,
            eth_dst: Mac([2, 0, 0, 0, 0, 1]),
            nw_src: Ipv4Addr::new(10, 0, 0, 2),
            nw_dst: Ipv4Addr::new(203, 0, 113, 9),
            nw_proto: 6,
            nw_ttl: 64,
            tp_src: sport,
            tp_dst: 80,
            ..Default::default()
        }
    }

    fn snat(port: u16, out: Output) -> Vec<Action> {
        vec![
            Action::SetEthSrc(Mac([2, 0, 0, 0, 0, 2])),
            Action::SetNwSrc(Ipv4Addr::new(198, 51, 100, 1)),
            Action::SetTtl(63),
            Action::SetTpSrc(port),
            Action::Output(out),
        ]
    }

    fn output() -> Output {
        Output {
            port: Uuid::new_v4(),
            host: None,
            tunnel_key: 7,
        }
    }

    fn nat_tag(sport: u16) -> Tag {
        Tag::Nat(NatKey {
            kind: NatKind::FwdSnat,
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport,
            dst: Ipv4Addr::new(203, 0, 113, 9),
            dport: 80,
            proto: 6,
            device: Uuid::nil(),
        })
    }

    /// `n` SNAT'd connections from 10.0.0.2:40000… through `router`.
    fn snat_connections(n: u16, out: Output, router: Tag) -> FlowTable {
        let mut t = FlowTable::default();
        for i in 0..n {
            t.install(
                FieldSet(MASK),
                pkt(40000 + i),
                snat(5000 + i, out),
                vec![router, nat_tag(40000 + i)],
                30_000,
            );
        }
        t
    }

    #[test]
    fn nat_flows_share_a_template_and_keep_only_their_rewrite() {
        let out = output();
        let router = Tag::Device(Uuid::new_v4());
        let mut t = snat_connections(1000, out, router);
        assert_eq!(t.len(), 1000);
        assert_eq!(
            t.conns.templates.iter().flatten().count(),
            1,
            "one shared template"
        );
        let mut acts = Vec::new();
        assert!(t.lookup(&pkt(40007), 0, 64, &mut acts));
        // The same rewrites, the output last.
        let mut want = snat(5007, out);
        let mut got = acts.clone();
        want.sort_by_key(|a| format!("{a:?}"));
        got.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(got, want);
        assert!(matches!(acts.last(), Some(Action::Output(_))));
        // A field of the template's mask that differs: a miss.
        let mut other = pkt(40007);
        other.nw_ttl = 12;
        assert!(!t.lookup(&other, 0, 64, &mut acts));
        // The connection's own state tag does not remove it; a topology tag does.
        t.invalidate(&[nat_tag(40007)]);
        assert!(t.lookup(&pkt(40007), 0, 64, &mut acts));
        t.invalidate(&[router]);
        assert!(!t.lookup(&pkt(40007), 0, 64, &mut acts));
        t.expire(1);
        assert!(t.is_empty());
        assert!(
            t.conns.templates.iter().flatten().next().is_none(),
            "template freed"
        );
        // Expiry.
        t.install(FieldSet(MASK), pkt(1), snat(2, out), vec![router], 30_000);
        assert!(t.lookup(&pkt(1), 29_000, 64, &mut acts));
        assert!(!t.lookup(&pkt(1), 30_000, 64, &mut acts));
    }

    #[test]
    fn a_dump_lists_each_live_connection_flow_with_its_own_fields() {
        let out = output();
        let router = Tag::Device(Uuid::new_v4());
        let t = snat_connections(3, out, router);
        assert_eq!(t.dump().count(), 0, "not in the general table");
        let mut got: Vec<_> = t.dump_connections(1_000).collect();
        got.sort_by_key(|c| c.key.tp_src);
        assert_eq!(got.len(), 3);
        for (i, c) in got.iter().enumerate() {
            let i = i as u16;
            assert_eq!(c.key, pkt(40000 + i));
            assert_eq!(c.mask, FieldSet(MASK));
            assert!(c.actions.contains(&Action::SetTpSrc(5000 + i)));
            assert!(matches!(c.actions.last(), Some(Action::Output(_))));
            assert_eq!(c.expires, 30_000);
            assert_eq!(c.tags, 1, "the template's topology tag");
        }
        // Expired ones are not listed, even before the sweep.
        assert_eq!(t.dump_connections(30_000).count(), 0);
    }

    #[test]
    fn a_replaced_binding_forgets_its_connection_flow_on_any_port() {
        let out = output();
        let mut t = FlowTable::default();
        let mut acts = Vec::new();
        t.install(FieldSet(MASK), pkt(7), snat(5, out), vec![], 30_000);
        t.install(FieldSet(MASK), pkt(8), snat(6, out), vec![], 30_000);
        // Another port: a miss, not the flow of port 3.
        let mut moved = pkt(7);
        moved.in_port = 4;
        assert!(!t.lookup(&moved, 0, 64, &mut acts));
        assert!(t.lookup(&pkt(7), 0, 64, &mut acts));
        // The binding of 10.0.0.2:7 -> 203.0.113.9:80 now translates
        // elsewhere: its flow goes, the other connection's stays.
        let Tag::Nat(k) = nat_tag(7) else {
            unreachable!()
        };
        assert!(t.forget_binding(&k));
        assert!(!t.lookup(&pkt(7), 0, 64, &mut acts));
        assert!(t.lookup(&pkt(8), 0, 64, &mut acts));
        // The same 5-tuple installed from another port replaces the flow.
        t.install(FieldSet(MASK), moved.clone(), snat(9, out), vec![], 30_000);
        assert!(t.lookup(&moved, 0, 64, &mut acts));
        assert!(acts.contains(&Action::SetTpSrc(9)));
    }

    #[test]
    fn other_flows_stay_in_the_general_table() {
        let out = output();
        let mut t = FlowTable::default();
        // Read conntrack state: general.
        let ct = Tag::ConnTrack(ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport: 1,
            dst: Ipv4Addr::new(203, 0, 113, 9),
            dport: 80,
            proto: 6,
            device: Uuid::nil(),
        });
        t.install(FieldSet(MASK), pkt(1), snat(2, out), vec![ct], 30_000);
        // No rewrite (no NAT binding found): general.
        t.install(
            FieldSet(MASK),
            pkt(2),
            vec![Action::Output(out)],
            vec![],
            30_000,
        );
        // Not an exact 5-tuple: general.
        let mut wild = pkt(3);
        wild.nw_src = Ipv4Addr::new(10, 9, 9, 9);
        t.install(
            FieldSet(MASK & !field::TP_SRC),
            wild,
            snat(4, out),
            vec![],
            30_000,
        );
        // Two outputs: general.
        t.install(
            FieldSet(MASK),
            pkt(5),
            vec![
                Action::SetNwSrc(Ipv4Addr::new(1, 1, 1, 1)),
                Action::Output(out),
                Action::Output(out),
            ],
            vec![],
            30_000,
        );
        // A VLAN push: general (the order of rewrites matters there).
        let mut vlan = pkt(6);
        vlan.nw_src = Ipv4Addr::new(10, 8, 8, 8);
        t.install(
            FieldSet(MASK),
            vlan,
            vec![
                Action::PushVlan(5),
                Action::SetNwSrc(Ipv4Addr::new(1, 1, 1, 1)),
                Action::Output(out),
            ],
            vec![],
            30_000,
        );
        assert!(t.conns.is_empty());
        assert_eq!(t.len(), 5);
        let mut acts = Vec::new();
        assert!(t.lookup(&pkt(2), 0, 64, &mut acts));
        assert_eq!(acts, vec![Action::Output(out)]);
        // The conntrack tag still removes its flow.
        t.invalidate(&[ct]);
        assert!(!t.lookup(&pkt(1), 0, 64, &mut acts));
    }

    #[test]
    fn a_connection_flow_costs_tens_of_bytes() {
        let out = output();
        let mut t = FlowTable::default();
        let n = 50_000u32;
        for i in 0..n {
            let mut f = pkt((i % 60000) as u16);
            f.nw_src = Ipv4Addr::from(0x0a00_0000 + i);
            t.install(
                FieldSet(MASK),
                f,
                snat(1024 + (i % 60000) as u16, out),
                vec![],
                30_000,
            );
        }
        let per_flow = t.bytes() / n as usize;
        assert!(per_flow < 100, "{per_flow} bytes per connection flow");
    }
}
