//! Heartbeat: keeps a member's session alive; tells it about rebalances.

use std::time::Instant;

use strom_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, req: &HeartbeatRequest) -> HeartbeatResponse {
    let error = match broker.coordinates_group(req.group_id.0.as_str()) {
        Ok(()) => broker.groups.heartbeat(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            Instant::now(),
        ),
        Err(code) => Some(code),
    };
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
