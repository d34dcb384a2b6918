//! Reference rules between objects, as MidoNet's storage bindings have them:
//! what must exist when an object names it, and what a delete cascades, clears
//! or refuses. A [`Tx`] is a transaction under construction over a [`View`] of
//! the store; it sees its own writes, so a cascade is computed in one pass.

use crate::kind::{Kind, Object};
use crate::schema::{OnDelete, REFS, Variant};
use crate::*;
use std::collections::HashMap;
use uuid::Uuid;

/// Read access to stored objects as serialized bytes.
pub trait View {
    fn read(&self, kind: Kind, id: Uuid) -> Option<Vec<u8>>;
    fn read_all(&self, kind: Kind) -> Vec<Vec<u8>>;
    /// The ids of the stored objects naming `id` in row `row` of
    /// [`REFS`], from an index (a superset will do: each is read and
    /// checked); `None` without one, and deletes read the whole kind.
    fn referrers(&self, row: usize, id: Uuid) -> Option<Vec<Uuid>> {
        let _ = (row, id);
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("{kind} {id} does not exist")]
    Missing {
        kind: Kind,
        id: Uuid,
        property: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("stored {0} is corrupt: {1}")]
    Corrupt(Kind, String),
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put { kind: Kind, id: Uuid, data: Vec<u8> },
    Delete { kind: Kind, id: Uuid },
}

pub struct Tx<'a> {
    view: &'a dyn View,
    overlay: HashMap<(Kind, Uuid), Option<Vec<u8>>>,
    order: Vec<(Kind, Uuid)>,
}

impl<'a> Tx<'a> {
    pub fn new(view: &'a dyn View) -> Self {
        Tx {
            view,
            overlay: HashMap::new(),
            order: Vec::new(),
        }
    }

    fn decode<T: Object>(bytes: &[u8]) -> Result<T, RefError> {
        serde_json::from_slice(bytes).map_err(|e| RefError::Corrupt(T::KIND, e.to_string()))
    }

    pub fn get<T: Object>(&self, id: Uuid) -> Result<Option<T>, RefError> {
        match self.overlay.get(&(T::KIND, id)) {
            Some(Some(b)) => Self::decode(b).map(Some),
            Some(None) => Ok(None),
            None => self
                .view
                .read(T::KIND, id)
                .map(|b| Self::decode(&b))
                .transpose(),
        }
    }

    pub fn must<T: Object>(&self, id: Uuid, property: &'static str) -> Result<T, RefError> {
        self.get(id)?.ok_or(RefError::Missing {
            kind: T::KIND,
            id,
            property,
        })
    }

    pub fn exists(&self, kind: Kind, id: Uuid) -> bool {
        match self.overlay.get(&(kind, id)) {
            Some(v) => v.is_some(),
            None => self.view.read(kind, id).is_some(),
        }
    }

    /// Every object of a kind, with this transaction's writes applied.
    pub fn all<T: Object>(&self) -> Result<Vec<T>, RefError> {
        let mut out = Vec::new();
        for b in self.view.read_all(T::KIND) {
            let o: T = Self::decode(&b)?;
            if !self.overlay.contains_key(&(T::KIND, o.id())) {
                out.push(o);
            }
        }
        for ((k, _), v) in &self.overlay {
            if *k == T::KIND
                && let Some(b) = v
            {
                out.push(Self::decode(b)?);
            }
        }
        Ok(out)
    }

    /// A topology object, with this transaction's writes applied.
    fn get_obj(&self, kind: Kind, id: Uuid) -> Result<Option<Obj>, RefError> {
        let bytes = match self.overlay.get(&(kind, id)) {
            Some(v) => v.clone(),
            None => self.view.read(kind, id),
        };
        bytes
            .map(|b| Obj::decode(kind, &b).ok_or_else(|| RefError::Corrupt(kind, format!("{id}"))))
            .transpose()
    }

