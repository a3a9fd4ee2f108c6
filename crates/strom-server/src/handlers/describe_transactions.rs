//! DescribeTransactions: state, timeout, producer and partitions of
//! transactional ids.

use std::collections::BTreeMap;

use strom_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use strom_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(
    broker: &Broker,
    req: &DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_transaction_state(str_bytes(""))
                .with_transaction_start_time_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            if let Err(code) = broker.coordinates_transaction(id.0.as_str()) {
                return base.with_error_code(code.code());
            }
            match broker.txns.describe(id.0.as_str()) {
                Ok(d) => {
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (t, p) in d.partitions {
                        by_topic.entry(t).or_default().push(p);
                    }
                    base.with_transaction_state(str_bytes(d.state.name()))
                        .with_transaction_timeout_ms(d.timeout_ms)
                        .with_transaction_start_time_ms(d.start_ms)
                        .with_producer_id(ProducerId(d.producer_id))
                        .with_producer_epoch(d.producer_epoch)
                        .with_topics(
                            by_topic
                                .into_iter()
                                .map(|(t, ps)| {
                                    TopicData::default()
                                        .with_topic(TopicName(str_bytes(&t)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
                Err(code) => base.with_error_code(code.code()),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
