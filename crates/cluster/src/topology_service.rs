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
        if tx.send(Ok(u)).await.is_err() {
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
            if tx.send(Ok(u)).await.is_err() {
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

#[tonic::async_trait]
impl topology_proto::Topology for TopologyService {
    type WatchStream = Stream_<Update>;
    type SessionStream = Stream_<SessionEvent>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let store = self.app.topo.store.clone();
        let req = req.into_inner();
        let host =
            match req.host_id.as_str() {
                "" => None,
                h => Some(Uuid::parse_str(h).map_err(|_| {
                    Status::invalid_argument(format!("host id \"{h}\" is not a UUID"))
                })?),
            };
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
        let r = req.into_inner();
        let id = |what: &str, s: &str| {
            Uuid::parse_str(s)
                .map_err(|_| Status::invalid_argument(format!("{what}: not a UUID: {s:?}")))
        };
        let (host, port) = (id("host", &r.host_id)?, id("port", &r.port_id)?);
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
        let mut inbound = req.into_inner();
        let app = self.app.clone();
        let (tx, rx) = mpsc::channel::<Result<SessionEvent, Status>>(16);
        tokio::spawn(async move {
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
                let result = match msg.msg {
                    Some(Msg::Hello(h)) => register(&app, session, &h).map(|id| {
                        host = Some(id);
                        Some(SessionEvent {
                            registered: true,
                            message: format!("host {id} registered"),
                            lease: None,
                        })
                    }),
                    Some(Msg::Port(p)) => {
                        let key = format!("Port/{}/active", p.port_id);
                        let r = if p.active {
                            let v = serde_json::json!({"hostId": host, "tunnelKey": p.tunnel_key});
                            store
                                .put_ephemeral(session, &key, v.to_string().into_bytes())
                                .map(|_| ())
                        } else {
                            store.delete_ephemeral(session, &key).map(|_| ()).or(Ok(()))
                        };
                        r.map(|_| None).map_err(|e| e.to_string())
                    }
                    Some(Msg::Table(t)) => {
                        let r = if t.remove {
                            store.table_remove(&t.table, &t.key).map(|_| ()).or(Ok(()))
                        } else {
                            store
                                .table_put(&t.table, &t.key, &t.value, Some(session))
                                .map(|_| ())
                        };
                        r.map(|_| None).map_err(|e| e.to_string())
                    }
                    Some(Msg::Lease(l)) => Ok(Some(SessionEvent {
                        lease: Some(crate::nat_leases::handle(&*store, session, host, &l)),
                        ..Default::default()
                    })),
                    Some(Msg::Member(m)) => match Uuid::parse_str(&m.member_id) {
                        Ok(id) => crate::health::set_member_status(&app, id, m.up)
                            .map(|_| None)
                            .map_err(|e| e.message),
                        Err(_) => Err(format!("member id \"{}\" is not a UUID", m.member_id)),
                    },
                    None => Ok(None),
                };
                match result {
                    Ok(Some(ev)) => {
                        if tx.send(Ok(ev)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(Status::invalid_argument(e))).await;
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

/// Creates or refreshes the Host object and marks it alive in `session`.
fn register(app: &App, session: nsdb::SessionId, h: &HostInfo) -> Result<Uuid, String> {
    let id = Uuid::parse_str(&h.host_id)
        .map_err(|_| format!("host id \"{}\" is not a UUID", h.host_id))?;
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
        .map_err(|e| e.message)?;
    app.topo
        .store
        .put_ephemeral(session, &format!("Host/{id}/alive"), b"1".to_vec())
        .map_err(|e| e.to_string())?;
    tracing::info!(host = %id, name = %h.name, "agent registered");
    Ok(id)
}

/// Serves the topology service on `addr` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tracing::info!(%addr, "topology service listening");
    tonic::transport::Server::builder()
        .add_service(topology_proto::TopologyServer::new(TopologyService { app }))
        .serve_with_shutdown(addr, shutdown)
        .await
}
