//! `midonet nsdb export` / `import`: a whole store as JSON lines, to move a
//! deployment between backends (embedded to ZooKeeper, or back).
//!
//! The first line names the format and the revision the export was taken
//! at; then one line per object (`kind`, `id`, its stored bytes as `data`)
//! and per persistent table row (`table`, `key`, `value`). Session state
//! (ephemeral keys, learned rows) is not exported: agents state it again
//! when they connect. An import goes into an empty store only, in commits
//! that stay well under ZooKeeper's 1 MB request limit; objects start again
//! at version 1.

use crate::{Op, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

const FORMAT: &str = "midonet-nsdb";
const FORMAT_VERSION: u32 = 1;
/// Per import commit: ops, and bytes of data.
const BATCH_OPS: usize = 200;
const BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {what}")]
    Format { line: usize, what: String },
    #[error("the target store is not empty ({0}); import into a new one")]
    NotEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an export wrote or an import committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub objects: usize,
    pub rows: usize,
    /// The source's revision (export) or the target's after the import.
    pub revision: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    revision: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Object {
        kind: String,
        id: String,
        data: String,
    },
    Row {
        table: String,
        key: String,
        value: String,
    },
}

fn write_line<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, v).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes every object and persistent table row of `store` to `out`.
pub fn export(store: &dyn Store, out: &mut dyn Write) -> Result<Summary, TransferError> {
    let mut sum = Summary {
        revision: store.revision(),
        ..Default::default()
    };
    write_line(
        out,
        &Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            revision: sum.revision,
        },
    )?;
    for kind in store.kinds() {
        for (id, e) in store.list(&kind)? {
            let data = String::from_utf8(e.data.to_vec()).map_err(|_| TransferError::Format {
                line: sum.objects + sum.rows + 2,
                what: format!("{kind} {id} is not UTF-8; this format carries text only"),
            })?;
            write_line(
                out,
                &Line::Object {
                    kind: kind.clone(),
                    id,
                    data,
                },
            )?;
            sum.objects += 1;
        }
    }
    for table in store.table_names() {
        for (key, value) in store.persistent_entries(&table) {
            write_line(
                out,
                &Line::Row {
                    table: table.clone(),
                    key,
                    value,
                },
            )?;
            sum.rows += 1;
        }
    }
    out.flush()?;
    Ok(sum)
}

/// Commits what [`export`] wrote into `store`, which must be empty.
pub fn import(store: &dyn Store, input: &mut dyn BufRead) -> Result<Summary, TransferError> {
    import_with_progress(store, input, &mut |_, _| {})
}

