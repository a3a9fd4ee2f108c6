//! FindCoordinator: there is no group or transaction coordinator yet, so
//! every key gets COORDINATOR_NOT_AVAILABLE, which clients retry. It is
//! served anyway because librdkafka only enables LZ4 compression for brokers
//! that list this API.

use strom_protocol::messages::find_coordinator_response::Coordinator;
use strom_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::ErrorCode;

use super::str_bytes;

const MESSAGE: &str = "The coordinator is not available.";

pub(super) fn handle(req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let code = ErrorCode::CoordinatorNotAvailable.code();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(
            req.coordinator_keys
                .into_iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(MESSAGE)))
                })
                .collect(),
        );
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message((version >= 1).then(|| str_bytes(MESSAGE)))
        .with_node_id(BrokerId(-1))
        .with_port(-1)
}
