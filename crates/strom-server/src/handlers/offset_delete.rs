//! OffsetDelete: removes committed offsets of an empty group.

use strom_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use strom_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;

pub(super) async fn handle(broker: &Broker, req: &OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.as_str().to_owned(), p.partition_index))
        })
        .collect();
    let deleted = match broker.group_write(req.group_id.0.as_str()) {
        Ok(write) => match broker
            .groups
            .delete_offsets(req.group_id.0.as_str(), &partitions)
        {
            Ok(results) => write.committed().await.map(|()| results),
            Err(code) => Err(code),
        },
        Err(code) => Err(code),
    };
    match deleted {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code.code()),
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(results.next().flatten().map_or(0, |e| e.code()))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(parts)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
