//! Fetch (v4+): reads up to the high watermark (read_committed: the last
//! stable offset, with the aborted transactions in range), waits for data
//! when too little is there (woken by the appends that move the high
//! watermark, transaction markers included). Incremental fetch sessions
//! (KIP-227) are kept by [`crate::fetch_sessions`]: a session's fetch reads
//! all its partitions and answers those that changed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use strom_metadata::MetadataImage;
use strom_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use strom_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use strom_protocol::ErrorCode;
use strom_replica::{Isolation, Partition};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{check_leader_epoch, str_bytes};
use crate::broker::{now_ms, Broker};
use crate::fetch_sessions::{self, Answered, Context, Params, TopicRef, Wanted};

/// A partition to read, resolved against the image.
struct Target {
    name: Arc<str>,
    topic_id: uuid::Uuid,
    partition: Result<Arc<Partition>, ErrorCode>,
}

/// A requested topic, resolved: its name (or why it has none) and id.
struct Resolved {
    name: Result<Arc<str>, ErrorCode>,
    id: uuid::Uuid,
}

fn resolve_topic(image: &MetadataImage, topic: &TopicRef) -> Resolved {
    match topic {
        TopicRef::Id(id) => Resolved {
            name: image
                .topic_by_id(id)
                .map(|t| Arc::from(t.name.as_str()))
                .ok_or(ErrorCode::UnknownTopicId),
            id: *id,
        },
        TopicRef::Name(n) => Resolved {
            name: Ok(n.clone()),
            id: image.topic(n).map_or(uuid::Uuid::nil(), |t| t.id),
        },
    }
}

/// Resolves the partitions, each topic once for a run of its partitions
/// (as requests and sessions list them).
fn resolve(broker: &Broker, image: &MetadataImage, wanted: &[Wanted]) -> Vec<Target> {
    let mut last: Option<(&TopicRef, Resolved)> = None;
    wanted
        .iter()
        .map(|w| {
            let topic = match &last {
                Some((t, r)) if *t == &w.topic => r,
                _ => &last.insert((&w.topic, resolve_topic(image, &w.topic))).1,
            };
            let partition = topic.name.clone().and_then(|n| {
                broker
                    .replicas
                    .leading_at(&n, w.partition, w.params.current_leader_epoch)
            });
            Target {
                name: topic.name.clone().unwrap_or_else(|_| Arc::from("")),
                topic_id: topic.id,
                partition,
            }
        })
        .collect()
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

/// One pass over every partition: the answer for each, the bytes read, and
/// whether any answer must go back at once (an error, a diverging log).
fn read_all(
    wanted: &[Wanted],
    targets: &[Target],
    max_bytes: usize,
    isolation: Isolation,
    follower: Option<i32>,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let answers = wanted
        .iter()
        .zip(targets)
        .map(|(w, t)| {
            let index = w.partition;
            let p = match &t.partition {
                Ok(p) => p,
                Err(code) => {
                    errors = true;
                    return partition_error(index, *code);
                }
            };
            if let Err(code) = check_leader_epoch(w.params.current_leader_epoch, p.leader_epoch()) {
                errors = true;
                return partition_error(index, code);
            }
            let budget = (w.params.max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
            // Only the first data of the response may exceed the limits,
            // so that a batch larger than them still makes progress.
            if let Some(replica) = follower {
                return match p.read_for_follower(
                    replica,
                    w.params.fetch_offset,
                    w.params.last_fetched_epoch,
                    budget,
                    total == 0,
                    now_ms(),
                ) {
                    Ok(r) => {
                        total += r.records.len();
                        // A diverging log is told at once, not after a wait.
                        errors |= r.diverging.is_some();
                        let answer = PartitionData::default()
                            .with_partition_index(index)
                            .with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(p.last_stable_offset())
                            .with_log_start_offset(r.log_start_offset)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(r.records));
                        match r.diverging {
                            Some((epoch, end_offset)) => answer.with_diverging_epoch(
                                EpochEndOffset::default()
                                    .with_epoch(epoch)
                                    .with_end_offset(end_offset),
                            ),
                            None => answer,
                        }
                    }
                    // The leader's log start and high watermark go with an
                    // out-of-range answer: a follower behind the start
                    // starts again there, one ahead of the leader's log
                    // comes down to what is committed.
                    Err(code) => {
                        errors = true;
                        partition_error(index, code)
                            .with_log_start_offset(p.log_start_offset())
                            .with_high_watermark(p.high_watermark())
                    }
                };
            }
            match p.read(w.params.fetch_offset, budget, total == 0, isolation) {
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
                        .with_partition_index(index)
                        .with_high_watermark(r.high_watermark)
                        .with_last_stable_offset(r.last_stable_offset)
                        .with_log_start_offset(r.log_start_offset)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_aborted_transactions(aborted)
                        .with_records(Some(r.records))
                }
                Err(code) => {
                    errors = true;
                    partition_error(index, code)
                }
            }
        })
        .collect();
    (answers, total, errors)
}

