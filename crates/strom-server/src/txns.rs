//! Wiring of the transaction coordinator to the partitions: markers end a
//! transaction on each of its partitions, wherever that partition's leader
//! is, as Kafka's coordinator does it. A partition this node leads takes the
//! marker at once; one led by another broker gets it through
//! WriteTxnMarkers. Either way a marker counts as written once it is
//! committed (past the partition's high watermark, as Kafka writes markers
//! with acks=all), so a transaction is never recorded complete while a
//! failover could still lose a marker. Until then the coordinator is told
//! the marker is pending and asks again; a delivery that finishes wakes it
//! ([`Markers::delivered`]). A marker on a `__consumer_offsets` partition
//! settles the offsets committed in the transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_controller::Controller;
use strom_coordinator::{GroupCoordinator, MarkerWriter};
use strom_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use strom_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use strom_protocol::records::ControlMarker;
use strom_protocol::{ErrorCode, StrBytes};
use strom_replica::{AppendResult, Partition, ReplicaManager, Uncommitted};
use tokio::sync::Notify;
use tracing::{debug, error};

use crate::broker::now_ms;
use crate::internal::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::replica_link::KafkaLink;

/// The WriteTxnMarkers version sent (the only one Kafka 4 serves).
pub(crate) const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// How long a marker may take to be committed (Kafka's request.timeout.ms).
pub(crate) const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// One marker: partition, producer id and epoch, commit or abort.
type MarkerKey = (String, i32, i64, i16, bool);

enum Delivery {
    InFlight,
    Done(Result<(), ErrorCode>),
}

pub(crate) struct Markers {
    node_id: i32,
    replicas: Arc<ReplicaManager>,
    groups: Arc<GroupCoordinator>,
    controller: Arc<Controller>,
    link: KafkaLink,
    runtime: tokio::runtime::Handle,
    deliveries: Arc<Mutex<HashMap<MarkerKey, Delivery>>>,
    /// Notified when a delivery finished: the coordinator should finish the
    /// ends waiting on it.
    pub(crate) delivered: Arc<Notify>,
}

impl Markers {
    /// Must be created inside the tokio runtime its deliveries run on.
    pub(crate) fn new(
        node_id: i32,
        replicas: Arc<ReplicaManager>,
        groups: Arc<GroupCoordinator>,
        controller: Arc<Controller>,
        link: KafkaLink,
    ) -> Markers {
        Markers {
            node_id,
            replicas,
            groups,
            controller,
            link,
            runtime: tokio::runtime::Handle::current(),
            deliveries: Arc::default(),
            delivered: Arc::new(Notify::new()),
        }
    }

    fn deliveries(&self) -> std::sync::MutexGuard<'_, HashMap<MarkerKey, Delivery>> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts delivering a marker: `f` resolves to its outcome.
    fn deliver(
        &self,
        key: MarkerKey,
        f: impl std::future::Future<Output = Result<(), ErrorCode>> + Send + 'static,
    ) {
        let (deliveries, delivered) = (self.deliveries.clone(), self.delivered.clone());
        self.runtime.spawn(async move {
            let outcome = f.await;
            deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, Delivery::Done(outcome));
            delivered.notify_one();
        });
    }
}