/// [`import`], telling `progress` after each commit how many objects and
/// rows are in and how many there are (a long import to ZooKeeper shows
/// it moves).
pub fn import_with_progress(
    store: &dyn Store,
    input: &mut dyn BufRead,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Summary, TransferError> {
    if let Some(kind) = store.kinds().first() {
        return Err(TransferError::NotEmpty(format!("it holds {kind} objects")));
    }
    if let Some(t) = store
        .table_names()
        .into_iter()
        .find(|t| !store.persistent_entries(t).is_empty())
    {
        return Err(TransferError::NotEmpty(format!("table {t} has rows")));
    }
    let mut sum = Summary::default();
    let mut lines = input.lines().enumerate();
    let bad = |line: usize, what: String| TransferError::Format {
        line: line + 1,
        what,
    };
    let header: Header = match lines.next() {
        Some((n, l)) => {
            serde_json::from_str(&l?).map_err(|e| bad(n, format!("not an export header: {e}")))?
        }
        None => return Err(bad(0, "empty input: no export header".into())),
    };
    if header.format != FORMAT || header.version != FORMAT_VERSION {
        return Err(bad(
            0,
            format!(
                "format {} version {}; this reads {FORMAT} version {FORMAT_VERSION}",
                header.format, header.version
            ),
        ));
    }
    // The whole input is read and checked before the first commit: a bad
    // line leaves the target as it was.
    let mut ops = Vec::new();
    for (n, l) in lines {
        let l = l?;
        if l.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&l).map_err(|e| bad(n, e.to_string()))?;
        ops.push(match line {
            Line::Object { kind, id, data } => {
                if kind.is_empty() || id.is_empty() {
                    return Err(bad(n, "an object needs a kind and an id".into()));
                }
                sum.objects += 1;
                Op::Create {
                    kind,
                    id,
                    data: data.into_bytes(),
                }
            }
            Line::Row { table, key, value } => {
                sum.rows += 1;
                Op::Table {
                    table,
                    key,
                    value: Some(value),
                }
            }
        });
    }
    let (mut batch, mut bytes) = (Vec::new(), 0);
    let size = |op: &Op| match op {
        Op::Create { data, .. } => data.len(),
        Op::Table { value, .. } => value.as_ref().map_or(0, String::len),
        _ => 0,
    };
    let (total, mut done) = (ops.len(), 0);
    for op in ops {
        bytes += size(&op);
        batch.push(op);
        if batch.len() >= BATCH_OPS || bytes >= BATCH_BYTES {
            done += batch.len();
            sum.revision = store.commit(std::mem::take(&mut batch))?;
            bytes = 0;
            progress(done, total);
        }
    }
    if !batch.is_empty() {
        done += batch.len();
        sum.revision = store.commit(batch)?;
        progress(done, total);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStore;

    #[test]
    fn a_store_moves_whole_and_only_into_an_empty_one() {
        let a = LocalStore::in_memory();
        let mut ops: Vec<Op> = (0..450)
            .map(|i| Op::Create {
                kind: "Port".into(),
                id: format!("p/{i}"),
                data: format!("{{\"n\":{i}}}").into_bytes(),
            })
            .collect();
        ops.push(Op::Create {
            kind: "Bridge".into(),
            id: "b".into(),
            data: "{\"name\":\"ünïcode \\\"quoted\\\"\"}".as_bytes().to_vec(),
        });
        a.commit(ops).unwrap();
        a.table_put("mac/b", "aa:bb", "p/1", None).unwrap();
        let sess = a.open_session();
        a.table_put("mac/b", "cc:dd", "learned", Some(sess))
            .unwrap();
        a.put_ephemeral(sess, "Host/h/alive", b"1".to_vec())
            .unwrap();
        let mut file = Vec::new();
        let out = export(&a, &mut file).unwrap();
        assert_eq!((out.objects, out.rows), (451, 1), "learned rows stay");

        let b = LocalStore::in_memory();
        let mut seen = Vec::new();
        let got = import_with_progress(&b, &mut &file[..], &mut |d, t| seen.push((d, t))).unwrap();
        assert_eq!((got.objects, got.rows), (451, 1));
        assert_eq!(
            seen,
            vec![(200, 452), (400, 452), (452, 452)],
            "one report a commit"
        );
        assert_eq!(b.revision(), 3, "in commits of at most {BATCH_OPS} ops");
        for kind in ["Port", "Bridge"] {
            let (x, y) = (a.list(kind).unwrap(), b.list(kind).unwrap());
            assert_eq!(x.len(), y.len());
            for ((i, e), (j, f)) in x.iter().zip(&y) {
                assert_eq!((i, &e.data), (j, &f.data));
            }
        }
        assert_eq!(
            b.persistent_entries("mac/b"),
            [("aa:bb".into(), "p/1".into())]
        );
        assert!(b.get_ephemeral("Host/h/alive").is_none());

        let again = import(&b, &mut &file[..]);
        assert!(
            matches!(again, Err(TransferError::NotEmpty(_))),
            "{again:?}"
        );
        let c = LocalStore::in_memory();
        let junk = import(
            &c,
            &mut &b"{\"format\":\"other\",\"version\":1,\"revision\":0}\n"[..],
        );
        assert!(
            matches!(junk, Err(TransferError::Format { line: 1, .. })),
            "{junk:?}"
        );
        let mut broken = file[..file.len() / 2].to_vec();
        broken.extend_from_slice(b"\n{\"kind\":\n");
        let r = import(&c, &mut &broken[..]);
        assert!(matches!(r, Err(TransferError::Format { .. })), "{r:?}");
        assert!(c.kinds().is_empty(), "nothing of a bad file is committed");
    }
}
