//! AddPartitionsToTxn: v0–v3 from producers (one transaction), v4+ from
//! brokers (several, possibly `verify_only`).

use strom_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use strom_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use strom_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};
use strom_protocol::ErrorCode;

use super::fenced_for_version;
use crate::broker::{now_ms, Broker};
use crate::internal::is_internal;

/// Each partition's error code (0 for none), by topic.
type Outcome = Vec<(TopicName, Vec<(i32, i16)>)>;

fn wanted(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.as_str().to_owned(), *p))
        })
        .collect()
}

/// Checks the partitions exist (and are not internal topics): when one
/// fails, the others are not attempted, as in Kafka.
fn check_partitions(broker: &Broker, topics: &[AddPartitionsToTxnTopic]) -> Option<Outcome> {
    let verdict = |t: &str, p: i32| {
        if is_internal(t) {
            Some(ErrorCode::TopicAuthorizationFailed)
        } else if broker.replicas.get(t, p).is_none() {
            Some(ErrorCode::UnknownTopicOrPartition)
        } else {
            None
        }
    };
    let any_bad = topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| verdict(t.name.0.as_str(), *p).is_some())
    });
    any_bad.then(|| {
        topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = verdict(t.name.0.as_str(), *p)
                            .unwrap_or(ErrorCode::OperationNotAttempted);
                        (*p, code.code())
                    })
                    .collect();
                (t.name.clone(), parts)
            })
            .collect()
    })
}

fn uniform(topics: &[AddPartitionsToTxnTopic], code: i16) -> Outcome {
    topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| (*p, code)).collect(),
            )
        })
        .collect()
}

/// Adds (or, with `verify_only`, checks) the partitions of one transaction.
async fn one(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Outcome {
    let fenced = |code| fenced_for_version(code, version, 2);
    let write = match broker.transaction_write(transactional_id) {
        Ok(write) => write,
        Err(code) => return uniform(topics, code.code()),
    };
    if verify_only {
        return match broker.txns.verify_partitions(
            transactional_id,
            producer_id,
            epoch,
            &wanted(topics),
        ) {
            Ok(found) => {
                let mut found = found.into_iter();
                topics
                    .iter()
                    .map(|t| {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let code = if found.next().unwrap_or(false) {
                                    0
                                } else {
                                    ErrorCode::TransactionAbortable.code()
                                };
                                (*p, code)
                            })
                            .collect();
                        (t.name.clone(), parts)
                    })
                    .collect()
            }
            Err(code) => uniform(topics, fenced(code).code()),
        };
    }
    if let Some(refused) = check_partitions(broker, topics) {
        return refused;
    }
    let code = match broker.txns.add_partitions(
        transactional_id,
        producer_id,
        epoch,
        &wanted(topics),
        now_ms(),
    ) {
        Ok(()) => match write.committed().await {
            Ok(()) => 0,
            Err(code) => code.code(),
        },
        Err(code) => fenced(code).code(),
    };
    uniform(topics, code)
}

fn results(outcome: Outcome) -> Vec<AddPartitionsToTxnTopicResult> {
    outcome
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(name)
                .with_results_by_partition(
                    parts
                        .into_iter()
                        .map(|(p, code)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub(super) async fn handle(
    broker: &Broker,
    req: &AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let outcome = one(
            broker,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(results(outcome));
    }
    let mut per_txn = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let outcome = one(
            broker,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
            version,
        )
        .await;
        per_txn.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results(outcome)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(per_txn)
}
