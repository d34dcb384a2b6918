//! The agent's side of SNAT port-block leasing: workers ask for a block when
//! their owned ports of a NAT address run out; this task leases one through
//! the cluster session, hands it to the asking worker (so no two workers, and
//! no two hosts, allocate the same port), returns blocks workers no longer
//! use, and keeps the list in `state_dir/nat_blocks.json` so a restarted agent
//! re-claims the blocks its re-imported connections use.

use crate::worker::{Control, NatLeaseUpdate};
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use topology_proto::v1::{NatLease, NatLeaseReply, host_message::Msg};
use uuid::Uuid;

/// A lease the cluster has not answered in this long is refused (new
/// connections are refused for a second rather than wait for ever).
const LEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the lease task hears about.
#[derive(Debug)]
pub enum LeaseEvent {
    /// A worker's owned ports of (device, ip) are all in use.
    Wanted {
        worker: usize,
        device: Uuid,
        ip: Ipv4Addr,
        ports: (u16, u16),
    },
    /// A worker no longer uses a block.
    Unused {
        worker: usize,
        device: Uuid,
        ip: Ipv4Addr,
        block: u16,
    },
    Reply(NatLeaseReply),
}

type BlockKey = (Uuid, Ipv4Addr, u16);

struct Pending {
    worker: usize,
    device: Uuid,
    ip: Ipv4Addr,
    since: Instant,
}

pub struct Leases<S, T> {
    file: PathBuf,
    workers: usize,
    session: S,
    send_to: T,
    next_id: u64,
    pending: FxHashMap<u64, Pending>,
    owned: FxHashMap<BlockKey, usize>,
}

impl<S: Fn(Msg), T: Fn(usize, Control)> Leases<S, T> {
    pub fn new(file: PathBuf, workers: usize, session: S, send_to: T) -> Self {
        Leases {
            file,
            workers: workers.max(1),
            session,
            send_to,
            next_id: 1,
            pending: FxHashMap::default(),
            owned: FxHashMap::default(),
        }
    }

    /// Re-claims the blocks the previous run held, each for the worker that
    /// held it.
    pub fn reclaim_saved(&mut self) {
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return;
        };
        let saved: Vec<(Uuid, Ipv4Addr, u16, usize)> =
            serde_json::from_str(&text).unwrap_or_default();
        if !saved.is_empty() {
            tracing::info!(blocks = saved.len(), "re-claiming SNAT port blocks");
        }
        for (device, ip, block, worker) in saved {
            let worker = if worker < self.workers { worker } else { 0 };
            self.request(
                worker,
                device,
                ip,
                NatLease {
                    specific: true,
                    block: block.into(),
                    ..Default::default()
                },
            );
        }
    }

    fn request(&mut self, worker: usize, device: Uuid, ip: Ipv4Addr, mut l: NatLease) {
        let id = self.next_id;
        self.next_id += 1;
        l.request_id = id;
        l.device_id = device.to_string();
        l.ip = ip.to_string();
        self.pending.insert(
            id,
            Pending {
                worker,
                device,
                ip,
                since: Instant::now(),
            },
        );
        (self.session)(Msg::Lease(l));
    }

    pub fn on_event(&mut self, ev: LeaseEvent) {
        match ev {
            LeaseEvent::Wanted {
                worker,
                device,
                ip,
                ports,
            } => self.request(
                worker,
                device,
                ip,
                NatLease {
                    port_lo: ports.0.into(),
                    port_hi: ports.1.into(),
                    ..Default::default()
                },
            ),
            LeaseEvent::Unused {
                worker,
                device,
                ip,
                block,
            } => {
                if self.owned.get(&(device, ip, block)) == Some(&worker) {
                    self.owned.remove(&(device, ip, block));
                    self.save();
                    tracing::debug!(%device, %ip, block, "releasing SNAT port block");
                    (self.session)(Msg::Lease(NatLease {
                        device_id: device.to_string(),
                        ip: ip.to_string(),
                        block: block.into(),
                        release: true,
                        ..Default::default()
                    }));
                }
            }
            LeaseEvent::Reply(r) => self.on_reply(r),
        }
    }

    fn on_reply(&mut self, r: NatLeaseReply) {
        let (Ok(device), Ok(ip)) = (Uuid::parse_str(&r.device_id), r.ip.parse::<Ipv4Addr>()) else {
            return;
        };
        let block = r.block.min(u16::MAX.into()) as u16;
        let Some(p) = self.pending.remove(&r.request_id) else {
            // A re-claim the session replayed after a reconnect: if another
            // host took the block meanwhile, its worker must stop using it.
            if r.request_id == 0
                && !r.granted
                && let Some(w) = self.owned.remove(&(device, ip, block))
            {
                tracing::warn!(%device, %ip, block, "SNAT port block lost after a reconnect: {}", r.message);
                self.save();
                (self.send_to)(
                    w,
                    Control::NatLease(NatLeaseUpdate::Lost { device, ip, block }),
                );
            }
            return;
        };
        if r.granted {
            tracing::debug!(%device, %ip, block, worker = p.worker, "SNAT port block leased");
            self.owned.insert((device, ip, block), p.worker);
            self.save();
            (self.send_to)(
                p.worker,
                Control::NatLease(NatLeaseUpdate::Granted { device, ip, block }),
            );
        } else {
            tracing::warn!(%device, %ip, "SNAT port block refused: {}", r.message);
            self.refuse(&p);
        }
    }

    /// Tells the asking worker no block came: it refuses new connections
    /// to that address for a while.
    fn refuse(&self, p: &Pending) {
        (self.send_to)(
            p.worker,
            Control::NatLease(NatLeaseUpdate::Refused {
                device: p.device,
                ip: p.ip,
            }),
        );
    }

    /// Leases the cluster did not answer in time count as refused.
    pub fn expire(&mut self) {
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() > LEASE_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(p) = self.pending.remove(&id) {
                tracing::warn!(device = %p.device, ip = %p.ip, "SNAT port block lease timed out");
                self.refuse(&p);
            }
        }
    }

    fn save(&self) {
        let list: Vec<(Uuid, Ipv4Addr, u16, usize)> = self
            .owned
            .iter()
            .map(|((d, ip, b), w)| (*d, *ip, *b, *w))
            .collect();
        if let Ok(body) = serde_json::to_string(&list) {
            crate::write_atomic(&self.file, &body);
        }
    }
}

