//! The error codes a response carries, counted as Kafka's `errorCounts`
//! counts them for `ErrorsPerSec`: every code the response holds, at the
//! top and per topic, partition, group or resource, `NONE` included.

use strom_protocol::messages::ResponseKind;
use strom_protocol::ErrorCode;

/// Calls `count` once per error code in `resp`.
pub(crate) fn visit(resp: &ResponseKind, count: &mut dyn FnMut(i16)) {
    use ResponseKind as R;
    match resp {
        R::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| count(p.error_code)),
        R::Fetch(r) => {
            count(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        R::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::Metadata(r) => {
            // Kafka counts the topics' codes (not the partitions').
            r.topics.iter().for_each(|t| count(t.error_code));
        }
        R::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::OffsetFetch(r) => {
            if r.groups.is_empty() {
                count(r.error_code);
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| count(p.error_code));
            }
            for g in &r.groups {
                count(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| count(p.error_code));
            }
        }
        R::FindCoordinator(r) => {
            if r.coordinators.is_empty() {
                count(r.error_code);
            }
            r.coordinators.iter().for_each(|c| count(c.error_code));
        }
        R::JoinGroup(r) => count(r.error_code),
        R::Heartbeat(r) => count(r.error_code),
        R::LeaveGroup(r) => {
            count(r.error_code);
            r.members.iter().for_each(|m| count(m.error_code));
        }
        R::SyncGroup(r) => count(r.error_code),
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| count(g.error_code)),
        R::ListGroups(r) => count(r.error_code),
        R::ApiVersions(r) => count(r.error_code),
        R::CreateTopics(r) => r.topics.iter().for_each(|t| count(t.error_code)),
        R::DeleteTopics(r) => r.responses.iter().for_each(|t| count(t.error_code)),
        R::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::InitProducerId(r) => count(r.error_code),
        R::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::AddPartitionsToTxn(r) => {
            count(r.error_code);
            r.results_by_topic_v3_and_below
                .iter()
                .chain(
                    r.results_by_transaction
                        .iter()
                        .flat_map(|t| &t.topic_results),
                )
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| count(p.partition_error_code));
        }
        R::AddOffsetsToTxn(r) => count(r.error_code),
        R::EndTxn(r) => count(r.error_code),
        R::WriteTxnMarkers(r) => r
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::DescribeAcls(r) => count(r.error_code),
        R::CreateAcls(r) => r.results.iter().for_each(|a| count(a.error_code)),
        R::DeleteAcls(r) => r.filter_results.iter().for_each(|f| {
            count(f.error_code);
            f.matching_acls.iter().for_each(|m| count(m.error_code));
        }),
        R::DescribeConfigs(r) => r.results.iter().for_each(|c| count(c.error_code)),
        R::AlterConfigs(r) => r.responses.iter().for_each(|c| count(c.error_code)),
        R::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|c| count(c.error_code)),
        R::DescribeLogDirs(r) => {
            count(r.error_code);
            r.results.iter().for_each(|d| count(d.error_code));
        }
        R::CreatePartitions(r) => r.results.iter().for_each(|t| count(t.error_code)),
        R::DeleteGroups(r) => r.results.iter().for_each(|g| count(g.error_code)),
        R::ElectLeaders(r) => {
            count(r.error_code);
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .for_each(|p| count(p.error_code));
        }
        R::OffsetDelete(r) => {
            count(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        R::DescribeCluster(r) => count(r.error_code),
        R::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        R::DescribeTransactions(r) => r
            .transaction_states
            .iter()
            .for_each(|t| count(t.error_code)),
        R::ListTransactions(r) => count(r.error_code),
        R::DescribeQuorum(r) => {
            count(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        R::ConsumerGroupHeartbeat(r) => count(r.error_code),
        R::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| count(g.error_code)),
        _ => {}
    }
}

/// An error code's name as Kafka's `Errors` enum spells it
/// (`NOT_LEADER_OR_FOLLOWER`; `NONE` for 0, `UNKNOWN_<code>` for a code
/// this build does not know).
pub(crate) fn name(code: i16) -> String {
    if code == 0 {
        return "NONE".into();
    }
    match ErrorCode::try_from_code(code) {
        Some(ErrorCode::Unknown(_)) | None => format!("UNKNOWN_{code}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use strom_protocol::messages::ProduceResponse;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(name(0), "NONE");
        assert_eq!(name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(name(20), "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
        assert_eq!(name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(name(48), "INVALID_TXN_STATE");
        assert_eq!(name(30000), "UNKNOWN_30000");
    }

    #[test]
    fn a_produce_counts_each_partition() {
        let part = |code| PartitionProduceResponse::default().with_error_code(code);
        let resp = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![part(0), part(6)]),
            TopicProduceResponse::default().with_partition_responses(vec![part(0)]),
        ]));
        let mut seen = Vec::new();
        visit(&resp, &mut |c| seen.push(c));
        seen.sort();
        assert_eq!(seen, vec![0, 0, 6]);
    }
}
