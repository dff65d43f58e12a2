//! Consumer groups' configs.

use std::collections::BTreeMap;

use raftmq_proto::ConsumerGroupConfig;
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::codec::{Reader, Writer};
use crate::entry::{decode_group, encode_group};
use crate::error::Result;
use crate::image::count;
use crate::index::{self, Indexes, CF_META};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::ApplyOutcome;

/// The groups section: configs by name.
pub(crate) type Groups = BTreeMap<String, ConsumerGroupConfig>;

pub(crate) fn upsert(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    g: ConsumerGroupConfig,
) -> Result<ApplyOutcome> {
    let name = g.name.as_str().to_owned();
    ctx.durable.put_cf(
        ctx.idx.cf(CF_META)?,
        MetaKey::Group(&name).encode(),
        index::encode_group_meta(&g)?,
    );
    sm.groups.insert(name, g);
    Ok(ApplyOutcome::Command)
}

/// Deletes a group and its committed offsets.
pub(crate) fn delete(sm: &mut SmState, ctx: &mut Ctx<'_>, name: &str) -> Result<ApplyOutcome> {
    sm.groups.remove(name);
    ctx.durable
        .delete_cf(ctx.idx.cf(CF_META)?, MetaKey::Group(name).encode());
    super::offsets::delete_group(ctx, name)?;
    Ok(ApplyOutcome::Command)
}

pub(crate) fn load(idx: &Indexes) -> Result<Groups> {
    let mut s = Groups::new();
    for (_, v) in idx.scan_prefix(CF_META, MetaPrefix::Group.bytes())? {
        let g = index::decode_group_meta(&v)?;
        s.insert(g.name.as_str().to_owned(), g);
    }
    Ok(s)
}

pub(crate) fn export(s: &Groups, w: &mut Writer) -> Result<()> {
    w.u32(count(s.len())?);
    for g in s.values() {
        encode_group(w, g)?;
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Groups> {
    let mut s = Groups::new();
    for _ in 0..r.u32()? {
        let g = decode_group(r)?;
        s.insert(g.name.as_str().to_owned(), g);
    }
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s.
pub(crate) fn install(s: &Groups, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    b.delete_range_cf(
        meta,
        MetaPrefix::Group.bytes(),
        &MetaPrefix::Group.end()[..],
    );
    for g in s.values() {
        b.put_cf(
            meta,
            MetaKey::Group(g.name.as_str()).encode(),
            index::encode_group_meta(g)?,
        );
    }
    Ok(())
}