/// The response: the session's verdict on the answers, which are grouped
/// into topics as they come (consecutive partitions of one topic together).
/// A consumer's fetch counts in the bytes-out metric (a follower's would be
/// replication traffic, which Kafka counts apart).
fn respond(
    broker: &Broker,
    from_consumer: bool,
    ctx: &Context,
    wanted: &[Wanted],
    targets: &[Target],
    answers: Vec<PartitionData>,
) -> Result<FetchResponse, (ErrorCode, i32)> {
    let seen: Vec<Answered> = answers
        .iter()
        .map(|a| Answered {
            high_watermark: a.high_watermark,
            log_start_offset: a.log_start_offset,
            has_records: a.records.as_ref().is_some_and(|r| !r.is_empty()),
            error: a.error_code != 0,
        })
        .collect();
    let (session_id, include) = broker.fetch_sessions.finish(ctx, wanted, &seen, now_ms())?;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for ((t, a), _) in targets
        .iter()
        .zip(answers)
        .zip(&include)
        .filter(|(_, keep)| **keep)
    {
        if from_consumer {
            broker
                .metrics
                .fetched(&t.name, a.records.as_ref().map_or(0, |r| r.len() as u64));
        }
        match topics.last_mut() {
            Some(last) if last.topic_id == t.topic_id && last.topic.0.as_str() == &*t.name => {
                last.partitions.push(a);
            }
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(&t.name)))
                    .with_topic_id(t.topic_id)
                    .with_partitions(vec![a]),
            ),
        }
    }
    Ok(FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics))
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
    let uses_ids = version >= 13;
    let topic_ref = |name: &TopicName, id: uuid::Uuid| {
        if uses_ids {
            TopicRef::Id(id)
        } else {
            TopicRef::Name(Arc::from(name.0.as_str()))
        }
    };
    let requested = req
        .topics
        .iter()
        .flat_map(|t| {
            let topic = topic_ref(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| Wanted {
                topic: topic.clone(),
                partition: p.partition,
                params: Params {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    log_start_offset: p.log_start_offset,
                    last_fetched_epoch: p.last_fetched_epoch,
                },
            })
        })
        .collect();
    let forgotten: Vec<(TopicRef, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let topic = topic_ref(&f.topic, f.topic_id);
            f.partitions.iter().map(move |p| (topic.clone(), *p))
        })
        .collect();
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let session = fetch_sessions::Request {
        version,
        session_id: req.session_id,
        epoch: req.session_epoch,
        privileged: replica_id >= 0,
    };
    let (ctx, wanted) = broker.fetch_sessions.new_context(
        session,
        fetch_sessions::dedup(requested),
        &forgotten,
        now_ms(),
    );
    if let Context::Error(code) = ctx {
        return session_error(code, fetch_sessions::NO_SESSION);
    }
    let image = broker.image();
    let targets = resolve(broker, &image, &wanted);
    let isolation = Isolation::from_wire(req.isolation_level);
    // The broker's fetch.max.bytes caps what the request asks for (the
    // first batch still goes whole, so a large one makes progress).
    let max_bytes = (req.max_bytes.max(0) as usize)
        .min(broker.config.get_i64("fetch.max.bytes").max(0) as usize);
    // What one pass may read: room for it is taken from the memory pool
    // while it reads.
    let budget = wanted
        .iter()
        .map(|w| w.params.max_bytes.max(0) as usize)
        .fold(0usize, usize::saturating_add)
        .min(max_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let finish = |room: Option<OwnedSemaphorePermit>,
                  answers: Vec<PartitionData>,
                  total: usize,
                  held: &mut Option<OwnedSemaphorePermit>| {
        match respond(broker, replica_id < 0, &ctx, &wanted, &targets, answers) {
            Ok(response) => {
                *held = keep_room(room, total);
                response
            }
            Err((code, session_id)) => session_error(code, session_id),
        }
    };
    // A follower reads up to the log end, so its fetch waits for appends;
    // a consumer's for the high watermark.
    let follower = (replica_id >= 0).then_some(replica_id);
    loop {
        // Subscribe before reading, so an append between the read and the
        // wait is not missed.
        let mut watches: Vec<_> = targets
            .iter()
            .filter_map(|t| {
                t.partition.as_ref().ok().map(|p| match follower {
                    Some(_) => p.watch_log_end(),
                    None => p.watch_high_watermark(),
                })
            })
            .collect();
        let mut room = broker.memory.reserve(budget).await;
        let (answers, total, errors) = read_all(&wanted, &targets, max_bytes, isolation, follower);
        if total >= min_bytes || errors || watches.is_empty() || Instant::now() >= deadline {
            return finish(room, answers, total, held);
        }
        room.take();
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            // Time is up: answer with what there is (read again, cheaply).
            let room = broker.memory.reserve(budget).await;
            let (answers, total, _) = read_all(&wanted, &targets, max_bytes, isolation, follower);
            return finish(room, answers, total, held);
        }
    }
}

/// A session error: the code and the session id, no partitions.
fn session_error(code: ErrorCode, session_id: i32) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(code.code())
        .with_session_id(session_id)
}
