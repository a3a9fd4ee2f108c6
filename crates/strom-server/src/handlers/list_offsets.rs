//! ListOffsets (v1+): earliest, latest, max timestamp, by timestamp.

use strom_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use strom_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strom_protocol::ErrorCode;
use strom_replica::{Isolation, OffsetSpec};

use crate::broker::Broker;

pub(super) fn handle(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // The leader epoch is only part of v4+ responses.
    let epoch_or_none = |e: i32| if version >= 4 { e } else { -1 };
    // v2+ carries the isolation level: read_committed sees up to the LSO.
    let isolation = Isolation::from_wire(req.isolation_level);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_owned();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = (|| {
                        let partition = broker.replicas.leading_at(
                            &name,
                            p.partition_index,
                            p.current_leader_epoch,
                        )?;
                        let spec =
                            OffsetSpec::from_wire(p.timestamp).ok_or(ErrorCode::InvalidRequest)?;
                        Ok::<_, ErrorCode>((
                            partition.list_offset(spec, isolation)?,
                            partition.leader_epoch(),
                        ))
                    })();
                    match result {
                        Ok((found, epoch)) => base
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp)
                            .with_leader_epoch(if found.offset >= 0 {
                                epoch_or_none(epoch)
                            } else {
                                -1
                            }),
                        Err(code) => base
                            .with_error_code(code.code())
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
