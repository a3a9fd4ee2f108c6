//! The coordinators move with the partitions of their internal topics, as
//! Kafka's do: this node runs the group coordinator of a
//! `__consumer_offsets` partition, and the transaction coordinator of a
//! `__transaction_state` partition, exactly while it leads that partition.
//! Becoming its leader loads the partition's state by replaying its log (to
//! the log end: what it holds will be committed in this leadership, or the
//! leadership ends first); ceasing to lead it drops that state, so that
//! requests for its groups and transactional ids get NOT_COORDINATOR and
//! their clients find the new leader with FindCoordinator. A coordinator
//! answers a request that wrote records only once they are committed
//! ([`CoordinatorWrite`]), so no answer is given for state that a failover
//! could take back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use strom_protocol::ErrorCode;
use strom_replica::{Partition, Uncommitted};
use tracing::info;

use crate::broker::{now_ms, Broker};
use crate::internal::{self, Loaded, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};

/// The internal partitions whose coordinators run here, loaded.
#[derive(Debug, Default)]
pub(crate) struct Coordinated {
    groups: BTreeSet<i32>,
    txns: BTreeSet<i32>,
}

/// A coordinator's records about to be written to one partition: what the
/// answer waits on (see [`CoordinatorWrite::committed`]).
pub(crate) struct CoordinatorWrite {
    partition: Arc<Partition>,
    /// The leadership before the write: the answer is a success only if it
    /// lasted until the records were committed.
    leadership: u64,
    timeout: Duration,
}

impl CoordinatorWrite {
    /// Waits until everything written to the partition so far is
    /// committed (the high watermark reached its log end, in the
    /// leadership this began in). NOT_COORDINATOR once that leadership
    /// ended; COORDINATOR_NOT_AVAILABLE after `offsets.commit.timeout.ms`
    /// (too few replicas in sync), as Kafka maps these for its clients.
    pub(crate) async fn committed(self) -> Result<(), ErrorCode> {
        let end = self.partition.log_end_offset();
        let deadline = tokio::time::Instant::now() + self.timeout;
        match self
            .partition
            .wait_committed(end, self.leadership, deadline)
            .await
        {
            Ok(()) => Ok(()),
            Err(Uncommitted::LeadershipEnded) => Err(ErrorCode::NotCoordinator),
            Err(Uncommitted::TimedOut) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }
}

impl Broker {
    fn coordinated(&self) -> std::sync::MutexGuard<'_, Coordinated> {
        self.coordinated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the coordinators' state of the internal partitions this node
    /// has come to lead and drops that of those it no longer leads. Called
    /// whenever the hosted partitions took a new image in.
    pub(crate) fn reconcile_coordinators(&self) {
        let mut coordinated = self.coordinated();
        let (mut groups, mut txns): (Vec<Arc<Partition>>, Vec<Arc<Partition>>) = (vec![], vec![]);
        for p in self.replicas.hosted() {
            if p.leader() != self.node_id {
                continue;
            }
            match p.topic() {
                OFFSETS_TOPIC => groups.push(p),
                TRANSACTION_STATE_TOPIC => txns.push(p),
                _ => {}
            }
        }
        let wanted: BTreeSet<i32> = groups.iter().map(|p| p.index()).collect();
        for &gone in coordinated.groups.difference(&wanted) {
            let count = self.groups.unload(gone);
            info!(
                partition = gone,
                groups = count,
                "group coordinator unloaded"
            );
        }
        for p in groups
            .iter()
            .filter(|p| !coordinated.groups.contains(&p.index()))
        {
            let partition = p.index();
            // What an earlier leadership here left is replaced.
            self.groups.unload(partition);
            let records = internal::load_partition(p, |r| match r {
                Loaded::Record { key, value } => self.groups.replay(key, value),
                Loaded::Transactional {
                    producer_id,
                    key,
                    value,
                } => self.groups.replay_transactional(producer_id, key, value),
                Loaded::Marker {
                    producer_id,
                    commit,
                } => self
                    .groups
                    .complete_transaction(partition, producer_id, commit),
            });
            info!(partition, records, "group coordinator loaded");
        }
        coordinated.groups = wanted;

        let wanted: BTreeSet<i32> = txns.iter().map(|p| p.index()).collect();
        for &gone in coordinated.txns.difference(&wanted) {
            let count = self.txns.unload(gone);
            info!(
                partition = gone,
                transactional_ids = count,
                "transaction coordinator unloaded"
            );
        }
        let mut loaded = false;
        for p in txns
            .iter()
            .filter(|p| !coordinated.txns.contains(&p.index()))
        {
            self.txns.unload(p.index());
            let records = internal::load_partition(p, |r| {
                if let Loaded::Record { key, value } = r {
                    self.txns.replay(key, value)
                }
            });
            info!(
                partition = p.index(),
                records, "transaction coordinator loaded"
            );
            loaded = true;
        }
        coordinated.txns = wanted;
        drop(coordinated);
        if loaded {
            // Ends that a crash or a failover cut short are completed now.
            self.txns.tick(now_ms());
        }
    }

