//! Access-control records: opaque to the store (the broker encodes them), replicated and
//! snapshotted like the rest of the metadata.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::image::count;
use crate::index::{Indexes, CF_META};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::{ApplyOutcome, Store};

/// The auth section: records by key.
pub(crate) type Auth = BTreeMap<String, Bytes>;

pub(crate) fn put(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    key: String,
    value: Bytes,
) -> Result<ApplyOutcome> {
    ctx.durable
        .put_cf(ctx.idx.cf(CF_META)?, MetaKey::Auth(&key).encode(), &value);
    sm.auth.insert(key, value);
    ctx.changes.auth.fetch_add(1, Ordering::Release);
    Ok(ApplyOutcome::Command)
}

pub(crate) fn delete(sm: &mut SmState, ctx: &mut Ctx<'_>, key: &str) -> Result<ApplyOutcome> {
    ctx.durable
        .delete_cf(ctx.idx.cf(CF_META)?, MetaKey::Auth(key).encode());
    sm.auth.remove(key);
    ctx.changes.auth.fetch_add(1, Ordering::Release);
    Ok(ApplyOutcome::Command)
}

pub(crate) fn load(idx: &Indexes) -> Result<Auth> {
    let mut s = Auth::new();
    for (k, v) in idx.scan_prefix(CF_META, MetaPrefix::Auth.bytes())? {
        if let Some(MetaKey::Auth(key)) = MetaKey::decode(&k) {
            s.insert(key.to_owned(), Bytes::from(v));
        }
    }
    Ok(s)
}

pub(crate) fn export(s: &Auth, w: &mut Writer) -> Result<()> {
    w.u32(count(s.len())?);
    for (k, v) in s {
        w.bytes16(k.as_bytes())?;
        w.bytes32(v)?;
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Auth> {
    let mut s = Auth::new();
    for _ in 0..r.u32()? {
        let key = r.str16()?;
        s.insert(key, r.bytes32()?);
    }
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s.
pub(crate) fn install(s: &Auth, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    b.delete_range_cf(meta, MetaPrefix::Auth.bytes(), &MetaPrefix::Auth.end()[..]);
    for (k, v) in s {
        b.put_cf(meta, MetaKey::Auth(k).encode(), v);
    }
    Ok(())
}

impl Store {
    /// Every access-control record, by key, with the change count it reflects: callers
    /// that cache a decoded form re-read only when [`Store::auth_changes`] moves on.
    pub fn auth_records(&self) -> (u64, BTreeMap<String, Bytes>) {
        let sm = self.lock();
        (self.changes.auth.load(Ordering::Acquire), sm.auth.clone())
    }

    /// How many access-control changes this store has applied or imported since it opened
    /// (a cheap "has anything changed" check; not persisted).
    pub fn auth_changes(&self) -> u64 {
        self.changes.auth.load(Ordering::Acquire)
    }
}
