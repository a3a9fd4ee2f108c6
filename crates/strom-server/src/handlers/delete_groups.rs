//! DeleteGroups: only empty groups; their offsets go with them.

use strom_protocol::messages::delete_groups_response::DeletableGroupResult;
use strom_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub(super) async fn handle(broker: &Broker, req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    // Sessions that ended since the last timer tick end now: an admin
    // acting right after a session timeout sees the member gone, as Kafka's
    // per-member timers would have it.
    broker.tick_groups();
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in &req.groups_names {
        let deleted = match broker.group_write(id.0.as_str()) {
            Ok(write) => match broker.groups.delete_group(id.0.as_str()) {
                Ok(()) => write.committed().await,
                Err(code) => Err(code),
            },
            Err(code) => Err(code),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(deleted.err().map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
