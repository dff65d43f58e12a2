//! The state image: everything the state machine owns besides the log, for Raft snapshots.
//!
//! ```text
//! image   := version u8 (=3) | applied: u8 present, term u64, index u64
//!            | u8 n, section*
//! section := kind u8 | u32 len | body (the section's own layout, crate::sm::*::export)
//! ```
//! Every kind of state ([`crate::sm::Kind`]) has one section; an image lacking one, or
//! naming one this build does not know, is refused. Images of versions 1 and 2 (one fixed
//! sequence, before sections) still import. The log itself travels separately (the
//! segments the receiver lacks); the derived indexes are rebuilt from it after an import.

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::index::{Indexes, MetaKey, CF_META};
use crate::sm::{self, Kind, SmState};
use crate::store::Store;

const IMAGE_VERSION: u8 = 3;

/// A count as the image's u32.
pub(crate) fn count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Invalid(format!("{n} items in a state image")))
}

/// A state image and the extra meta values read with it.
#[derive(Debug, Clone)]
pub struct StateExport {
    /// The last applied `(term, index)` the image reflects.
    pub applied: Option<(u64, u64)>,
    /// The encoded image.
    pub image: Vec<u8>,
    /// Values of the requested extra meta keys, in order.
    pub extra: Vec<Option<Vec<u8>>>,
}

/// The applied `(term, index)` an image reflects, read from its header.
///
/// # Errors
/// A malformed or unknown header.
pub fn image_applied(image: &[u8]) -> Result<Option<(u64, u64)>> {
    let mut r = Reader::new(
        Bytes::copy_from_slice(&image[..18.min(image.len())]),
        "state image",
    );
    let v = r.u8()?;
    if !(1..=IMAGE_VERSION).contains(&v) {
        return Err(Error::codec("state image", format!("version {v}")));
    }
    let present = r.u8()? != 0;
    let (t, i) = (r.u64()?, r.u64()?);
    Ok(present.then_some((t, i)))
}

/// Every section of an image, decoded.
#[derive(Debug, Default)]
struct Decoded {
    state: SmState,
    offsets: sm::offsets::OffsetRows,
}

fn export_section(kind: Kind, sm: &SmState, idx: &Indexes, w: &mut Writer) -> Result<()> {
    match kind {
        Kind::Topics => sm::topics::export(&sm.topics, w),
        Kind::Groups => sm::groups::export(&sm.groups, w),
        Kind::Offsets => sm::offsets::export(idx, w),
        Kind::Locks => sm::locks::export(&sm.locks, w),
        Kind::Timers => sm::timers::export(&sm.timers, w),
        Kind::Auth => sm::auth::export(&sm.auth, w),
        Kind::Transactions => sm::transactions::export(&sm.tx, w),
    }
}

fn decode_section(kind: Kind, r: &mut Reader, d: &mut Decoded) -> Result<()> {
    match kind {
        Kind::Topics => d.state.topics = sm::topics::decode(r)?,
        Kind::Groups => d.state.groups = sm::groups::decode(r)?,
        Kind::Offsets => d.offsets = sm::offsets::decode(r)?,
        Kind::Locks => d.state.locks = sm::locks::decode(r)?,
        Kind::Timers => d.state.timers = sm::timers::decode(r)?,
        Kind::Auth => d.state.auth = sm::auth::decode(r)?,
        Kind::Transactions => d.state.tx = sm::transactions::decode(r)?,
    }
    Ok(())
}

fn install_section(kind: Kind, d: &Decoded, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    match kind {
        Kind::Topics => sm::topics::install(&d.state.topics, idx, b),
        Kind::Groups => sm::groups::install(&d.state.groups, idx, b),
        Kind::Offsets => sm::offsets::install(&d.offsets, idx, b),
        Kind::Locks => sm::locks::install(&d.state.locks, idx, b),
        Kind::Timers => sm::timers::install(&d.state.timers, idx, b),
        Kind::Auth => sm::auth::install(&d.state.auth, idx, b),
        Kind::Transactions => sm::transactions::install(&d.state.tx, idx, b),
    }
}

