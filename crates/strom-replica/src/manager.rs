//! The partitions this node hosts, reconciled with the metadata image.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use strom_metadata::config::StaticConfig;
use strom_metadata::{MetadataImage, PartitionImage, TopicChange, TopicImage};
use strom_protocol::ErrorCode;
use strom_storage::{LogConfig, StorageError};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::cleaner::CleanerStats;
use crate::partition::{Partition, PARTITION_METADATA};
use crate::validate::ProduceRules;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// Hosts partitions: opens, serves, maintains, closes and deletes them.
pub struct ReplicaManager {
    node_id: i32,
    dir: PathBuf,
    config: StaticConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// When idle producers were last looked for.
    producers_checked_ms: AtomicI64,
    /// The image applied last (see `apply_image`); `None` before the first.
    applied: Mutex<Option<MetadataImage>>,
    /// Topics whose partitions could not all be opened, tried again.
    retry: Mutex<HashSet<Uuid>>,
    /// When retention is next checked: `log.initial.task.delay.ms` after the
    /// first maintenance, then every `log.retention.check.interval.ms`
    /// (`i64::MIN` until the first maintenance).
    next_retention_ms: AtomicI64,
    /// Updated by the log cleaner, read by metrics.
    cleaner_stats: CleanerStats,
}

/// See [`ReplicaManager::replication_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationCounts {
    pub hosted: usize,
    pub leaders: usize,
    pub under_replicated: usize,
    pub under_min_isr: usize,
    pub at_min_isr: usize,
}

/// The log settings and produce rules of a topic.
fn topic_log_config(
    config: &StaticConfig,
    overrides: &BTreeMap<String, String>,
) -> (LogConfig, ProduceRules) {
    let num = |name: &str| -> i64 {
        config
            .topic_value(overrides, name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} is validated as a number"))
    };
    // Only `delete` removes old segments; a compacted-only topic (the
    // coordinators' internal topics) keeps its data whatever its age.
    let policy = config.topic_value(overrides, "cleanup.policy");
    let deletes = policy.split(',').any(|p| p.trim() == "delete");
    let compacted = policy.split(',').any(|p| p.trim() == "compact");
    // A compacted log rolls by max.compaction.lag.ms too, so that no record
    // waits longer than that in the active segment (Kafka's maxSegmentMs).
    let segment_ms = if compacted {
        num("segment.ms").min(num("max.compaction.lag.ms"))
    } else {
        num("segment.ms")
    };
    let log = LogConfig {
        segment_bytes: num("segment.bytes") as u64,
        segment_ms,
        segment_jitter_ms: num("segment.jitter.ms"),
        file_delete_delay_ms: num("file.delete.delay.ms"),
        index_interval_bytes: num("index.interval.bytes") as u64,
        segment_index_bytes: num("segment.index.bytes") as u64,
        flush_messages: num("flush.messages") as u64,
        flush_ms: num("flush.ms"),
        retention_ms: if deletes { num("retention.ms") } else { -1 },
        retention_bytes: if deletes { num("retention.bytes") } else { -1 },
        log_append_time: config.topic_value(overrides, "message.timestamp.type") == "LogAppendTime",
        delete_policy: deletes,
        compact: compacted,
        delete_retention_ms: num("delete.retention.ms"),
        min_cleanable_dirty_ratio: config
            .topic_value(overrides, "min.cleanable.dirty.ratio")
            .parse()
            .unwrap_or(0.5),
        min_compaction_lag_ms: num("min.compaction.lag.ms"),
        max_compaction_lag_ms: num("max.compaction.lag.ms"),
    };
    let rules = ProduceRules {
        max_message_bytes: num("max.message.bytes") as usize,
        log_append_time: log.log_append_time,
        timestamp_before_max_ms: num("message.timestamp.before.max.ms"),
        timestamp_after_max_ms: num("message.timestamp.after.max.ms"),
        compacted,
        min_insync_replicas: num("min.insync.replicas").max(1) as usize,
    };
    (log, rules)
}

/// Reads the topic id a partition directory was created for.
fn stored_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

