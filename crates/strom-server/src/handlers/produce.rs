//! Produce (v3+): validate, deduplicate, append; acks 0, 1 and all. A
//! transactional batch must belong to a partition its transaction added
//! (Kafka's `transaction.partition.verification.enable`), which keeps a
//! late batch of an ended transaction from hanging the partition's LSO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strom_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use strom_protocol::messages::{ProduceRequest, ProduceResponse};
use strom_protocol::records::Batch;
use strom_protocol::ErrorCode;

use strom_metadata::MetadataImage;
use strom_replica::{Partition, ProduceError, Uncommitted};
use tokio::time::Instant;
use tracing::debug;

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::internal::is_internal;

fn error(index: i32, code: ErrorCode, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.as_deref().map(str_bytes))
}

/// A refused batch, with the records at fault (Produce v8+ carries them).
fn refused(index: i32, e: ProduceError) -> PartitionProduceResponse {
    let record_errors = e
        .record_errors
        .into_iter()
        .map(|r| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(r.batch_index)
                .with_batch_index_error_message(Some(str_bytes(&r.message)))
        })
        .collect();
    error(index, e.code, Some(e.message)).with_record_errors(record_errors)
}

/// Produce v7 brought zstd (KIP-110): older requests may not use it.
const ZSTD_SINCE: i16 = 7;

/// An acks=all write appended on the leader, waiting to be committed.
struct Pending {
    topic: usize,
    partition: usize,
    replica: Arc<Partition>,
    next_offset: i64,
    /// The leadership it was written in.
    leadership: u64,
}