    /// The objects naming `id` in row `row` of [`REFS`], with this
    /// transaction's writes applied: from the view's index, or by reading
    /// the whole kind without one.
    fn referring(&self, row: usize, id: Uuid) -> Result<Vec<Obj>, RefError> {
        let r = &REFS[row];
        let names = |o: &Obj| (r.get)(o).contains(&id);
        let mut out = Vec::new();
        match self.view.referrers(row, id) {
            Some(ids) => {
                for c in ids {
                    if !self.overlay.contains_key(&(r.from, c))
                        && let Some(o) = self.get_obj(r.from, c)?
                        && names(&o)
                    {
                        out.push(o);
                    }
                }
            }
            None => {
                for b in self.view.read_all(r.from) {
                    let o = Obj::decode(r.from, &b)
                        .ok_or_else(|| RefError::Corrupt(r.from, "undecodable".into()))?;
                    if !self.overlay.contains_key(&(r.from, o.id())) && names(&o) {
                        out.push(o);
                    }
                }
            }
        }
        for ((k, _), v) in &self.overlay {
            if *k == r.from
                && let Some(b) = v
                && let Some(o) = Obj::decode(r.from, b)
                && names(&o)
            {
                out.push(o);
            }
        }
        out.sort_by_key(Obj::id);
        Ok(out)
    }

    /// The `T`s naming `id` in their field `field` (a bridge's DHCP
    /// subnets), with this transaction's writes applied.
    pub fn naming<T: Variant + Clone>(
        &self,
        field: &str,
        to: Kind,
        id: Uuid,
    ) -> Result<Vec<T>, RefError> {
        let row = crate::schema::row(T::KIND, field, to);
        Ok(self
            .referring(row, id)?
            .iter()
            .filter_map(|o| T::of(o).cloned())
            .collect())
    }

    fn touch(&mut self, key: (Kind, Uuid), v: Option<Vec<u8>>) {
        if !self.overlay.contains_key(&key) {
            self.order.push(key);
        }
        self.overlay.insert(key, v);
    }

    pub fn put<T: Object>(&mut self, o: &T) {
        self.touch((T::KIND, o.id()), Some(crate::stored::encode(o)));
    }

    pub fn remove(&mut self, kind: Kind, id: Uuid) {
        self.touch((kind, id), None);
    }

    /// The writes, in the order first made.
    pub fn into_changes(self) -> Vec<Change> {
        let mut overlay = self.overlay;
        self.order
            .into_iter()
            .map(|(kind, id)| match overlay.remove(&(kind, id)).flatten() {
                Some(data) => Change::Put { kind, id, data },
                None => Change::Delete { kind, id },
            })
            .collect()
    }

    /// Checks that every object `o` names exists.
    pub fn check_refs<T: Refs>(&self, o: &T) -> Result<(), RefError> {
        for (property, kind, id) in o.refs() {
            if !self.exists(kind, id) {
                return Err(RefError::Missing { kind, id, property });
            }
        }
        Ok(())
    }

    /// Deletes an object and applies the reference rules: the table's
    /// ([`REFS`], each row's [`OnDelete`]) for the topology's kinds, then
    /// those of the kinds outside it. Deleting what is already gone is a
    /// no-op, so cascades may overlap.
    pub fn delete(&mut self, kind: Kind, id: Uuid) -> Result<(), RefError> {
        if !self.exists(kind, id) {
            return Ok(());
        }
        self.refuse_delete(kind, id)?;
        for (row, r) in REFS.iter().enumerate().filter(|(_, r)| r.to == kind) {
            match r.on_delete {
                OnDelete::Keep => {}
                OnDelete::Cascade => {
                    for o in self.referring(row, id)? {
                        self.delete(r.from, o.id())?;
                    }
                }
                OnDelete::Clear => {
                    for o in self.referring(row, id)? {
                        if let Some(c) = o.cleared(row, id) {
                            self.touch((c.kind(), c.id()), Some(c.encode()));
                        }
                    }
                }
            }
        }
        match kind {
            Kind::Router => self.delete_router(id)?,
            Kind::Bridge => self.delete_traces_on(id)?,
            Kind::Port => self.delete_port(id)?,
            Kind::Rule => self.delete_rule(id)?,
            Kind::Mirror => self.delete_mirror(id)?,
            Kind::Host => self.delete_host(id)?,
            _ => {}
        }
        self.remove(kind, id);
        Ok(())
    }

