//! Fetch (v4+): reads up to the high watermark (read_committed: the last
//! stable offset, with the aborted transactions in range), waits for data
//! when too little is there (woken by the appends that move the high
//! watermark, transaction markers included).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use strom_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use strom_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use strom_protocol::ErrorCode;
use strom_replica::{Isolation, Partition};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{check_leader_epoch, str_bytes};
use crate::broker::Broker;

/// A partition of the request, resolved.
struct Wanted {
    index: i32,
    target: Result<Arc<Partition>, ErrorCode>,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
}

struct Topic {
    name: String,
    id: uuid::Uuid,
    partitions: Vec<Wanted>,
}

fn partition_error(index: i32, code: ErrorCode) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// One pass over every partition; returns the response parts and the bytes read.
fn read_all(
    topics: &[Topic],
    max_bytes: usize,
    isolation: Isolation,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let partitions = t
            .partitions
            .iter()
            .map(|w| {
                let p = match &w.target {
                    Ok(p) => p,
                    Err(code) => {
                        errors = true;
                        return partition_error(w.index, *code);
                    }
                };
                if let Err(code) = check_leader_epoch(w.current_leader_epoch, p.leader_epoch()) {
                    errors = true;
                    return partition_error(w.index, code);
                }
                let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                // Only the first data of the response may exceed the limits,
                // so that a batch larger than them still makes progress.
                match p.read(w.fetch_offset, budget, total == 0, isolation) {
                    Ok(r) => {
                        total += r.records.len();
                        let aborted = r.aborted.map(|v| {
                            v.iter()
                                .map(|t| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(t.producer_id))
                                        .with_first_offset(t.first_offset)
                                })
                                .collect()
                        });
                        PartitionData::default()
                            .with_partition_index(w.index)
                            .with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(r.last_stable_offset)
                            .with_log_start_offset(r.log_start_offset)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_aborted_transactions(aborted)
                            .with_records(Some(r.records))
                    }
                    Err(code) => {
                        errors = true;
                        partition_error(w.index, code)
                    }
                }
            })
            .collect();
        out.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes(&t.name)))
                .with_topic_id(t.id)
                .with_partitions(partitions),
        );
    }
    (out, total, errors)
}

/// Of the room a read took, what its answer holds (`read` bytes): the rest
/// goes back to the pool now, this once the response is written.
fn keep_room(room: Option<OwnedSemaphorePermit>, read: usize) -> Option<OwnedSemaphorePermit> {
    let mut room = room?;
    let keep = read.clamp(1, room.num_permits());
    if let Some(extra) = room.split(room.num_permits() - keep) {
        drop(extra);
    }
    Some(room)
}

/// `held` receives the pool room the answer's records hold, for the
/// connection to give back once the response is written.
pub(super) async fn handle(
    broker: &Broker,
    req: FetchRequest,
    version: i16,
    held: &mut Option<OwnedSemaphorePermit>,
) -> FetchResponse {
    // Fetch sessions (KIP-227) are declined with session id 0: every fetch
    // is a full one. A client that names a session we never gave out is told so.
    if req.session_id != 0 {
        return FetchResponse::default().with_error_code(ErrorCode::FetchSessionIdNotFound.code());
    }
    let image = broker.image();
    let topics: Vec<Topic> = req
        .topics
        .into_iter()
        .map(|t| {
            let resolved = if version >= 13 {
                image
                    .topic_by_id(&t.topic_id)
                    .map(|ti| ti.name.clone())
                    .ok_or(ErrorCode::UnknownTopicId)
            } else {
                Ok(t.topic.0.as_str().to_owned())
            };
            let name = resolved.clone().unwrap_or_default();
            let id = image.topic(&name).map_or(t.topic_id, |ti| ti.id);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    index: p.partition,
                    target: resolved.clone().and_then(|n| {
                        broker
                            .replicas
                            .get(&n, p.partition)
                            .ok_or(ErrorCode::UnknownTopicOrPartition)
                    }),
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    current_leader_epoch: p.current_leader_epoch,
                })
                .collect();
            Topic {
                name,
                id,
                partitions,
            }
        })
        .collect();
    let isolation = Isolation::from_wire(req.isolation_level);
    // The broker's fetch.max.bytes caps what the request asks for (the
    // first batch still goes whole, so a large one makes progress).
    let max_bytes = (req.max_bytes.max(0) as usize)
        .min(broker.config.get_i64("fetch.max.bytes").max(0) as usize);
    // What one pass may read: room for it is taken from the memory pool
    // while it reads.
    let budget = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|w| w.max_bytes)
        .fold(0usize, usize::saturating_add)
        .min(max_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    loop {
        // Subscribe before reading, so an append between the read and the
        // wait is not missed.
        let mut watches: Vec<_> = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|w| w.target.as_ref().ok().map(|p| p.watch_high_watermark()))
            .collect();
        let mut room = broker.memory.reserve(budget).await;
        let (responses, total, errors) = read_all(&topics, max_bytes, isolation);
        if total >= min_bytes || errors || watches.is_empty() || Instant::now() >= deadline {
            *held = keep_room(room, total);
            return FetchResponse::default().with_responses(responses);
        }
        room.take();
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            // Time is up: answer with what there is (read again, cheaply).
            let room = broker.memory.reserve(budget).await;
            let (responses, total, _) = read_all(&topics, max_bytes, isolation);
            *held = keep_room(room, total);
            return FetchResponse::default().with_responses(responses);
        }
    }
}
