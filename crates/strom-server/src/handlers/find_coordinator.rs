//! FindCoordinator: the coordinator of a group or transactional id is the
//! leader of its partition of `__consumer_offsets` or
//! `__transaction_state` (Kafka's hash of the key), wherever that is in
//! the cluster. The internal topic is created on first use.

use strom_protocol::messages::find_coordinator_response::Coordinator;
use strom_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::{ErrorCode, StrBytes};

use super::str_bytes;
use crate::broker::Broker;
use crate::internal::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// (node id, host, port) of the coordinator of `key`, or the error:
/// COORDINATOR_NOT_AVAILABLE while its partition has no live leader.
fn locate(broker: &Broker, topic: &str, partition: i32) -> Result<(i32, String, i32), ErrorCode> {
    let image = broker.image();
    let node = image
        .broker(image.leader(topic, partition))
        .filter(|b| image.is_active(b.node_id))
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((node.node_id, node.host.clone(), node.port))
}

pub(super) async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let ensured = match req.key_type {
        GROUP => broker.ensure_offsets_topic().await,
        TRANSACTION => broker.ensure_transaction_state_topic().await,
        _ => Err(ErrorCode::InvalidRequest),
    };
    let answer = |key: StrBytes| {
        let base = Coordinator::default().with_key(key.clone());
        let located = ensured.and_then(|()| match req.key_type {
            GROUP => locate(
                broker,
                OFFSETS_TOPIC,
                broker.groups.partition_for(key.as_str()),
            ),
            _ => locate(
                broker,
                TRANSACTION_STATE_TOPIC,
                broker.txns.partition_for(key.as_str()),
            ),
        });
        match located {
            Ok((id, host, port)) => base
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(&host))
                .with_port(port),
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
