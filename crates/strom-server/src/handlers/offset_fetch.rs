//! OffsetFetch: one group (v1–v7) or several (v8+). With `require_stable`
//! (v7+, what read_committed consumers send), a partition whose offset is
//! part of an open transaction answers UNSTABLE_OFFSET_COMMIT, which the
//! client retries.

use std::collections::BTreeMap;

use strom_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use strom_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

/// One partition's answer: partition, offset, leader epoch, metadata, error.
type Answer = (i32, i64, i32, Option<String>, i16);

/// Committed offsets grouped by topic.
type Fetched = BTreeMap<String, Vec<Answer>>;

fn fetch(
    broker: &Broker,
    group: &str,
    wanted: Option<Vec<(String, i32)>>,
    require_stable: bool,
) -> Fetched {
    let unstable = if require_stable {
        broker.groups.unstable_offsets(group)
    } else {
        Default::default()
    };
    let mut out: Fetched = BTreeMap::new();
    for ((topic, partition), committed) in broker.groups.fetch_offsets(group, wanted.as_deref()) {
        let answer = if unstable.contains(&(topic.clone(), partition)) {
            (
                partition,
                -1,
                -1,
                Some(String::new()),
                ErrorCode::UnstableOffsetCommit.code(),
            )
        } else {
            committed.map_or((partition, -1, -1, Some(String::new()), 0), |c| {
                (partition, c.offset, c.leader_epoch, c.metadata, 0)
            })
        };
        out.entry(topic).or_default().push(answer);
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
                if let Err(code) = broker.coordinates_group(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(g.group_id.0.clone()))
                        .with_error_code(code.code());
                }
                let topics = fetch(broker, g.group_id.0.as_str(), wanted, req.require_stable)
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, e, m, code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
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
    if let Err(code) = broker.coordinates_group(req.group_id.0.as_str()) {
        // v2+ carry the error at the top; before, each partition does.
        let topics = req.topics.iter().flatten().map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|&p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        });
        return if version >= 2 {
            OffsetFetchResponse::default().with_error_code(code.code())
        } else {
            OffsetFetchResponse::default().with_topics(topics.collect())
        };
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
    let topics = fetch(broker, req.group_id.0.as_str(), wanted, req.require_stable)
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m, code)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
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