    /// Whether this node coordinates `group_id` (it leads the group's
    /// `__consumer_offsets` partition and loaded it): NOT_COORDINATOR if
    /// not, what a client then asks FindCoordinator about.
    pub(crate) fn coordinates_group(&self, group_id: &str) -> Result<(), ErrorCode> {
        let partition = self.groups.partition_for(group_id);
        if self.coordinated().groups.contains(&partition) {
            Ok(())
        } else {
            Err(ErrorCode::NotCoordinator)
        }
    }

    /// Whether this node coordinates `transactional_id`.
    pub(crate) fn coordinates_transaction(&self, transactional_id: &str) -> Result<(), ErrorCode> {
        let partition = self.txns.partition_for(transactional_id);
        if self.coordinated().txns.contains(&partition) {
            Ok(())
        } else {
            Err(ErrorCode::NotCoordinator)
        }
    }

    /// Before a request may change `group_id`'s state: that this node
    /// coordinates it, and what its answer then waits on.
    pub(crate) fn group_write(&self, group_id: &str) -> Result<CoordinatorWrite, ErrorCode> {
        self.coordinates_group(group_id)?;
        self.coordinator_write(OFFSETS_TOPIC, self.groups.partition_for(group_id))
    }

    /// Before a request may change `transactional_id`'s state.
    pub(crate) fn transaction_write(
        &self,
        transactional_id: &str,
    ) -> Result<CoordinatorWrite, ErrorCode> {
        self.coordinates_transaction(transactional_id)?;
        self.coordinator_write(
            TRANSACTION_STATE_TOPIC,
            self.txns.partition_for(transactional_id),
        )
    }

    fn coordinator_write(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<CoordinatorWrite, ErrorCode> {
        let partition = self
            .replicas
            .leading(topic, partition)
            .map_err(|_| ErrorCode::NotCoordinator)?;
        Ok(CoordinatorWrite {
            leadership: partition.leadership(),
            partition,
            timeout: Duration::from_millis(
                self.config.get_i64("offsets.commit.timeout.ms").max(1) as u64
            ),
        })
    }
}

/// AddPartitionsToTxn v4+ carries verify-only checks between brokers.
const VERIFY_VERSION: i16 = 4;

impl Broker {
    /// Whether `partitions` are in `transactional_id`'s open transaction
    /// under `producer_id` and `epoch` (KIP-890's verification), asked of
    /// the transaction's coordinator: this node's, or another broker's
    /// through AddPartitionsToTxn with verify_only, as Kafka's partition
    /// leaders do. One answer per partition; an error for them all.
    pub(crate) async fn verify_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, ErrorCode> {
        if self.coordinates_transaction(transactional_id).is_ok() {
            return self
                .txns
                .verify_partitions(transactional_id, producer_id, epoch, partitions);
        }
        use strom_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        use strom_protocol::messages::{
            AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId,
        };
        use strom_protocol::StrBytes;
        let coordinator = self.image().leader(
            TRANSACTION_STATE_TOPIC,
            self.txns.partition_for(transactional_id),
        );
        if coordinator < 0 || coordinator == self.node_id {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, partition) in partitions {
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partitions.push(*partition),
                _ => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    transactional_id.to_owned(),
                )))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_verify_only(true)
                .with_topics(topics),
        ]);
        let response = self
            .link
            .send(coordinator, VERIFY_VERSION, request, Duration::ZERO)
            .await
            .map_err(|e| {
                tracing::debug!(coordinator, error = %e, "transaction verification failed");
                ErrorCode::CoordinatorNotAvailable
            })?;
        if response.error_code != 0 {
            return Err(code_of(response.error_code));
        }
        let codes: std::collections::HashMap<(String, i32), i16> = response
            .results_by_transaction
            .iter()
            .flat_map(|t| &t.topic_results)
            .flat_map(|t| {
                t.results_by_partition.iter().map(move |p| {
                    (
                        (t.name.0.as_str().to_owned(), p.partition_index),
                        p.partition_error_code,
                    )
                })
            })
            .collect();
        partitions
            .iter()
            .map(|tp| match codes.get(tp).copied() {
                Some(0) => Ok(true),
                Some(c) if c == ErrorCode::TransactionAbortable.code() => Ok(false),
                Some(c) => Err(code_of(c)),
                None => Err(ErrorCode::UnknownServerError),
            })
            .collect()
    }
}

fn code_of(code: i16) -> ErrorCode {
    ErrorCode::try_from_code(code).unwrap_or(ErrorCode::UnknownServerError)
}
