//! SyncGroup: the leader hands out the assignment, followers wait for theirs.

use std::time::Instant;

use strom_coordinator::group::{SyncRequest, SyncResponse};
use strom_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

pub(super) async fn handle(broker: &Broker, req: SyncGroupRequest) -> SyncGroupResponse {
    let write = match broker.group_write(req.group_id.0.as_str()) {
        Ok(write) => write,
        Err(code) => return SyncGroupResponse::default().with_error_code(code.code()),
    };
    let sync = SyncRequest {
        group_id: req.group_id.0.as_str().to_owned(),
        generation_id: req.generation_id,
        member_id: req.member_id.as_str().to_owned(),
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        protocol_type: req.protocol_type.as_ref().map(|s| s.as_str().to_owned()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.as_str().to_owned()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
            .collect(),
    };
    let resp = broker
        .groups
        .sync(sync, Instant::now())
        .wait(|| SyncResponse {
            error: Some(ErrorCode::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Default::default(),
        })
        .await;
    // The assignment the leader handed in is answered once committed.
    if resp.error.is_none() {
        if let Err(code) = write.committed().await {
            return SyncGroupResponse::default().with_error_code(code.code());
        }
    }
    SyncGroupResponse::default()
        .with_error_code(resp.error.map_or(0, |e| e.code()))
        .with_protocol_type(resp.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(resp.protocol_name.as_deref().map(str_bytes))
        .with_assignment(resp.assignment)
}