/// Appends a marker to a partition this node leads: the append, or `None`
/// when the partition saw a newer epoch of the producer than the marker's
/// (nothing of this transaction can be open there any more: the marker is
/// dropped, as retrying could never succeed; Kafka treats this as fatal for
/// the marker). Offsets a `__consumer_offsets` marker settles are settled
/// here.
pub(crate) fn append_marker(
    p: &Partition,
    groups: &GroupCoordinator,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<Option<AppendResult>, ErrorCode> {
    let marker = if commit {
        ControlMarker::Commit
    } else {
        ControlMarker::Abort
    };
    let offsets = p.topic() == OFFSETS_TOPIC;
    match p.append_marker(producer_id, epoch, marker, coordinator_epoch, now_ms()) {
        Ok(written) => {
            if offsets {
                groups.complete_transaction(p.index(), producer_id, commit);
            }
            Ok(Some(written))
        }
        Err((ErrorCode::InvalidProducerEpoch, message)) => {
            error!(partition = ?p, producer_id, epoch, %message, "marker refused; dropping it");
            if offsets {
                // Offsets pending under the stale epoch would otherwise
                // stay unstable for ever.
                groups.complete_transaction(p.index(), producer_id, false);
            }
            Ok(None)
        }
        Err((code, _)) => Err(code),
    }
}

/// Waits until an appended marker is committed.
pub(crate) async fn marker_committed(
    p: &Partition,
    written: AppendResult,
) -> Result<(), ErrorCode> {
    let deadline = tokio::time::Instant::now() + MARKER_TIMEOUT;
    p.wait_committed(written.next_offset, written.leadership, deadline)
        .await
        .map_err(|e| match e {
            Uncommitted::LeadershipEnded => ErrorCode::NotLeaderOrFollower,
            Uncommitted::TimedOut => ErrorCode::RequestTimedOut,
        })
}

impl MarkerWriter for Markers {
    fn write_marker(
        &self,
        state_partition: i32,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        let key = (topic.to_owned(), partition, producer_id, epoch, commit);
        {
            let mut deliveries = self.deliveries();
            match deliveries.get(&key) {
                Some(Delivery::InFlight) => return Err(ErrorCode::ConcurrentTransactions),
                Some(Delivery::Done(outcome)) => {
                    let outcome = *outcome;
                    deliveries.remove(&key);
                    return outcome;
                }
                None => {}
            }
        }
        // The coordinator epoch: the leader epoch of the transaction's
        // state partition, which only grows as its leadership moves, so a
        // deposed coordinator's markers are refused where a newer one's
        // were written (TRANSACTION_COORDINATOR_FENCED).
        let coordinator_epoch = self
            .replicas
            .get(TRANSACTION_STATE_TOPIC, state_partition)
            .map_or(0, |p| p.leader_epoch());
        match self.replicas.leading(topic, partition) {
            Ok(p) => {
                let Some(written) = append_marker(
                    &p,
                    &self.groups,
                    producer_id,
                    epoch,
                    commit,
                    coordinator_epoch,
                )?
                else {
                    return Ok(());
                };
                if p.high_watermark() >= written.next_offset && p.still_leads(written.leadership) {
                    return Ok(());
                }
                // Followers to wait for.
                self.deliveries().insert(key.clone(), Delivery::InFlight);
                self.deliver(key, async move { marker_committed(&p, written).await });
                Err(ErrorCode::ConcurrentTransactions)
            }
            // UNKNOWN_TOPIC_OR_PARTITION only for a partition the metadata
            // no longer has: it needs no marker.
            Err(ErrorCode::UnknownTopicOrPartition) => Err(ErrorCode::UnknownTopicOrPartition),
            Err(_) => {
                let leader = self.controller.image().leader(topic, partition);
                if leader < 0 || leader == self.node_id {
                    return Err(ErrorCode::NotLeaderOrFollower);
                }
                let request = WriteTxnMarkersRequest::default().with_markers(vec![
                    WritableTxnMarker::default()
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch)
                        .with_transaction_result(commit)
                        .with_coordinator_epoch(coordinator_epoch)
                        .with_topics(vec![WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partition_indexes(vec![partition])]),
                ]);
                let sent =
                    self.link
                        .send(leader, WRITE_TXN_MARKERS_VERSION, request, MARKER_TIMEOUT);
                self.deliveries().insert(key.clone(), Delivery::InFlight);
                self.deliver(key, async move {
                    let response = sent.await.map_err(|e| {
                        debug!(leader, error = %e, "WriteTxnMarkers failed");
                        ErrorCode::NotLeaderOrFollower
                    })?;
                    let code = response
                        .markers
                        .first()
                        .and_then(|m| m.topics.first())
                        .and_then(|t| t.partitions.first())
                        .map_or(ErrorCode::UnknownServerError.code(), |p| p.error_code);
                    match ErrorCode::try_from_code(code) {
                        None if code == 0 => Ok(()),
                        Some(e) => Err(e),
                        None => Err(ErrorCode::UnknownServerError),
                    }
                });
                Err(ErrorCode::ConcurrentTransactions)
            }
        }
    }
}
