//! The topology service agents subscribe to (gRPC, port 8088): a watch of
//! every NSDB change that resumes from a revision, and a session per host that
//! keeps it alive and carries its port states and learned table entries.

use crate::App;
use crate::host_view::HostView;
use model::{Host, HostInterface, Kind};
use nsdb::{Change, Store, StoreError};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use topology_proto::v1::{
    HostInfo, HostMessage, SessionEvent, Update, WatchRequest, host_message::Msg,
};
use uuid::Uuid;

pub struct TopologyService {
    pub app: Arc<App>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn update(revision: u64, kind: &str, id: &str, data: &[u8], deleted: bool) -> Update {
    Update {
        revision,
        kind: kind.into(),
        id: id.into(),
        data: data.to_vec(),
        deleted,
        snapshot_begin: false,
        snapshot_end: false,
        batch_end: false,
    }
}

/// Everything in the store, as updates: objects, ephemeral state, tables.
fn snapshot(store: &dyn Store, revision: u64) -> Vec<Update> {
    let mut out = Vec::new();
    for k in Kind::ALL.into_iter().filter(|k| !k.is_api_record()) {
        for (id, e) in store.list(k.name()).unwrap_or_default() {
            out.push(update(revision, k.name(), &id, &e.data, false));
        }
    }
    for (key, v) in store.ephemeral_entries() {
        out.push(update(revision, "state", &key, &v, false));
    }
    for t in store.table_names() {
        for e in store.table_entries(&t) {
            out.push(update(
                revision,
                &format!("table/{t}"),
                &e.key,
                e.value.as_bytes(),
                false,
            ));
        }
    }
    frame(&mut out, revision);
    out
}

/// Marks `out` as one snapshot: begin on its first update (or an empty
/// marker), and an end marker after its last.
pub(crate) fn frame(out: &mut Vec<Update>, revision: u64) {
    match out.first_mut() {
        Some(f) => f.snapshot_begin = true,
        None => out.push(Update {
            revision,
            snapshot_begin: true,
            ..Default::default()
        }),
    }
    out.push(Update {
        revision,
        snapshot_end: true,
        ..Default::default()
    });
}

/// How long a watcher may leave the stream unread before it is cut off
/// (it reconnects and resumes from its revision).
const SLOW_READER: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends `u`, unless the receiver is gone or reads nothing for [`SLOW_READER`].
async fn send(tx: &mpsc::Sender<Result<Update, Status>>, u: Update) -> bool {
    match tokio::time::timeout(SLOW_READER, tx.send(Ok(u))).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            tracing::warn!("a watcher read nothing for {SLOW_READER:?}: its watch is cut off");
            false
        }
    }
}

/// Sends `initial`, then the watch's changes (filtered by `view`), until
/// the receiver or the watch goes.
async fn forward(
    store: &dyn Store,
    mut initial: Vec<Update>,
    watch: &mut nsdb::Watch,
    mut view: Option<&mut HostView>,
    tx: &mpsc::Sender<Result<Update, Status>>,
) {
    if let Some(last) = initial.last_mut() {
        last.batch_end = true;
    }
    for u in initial {
        if !send(tx, u).await {
            return;
        }
    }
    let as_update = |ev: nsdb::Event| match ev.change {
        Change::Put(e) => update(ev.revision, &ev.kind, &ev.id, &e.data, false),
        Change::Deleted => update(ev.revision, &ev.kind, &ev.id, &[], true),
    };
    // The first event of a commit that was still being published when the
    // last batch was cut: it starts the next one.
    let mut carry: Option<nsdb::Event> = None;
    loop {
        let ev = match carry.take() {
            Some(ev) => Some(ev),
            // A receiver that goes while nothing changes ends this at once,
            // so its view is parked for the agent's return.
            None => tokio::select! {
                ev = watch.next() => ev,
                _ = tx.closed() => return,
            },
        };
        let Some(ev) = ev else { return };
        // A batch is whole commits: what already arrived, then, once the
        // store has published everything up to its revision (it does so
        // under the lock `revision` takes), the rest of those commits. A
        // burst of creates is one reach update, not one per create.
        let mut batch = vec![as_update(ev)];
        while batch.len() < 4096
            && let Some(ev) = watch.try_next()
        {
            batch.push(as_update(ev));
        }
        let upto = store.revision();
        while let Some(ev) = watch.try_next() {
            if ev.revision > upto {
                carry = Some(ev);
                break;
            }
            batch.push(as_update(ev));
        }
        let mut out = match view.as_deref_mut() {
            Some(v) => v.changes(batch),
            None => batch,
        };
        if let Some(last) = out.last_mut() {
            last.batch_end = true;
        }
        for u in out {
            if !send(tx, u).await {
                return;
            }
        }
    }
}

