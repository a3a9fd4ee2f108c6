//! OffsetFetch: one group (v1–v7) or several (v8+).

use std::collections::BTreeMap;

use strom_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use strom_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;

/// Committed offsets grouped by topic: (partition, offset, leader epoch, metadata).
type Fetched = BTreeMap<String, Vec<(i32, i64, i32, Option<String>)>>;

fn fetch(broker: &Broker, group: &str, wanted: Option<Vec<(String, i32)>>) -> Fetched {
    let mut out: Fetched = BTreeMap::new();
    for ((topic, partition), committed) in broker.groups.fetch_offsets(group, wanted.as_deref()) {
        let (offset, epoch, metadata) = committed.map_or((-1, -1, Some(String::new())), |c| {
            (c.offset, c.leader_epoch, c.metadata)
        });
        out.entry(topic)
            .or_default()
            .push((partition, offset, epoch, metadata));
    }
    out
}

pub(super) fn handle(
    broker: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .flat_map(|t| {
                            t.partition_indexes
                                .iter()
                                .map(move |p| (t.name.0.as_str().to_owned(), *p))
                        })
                        .collect()
                });
                let topics = fetch(broker, g.group_id.0.as_str(), wanted)
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, e, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(m.as_deref().map(str_bytes))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(g.group_id.0.clone()))
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.0.as_str().to_owned(), *p))
            })
            .collect()
    });
    let topics = fetch(broker, req.group_id.0.as_str(), wanted)
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(if version >= 5 { e } else { -1 })
                                .with_metadata(m.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