impl ReplicaManager {
    pub fn new(node_id: i32, dir: &Path, config: StaticConfig) -> Self {
        ReplicaManager {
            node_id,
            dir: dir.to_path_buf(),
            config,
            partitions: RwLock::new(HashMap::new()),
            producers_checked_ms: AtomicI64::new(0),
            next_retention_ms: AtomicI64::new(i64::MIN),
            applied: Mutex::new(None),
            retry: Mutex::new(HashSet::new()),
            cleaner_stats: CleanerStats::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition if this node hosts it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.read()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// As [`ReplicaManager::leading`], with a request's
    /// `current_leader_epoch` checked first, as Kafka checks it: a replica
    /// here that does not lead answers UNKNOWN_LEADER_EPOCH to a newer
    /// epoch (its leadership is on its way) and FENCED_LEADER_EPOCH to an
    /// older one, NOT_LEADER_OR_FOLLOWER only to its own or to -1.
    pub fn leading_at(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ErrorCode> {
        if let Some(p) = self.get(topic, partition) {
            check_leader_epoch(current_leader_epoch, p.leader_epoch())?;
        }
        self.leading(topic, partition)
    }

    /// A hosted partition that this node leads: NOT_LEADER_OR_FOLLOWER
    /// when another node leads it (the data path's requests go to the
    /// leader), UNKNOWN_TOPIC_OR_PARTITION when it is not hosted here.
    pub fn leading(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, ErrorCode> {
        match self.get(topic, partition) {
            Some(p) if p.leader() == self.node_id => Ok(p),
            Some(_) => Err(ErrorCode::NotLeaderOrFollower),
            None => {
                let known = self
                    .applied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(|image| image.topic(topic))
                    .is_some_and(|t| t.partitions.contains_key(&partition));
                Err(if known {
                    ErrorCode::NotLeaderOrFollower
                } else {
                    ErrorCode::UnknownTopicOrPartition
                })
            }
        }
    }

    /// Every hosted partition, in no particular order.
    /// The ISR changes the partitions this node leads want (see
    /// [`Partition::wanted_isr`]).
    pub fn wanted_isrs(&self, now_ms: i64) -> Vec<crate::IsrChange> {
        let hosted: Vec<Arc<Partition>> = self.read().values().cloned().collect();
        hosted.iter().filter_map(|p| p.wanted_isr(now_ms)).collect()
    }

    pub fn hosted(&self) -> Vec<Arc<Partition>> {
        self.read().values().cloned().collect()
    }

    /// The data directory the partitions' logs are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partition_count(&self) -> usize {
        self.read().len()
    }

    /// How the partitions hosted here stand, by the image applied last:
    /// those this node leads, and of those the ones whose ISR is short of
    /// their replicas, below or at their `min.insync.replicas`.
    pub fn replication_counts(&self) -> ReplicationCounts {
        let image = self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut counts = ReplicationCounts::default();
        for p in self.hosted() {
            counts.hosted += 1;
            let Some(pi) = image
                .as_ref()
                .and_then(|i| i.topic_by_id(&p.topic_id()))
                .and_then(|t| t.partitions.get(&p.index()))
            else {
                continue;
            };
            if pi.leader != self.node_id {
                continue;
            }
            counts.leaders += 1;
            let min_isr = p.min_insync_replicas();
            counts.under_replicated += usize::from(pi.isr.len() < pi.replicas.len());
            counts.under_min_isr += usize::from(pi.isr.len() < min_isr);
            counts.at_min_isr += usize::from(pi.isr.len() == min_isr);
        }
        counts
    }

    /// What the log cleaner has done.
    pub fn cleaner_stats(&self) -> &CleanerStats {
        &self.cleaner_stats
    }

    /// Makes the hosted partitions match `image`: opens those assigned to
    /// this node, deletes those whose topic is gone (or was recreated under
    /// another id), updates configs and leader epochs. Only topics that
    /// changed since the image applied last are looked at (images share the
    /// topics that did not change), so the cost follows what changed, not
    /// what exists. The first call (at start-up) also removes directories of
    /// topics deleted while the node was down. A partition that cannot be
    /// opened (a full disk) does not stop the others; its topic is tried
    /// again at the next call, and the first error is returned.
    pub fn apply_image(&self, image: &MetadataImage) -> Result<(), StorageError> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let first = applied.is_none();
        let empty = MetadataImage::empty();
        let last = applied.as_ref().unwrap_or(&empty);
        let mut changed: Vec<Arc<TopicImage>> = Vec::new();
        let mut removed: Vec<Arc<TopicImage>> = Vec::new();
        // (old, new) for topics that changed, to find partitions moved away.
        let mut reshaped: Vec<(Arc<TopicImage>, Arc<TopicImage>)> = Vec::new();
        for change in image.topic_changes(last) {
            match change {
                TopicChange::Added(t) => changed.push(t.clone()),
                TopicChange::Changed { old, new } => {
                    changed.push(new.clone());
                    reshaped.push((old.clone(), new.clone()));
                }
                TopicChange::Removed(t) => removed.push(t.clone()),
            }
        }
        // The broker's dynamic configs reach every topic that does not
        // override them: a change to them updates every hosted topic.
        let config = self.config.with_dynamic(
            image.broker_configs(Some(self.node_id)),
            image.broker_configs(None),
        );
        let dynamic_changed = !first
            && (image.broker_configs(Some(self.node_id))
                != last.broker_configs(Some(self.node_id))
                || image.broker_configs(None) != last.broker_configs(None));
        // A broker fenced or unfenced changes which replicas may join an
        // ISR: every hosted topic hears of it.
        let active = |i: &MetadataImage| -> Vec<i32> {
            i.brokers()
                .filter(|b| b.is_active())
                .map(|b| b.node_id)
                .collect()
        };
        let brokers_changed = !first && active(image) != active(last);
        if dynamic_changed || brokers_changed {
            for t in image.topics_unordered() {
                if !changed.iter().any(|c| c.id == t.id) {
                    changed.push(t.clone());
                }
            }
        }
        // Topics whose partitions could not all be opened are tried again.
        for id in self.retry.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(t) = image.topic_by_id(id) {
                if !changed.iter().any(|c| c.id == *id) {
                    changed.push(t.clone());
                }
            }
        }
        // Remove what is no longer ours: partitions of removed topics, and of
        // changed topics those no longer assigned here.
        let mut gone: Vec<TopicPartition> = removed
            .iter()
            .flat_map(|t| {
                t.partitions
                    .keys()
                    .map(|&p| TopicPartition::new(t.name.clone(), p))
            })
            .collect();
        for (old, t) in &reshaped {
            gone.extend(
                old.partitions
                    .values()
                    .filter(|p| {
                        t.partitions
                            .get(&p.partition)
                            .is_none_or(|n| !n.replicas.contains(&self.node_id))
                    })
                    .map(|p| TopicPartition::new(t.name.clone(), p.partition)),
            );
        }
        let removed_partitions: Vec<(TopicPartition, Arc<Partition>)> = {
            let mut map = self.write();
            gone.into_iter()
                .filter_map(|tp| {
                    let id = map.get(&tp)?.topic_id();
                    // A recreated topic of the same name keeps its new partitions.
                    if image.topic(&tp.topic).is_some_and(|t| t.id == id)
                        && image.topic(&tp.topic).is_some_and(|t| {
                            t.partitions
                                .get(&tp.partition)
                                .is_some_and(|p| p.replicas.contains(&self.node_id))
                        })
                    {
                        return None;
                    }
                    map.remove(&tp).map(|p| (tp, p))
                })
                .collect()
        };
        for (tp, p) in removed_partitions {
            info!(topic = %tp.topic, partition = tp.partition, "deleting partition");
            if let Err(e) = p.delete() {
                error!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot delete partition data");
            }
        }
        if first {
            self.remove_stray_dirs(image);
        }
        // Open new partitions, update existing ones.
        let mut first_error = None;
        for topic in changed {
            match self.host_topic(image, &topic, &config) {
                Ok(()) => {
                    self.retry
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&topic.id);
                }
                Err(e) => {
                    error!(topic = %topic.name, error = %e, "cannot open the topic's partitions; trying again later");
                    self.retry
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(topic.id);
                    first_error.get_or_insert(e);
                }
            }
        }
        *applied = Some(image.clone());
        first_error.map_or(Ok(()), Err)
    }

