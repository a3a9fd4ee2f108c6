//! DescribeGroups: state, protocol and members of classic groups.

use strom_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use strom_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{operations, str_bytes};
use crate::broker::Broker;

/// From v6 (KIP-1043) an unknown group is GROUP_ID_NOT_FOUND.
const NOT_FOUND_SINCE: i16 = 6;

pub(super) fn handle(
    broker: &Broker,
    req: &DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    // Sessions that ended since the last timer tick end now: an admin
    // acting right after a session timeout sees the member gone, as Kafka's
    // per-member timers would have it.
    broker.tick_groups();
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations::if_asked(
                    req.include_authorized_operations,
                    operations::GROUP,
                ));
            if let Err(code) = broker.coordinates_group(id.0.as_str()) {
                return base.with_error_code(code.code());
            }
            match broker.groups.describe(id.0.as_str()) {
                None if version >= NOT_FOUND_SINCE => base
                    .with_error_code(strom_protocol::ErrorCode::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Group {} not found.",
                        id.0.as_str()
                    )))),
                // Before v6 Kafka describes an unknown group as Dead, without an error.
                None => base.with_group_state(str_bytes("Dead")),
                Some(g) => base
                    .with_group_state(str_bytes(g.state_name))
                    .with_protocol_type(str_bytes(&g.protocol_type))
                    .with_protocol_data(str_bytes(&g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_group_instance_id(
                                        m.group_instance_id.as_deref().map(str_bytes),
                                    )
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
