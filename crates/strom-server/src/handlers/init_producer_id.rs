//! InitProducerId: without a transactional id, a fresh producer id with
//! epoch 0 from the node's producer-id block (idempotence); with one, the
//! transaction coordinator's producer id and bumped epoch for it.

use strom_coordinator::ProducerIdSource;
use strom_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::ErrorCode;

use super::fenced_for_version;
use crate::broker::{now_ms, Broker};

pub(super) async fn handle(
    broker: &Broker,
    req: &InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let answer = match &req.transactional_id {
        None => {
            broker.producer_ids.ready().await;
            broker.producer_ids.next_producer_id().map(|id| (id, 0))
        }
        Some(id) => transactional(broker, id.0.as_str(), req).await,
    };
    match answer {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(fenced_for_version(code, version, 4).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

async fn transactional(
    broker: &Broker,
    transactional_id: &str,
    req: &InitProducerIdRequest,
) -> Result<(i64, i16), ErrorCode> {
    // v3+: a producer bumping its own epoch names its current id and epoch.
    let expected = match (req.producer_id.0, req.producer_epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => return Err(ErrorCode::InvalidRequest),
        (id, epoch) => Some((id, epoch)),
    };
    // What the coordinator refuses whoever it is comes first, as in Kafka.
    if transactional_id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    let timeout = i64::from(req.transaction_timeout_ms);
    if timeout <= 0 || timeout > broker.txns.config().max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    broker.ensure_transaction_state_topic().await?;
    let write = broker.transaction_write(transactional_id)?;
    broker.producer_ids.ready().await;
    let answer = broker.txns.init_producer_id(
        transactional_id,
        req.transaction_timeout_ms,
        expected,
        now_ms(),
    )?;
    write.committed().await?;
    Ok(answer)
}