/// A snapshot of everything and a watch from its revision. Watch first,
/// then read: a change in between arrives twice, which is harmless; none is
/// missed.
fn snapshot_and_watch(store: &dyn Store) -> Result<(Vec<Update>, nsdb::Watch), Status> {
    let rev = store.revision();
    let w = store
        .watch(None, rev)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok((snapshot(store, rev), w))
}

impl TopologyService {
    /// Whether the agent `who` may act for `host`: one registered under a
    /// name its certificate holds (an unregistered host has nothing yet).
    fn may_act_for(&self, who: &AgentIdentity, host: Uuid) -> Result<(), Status> {
        let known = self
            .app
            .topo
            .get::<Host>(host)
            .map_err(|e| store_status(e.message))?;
        match known.and_then(|h| h.name) {
            Some(n) if !who.names(&n) => Err(Status::permission_denied(format!(
                "host {host} is \"{n}\": this agent's certificate does not name it"
            ))),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl topology_proto::Topology for TopologyService {
    type WatchStream = Stream_<Update>;
    type SessionStream = Stream_<SessionEvent>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let store = self.app.topo.store.clone();
        let who = req.extensions().get::<AgentIdentity>().cloned();
        let req = req.into_inner();
        let host =
            match req.host_id.as_str() {
                "" => None,
                h => Some(Uuid::parse_str(h).map_err(|_| {
                    Status::invalid_argument(format!("host id \"{h}\" is not a UUID"))
                })?),
            };
        if let Some(who) = &who {
            // An agent sees its own host's view, never the whole topology.
            let Some(h) = host else {
                return Err(Status::permission_denied(
                    "with mutual TLS a watch is a host's: give its host id",
                ));
            };
            self.may_act_for(who, h)?;
        }
        // A host's filtered watch resumes from the view its last watch left
        // (if this server still has it and it covers the agent's revision);
        // otherwise it starts from a snapshot.
        let resumed = host
            .zip((req.after_revision > 0).then_some(req.after_revision))
            .and_then(|(h, after)| {
                let v = self.app.parked.take(h)?;
                let replay = v.resume(after)?;
                let w = store.watch(None, v.revision()).ok()?;
                Some((v, replay, w))
            });
        let (mut view, initial, mut watch) = match (host, resumed) {
            (_, Some((v, replay, w))) => {
                tracing::info!(host = %v.host(), after = req.after_revision, updates = replay.len(), "filtered watch resumed");
                (Some(v), replay, w)
            }
            (Some(h), None) => {
                let (all, w) = snapshot_and_watch(&*store)?;
                let mut v = HostView::new(h);
                let initial = v.snapshot(all);
                (Some(v), initial, w)
            }
            (None, None) => match store.watch(None, req.after_revision) {
                Ok(w) if req.after_revision > 0 => (None, Vec::new(), w),
                Ok(_) | Err(StoreError::Compacted { .. }) => {
                    let (all, w) = snapshot_and_watch(&*store)?;
                    (None, all, w)
                }
                Err(e) => return Err(Status::internal(e.to_string())),
            },
        };
        let parked = self.app.parked.clone();
        let (tx, rx) = mpsc::channel::<Result<Update, Status>>(1024);
        tokio::spawn(async move {
            let _open = crate::metrics::Open::watch();
            forward(&*store, initial, &mut watch, view.as_mut(), &tx).await;
            // The agent is gone (or the store stopped): its view waits for
            // it to come back.
            if let Some(v) = view {
                parked.put(v);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn bind(
        &self,
        req: Request<topology_proto::v1::BindRequest>,
    ) -> Result<Response<topology_proto::v1::BindReply>, Status> {
        let req_who = req.extensions().get::<AgentIdentity>().cloned();
        let r = req.into_inner();
        let id = |what: &str, s: &str| {
            Uuid::parse_str(s)
                .map_err(|_| Status::invalid_argument(format!("{what}: not a UUID: {s:?}")))
        };
        let (host, port) = (id("host", &r.host_id)?, id("port", &r.port_id)?);
        if let Some(who) = req_who.as_ref() {
            self.may_act_for(who, host)?;
        }
        let app = self.app.clone();
        let done = tokio::task::spawn_blocking(move || {
            if r.interface_name.is_empty() {
                return crate::ops::unbind(&app, host, port);
            }
            // Binding again what is already bound so is not an error (a
            // hypervisor plugging a VM twice).
            if let Ok(p) = app.topo.must::<model::Port>(port)
                && p.host_id == Some(host)
                && p.interface_name.as_deref() == Some(r.interface_name.as_str())
            {
                return Ok(());
            }
            crate::ops::bind(&app, host, port, &r.interface_name)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match done {
            Ok(()) => Ok(Response::new(topology_proto::v1::BindReply {})),
            Err(e) => Err(match e.status {
                400 => Status::invalid_argument(e.message),
                404 => Status::not_found(e.message),
                409 => Status::failed_precondition(e.message),
                _ => Status::internal(e.message),
            }),
        }
    }

    async fn session(
        &self,
        req: Request<Streaming<HostMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let who = req.extensions().get::<AgentIdentity>().cloned();
        let mut inbound = req.into_inner();
        let app = self.app.clone();
        let (tx, rx) = mpsc::channel::<Result<SessionEvent, Status>>(16);
        tokio::spawn(async move {
            let _open = crate::metrics::Open::session();
            let store = app.topo.store.clone();
            let session = store.open_session();
            let mut host: Option<Uuid> = None;
            let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => m,
                    _ = check.tick() => {
                        if store.session_ended(session) {
                            // The agent reconnects and states its host and
                            // ports again, on a new session.
                            tracing::warn!(host = ?host, "an agent's NSDB session expired; asking it to reconnect");
                            let _ = tx
                                .send(Err(Status::unavailable(
                                    "the NSDB ended this session (expired in an outage): reconnect",
                                )))
                                .await;
                            break;
                        }
                        continue;
                    }
                };
                let Some(Ok(msg)) = msg else { break };
                let result = match (msg.msg, host) {
                    (Some(Msg::Hello(h)), _) => {
                        register(&app, session, &h, who.as_ref()).map(|id| {
                            host = Some(id);
                            Some(SessionEvent {
                                registered: true,
                                message: format!("host {id} registered"),
                                lease: None,
                            })
                        })
                    }
                    (Some(_), None) => Err(Status::failed_precondition(
                        "the session's first message must be the host's hello",
                    )),
                    (Some(Msg::Port(p)), Some(h)) => port_state(&app, session, h, &p).map(|_| None),
                    (Some(Msg::Table(t)), Some(h)) => learned(&app, session, h, &t).map(|_| None),
                    (Some(Msg::Lease(l)), Some(h)) => Ok(Some(SessionEvent {
                        lease: Some(lease(&app, session, h, &l)),
                        ..Default::default()
                    })),
                    (Some(Msg::Member(m)), Some(h)) => member_status(&app, h, &m).map(|_| None),
                    (Some(Msg::Trace(t)), Some(h)) => {
                        // A record that cannot be kept costs the record, not the session.
                        if let Err(e) = crate::traces::record(&app, h, &t.request_id, &t.data) {
                            tracing::debug!(host = %h, "trace record dropped: {e}");
                        }
                        Ok(None)
                    }
                    (None, _) => Ok(None),
                };
                match result {
                    Ok(Some(ev)) => {
                        if tx.send(Ok(ev)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(host = ?host, error = %e.message(), "an agent session is ended");
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
            // The host is gone: its ephemeral state and learned entries go too.
            let _ = store.close_session(session);
            if let Some(h) = host {
                tracing::info!(host = %h, "agent session closed");
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A session's write that is not the host's to make: refused, logged, and
/// the session goes on (an agent may race a change it has not seen yet).
fn refused(host: Uuid, what: std::fmt::Arguments<'_>) -> Result<(), Status> {
    tracing::warn!(%host, "refused from an agent's session: {what}");
    Ok(())
}

fn uuid(what: &str, s: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(s)
        .map_err(|_| Status::invalid_argument(format!("{what} \"{s}\" is not a UUID")))
}

fn store_status(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

/// A port's state from `host`: only a port bound to it may be active.
fn port_state(
    app: &App,
    session: nsdb::SessionId,
    host: Uuid,
    p: &topology_proto::v1::PortState,
) -> Result<(), Status> {
    let id = uuid("port id", &p.port_id)?;
    let key = format!("Port/{id}/active");
    if !p.active {
        // Only this session's own key goes (the store checks).
        let _ = app.topo.store.delete_ephemeral(session, &key);
        return Ok(());
    }
    let bound = app
        .topo
        .get::<model::Port>(id)
        .map_err(|e| store_status(e.message))?;
    if bound.as_ref().and_then(|p| p.host_id) != Some(host) {
        return refused(
            host,
            format_args!("port {id} active, but it is not bound to this host"),
        );
    }
    let v = serde_json::json!({"hostId": host, "tunnelKey": p.tunnel_key});
    app.topo
        .store
        .put_ephemeral(session, &key, v.to_string().into_bytes())
        .map(|_| ())
        .map_err(store_status)
}

/// A learned entry from `host`: in a table of a device that exists (a MAC
/// only on a port of that bridge bound to this host); a removal only of
/// this session's own entry.
fn learned(
    app: &App,
    session: nsdb::SessionId,
    host: Uuid,
    t: &topology_proto::v1::TableEntry,
) -> Result<(), Status> {
    let store = &app.topo.store;
    if t.remove {
        let own = store
            .table_entries(&t.table)
            .iter()
            .any(|e| e.key == t.key && e.owner == Some(session));
        if own {
            let _ = store.table_remove(&t.table, &t.key);
        }
        return Ok(());
    }
    let get = |e: crate::error::ApiError| store_status(e.message);
    let mut parts = t.table.split('/');
    let ok = match (
        parts.next(),
        parts.next().map(Uuid::parse_str),
        parts.next(),
        parts.next(),
    ) {
        (Some("mac"), Some(Ok(bridge)), Some(vlan), None) if vlan.parse::<u16>().is_ok() => {
            let port = Uuid::parse_str(&t.value).ok();
            let port = match port {
                Some(p) => app.topo.get::<model::Port>(p).map_err(get)?,
                None => None,
            };
            port.is_some_and(|p| p.device_id == bridge && p.host_id == Some(host))
        }
        (Some("arp"), Some(Ok(router)), None, _) => app
            .topo
            .get::<model::Router>(router)
            .map_err(get)?
            .is_some(),
        (Some(model::bgp::learned::ROUTES), Some(Ok(router)), None, _) => {
            match model::bgp::learned::decode_route(&t.table, &t.value) {
                Some(r) => uplink_of(app, host, router, r.next_hop_port).map_err(get)?,
                None => false,
            }
        }
        (Some(model::bgp::learned::STATUS), Some(Ok(router)), None, _) => {
            let peer = Uuid::parse_str(&t.key)
                .ok()
                .map(|p| app.topo.get::<model::BgpPeer>(p))
                .transpose()
                .map_err(get)?
                .flatten();
            let status: Option<model::bgp::learned::PeerStatus> =
                serde_json::from_str(&t.value).ok();
            match (peer, status) {
                (Some(peer), Some(s)) if peer.router_id == Some(router) => {
                    uplink_of(app, host, router, s.port_id).map_err(get)?
                }
                _ => false,
            }
        }
        (Some("ip4mac"), Some(Ok(bridge)), None, _) => app
            .topo
            .get::<model::Bridge>(bridge)
            .map_err(get)?
            .is_some(),
        _ => false,
    };
    if !ok {
        return refused(host, format_args!("entry {} in table {}", t.key, t.table));
    }
    store
        .table_put(&t.table, &t.key, &t.value, Some(session))
        .map(|_| ())
        .map_err(store_status)
}

/// Whether `port` is a port of `router` bound to `host`: the only uplinks
/// through which that host's agent may learn routes or report sessions.
fn uplink_of(
    app: &App,
    host: Uuid,
    router: Uuid,
    port: Option<Uuid>,
) -> Result<bool, crate::error::ApiError> {
    let Some(port) = port else { return Ok(false) };
    Ok(app
        .topo
        .get::<model::Port>(port)?
        .is_some_and(|p| p.device_id == router && p.host_id == Some(host)))
}

/// A NAT block lease for `host`: only of an address a NAT rule of that
/// device (a router or bridge that exists) translates to.
fn lease(
    app: &App,
    session: nsdb::SessionId,
    host: Uuid,
    l: &topology_proto::v1::NatLease,
) -> topology_proto::v1::NatLeaseReply {
    let target = (
        Uuid::parse_str(&l.device_id),
        l.ip.parse::<std::net::Ipv4Addr>(),
    );
    if !l.release
        && let (Ok(device), Ok(ip)) = target
    {
        let why = match nat_target_of(app, device, ip) {
            Ok(true) => None,
            Ok(false) => Some(format!("{ip} is no NAT target of device {device}'s rules")),
            Err(e) => Some(e.message),
        };
        if let Some(message) = why {
            tracing::warn!(%host, %device, %ip, "NAT block lease refused: {message}");
            return topology_proto::v1::NatLeaseReply {
                request_id: l.request_id,
                device_id: l.device_id.clone(),
                ip: l.ip.clone(),
                message,
                ..Default::default()
            };
        }
    }
    crate::nat_leases::handle(&*app.topo.store, session, Some(host), l)
}

/// Chains looked at for one lease, at most: a bound on what a lease costs.
const LEASE_CHAINS: usize = 256;

/// Whether a NAT rule met on `device` (a router or a bridge: its chains,
/// its ports' chains, and the chains they jump to) translates to `ip`. The
/// cost is the device's, not the cloud's: its ports come from the
/// reference index.
fn nat_target_of(
    app: &App,
    device: Uuid,
    ip: std::net::Ipv4Addr,
) -> Result<bool, crate::error::ApiError> {
    use model::{Bridge, Chain, Kind, Port, Router, Rule};
    let mut todo: Vec<Uuid> = Vec::new();
    let kind = if let Some(r) = app.topo.get::<Router>(device)? {
        todo.extend(
            [
                r.inbound_filter_id,
                r.outbound_filter_id,
                r.forward_chain_id,
                r.local_redirect_chain_id,
            ]
            .into_iter()
            .flatten(),
        );
        Kind::Router
    } else if let Some(b) = app.topo.get::<Bridge>(device)? {
        todo.extend(
            [b.inbound_filter_id, b.outbound_filter_id]
                .into_iter()
                .flatten(),
        );
        Kind::Bridge
    } else {
        return Err(crate::error::ApiError::not_found(format!(
            "device {device} does not exist"
        )));
    };
    for p in app.topo.naming::<Port>("deviceId", kind, device)? {
        todo.extend(
            [p.inbound_filter_id, p.outbound_filter_id]
                .into_iter()
                .flatten(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(c) = todo.pop() {
        if !seen.insert(c) || seen.len() > LEASE_CHAINS {
            continue;
        }
        let Some(chain) = app.topo.get::<Chain>(c)? else {
            continue;
        };
        for id in &chain.rule_ids {
            let Some(rule) = app.topo.get::<Rule>(*id)? else {
                continue;
            };
            let hit = rule
                .nat_targets
                .iter()
                .any(|t| match (t.address_from, t.address_to) {
                    (Some(a), Some(b)) => (u32::from(a)..=u32::from(b)).contains(&u32::from(ip)),
                    (Some(a), None) => a == ip,
                    _ => false,
                });
            if hit {
                return Ok(true);
            }
            todo.extend(rule.jump_chain_id);
        }
    }
    Ok(false)
}

/// A pool member's health from `host`: only the health-check leader's counts.
fn member_status(
    app: &App,
    host: Uuid,
    m: &topology_proto::v1::MemberStatus,
) -> Result<(), Status> {
    let id = uuid("member id", &m.member_id)?;
    if crate::health::leader(app) != Some(host) {
        return refused(
            host,
            format_args!("member {id} status from a host that does not run health checks"),
        );
    }
    crate::health::set_member_status(app, id, m.up).map_err(|e| match e.status {
        404 => Status::not_found(e.message),
        _ => store_status(e.message),
    })
}

/// Creates or refreshes the Host object and marks it alive in `session`.
/// With mutual TLS the agent's certificate must name the host, and a host
/// registered under another name is not taken over.
fn register(
    app: &App,
    session: nsdb::SessionId,
    h: &HostInfo,
    who: Option<&AgentIdentity>,
) -> Result<Uuid, Status> {
    let id = uuid("host id", &h.host_id)?;
    if id.is_nil() {
        return Err(Status::invalid_argument("the nil UUID is not a host id"));
    }
    if let Some(who) = who {
        if !who.names(&h.name) {
            return Err(Status::permission_denied(format!(
                "this agent's certificate does not name host \"{}\"",
                h.name
            )));
        }
        let known = app
            .topo
            .get::<Host>(id)
            .map_err(|e| store_status(e.message))?;
        if let Some(n) = known.and_then(|k| k.name)
            && n != h.name
        {
            return Err(Status::permission_denied(format!(
                "host {id} is registered as \"{n}\", not \"{}\"",
                h.name
            )));
        }
    }
    let interfaces: Vec<HostInterface> = h
        .interfaces
        .iter()
        .map(|i| HostInterface {
            name: i.name.clone(),
            mac: Some(i.mac.clone()),
            mtu: i.mtu,
            if_type: Some("Virtual".into()),
            endpoint: Some("UNKNOWN".into()),
            port_type: None,
            addresses: i.addresses.clone(),
            status: if i.up { 3 } else { 0 },
        })
        .collect();
    app.topo
        .write(|w| {
            let mut host: Host = w.tx.get(id)?.unwrap_or_else(|| {
                let mut h = Host {
                    id,
                    ..Default::default()
                };
                h.normalize();
                h
            });
            host.name = Some(h.name.clone());
            host.addresses = h.addresses.clone();
            host.host_interfaces = interfaces.clone();
            w.tx.put(&host);
            Ok(())
        })
        .map_err(|e| store_status(e.message))?;
    app.topo
        .store
        .put_ephemeral(session, &format!("Host/{id}/alive"), b"1".to_vec())
        .map_err(store_status)?;
    tracing::info!(host = %id, name = %h.name, "agent registered");
    Ok(id)
}

/// The agent at the other end of a mutual-TLS connection: the certificate
/// it showed (chained to `--agent-ca`; rustls checked that).
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    cert: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

impl AgentIdentity {
    /// Whether the certificate names `host` (a DNS name or an address in
    /// its subject alternative names).
    pub fn names(&self, host: &str) -> bool {
        tls::names(&self.cert, host)
    }
}

/// A TLS connection from an agent, with who it is.
struct AgentConn {
    io: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    who: AgentIdentity,
}

impl tonic::transport::server::Connected for AgentConn {
    type ConnectInfo = AgentIdentity;
    fn connect_info(&self) -> AgentIdentity {
        self.who.clone()
    }
}

impl tokio::io::AsyncRead for AgentConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for AgentConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// TLS connections from agents: handshakes run beside the accept loop (a
/// slow one holds up no other) and must finish within 10 s; only those
/// that showed a certificate of the agents' CA come out.
fn agent_connections(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl Stream<Item = Result<AgentConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an agent connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let hs =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                let io = match hs.await {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "an agent connection was refused in the TLS handshake");
                        return;
                    }
                    Err(_) => return,
                };
                let Some(cert) = io.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                    return;
                };
                let who = AgentIdentity {
                    cert: cert.clone().into_owned(),
                };
                let _ = conn_tx.send(Ok(AgentConn { io, who })).await;
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening: {0}")]
    Listen(std::io::Error),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the topology service on `addr` until `shutdown` resolves; with
/// `tls` (a configuration that requires client certificates), only to
/// agents with a certificate, each confined to the host it names.
pub async fn serve(
    app: Arc<App>,
    addr: std::net::SocketAddr,
    tls: Option<tokio_rustls::rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = tonic::transport::Server::builder()
        .add_service(topology_proto::TopologyServer::new(TopologyService { app }));
    match tls {
        None => {
            tracing::info!(%addr, "topology service listening (plain: any agent may connect)");
            Ok(server.serve_with_shutdown(addr, shutdown).await?)
        }
        Some(mut cfg) => {
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(ServeError::Listen)?;
            tracing::info!(%addr, "topology service listening (mutual TLS: agents need a certificate of --agent-ca)");
            let incoming =
                agent_connections(listener, tokio_rustls::TlsAcceptor::from(Arc::new(cfg)));
            Ok(server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?)
        }
    }
}
