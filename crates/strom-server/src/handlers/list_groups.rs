//! ListGroups, with the state (v4+) and type (v5+) filters.

use strom_protocol::messages::list_groups_response::ListedGroup;
use strom_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, req: &ListGroupsRequest) -> ListGroupsResponse {
    // Sessions that ended since the last timer tick end now: an admin
    // acting right after a session timeout sees the member gone, as Kafka's
    // per-member timers would have it.
    broker.tick_groups();
    let matches = |filter: &[strom_protocol::StrBytes], value: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(value))
    };
    let groups = broker
        .groups
        .groups()
        .into_iter()
        .filter(|g| {
            matches(&req.states_filter, g.state.name()) && matches(&req.types_filter, "classic")
        })
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_group_state(str_bytes(g.state_name))
                .with_group_type(str_bytes(g.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
