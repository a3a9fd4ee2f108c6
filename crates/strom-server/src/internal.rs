//! The internal topics the coordinators keep their state in:
//! `__consumer_offsets` (groups) and `__transaction_state` (transactions).
//! Each is created on first use, like Kafka does, and loaded by replaying
//! its partitions when the node starts.

use std::sync::Arc;

use bytes::Bytes;
use strom_controller::{Controller, CreateTopicRequest};
use strom_coordinator::CoordinatorLog;
use strom_protocol::record_codec::RecordBatchDecoder;
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord, NO_SEQUENCE};
use strom_protocol::ErrorCode;
use strom_replica::{Partition, ReplicaManager};
use tracing::{error, info, warn};

use crate::broker::now_ms;

pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub(crate) const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Topics only coordinators write to.
pub(crate) fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == TRANSACTION_STATE_TOPIC
}

/// Appends coordinator records to a partition of an internal topic as one
/// uncompressed batch.
pub(crate) struct InternalTopicLog {
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) topic: &'static str,
}

fn encode_batch(
    producer: BatchProducer,
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    now: i64,
) -> Bytes {
    let records: Vec<NewRecord> = records
        .into_iter()
        .map(|(k, v)| NewRecord {
            key: Some(Bytes::from(k)),
            value: v.map(Bytes::from),
            timestamp: now,
        })
        .collect();
    build_batch(producer, Compression::None, &records)
}

impl InternalTopicLog {
    fn write(
        &self,
        partition: i32,
        batch: &[u8],
        now: i64,
        guard: Option<u64>,
    ) -> Result<(), ErrorCode> {
        let p = self
            .replicas
            .get(self.topic, partition)
            .ok_or(ErrorCode::NotCoordinator)?;
        p.append_from_coordinator(batch, now, guard)
            .map(|_| ())
            .map_err(|(code, message)| {
                warn!(topic = self.topic, partition, ?code, %message, "cannot write coordinator records");
                code
            })
    }
}

impl CoordinatorLog for InternalTopicLog {
    fn append(
        &self,
        partition: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        let now = now_ms();
        self.write(
            partition,
            &encode_batch(BatchProducer::NONE, records, now),
            now,
            None,
        )
    }

    fn append_transactional(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        guard: u64,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        let producer = BatchProducer {
            id: producer_id,
            epoch: producer_epoch,
            base_sequence: NO_SEQUENCE,
            transactional: true,
        };
        let now = now_ms();
        self.write(
            partition,
            &encode_batch(producer, records, now),
            now,
            Some(guard),
        )
    }
}

/// How an internal topic is created.
pub(crate) struct InternalTopic<'a> {
    pub(crate) name: &'a str,
    pub(crate) partitions: i32,
    /// `offsets.topic.replication.factor` or
    /// `transaction.state.log.replication.factor`.
    pub(crate) replication_factor: i16,
    pub(crate) segment_bytes: i64,
    /// `transaction.state.log.min.isr` (`None`: the broker default).
    pub(crate) min_isr: Option<i64>,
}

/// Creates an internal topic if it does not exist yet; true if it did now.
/// Its replication factor is the configured one, no more than the brokers
/// live at the time (so a single node, or a cluster's first broker up,
/// gets a topic it can serve; Kafka would refuse until enough brokers
/// registered), and its min.insync.replicas no more than its replicas.
pub(crate) async fn ensure_topic(
    controller: &Controller,
    topic: InternalTopic<'_>,
) -> Result<bool, ErrorCode> {
    let image = controller.image();
    if image.topic(topic.name).is_some() {
        return Ok(false);
    }
    let live = image.unfenced_brokers().count().max(1);
    let replication_factor = topic.replication_factor.clamp(1, live as i16);
    let mut configs = vec![
        ("cleanup.policy".into(), "compact".into()),
        ("segment.bytes".into(), topic.segment_bytes.to_string()),
    ];
    if let Some(min_isr) = topic.min_isr {
        let min_isr = min_isr.clamp(1, i64::from(replication_factor));
        configs.push(("min.insync.replicas".into(), min_isr.to_string()));
    }
    let (partitions, topic) = (topic.partitions, topic.name);
    let req = CreateTopicRequest {
        name: topic.to_owned(),
        num_partitions: partitions,
        replication_factor,
        configs,
        ..Default::default()
    };
    match controller
        .create_topics(vec![req], false)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?
        .pop()
    {
        Some(Ok(_)) => {
            info!(partitions, replication_factor, "created {topic}");
            Ok(true)
        }
        Some(Err(e)) if e.code == ErrorCode::TopicAlreadyExists => Ok(false),
        _ => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// One record of an internal topic, as loading sees it.
pub(crate) enum Loaded<'a> {
    /// A record outside any transaction.
    Record {
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
    /// A record written inside `producer_id`'s transaction.
    Transactional {
        producer_id: i64,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
    /// The marker that ended `producer_id`'s transaction.
    Marker { producer_id: i64, commit: bool },
}

/// Replays every record of one partition of an internal topic into
/// `replay`, from its log start to its log end (what a coordinator loads
/// when this node becomes the partition's leader: every record there will
/// be committed under this leadership or the node stops leading first).
/// Returns how many records there were.
pub(crate) fn load_partition(p: &Partition, mut replay: impl FnMut(Loaded<'_>)) -> usize {
    let mut count = 0;
    let mut offset = p.log_start_offset();
    loop {
        let Ok(read) = p.read_to_log_end(offset, 1 << 20) else {
            break;
        };
        if read.is_empty() {
            break;
        }
        let mut bytes = read;
        while !bytes.is_empty() {
            let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
                // The rest of this partition is lost to its coordinator;
                // the other partitions still load.
                error!(
                    partition = ?p,
                    offset,
                    "undecodable batch: the rest of the partition is not loaded"
                );
                return count;
            };
            for r in set.records {
                if r.offset < offset {
                    continue;
                }
                offset = r.offset + 1;
                let Some(k) = &r.key else {
                    continue;
                };
                let loaded = if r.control {
                    Loaded::Marker {
                        producer_id: r.producer_id,
                        commit: k.get(2..4) == Some(&[0, 1]),
                    }
                } else if r.transactional {
                    Loaded::Transactional {
                        producer_id: r.producer_id,
                        key: k,
                        value: r.value.as_deref(),
                    }
                } else {
                    Loaded::Record {
                        key: k,
                        value: r.value.as_deref(),
                    }
                };
                replay(loaded);
                count += 1;
            }
        }
    }
    count
}
