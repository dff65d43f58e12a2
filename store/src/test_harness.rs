//! A store driven as the Raft state machine would drive it, for the crate's tests.

use std::path::Path;

use bytes::Bytes;
use raftmq_proto::TopicConfig;

use crate::batch::{BatchWriter, MessageRef};
use crate::config::LogConfig;
use crate::entry::{Command, EntryPayload};
use crate::log::AppendEntry;
use crate::store::{ApplyEntry, ApplyOutcome, MessageOutcome, Store, StoreConfig};

pub(crate) fn small() -> StoreConfig {
    StoreConfig {
        log: LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        },
        ..StoreConfig::default()
    }
}

/// Appends entries to the log and applies them, as the Raft state machine would.
pub(crate) struct Harness {
    pub(crate) store: Store,
    pub(crate) next: u64,
}

impl Harness {
    pub(crate) fn open(dir: &Path) -> Self {
        let store = Store::open(dir, small()).unwrap();
        let next = store.log().last_index().map_or(1, |l| l + 1);
        Self { store, next }
    }

    pub(crate) fn commit(&mut self, p: EntryPayload) -> ApplyOutcome {
        let payload = Bytes::from(p.encode().unwrap());
        let index = self.next;
        self.next += 1;
        self.store
            .log()
            .append(&[AppendEntry {
                term: 1,
                index,
                payload: &payload,
            }])
            .unwrap();
        let mut out = self
            .store
            .apply(
                &[ApplyEntry {
                    term: 1,
                    index,
                    payload,
                }],
                &[],
            )
            .unwrap();
        out.pop().unwrap()
    }

    /// Sends one batch: `(topic, queue, tag, key)` per message, bodies
    /// `topic/queue/i/index`.
    pub(crate) fn send(&mut self, msgs: &[(&str, u32, &str, &str)]) -> Vec<MessageOutcome> {
        let bodies: Vec<String> = msgs
            .iter()
            .enumerate()
            .map(|(i, (topic, queue, _, _))| format!("{topic}/{queue}/{i}/{}", self.next))
            .collect();
        let keys: Vec<Vec<String>> = msgs.iter().map(|m| vec![m.3.to_owned()]).collect();
        let refs: Vec<MessageRef<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(i, (topic, queue, tag, _))| {
                self.message(topic, *queue, tag, &keys[i], &[], &bodies[i])
            })
            .collect();
        self.send_refs(&refs)
    }

    fn message<'a>(
        &self,
        topic: &'a str,
        queue_id: u32,
        tag: &'a str,
        keys: &'a [String],
        properties: &'a [(String, String)],
        body: &'a str,
    ) -> MessageRef<'a> {
        MessageRef {
            topic,
            queue_id,
            tag,
            keys,
            properties,
            body: body.as_bytes(),
            born_ms: 1,
            store_ms: 1000 * self.next,
            flags: 0,
            reconsume_times: 0,
        }
    }

    fn send_refs(&mut self, refs: &[MessageRef<'_>]) -> Vec<MessageOutcome> {
        let mut w = BatchWriter::new();
        for r in refs {
            w.push(r).unwrap();
        }
        match self.commit(EntryPayload::Messages(Bytes::from(w.finish()))) {
            ApplyOutcome::Messages(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub(crate) fn create_topic(&mut self, name: &str, queues: u32) {
        self.commit(EntryPayload::Command(Command::UpsertTopic(
            TopicConfig::new(name, queues),
        )));
    }

    /// Sends one message with these properties to queue 0 of `topic`.
    pub(crate) fn send_props(
        &mut self,
        topic: &str,
        props: &[(&str, &str)],
        body: &str,
    ) -> Vec<MessageOutcome> {
        let props: Vec<(String, String)> = props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let m = self.message(topic, 0, "t", &[], &props, body);
        self.send_refs(&[m])
    }
}
