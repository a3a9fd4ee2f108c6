//! JoinGroup: waits until the group's join phase completes.

use std::net::SocketAddr;
use std::time::Instant;

use strom_coordinator::group::{JoinRequest, JoinResponse};
use strom_protocol::messages::join_group_response::JoinGroupResponseMember;
use strom_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    peer: SocketAddr,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    if let Err(code) = broker.ensure_offsets_topic().await {
        return JoinGroupResponse::default()
            .with_error_code(code.code())
            .with_generation_id(-1)
            .with_member_id(req.member_id);
    }
    let write = match broker.group_write(req.group_id.0.as_str()) {
        Ok(write) => write,
        Err(code) => {
            return JoinGroupResponse::default()
                .with_error_code(code.code())
                .with_generation_id(-1)
                .with_member_id(req.member_id)
        }
    };
    let member_id = req.member_id.as_str().to_owned();
    let join = JoinRequest {
        group_id: req.group_id.0.as_str().to_owned(),
        member_id: member_id.clone(),
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        client_id: header
            .client_id
            .as_ref()
            .map_or_else(String::new, |c| c.as_str().to_owned()),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves as both.
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let resp = broker
        .groups
        .join(join, Instant::now())
        .wait(|| JoinResponse {
            error: Some(ErrorCode::UnknownMemberId),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.clone(),
            members: Vec::new(),
        })
        .await;
    // A join phase that completed may have written the group's record.
    if resp.error.is_none() {
        if let Err(code) = write.committed().await {
            return JoinGroupResponse::default()
                .with_error_code(code.code())
                .with_generation_id(-1)
                .with_member_id(str_bytes(&member_id));
        }
    }
    JoinGroupResponse::default()
        .with_error_code(resp.error.map_or(0, |e| e.code()))
        .with_generation_id(resp.generation_id)
        .with_protocol_type(resp.protocol_type.as_deref().map(str_bytes))
        // Nullable from v7; before, an empty string.
        .with_protocol_name(match (resp.protocol_name.as_deref(), version >= 7) {
            (Some(p), _) => Some(str_bytes(p)),
            (None, true) => None,
            (None, false) => Some(str_bytes("")),
        })
        .with_leader(str_bytes(&resp.leader))
        .with_member_id(str_bytes(&resp.member_id))
        .with_members(
            resp.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