    /// Deletes refused while something still depends on the object.
    fn refuse_delete(&self, kind: Kind, id: Uuid) -> Result<(), RefError> {
        match kind {
            Kind::Router => {
                let r: Router = self.must(id, "id")?;
                if let Some(lb) = r.load_balancer_id {
                    return Err(RefError::Conflict(format!(
                        "router {id} has load balancer {lb}; detach it (loadBalancerId = null) first"
                    )));
                }
            }
            Kind::Bridge => {
                let b: Bridge = self.must(id, "id")?;
                if !b.vx_lan_port_ids.is_empty() {
                    return Err(RefError::Conflict(format!(
                        "bridge {id} has VTEP bindings; remove them first"
                    )));
                }
            }
            Kind::TunnelZone
                if self
                    .all::<Vtep>()?
                    .iter()
                    .any(|v| v.tunnel_zone_id == Some(id)) =>
            {
                return Err(RefError::Conflict(format!(
                    "tunnel zone {id} is used by a VTEP"
                )));
            }
            Kind::Host if !self.naming::<Port>("hostId", Kind::Host, id)?.is_empty() => {
                return Err(RefError::Forbidden(format!(
                    "host {id} has port bindings; unbind them first"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn delete_traces_on(&mut self, device: Uuid) -> Result<(), RefError> {
        for t in self.all::<TraceRequest>()? {
            if t.device_id == Some(device) {
                self.remove(Kind::TraceRequest, t.id);
            }
        }
        Ok(())
    }

    // What follows is outside the table: kinds the topology does not hold
    // (BGP, L2 insertions, mirrors, traces, tunnel zones), and a chain's
    // list of its rules.

    fn delete_router(&mut self, id: Uuid) -> Result<(), RefError> {
        for n in self.all::<BgpNetwork>()? {
            if n.router_id == Some(id) {
                self.remove(Kind::BgpNetwork, n.id);
            }
        }
        for n in self.all::<BgpPeer>()? {
            if n.router_id == Some(id) {
                self.remove(Kind::BgpPeer, n.id);
            }
        }
        self.delete_traces_on(id)
    }

    fn delete_port(&mut self, id: Uuid) -> Result<(), RefError> {
        for i in self.all::<L2Insertion>()? {
            if i.port_id == Some(id) || i.srv_port_id == Some(id) {
                self.remove(Kind::L2Insertion, i.id);
            }
        }
        for m in self.all::<Mirror>()? {
            if m.to_port_id == Some(id) {
                self.delete(Kind::Mirror, m.id)?;
            }
        }
        self.delete_traces_on(id)
    }

    fn delete_rule(&mut self, id: Uuid) -> Result<(), RefError> {
        let r: Rule = self.must(id, "id")?;
        if let Some(mut c) = self.get::<Chain>(r.chain_id)? {
            c.rule_ids.retain(|x| *x != id);
            self.put(&c);
        }
        Ok(())
    }

    fn delete_mirror(&mut self, id: Uuid) -> Result<(), RefError> {
        let strip = |v: &mut Vec<Uuid>| {
            let n = v.len();
            v.retain(|x| *x != id);
            n != v.len()
        };
        for mut o in self.all::<Router>()? {
            if [
                strip(&mut o.inbound_mirror_ids),
                strip(&mut o.outbound_mirror_ids),
            ]
            .contains(&true)
            {
                self.put(&o);
            }
        }
        for mut o in self.all::<Bridge>()? {
            if [
                strip(&mut o.inbound_mirror_ids),
                strip(&mut o.outbound_mirror_ids),
            ]
            .contains(&true)
            {
                self.put(&o);
            }
        }
        for mut o in self.all::<Port>()? {
            let hit = [
                strip(&mut o.inbound_mirror_ids),
                strip(&mut o.outbound_mirror_ids),
                strip(&mut o.post_in_filter_mirror_ids),
                strip(&mut o.pre_out_filter_mirror_ids),
            ];
            if hit.contains(&true) {
                self.put(&o);
            }
        }
        Ok(())
    }

    fn delete_host(&mut self, id: Uuid) -> Result<(), RefError> {
        for mut z in self.all::<TunnelZone>()? {
            if z.member(id).is_some() {
                z.members.retain(|m| m.host_id != Some(id));
                self.put(&z);
            }
        }
        Ok(())
    }
}

/// The objects an object names, as (property, kind, id).
pub trait Refs {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)>;
}

fn opt(out: &mut Vec<(&'static str, Kind, Uuid)>, p: &'static str, k: Kind, v: Option<Uuid>) {
    if let Some(id) = v {
        out.push((p, k, id));
    }
}

fn many(out: &mut Vec<(&'static str, Kind, Uuid)>, p: &'static str, k: Kind, v: &[Uuid]) {
    out.extend(v.iter().map(|id| (p, k, *id)));
}

/// What bridges, routers and ports all name: their two filters and two
/// mirror lists.
fn device_refs(
    out: &mut Vec<(&'static str, Kind, Uuid)>,
    [inbound, outbound]: [Option<Uuid>; 2],
    [in_mirrors, out_mirrors]: [&[Uuid]; 2],
) {
    opt(out, "inboundFilterId", Kind::Chain, inbound);
    opt(out, "outboundFilterId", Kind::Chain, outbound);
    many(out, "inboundMirrorIds", Kind::Mirror, in_mirrors);
    many(out, "outboundMirrorIds", Kind::Mirror, out_mirrors);
}

impl Refs for Bridge {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        device_refs(
            &mut o,
            [self.inbound_filter_id, self.outbound_filter_id],
            [&self.inbound_mirror_ids, &self.outbound_mirror_ids],
        );
        o
    }
}

impl Refs for Router {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        device_refs(
            &mut o,
            [self.inbound_filter_id, self.outbound_filter_id],
            [&self.inbound_mirror_ids, &self.outbound_mirror_ids],
        );
        opt(
            &mut o,
            "localRedirectChainId",
            Kind::Chain,
            self.local_redirect_chain_id,
        );
        opt(&mut o, "forwardChainId", Kind::Chain, self.forward_chain_id);
        opt(
            &mut o,
            "loadBalancerId",
            Kind::LoadBalancer,
            self.load_balancer_id,
        );
        o
    }
}

impl Refs for Port {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        device_refs(
            &mut o,
            [self.inbound_filter_id, self.outbound_filter_id],
            [&self.inbound_mirror_ids, &self.outbound_mirror_ids],
        );
        many(
            &mut o,
            "postInFilterMirrorIds",
            Kind::Mirror,
            &self.post_in_filter_mirror_ids,
        );
        many(
            &mut o,
            "preOutFilterMirrorIds",
            Kind::Mirror,
            &self.pre_out_filter_mirror_ids,
        );
        o
    }
}

impl Refs for Rule {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "jumpChainId", Kind::Chain, self.jump_chain_id);
        opt(&mut o, "targetPortId", Kind::Port, self.target_port_id);
        condition_refs(&mut o, &self.condition);
        o
    }
}

fn condition_refs(o: &mut Vec<(&'static str, Kind, Uuid)>, c: &Condition) {
    many(o, "inPorts", Kind::Port, &c.in_ports);
    many(o, "outPorts", Kind::Port, &c.out_ports);
    opt(o, "portGroup", Kind::PortGroup, c.port_group);
    opt(o, "inPortGroup", Kind::PortGroup, c.in_port_group);
    opt(o, "outPortGroup", Kind::PortGroup, c.out_port_group);
    opt(o, "ipAddrGroupSrc", Kind::IpAddrGroup, c.ip_addr_group_src);
    opt(o, "ipAddrGroupDst", Kind::IpAddrGroup, c.ip_addr_group_dst);
}

impl Refs for Mirror {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "toPortId", Kind::Port, self.to_port_id);
        for c in &self.conditions {
            condition_refs(&mut o, c);
        }
        o
    }
}

impl Refs for Pool {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(
            &mut o,
            "loadBalancerId",
            Kind::LoadBalancer,
            self.load_balancer_id,
        );
        opt(
            &mut o,
            "healthMonitorId",
            Kind::HealthMonitor,
            self.health_monitor_id,
        );
        o
    }
}

impl Refs for PoolMember {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "poolId", Kind::Pool, self.pool_id);
        o
    }
}

