//! DeleteGroups: only empty groups; their offsets go with them.

use strom_protocol::messages::delete_groups_response::DeletableGroupResult;
use strom_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    // Sessions that ended since the last timer tick end now: an admin
    // acting right after a session timeout sees the member gone, as Kafka's
    // per-member timers would have it.
    broker.tick_groups();
    let results = req
        .groups_names
        .iter()
        .map(|id| {
            let code = broker
                .groups
                .delete_group(id.0.as_str())
                .err()
                .map_or(0, |e| e.code());
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
