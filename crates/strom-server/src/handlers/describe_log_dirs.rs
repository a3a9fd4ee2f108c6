//! DescribeLogDirs (v1+): the one log directory, its disk space, and the
//! size of each hosted partition asked for (every one when no topics are
//! named), as Kafka's ReplicaManager describes them. A partition's offset
//! lag is, as Kafka's `getLogEndOffsetLag` has it for a current (not a
//! future) log, how far its log end is behind its high watermark: on a
//! leader 0, on a follower 0 too once it holds what the leader's high
//! watermark covers (a follower's high watermark never passes its own log
//! end). Strom has no future logs (moves between log dirs).

use std::collections::BTreeMap;
use std::path::Path;

use strom_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use strom_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use strom_protocol::ErrorCode;
use tracing::warn;

use super::str_bytes;
use crate::broker::Broker;

/// Total and usable bytes of the file system holding `dir`.
fn disk_space(dir: &Path) -> std::io::Result<(i64, i64)> {
    let st = rustix::fs::statvfs(dir)?;
    let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(st.f_frsize)).unwrap_or(i64::MAX);
    Ok((bytes(st.f_blocks), bytes(st.f_bavail)))
}

pub(super) fn handle(broker: &Broker, req: &DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: i32| {
        req.topics.as_ref().is_none_or(|topics| {
            topics
                .iter()
                .any(|t| t.topic.as_str() == topic && t.partitions.contains(&partition))
        })
    };
    let dir = broker.replicas.dir();
    let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = DescribeLogDirsResult::default().with_log_dir(str_bytes(&path.to_string_lossy()));
    let result = match disk_space(&path) {
        Ok((total, usable)) => {
            let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for p in broker.replicas.hosted() {
                if !wanted(p.topic(), p.index()) {
                    continue;
                }
                let lag = (p.high_watermark() - p.log_end_offset()).max(0);
                topics.entry(p.topic().to_owned()).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index())
                        .with_partition_size(p.size_bytes() as i64)
                        .with_offset_lag(lag)
                        .with_is_future_key(false),
                );
            }
            base.with_total_bytes(total)
                .with_usable_bytes(usable)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, mut partitions)| {
                            partitions.sort_by_key(|p| p.partition_index);
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(str_bytes(&name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        }
        Err(e) => {
            warn!(dir = %path.display(), error = %e, "cannot read the log directory's disk space");
            base.with_error_code(ErrorCode::KafkaStorageError.code())
        }
    };
    DescribeLogDirsResponse::default().with_results(vec![result])
}
