//! InitProducerId for idempotent producers: a fresh id, epoch 0, from the
//! node's producer-id block. Transactional ids arrive with the transaction
//! coordinator.

use strom_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::ErrorCode;
use tracing::error;

use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    let refuse = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return refuse(ErrorCode::TransactionalIdAuthorizationFailed);
    }
    match broker.producer_ids.next(&broker.controller, broker.node_id) {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            error!(error = %e, "cannot allocate producer ids");
            refuse(ErrorCode::CoordinatorNotAvailable)
        }
    }
}