impl Refs for Vip {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "poolId", Kind::Pool, self.pool_id);
        o
    }
}

impl Refs for L2Insertion {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "portId", Kind::Port, self.port_id);
        opt(&mut o, "srvPortId", Kind::Port, self.srv_port_id);
        o
    }
}

impl Refs for Vtep {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(
            &mut o,
            "tunnelZoneId",
            Kind::TunnelZone,
            self.tunnel_zone_id,
        );
        o
    }
}

impl Refs for ServiceContainer {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(
            &mut o,
            "serviceGroupId",
            Kind::ServiceContainerGroup,
            self.service_group_id,
        );
        opt(&mut o, "portId", Kind::Port, self.port_id);
        o
    }
}

impl Refs for ServiceContainerGroup {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        opt(&mut o, "portGroupId", Kind::PortGroup, self.port_group_id);
        o
    }
}

impl Refs for TraceRequest {
    fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> {
        let mut o = Vec::new();
        if let (Some(t), Some(id)) = (self.device_type.as_deref(), self.device_id) {
            let k = match t {
                "BRIDGE" => Kind::Bridge,
                "ROUTER" => Kind::Router,
                _ => Kind::Port,
            };
            o.push(("deviceId", k, id));
        }
        if let Some(c) = &self.condition {
            condition_refs(&mut o, c);
        }
        o
    }
}

