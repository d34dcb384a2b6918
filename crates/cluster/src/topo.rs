//! The topology over the NSDB: typed reads, and writes as one store
//! transaction built with the model's reference rules.

use crate::error::ApiError;
use model::refs::{Change, Tx, View};
use model::{Kind, Object};
use nsdb::{Op, Store, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A view of the store that remembers the version of everything it read, so
/// the commit can be conditional on nothing having changed underneath.
struct TopoView<'a> {
    store: &'a dyn Store,
    seen: RefCell<HashMap<(Kind, Uuid), Option<u64>>>,
}

impl View for TopoView<'_> {
    fn read(&self, kind: Kind, id: Uuid) -> Option<Vec<u8>> {
        let e = self.store.get(kind.name(), &id.to_string()).ok().flatten();
        self.seen
            .borrow_mut()
            .insert((kind, id), e.as_ref().map(|e| e.version));
        e.map(|e| e.data.to_vec())
    }
    fn read_all(&self, kind: Kind) -> Vec<Vec<u8>> {
        let rows = self.store.list(kind.name()).unwrap_or_default();
        let mut seen = self.seen.borrow_mut();
        rows.into_iter()
            .map(|(id, e)| {
                if let Ok(id) = id.parse() {
                    seen.insert((kind, id), Some(e.version));
                }
                e.data.to_vec()
            })
            .collect()
    }
}

/// A write in progress: the model transaction plus store-level counters.
pub struct Writer<'a> {
    pub tx: Tx<'a>,
    store: &'a dyn Store,
    counters: HashMap<&'static str, (Option<u64>, u64)>,
}

impl Writer<'_> {
    /// The next value of a durable counter (tunnel keys), committed with the write.
    pub fn next(&mut self, name: &'static str) -> Result<u64, ApiError> {
        if !self.counters.contains_key(name) {
            let cur = self.store.get("Counter", name)?;
            let (ver, val) = match cur {
                Some(e) => {
                    let s = std::str::from_utf8(&e.data).unwrap_or("0");
                    (Some(e.version), s.parse::<u64>().unwrap_or(0))
                }
                None => (None, 0),
            };
            self.counters.insert(name, (ver, val));
        }
        let c = self.counters.get_mut(name).expect("inserted above");
        c.1 += 1;
        Ok(c.1)
    }
}

pub struct Topology {
    pub store: Arc<dyn Store>,
    /// One writer at a time in this server; the CAS checks guard against
    /// writers in other servers sharing the store.
    write_lock: Mutex<()>,
}

impl Topology {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Topology {
            store,
            write_lock: Mutex::new(()),
        }
    }

    pub fn get<T: Object>(&self, id: Uuid) -> Result<Option<T>, ApiError> {
        match self.store.get(T::KIND.name(), &id.to_string())? {
            None => Ok(None),
            Some(e) => serde_json::from_slice(&e.data).map(Some).map_err(|e| {
                ApiError::new(500, format!("stored {} {id} is corrupt: {e}", T::KIND))
            }),
        }
    }

    pub fn must<T: Object>(&self, id: Uuid) -> Result<T, ApiError> {
        self.get(id)?
            .ok_or_else(|| ApiError::not_found(format!("{} {id} not found", T::KIND)))
    }

    pub fn all<T: Object>(&self) -> Result<Vec<T>, ApiError> {
        self.store
            .list(T::KIND.name())?
            .into_iter()
            .map(|(id, e)| {
                serde_json::from_slice(&e.data).map_err(|e| {
                    ApiError::new(500, format!("stored {} {id} is corrupt: {e}", T::KIND))
                })
            })
            .collect()
    }

    /// Runs `f` over a fresh transaction and commits what it wrote, atomically
    /// and conditionally on the versions it read. Retried on a lost race.
    pub fn write<R>(
        &self,
        mut f: impl FnMut(&mut Writer<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let _g = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let view = TopoView {
                store: &*self.store,
                seen: RefCell::new(HashMap::new()),
            };
            let mut w = Writer {
                tx: Tx::new(&view),
                store: &*self.store,
                counters: HashMap::new(),
            };
            let out = f(&mut w)?;
            let counters = std::mem::take(&mut w.counters);
            let changes = w.tx.into_changes();
            let seen = view.seen.into_inner();
            let mut ops = Vec::with_capacity(changes.len() + counters.len());
            for c in changes {
                ops.push(match c {
                    Change::Put { kind, id, data } => match seen.get(&(kind, id)) {
                        Some(Some(v)) => Op::Update {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                            version: Some(*v),
                        },
                        Some(None) => Op::Create {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                        },
                        None => Op::Put {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                        },
                    },
                    Change::Delete { kind, id } => {
                        let version = match seen.get(&(kind, id)) {
                            Some(v) => *v,
                            // Removed without being read (a cascade by id): skip it if already gone.
                            None => match self.store.get(kind.name(), &id.to_string())? {
                                Some(e) => Some(e.version),
                                None => continue,
                            },
                        };
                        if version.is_none() {
                            continue;
                        }
                        Op::Delete {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            version,
                        }
                    }
                });
            }
            for (name, (ver, val)) in counters {
                let data = val.to_string().into_bytes();
                ops.push(match ver {
                    Some(v) => Op::Update {
                        kind: "Counter".into(),
                        id: name.into(),
                        data,
                        version: Some(v),
                    },
                    None => Op::Create {
                        kind: "Counter".into(),
                        id: name.into(),
                        data,
                    },
                });
            }
            if ops.is_empty() {
                return Ok(out);
            }
            match self.store.commit(ops) {
                Ok(_) => return Ok(out),
                Err(StoreError::VersionMismatch { .. } | StoreError::AlreadyExists { .. })
                    if attempt < 3 =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