/// `None` for acks=0: the client expects no response.
pub(super) async fn handle(
    broker: &Broker,
    req: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let remote = verify_remotely(broker, &req).await;
    let image = broker.image();
    let now = now_ms();
    let mut pending = Vec::new();
    let mut responses: Vec<TopicProduceResponse> = req
        .topic_data
        .into_iter()
        .enumerate()
        .map(|(topic_index, topic)| {
            let name = topic.name.0.as_str().to_owned();
            let partitions = topic
                .partition_data
                .into_iter()
                .enumerate()
                .map(|(partition_index, p)| {
                    if !matches!(acks, -1..=1) {
                        return error(p.index, ErrorCode::InvalidRequiredAcks, None);
                    }
                    if is_internal(&name) {
                        return error(p.index, ErrorCode::InvalidTopicException, Some(format!("Cannot append to internal topic {name}")));
                    }
                    let partition = match broker.replicas.leading(&name, p.index) {
                        Ok(partition) => partition,
                        Err(code) => return error(p.index, code, None),
                    };
                    if acks == -1 {
                        let (isr, min_isr) = in_sync(&image, &partition);
                        if isr < min_isr {
                            return error(p.index, ErrorCode::NotEnoughReplicas, Some(format!("The size of the current ISR : {isr} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {name}-{}", p.index)));
                        }
                    }
                    let Some(records) = p.records else {
                        return error(p.index, ErrorCode::InvalidRecord, Some("no records".into()));
                    };
                    if version < ZSTD_SINCE && Batch::parse(&records).is_ok_and(|b| b.compression() == 4) {
                        return error(p.index, ErrorCode::UnsupportedCompressionType, Some(format!("Produce requests prior to version {ZSTD_SINCE} may not use zstd compression")));
                    }
                    let guard = match verify_in_transaction(broker, &partition, req.transactional_id.as_ref().map(|t| t.0.as_str()), &records, &remote) {
                        Ok(guard) => guard,
                        Err((code, message)) => return error(p.index, code, Some(message.into())),
                    };
                    match partition.append(&records, now, guard) {
                        Ok(r) => {
                            if acks == -1 {
                                pending.push(Pending { topic: topic_index, partition: partition_index, replica: partition.clone(), next_offset: r.next_offset, leadership: r.leadership });
                            }
                            let count = Batch::parse(&records).map_or(0, |b| b.records_count().max(0) as u64);
                            broker.metrics.produced(&name, count, records.len() as u64);
                            PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(r.base_offset)
                            .with_log_append_time_ms(r.log_append_time)
                            .with_log_start_offset(r.log_start_offset)
                        }
                        Err(e) => {
                            debug!(topic = %name, partition = p.index, code = ?e.code, message = %e.message, "produce refused");
                            refused(p.index, e)
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(strom_protocol::messages::TopicName(str_bytes(&name)))
                .with_partition_responses(partitions)
        })
        .collect();
    if !pending.is_empty() {
        let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
        for w in pending {
            if let Some(code) = committed(broker, &w, deadline).await {
                let slot = &mut responses[w.topic].partition_responses[w.partition];
                *slot = error(slot.index, code, None);
            }
        }
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// The partition's ISR size and its effective min.insync.replicas (no
/// more than its replicas, as Kafka counts it).
fn in_sync(image: &MetadataImage, partition: &Partition) -> (usize, usize) {
    let (isr, replicas) = image
        .topic(partition.topic())
        .and_then(|t| t.partitions.get(&partition.index()))
        .map_or((0, 1), |p| (p.isr.len(), p.replicas.len()));
    (isr, partition.min_insync_replicas().min(replicas).max(1))
}

/// Waits until an acks=all write is committed (the high watermark passed
/// it), as Kafka's delayed produce does: `None` then, unless the ISR
/// shrank below min.insync.replicas meanwhile
/// (NOT_ENOUGH_REPLICAS_AFTER_APPEND); NOT_LEADER_OR_FOLLOWER once the
/// leadership it was written in ended, even if this node leads again (its
/// log may have been truncated in between: only an unbroken leadership
/// moved the high watermark over this write); REQUEST_TIMED_OUT at the
/// request's timeout.
async fn committed(broker: &Broker, w: &Pending, deadline: Instant) -> Option<ErrorCode> {
    match w
        .replica
        .wait_committed(w.next_offset, w.leadership, deadline)
        .await
    {
        Ok(()) => {
            let (isr, min_isr) = in_sync(&broker.image(), &w.replica);
            (isr < min_isr).then_some(ErrorCode::NotEnoughReplicasAfterAppend)
        }
        Err(Uncommitted::LeadershipEnded) => Some(ErrorCode::NotLeaderOrFollower),
        Err(Uncommitted::TimedOut) => Some(ErrorCode::RequestTimedOut),
    }
}

/// Checks that a transactional batch comes with its transactional id and
/// that its partition is part of its producer's open transaction, with the
/// codes Kafka's produce path maps the coordinator's answers to. Returns
/// the partition's verification guard for the append.
fn verify_in_transaction(
    broker: &Broker,
    partition: &Partition,
    transactional_id: Option<&str>,
    records: &[u8],
    remote: &RemoteVerdicts,
) -> Result<Option<u64>, (ErrorCode, &'static str)> {
    let Ok(batch) = Batch::parse(records) else {
        return Ok(None); // the append refuses it with the right code
    };
    if !batch.is_transactional() {
        return Ok(None);
    }
    let Some(transactional_id) = transactional_id else {
        return Err((
            ErrorCode::TransactionalIdAuthorizationFailed,
            "Transactional records need a transactional id",
        ));
    };
    if partition.in_open_transaction(batch.producer_id(), batch.producer_epoch()) {
        // Verified when its transaction began here.
        return Ok(None);
    }
    let key = (partition.topic().to_owned(), partition.index());
    let (guard, verdict) = match remote.get(&key) {
        Some(&(guard, verdict)) => (guard, verdict),
        None => {
            // The guard first: a marker between the coordinator's answer
            // and the append voids it.
            let guard = partition.start_verification(batch.producer_id());
            let verdict = broker
                .txns
                .verify_partitions(
                    transactional_id,
                    batch.producer_id(),
                    batch.producer_epoch(),
                    &[key],
                )
                .map(|found| found.first() == Some(&true));
            (guard, verdict)
        }
    };
    let not_added = "Partition was not added to the transaction";
    match verdict {
        Ok(true) => Ok(Some(guard)),
        Ok(false) => Err((ErrorCode::InvalidTxnState, not_added)),
        Err(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch) => {
            Err((ErrorCode::InvalidProducerEpoch, "Producer is fenced"))
        }
        Err(
            ErrorCode::ConcurrentTransactions
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::NotCoordinator,
        ) => Err((
            ErrorCode::NotEnoughReplicas,
            "The transaction coordinator is busy",
        )),
        Err(code) => Err((code, not_added)),
    }
}

/// Verification guards and the coordinator's verdicts, by partition, for a
/// transactional produce whose coordinator is another broker.
type RemoteVerdicts = HashMap<(String, i32), (u64, Result<bool, ErrorCode>)>;

/// When another broker coordinates the request's transactional id: asks it,
/// in one request, whether each transactional batch's partition (one this
/// node leads) is in the transaction, each partition's guard started first.
async fn verify_remotely(broker: &Broker, req: &ProduceRequest) -> RemoteVerdicts {
    let mut verdicts = RemoteVerdicts::new();
    let Some(transactional_id) = req.transactional_id.as_ref().map(|t| t.0.as_str()) else {
        return verdicts;
    };
    if broker.coordinates_transaction(transactional_id).is_ok() {
        return verdicts;
    }
    let mut asked: Vec<(String, i32)> = Vec::new();
    let mut guards = Vec::new();
    let mut producer = None;
    for topic in &req.topic_data {
        for p in &topic.partition_data {
            let Some(batch) = p.records.as_deref().and_then(|r| Batch::parse(r).ok()) else {
                continue;
            };
            if !batch.is_transactional() {
                continue;
            }
            let Ok(partition) = broker.replicas.leading(topic.name.0.as_str(), p.index) else {
                continue;
            };
            let id = (batch.producer_id(), batch.producer_epoch());
            if partition.in_open_transaction(id.0, id.1) {
                continue; // verified when its transaction began here
            }
            if *producer.get_or_insert(id) != id {
                continue; // one producer per request; the rest is checked locally and refused
            }
            guards.push(partition.start_verification(id.0));
            asked.push((topic.name.0.as_str().to_owned(), p.index));
        }
    }
    let Some((producer_id, epoch)) = producer else {
        return verdicts;
    };
    let answers = broker
        .verify_transaction(transactional_id, producer_id, epoch, &asked)
        .await;
    for (i, (tp, guard)) in asked.into_iter().zip(guards).enumerate() {
        let verdict = match &answers {
            Ok(found) => Ok(found.get(i).copied().unwrap_or(false)),
            Err(code) => Err(*code),
        };
        verdicts.insert(tp, (guard, verdict));
    }
    verdicts
}