/// Runs the lease task until its channel closes.
pub async fn run<S: Fn(Msg), T: Fn(usize, Control)>(
    mut leases: Leases<S, T>,
    mut rx: mpsc::UnboundedReceiver<LeaseEvent>,
) {
    leases.reclaim_saved();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => leases.on_event(ev),
                None => return,
            },
            _ = tick.tick() => leases.expire(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn grants_go_to_the_asking_worker_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nat_blocks.json");
        let sent = Rc::new(RefCell::new(Vec::new()));
        let told = Rc::new(RefCell::new(Vec::new()));
        let (s, t) = (sent.clone(), told.clone());
        let mut l = Leases::new(
            file.clone(),
            2,
            move |m| s.borrow_mut().push(m),
            move |w, c| {
                if let Control::NatLease(u) = c {
                    t.borrow_mut().push((w, u))
                }
            },
        );
        let (device, ip) = (Uuid::new_v4(), Ipv4Addr::new(198, 51, 100, 1));
        l.on_event(LeaseEvent::Wanted {
            worker: 1,
            device,
            ip,
            ports: (1024, 65535),
        });
        let Some(Msg::Lease(req)) = sent.borrow().last().cloned() else {
            panic!("no lease asked")
        };
        assert_eq!(
            (req.port_lo, req.port_hi, req.specific),
            (1024, 65535, false)
        );
        let reply = |id, granted, block| NatLeaseReply {
            request_id: id,
            granted,
            block,
            device_id: device.to_string(),
            ip: ip.to_string(),
            message: String::new(),
        };
        l.on_event(LeaseEvent::Reply(reply(req.request_id, true, 40)));
        assert_eq!(
            told.borrow().last(),
            Some(&(
                1,
                NatLeaseUpdate::Granted {
                    device,
                    ip,
                    block: 40
                }
            ))
        );
        // A refusal tells the worker to refuse for a while.
        l.on_event(LeaseEvent::Wanted {
            worker: 0,
            device,
            ip,
            ports: (1024, 65535),
        });
        let Some(Msg::Lease(req2)) = sent.borrow().last().cloned() else {
            panic!()
        };
        l.on_event(LeaseEvent::Reply(reply(req2.request_id, false, 0)));
        assert_eq!(
            told.borrow().last(),
            Some(&(0, NatLeaseUpdate::Refused { device, ip }))
        );
        // A restart re-claims block 40 for worker 1.
        let sent2 = Rc::new(RefCell::new(Vec::new()));
        let s2 = sent2.clone();
        let mut again = Leases::new(file, 2, move |m| s2.borrow_mut().push(m), |_, _| {});
        again.reclaim_saved();
        let Some(Msg::Lease(claim)) = sent2.borrow().first().cloned() else {
            panic!("nothing re-claimed")
        };
        assert!(claim.specific);
        assert_eq!(claim.block, 40);
        assert_eq!(again.pending[&claim.request_id].worker, 1);
        // Unused blocks go back.
        l.on_event(LeaseEvent::Unused {
            worker: 1,
            device,
            ip,
            block: 40,
        });
        let Some(Msg::Lease(rel)) = sent.borrow().last().cloned() else {
            panic!()
        };
        assert!(rel.release && rel.block == 40);
        assert!(l.owned.is_empty());
    }
}