fn decode_sections(r: &mut Reader) -> Result<Decoded> {
    let mut d = Decoded::default();
    let mut seen = Vec::new();
    for _ in 0..r.u8()? {
        let tag = r.u8()?;
        let body = r.bytes32()?;
        let kind = Kind::from_tag(tag).ok_or_else(|| {
            Error::codec(
                "state image",
                format!("section {tag} is unknown to this build: upgrade this node first"),
            )
        })?;
        if seen.contains(&kind) {
            return Err(Error::codec(
                "state image",
                format!("section {} twice", kind.name()),
            ));
        }
        seen.push(kind);
        let mut br = Reader::new(body, "state image section");
        decode_section(kind, &mut br, &mut d)?;
        br.finish()?;
    }
    if let Some(k) = Kind::ALL.iter().find(|k| !seen.contains(k)) {
        return Err(Error::codec(
            "state image",
            format!("no {} section", k.name()),
        ));
    }
    Ok(d)
}

/// Images of versions 1 and 2: one fixed sequence of what are now sections.
fn decode_legacy(v: u8, r: &mut Reader) -> Result<Decoded> {
    let mut d = Decoded::default();
    sm::topics::decode_configs(r, &mut d.state.topics)?;
    d.state.groups = sm::groups::decode(r)?;
    sm::topics::decode_queues(r, &mut d.state.topics)?;
    d.offsets = sm::offsets::decode(r)?;
    d.state.locks = sm::locks::decode_legacy(r)?;
    d.state.timers = sm::timers::decode(r)?;
    if v >= 2 {
        d.state.auth = sm::auth::decode(r)?;
    }
    Ok(d)
}

impl Store {
    /// A consistent image of the state machine at its applied index, plus the values of
    /// `extra` meta keys read at the same moment (the raft crate's membership).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn export_state(&self, extra: &[MetaKey<'_>]) -> Result<StateExport> {
        let sm = self.lock();
        let extra = extra
            .iter()
            .map(|k| self.idx.get_meta(k))
            .collect::<Result<Vec<_>>>()?;
        let mut w = Writer::new();
        w.u8(IMAGE_VERSION);
        match sm.applied {
            Some((t, i)) => w.u8(1).u64(t).u64(i),
            None => w.u8(0).u64(0).u64(0),
        };
        w.u8(Kind::ALL.len() as u8);
        for kind in Kind::ALL {
            let mut body = Writer::new();
            export_section(kind, &sm, &self.idx, &mut body)?;
            w.u8(kind as u8);
            w.bytes32(&body.finish())?;
        }
        let applied = sm.applied;
        drop(sm);
        Ok(StateExport {
            applied,
            image: w.finish(),
            extra,
        })
    }

    /// Replaces the state machine with an image (a snapshot install), then rebuilds the
    /// derived indexes from the log, which must already hold the entries up to the image's
    /// applied index.
    ///
    /// # Errors
    /// A malformed image, RocksDB and I/O errors.
    pub fn import_state(&self, image: &[u8]) -> Result<()> {
        let applied = image_applied(image)?;
        let mut r = Reader::new(Bytes::copy_from_slice(image), "state image");
        let v = r.u8()?;
        r.raw(17)?;
        let d = if v == IMAGE_VERSION {
            decode_sections(&mut r)?
        } else {
            decode_legacy(v, &mut r)?
        };
        r.finish()?;

        let mut b = WriteBatch::default();
        for kind in Kind::ALL {
            install_section(kind, &d, &self.idx, &mut b)?;
        }
        let meta = self.idx.cf(CF_META)?;
        match applied {
            Some((t, i)) => {
                let mut w = Writer::new();
                w.u64(t).u64(i);
                b.put_cf(meta, MetaKey::Applied.encode(), w.finish());
            }
            None => b.delete_cf(meta, MetaKey::Applied.encode()),
        }
        {
            let mut sm = self.lock();
            self.idx.write_durable(b, true)?;
            // The derived indexes describe the old state: rebuild them from scratch.
            self.idx.clear_derived()?;
            let mut fresh = d.state;
            fresh.applied = applied;
            fresh.checkpoint = None;
            *sm = fresh;
            self.changes
                .auth
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        crate::rebuild::rebuild_derived(self)?;
        tracing::info!(applied = ?self.applied(), "state image installed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
