//! ListTransactions, filtered by state, producer id and (v1+) how long the
//! transaction has been open.

use strom_coordinator::txn::TxnState;
use strom_protocol::messages::list_transactions_response::TransactionState;
use strom_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::broker::{now_ms, Broker};

pub(super) fn handle(broker: &Broker, req: &ListTransactionsRequest) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(s) => states.push(s),
            None => unknown.push(name.clone()),
        }
    }
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    // Filters that name only unknown states match nothing.
    let listed = if !req.state_filters.is_empty() && states.is_empty() {
        Vec::new()
    } else {
        broker
            .txns
            .list(&states, &pids, req.duration_filter, now_ms())
    };
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(
            listed
                .into_iter()
                .map(|l| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(str_bytes(&l.transactional_id)))
                        .with_producer_id(ProducerId(l.producer_id))
                        .with_transaction_state(str_bytes(l.state.name()))
                })
                .collect(),
        )
}
