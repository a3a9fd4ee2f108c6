//! LeaveGroup: one member (v0–v2) or a batch of members (v3+).

use std::time::Instant;

use strom_protocol::messages::leave_group_response::MemberResponse;
use strom_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: &LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let write = match broker.group_write(req.group_id.0.as_str()) {
        Ok(write) => write,
        Err(code) => return LeaveGroupResponse::default().with_error_code(code.code()),
    };
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_owned(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.as_str().to_owned(), None)]
    };
    let left = broker
        .groups
        .leave(req.group_id.0.as_str(), &members, Instant::now());
    let left = match left {
        Ok(results) => write.committed().await.map(|()| results),
        Err(code) => Err(code),
    };
    match left {
        Err(code) => LeaveGroupResponse::default().with_error_code(code.code()),
        Ok(results) if version < 3 => {
            LeaveGroupResponse::default().with_error_code(results[0].map_or(0, |e| e.code()))
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            req.members
                .iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(r.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
    }
}
