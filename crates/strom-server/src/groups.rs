//! Wiring of the group coordinator: its log is the `__consumer_offsets`
//! topic, created on first use like Kafka does, and loaded by replaying its
//! partitions when the node starts.

use std::sync::Arc;

use bytes::Bytes;
use strom_controller::{Controller, CreateTopicRequest};
use strom_coordinator::CoordinatorLog;
use strom_protocol::record_codec::RecordBatchDecoder;
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord};
use strom_protocol::ErrorCode;
use strom_replica::ReplicaManager;
use tracing::{info, warn};

use crate::broker::now_ms;

pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Appends coordinator records to a `__consumer_offsets` partition as one
/// uncompressed batch.
pub(crate) struct OffsetsTopicLog {
    pub(crate) replicas: Arc<ReplicaManager>,
}

fn encode_batch(records: Vec<(Vec<u8>, Option<Vec<u8>>)>, now: i64) -> Bytes {
    let records: Vec<NewRecord> = records
        .into_iter()
        .map(|(k, v)| NewRecord {
            key: Some(Bytes::from(k)),
            value: v.map(Bytes::from),
            timestamp: now,
        })
        .collect();
    build_batch(BatchProducer::NONE, Compression::None, &records)
}

impl CoordinatorLog for OffsetsTopicLog {
    fn append(
        &self,
        partition: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        let p = self
            .replicas
            .get(OFFSETS_TOPIC, partition)
            .ok_or(ErrorCode::NotCoordinator)?;
        let now = now_ms();
        p.append(&encode_batch(records, now), now)
            .map(|_| ())
            .map_err(|(code, message)| {
                warn!(partition, ?code, %message, "cannot write to __consumer_offsets");
                code
            })
    }
}

/// Creates `__consumer_offsets` if it does not exist yet.
pub(crate) fn ensure_offsets_topic(
    controller: &Controller,
    partitions: i32,
) -> Result<bool, ErrorCode> {
    if controller.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(false);
    }
    let req = CreateTopicRequest {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: partitions,
        replication_factor: 1,
        configs: vec![
            ("cleanup.policy".into(), "compact".into()),
            ("segment.bytes".into(), "104857600".into()),
        ],
        ..Default::default()
    };
    match controller
        .create_topics(vec![req], false)
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?
        .pop()
    {
        Some(Ok(_)) => {
            info!(partitions, "created {OFFSETS_TOPIC}");
            Ok(true)
        }
        Some(Err(e)) if e.code == ErrorCode::TopicAlreadyExists => Ok(false),
        _ => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// Replays every record of `__consumer_offsets` into `replay`.
pub(crate) fn load(
    replicas: &ReplicaManager,
    partitions: i32,
    mut replay: impl FnMut(&[u8], Option<&[u8]>),
) -> usize {
    let mut count = 0;
    for index in 0..partitions {
        let Some(p) = replicas.get(OFFSETS_TOPIC, index) else {
            continue;
        };
        let mut offset = p.log_start_offset();
        loop {
            let Ok(read) = p.read(offset, 1 << 20, true) else {
                break;
            };
            if read.records.is_empty() {
                break;
            }
            let mut bytes = read.records;
            while !bytes.is_empty() {
                let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
                    warn!(
                        partition = index,
                        offset, "undecodable batch in {OFFSETS_TOPIC}"
                    );
                    return count;
                };
                for r in set.records {
                    if r.offset < offset {
                        continue;
                    }
                    if let Some(k) = &r.key {
                        replay(k, r.value.as_deref());
                        count += 1;
                    }
                    offset = r.offset + 1;
                }
            }
        }
    }
    count
}
