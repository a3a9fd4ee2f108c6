//! CreatePartitions: grow a topic.

use strom_controller::CreatePartitionsRequest as Grow;
use strom_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use strom_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{per_item, str_bytes};
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let grows: Vec<Grow> = req
        .topics
        .iter()
        .map(|t| Grow {
            name: t.name.0.as_str().to_owned(),
            count: t.count,
            // An empty list is treated like null: place automatically.
            assignments: t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            }),
        })
        .collect();
    let results = per_item(
        broker
            .controller
            .create_partitions(grows, req.validate_only)
            .await,
        req.topics.len(),
    );
    if !req.validate_only {
        if let Err(e) = broker.sync_replicas() {
            tracing::error!(error = %e, "cannot open new partitions");
        }
    }
    let results = req
        .topics
        .into_iter()
        .zip(results)
        .map(|(t, r)| {
            let base = CreatePartitionsTopicResult::default().with_name(t.name);
            match r {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str_bytes(&e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