    /// Whether some topic's partitions could not be opened (see
    /// [`ReplicaManager::apply_image`], which tries them again).
    pub fn has_failed_topics(&self) -> bool {
        !self
            .retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Opens the partitions of `topic` assigned here, or updates them.
    fn host_topic(
        &self,
        image: &MetadataImage,
        topic: &Arc<TopicImage>,
        config: &StaticConfig,
    ) -> Result<(), StorageError> {
        let (log_config, rules) = topic_log_config(config, &topic.configs);
        let lag_max_ms = config.get_i64("replica.lag.time.max.ms");
        let now = wall_clock_ms();
        for p in topic
            .partitions
            .values()
            .filter(|p| p.replicas.contains(&self.node_id))
        {
            let tp = TopicPartition::new(topic.name.clone(), p.partition);
            if let Some(hosted) = self.get(&tp.topic, tp.partition) {
                if hosted.topic_id() == topic.id {
                    hosted.update_config(log_config.clone(), rules.clone());
                    hosted.set_role(p, &eligible(image, p), self.node_id, lag_max_ms, now);
                    continue;
                }
            }
            let dir = self.dir.join(tp.dir_name());
            let opened = Partition::open(
                &dir,
                &tp.topic,
                topic.id,
                tp.partition,
                p.leader_epoch,
                log_config.clone(),
                rules.clone(),
            )?;
            opened.set_role(p, &eligible(image, p), self.node_id, lag_max_ms, now);
            self.write().insert(tp, Arc::new(opened));
        }
        Ok(())
    }

    /// Deletes partition directories whose topic id is not (or no longer)
    /// hosted according to `image`.
    fn remove_stray_dirs(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let wanted: HashMap<String, Uuid> = image
            .topics_unordered()
            .flat_map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.replicas.contains(&self.node_id))
                    .map(move |p| {
                        (
                            TopicPartition::new(t.name.clone(), p.partition).dir_name(),
                            t.id,
                        )
                    })
            })
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = stored_topic_id(&path) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.get(&name) != Some(&id) {
                warn!(dir = %path.display(), "removing data of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    error!(dir = %path.display(), error = %e, "cannot remove directory");
                }
            }
        }
    }

    /// The broker's configuration with the dynamic broker configs of the
    /// image applied last over it.
    pub(crate) fn effective_config(&self) -> StaticConfig {
        match self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(image) => self.config.with_dynamic(
                image.broker_configs(Some(self.node_id)),
                image.broker_configs(None),
            ),
            None => self.config.clone(),
        }
    }

    /// Enforces `flush.ms` and retention on every partition, and every
    /// `producer.id.expiration.check.interval.ms` forgets producers idle for
    /// `producer.id.expiration.ms`.
    pub fn maintain(&self, now_ms: i64) {
        let partitions: Vec<Arc<Partition>> = self.read().values().cloned().collect();
        let check = self
            .config
            .get_i64("producer.id.expiration.check.interval.ms");
        let last = self.producers_checked_ms.load(Ordering::Relaxed);
        let expire = now_ms.saturating_sub(last) >= check;
        if expire {
            self.producers_checked_ms.store(now_ms, Ordering::Relaxed);
        }
        let expiration = self.effective_config().get_i64("producer.id.expiration.ms");
        let retention = self.retention_due(now_ms);
        for p in partitions {
            if let Err(e) = p.maintain(now_ms, retention) {
                error!(partition = ?p, error = %e, "maintenance failed");
            }
            if expire {
                let n = p.expire_producers(now_ms, expiration);
                if n > 0 {
                    debug!(partition = ?p, producers = n, "forgot idle producers");
                }
            }
        }
    }

    /// Whether a retention check is due at `now_ms` (and if so, schedules
    /// the next one).
    fn retention_due(&self, now_ms: i64) -> bool {
        let next = self.next_retention_ms.load(Ordering::Relaxed);
        if next == i64::MIN {
            let first = now_ms.saturating_add(self.config.get_i64("log.initial.task.delay.ms"));
            self.next_retention_ms.store(first, Ordering::Relaxed);
            return first <= now_ms;
        }
        if now_ms < next {
            return false;
        }
        let interval = self.config.get_i64("log.retention.check.interval.ms");
        self.next_retention_ms
            .store(now_ms.saturating_add(interval), Ordering::Relaxed);
        true
    }

    /// Closes every partition cleanly (flushed, indexes and producer
    /// snapshots written).
    pub fn shutdown(&self) {
        let partitions: Vec<Arc<Partition>> = self.write().drain().map(|(_, p)| p).collect();
        for p in partitions {
            if let Err(e) = p.close() {
                error!(partition = ?p, error = %e, "cannot close partition cleanly");
            }
        }
    }
}

/// The replicas of `p` on brokers that may join its ISR.
fn eligible(image: &MetadataImage, p: &PartitionImage) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| image.is_active(*r))
        .collect()
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a request's `current_leader_epoch` against a partition's, as
/// Kafka does: -1 skips the check, older is FENCED_LEADER_EPOCH, newer
/// UNKNOWN_LEADER_EPOCH.
pub fn check_leader_epoch(requested: i32, ours: i32) -> Result<(), ErrorCode> {
    match requested {
        -1 => Ok(()),
        e if e < ours => Err(ErrorCode::FencedLeaderEpoch),
        e if e > ours => Err(ErrorCode::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}
