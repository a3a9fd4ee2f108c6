//! FindCoordinator: this node coordinates every group and transactional id
//! (it leads every `__consumer_offsets` and `__transaction_state`
//! partition). The internal topic is created on first use.

use strom_protocol::messages::find_coordinator_response::Coordinator;
use strom_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::{ErrorCode, StrBytes};

use super::str_bytes;
use crate::broker::Broker;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// (node id, host, port) of the coordinator of `key`, or the error.
async fn locate(broker: &Broker, key_type: i8) -> Result<(i32, String, i32), ErrorCode> {
    match key_type {
        GROUP => broker.ensure_offsets_topic().await?,
        TRANSACTION => broker.ensure_transaction_state_topic().await?,
        _ => return Err(ErrorCode::InvalidRequest),
    }
    let image = broker.image();
    let me = image
        .broker(broker.node_id)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((me.node_id, me.host.clone(), me.port))
}

pub(super) async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // Every key of a type has this node as its coordinator.
    let located = locate(broker, req.key_type).await;
    let answer = |key: StrBytes| {
        let base = Coordinator::default().with_key(key);
        match &located {
            Ok((id, host, port)) => base
                .with_node_id(BrokerId(*id))
                .with_host(str_bytes(host))
                .with_port(*port),
            Err(code) => base
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(match code {
                    ErrorCode::InvalidRequest => "Unknown coordinator key type.",
                    _ => "The coordinator is not available.",
                }))),
        }
    };
    if version >= 4 {
        let coordinators = req.coordinator_keys.iter().cloned().map(answer).collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(req.key.clone());
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if version >= 1 { c.error_message } else { None })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}