macro_rules! no_refs {
    ($($t:ty),*) => { $(impl Refs for $t { fn refs(&self) -> Vec<(&'static str, Kind, Uuid)> { Vec::new() } })* };
}
no_refs!(
    Chain,
    Route,
    PortGroup,
    IpAddrGroup,
    Host,
    TunnelZone,
    DhcpSubnet,
    LoadBalancer,
    HealthMonitor,
    BgpNetwork,
    BgpPeer
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A store in memory; `indexed` answers [`View::referrers`] (as the
    /// cluster's store does), otherwise deletes read whole kinds.
    #[derive(Default)]
    struct Mem(BTreeMap<(Kind, Uuid), Vec<u8>>, bool);
    impl View for Mem {
        fn referrers(&self, row: usize, id: Uuid) -> Option<Vec<Uuid>> {
            if !self.1 {
                return None;
            }
            let mut x = crate::schema::Referrers::default();
            for ((k, i), b) in &self.0 {
                x.set((*k, *i), Obj::decode(*k, b).as_ref());
            }
            Some(x.of(row, id).collect())
        }
        fn read(&self, kind: Kind, id: Uuid) -> Option<Vec<u8>> {
            self.0.get(&(kind, id)).cloned()
        }
        fn read_all(&self, kind: Kind) -> Vec<Vec<u8>> {
            self.0
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, v)| v.clone())
                .collect()
        }
    }
    impl Mem {
        fn apply(&mut self, changes: Vec<Change>) {
            for c in changes {
                match c {
                    Change::Put { kind, id, data } => {
                        self.0.insert((kind, id), data);
                    }
                    Change::Delete { kind, id } => {
                        self.0.remove(&(kind, id));
                    }
                }
            }
        }
        fn put<T: Object>(&mut self, o: &T) {
            self.0
                .insert((T::KIND, o.id()), serde_json::to_vec(o).unwrap());
        }
    }

    #[test]
    fn router_delete_cascades_ports_routes_and_unlinks_peers() {
        router_delete_cascades_ports_routes_and_unlinks_peers_in(false);
        router_delete_cascades_ports_routes_and_unlinks_peers_in(true);
    }

    fn router_delete_cascades_ports_routes_and_unlinks_peers_in(indexed: bool) {
        let mut m = Mem(BTreeMap::new(), indexed);
        let r = Router {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let b = Bridge {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let rp = Port {
            id: Uuid::new_v4(),
            device_id: r.id,
            port_type: PortType::Router,
            ..Default::default()
        };
        let mut bp = Port {
            id: Uuid::new_v4(),
            device_id: b.id,
            ..Default::default()
        };
        bp.peer_id = Some(rp.id);
        let mut rp = rp;
        rp.peer_id = Some(bp.id);
        let route = Route {
            id: Uuid::new_v4(),
            next_hop_port: Some(rp.id),
            router_id: Some(r.id),
            ..Default::default()
        };
        let c = Chain {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let mut r2 = r.clone();
        r2.inbound_filter_id = Some(c.id);
        {
            let o = &r2;
            m.put(o);
        }
        m.put(&b);
        m.put(&rp);
        m.put(&bp);
        m.put(&route);
        m.put(&c);
        let mut tx = Tx::new(&m);
        tx.delete(Kind::Router, r.id).unwrap();
        let ch = tx.into_changes();
        m.apply(ch);
        assert!(m.read(Kind::Router, r.id).is_none());
        assert!(m.read(Kind::Port, rp.id).is_none());
        assert!(m.read(Kind::Route, route.id).is_none());
        let bp2: Port = serde_json::from_slice(&m.read(Kind::Port, bp.id).unwrap()).unwrap();
        assert_eq!(bp2.peer_id, None);
        assert!(
            m.read(Kind::Chain, c.id).is_some(),
            "a filter is not owned by the router"
        );
    }

    #[test]
    fn chain_delete_clears_filters_and_jumps() {
        chain_delete_clears_filters_and_jumps_in(false);
        chain_delete_clears_filters_and_jumps_in(true);
    }

    fn chain_delete_clears_filters_and_jumps_in(indexed: bool) {
        let mut m = Mem(BTreeMap::new(), indexed);
        let c = Chain {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let mut other = Chain {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let jump: Rule = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(), "chainId": other.id, "type": "jump", "jumpChainId": c.id}))
        .unwrap();
        other.rule_ids.push(jump.id);
        let b = Bridge {
            id: Uuid::new_v4(),
            inbound_filter_id: Some(c.id),
            ..Default::default()
        };
        m.put(&c);
        m.put(&other);
        m.put(&jump);
        m.put(&b);
        let mut tx = Tx::new(&m);
        tx.delete(Kind::Chain, c.id).unwrap();
        m.apply(tx.into_changes());
        let b2: Bridge = serde_json::from_slice(&m.read(Kind::Bridge, b.id).unwrap()).unwrap();
        assert_eq!(b2.inbound_filter_id, None);
        assert!(m.read(Kind::Rule, jump.id).is_none());
        let o2: Chain = serde_json::from_slice(&m.read(Kind::Chain, other.id).unwrap()).unwrap();
        assert!(o2.rule_ids.is_empty());
    }

    #[test]
    fn router_with_load_balancer_is_refused_and_missing_refs_named() {
        let mut m = Mem::default();
        let lb = LoadBalancer {
            id: Uuid::new_v4(),
            ..Default::default()
        };
        let r = Router {
            id: Uuid::new_v4(),
            load_balancer_id: Some(lb.id),
            ..Default::default()
        };
        m.put(&lb);
        m.put(&r);
        let mut tx = Tx::new(&m);
        assert!(matches!(
            tx.delete(Kind::Router, r.id),
            Err(RefError::Conflict(_))
        ));
        let b = Bridge {
            id: Uuid::new_v4(),
            inbound_filter_id: Some(Uuid::new_v4()),
            ..Default::default()
        };
        let tx = Tx::new(&m);
        assert!(matches!(
            tx.check_refs(&b),
            Err(RefError::Missing {
                property: "inboundFilterId",
                ..
            })
        ));
    }
}
