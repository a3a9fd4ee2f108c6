//! The controller's decisions.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use strom_metadata::config::{validate_topic_configs, StaticConfig};
use strom_metadata::{ConfigResource, MetadataImage, MetadataRecord, Uuid};
use strom_protocol::ErrorCode;
use tokio::sync::watch;
use tracing::info;

use crate::log::{MetadataLog, MetadataLogError};
use crate::validate::{validate_topic_name, CLUSTER_METADATA_TOPIC};

/// Producer ids are handed to a broker this many at a time, like Kafka.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// At most this many partitions are created by one CreateTopics or
/// CreatePartitions request (Kafka's `MAX_PARTITIONS_PER_BATCH`), checked
/// before anything is decided or allocated, `validate_only` included.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

fn too_many_partitions() -> ApiError {
    ApiError::new(
        ErrorCode::PolicyViolation,
        "Excessively large number of partitions per request.",
    )
}

/// A refusal with the Kafka error code to send and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Log(#[from] MetadataLogError),
}

/// One topic of a CreateTopics request, as the controller needs it.
#[derive(Debug, Clone, Default)]
pub struct CreateTopicRequest {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    /// Manual placement: partition -> replicas.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: Vec<(String, String)>,
}

/// What CreateTopics reports for a created (or validated) topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

struct Inner {
    log: Box<dyn MetadataLog>,
    image: Arc<MetadataImage>,
}

/// Validates requests, decides, writes records, publishes images.
pub struct Controller {
    config: StaticConfig,
    inner: Mutex<Inner>,
    publisher: watch::Sender<Arc<MetadataImage>>,
}

impl Controller {
    /// Replays the log into an image.
    pub fn open(log: Box<dyn MetadataLog>, config: StaticConfig) -> Controller {
        let mut image = MetadataImage::empty();
        for (offset, records) in log.entries() {
            image.apply_mut(*offset, records);
        }
        info!(
            offset = image.offset,
            topics = image.topics().len(),
            "metadata replayed"
        );
        let image = Arc::new(image);
        let (publisher, _) = watch::channel(image.clone());
        Controller {
            config,
            inner: Mutex::new(Inner { log, image }),
            publisher,
        }
    }

    pub fn config(&self) -> &StaticConfig {
        &self.config
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.publisher.borrow().clone()
    }

    /// Follows images as they are published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.publisher.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the image half
        // applied (images are replaced whole), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes records, applies them and publishes the image.
    fn commit(
        &self,
        inner: &mut Inner,
        records: Vec<MetadataRecord>,
    ) -> Result<(), ControllerError> {
        if records.is_empty() {
            return Ok(());
        }
        let offset = inner.log.append(&records)?;
        inner.image = Arc::new(inner.image.apply(offset, &records));
        self.publisher.send_replace(inner.image.clone());
        Ok(())
    }

    /// Writes records whose effect `applied` already holds (the current
    /// image with them applied), and publishes it: one copy of the image per
    /// decision, however many topics it touches.
    fn commit_applied(
        &self,
        inner: &mut Inner,
        records: Vec<MetadataRecord>,
        mut applied: MetadataImage,
    ) -> Result<(), ControllerError> {
        if records.is_empty() {
            return Ok(());
        }
        applied.offset = inner.log.append(&records)?;
        inner.image = Arc::new(applied);
        self.publisher.send_replace(inner.image.clone());
        Ok(())
    }

    /// Registers (or re-registers with a new address) a broker.
    pub fn register_broker(
        &self,
        node_id: i32,
        host: &str,
        port: i32,
    ) -> Result<(), ControllerError> {
        let mut inner = self.lock();
        let current = inner.image.broker(node_id);
        if current.is_some_and(|b| b.host == host && b.port == port) {
            return Ok(());
        }
        let record = MetadataRecord::RegisterBroker {
            node_id,
            host: host.to_owned(),
            port,
            rack: None,
        };
        self.commit(&mut inner, vec![record])
    }

    fn brokers(image: &MetadataImage) -> Vec<i32> {
        image.brokers().map(|b| b.node_id).collect()
    }

    /// Round-robin placement starting at a rotating broker, as Kafka does
    /// without racks.
    fn place(brokers: &[i32], first_partition: i32, count: i32, rf: usize) -> Vec<Vec<i32>> {
        let n = brokers.len();
        (first_partition..first_partition + count)
            .map(|p| (0..rf).map(|r| brokers[(p as usize + r) % n]).collect())
            .collect()
    }

    /// Creates topics (or only validates them). Each topic succeeds or fails alone.
    pub fn create_topics(
        &self,
        requests: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<CreatedTopic, ApiError>>, ControllerError> {
        let total = self.requested_partitions(&requests);
        if total > MAX_PARTITIONS_PER_REQUEST {
            return Ok(requests
                .iter()
                .map(|_| Err(too_many_partitions()))
                .collect());
        }
        let mut inner = self.lock();
        let mut results = Vec::with_capacity(requests.len());
        let mut records = Vec::new();
        let mut image = (*inner.image).clone();
        for req in requests {
            let result = self.decide_topic(&image, &req).map(|(created, recs)| {
                if !validate_only {
                    let offset = image.offset;
                    image.apply_mut(offset, &recs);
                    records.extend(recs);
                }
                created
            });
            results.push(result);
        }
        self.commit_applied(&mut inner, records, image)?;
        Ok(results)
    }

    /// How many partitions `requests` would create (a count of -1 taking
    /// `num.partitions`), counted before anything is decided.
    pub fn requested_partitions(&self, requests: &[CreateTopicRequest]) -> i64 {
        let default_partitions = self.config.get_i64("num.partitions");
        requests
            .iter()
            .map(|r| match (r.assignments.len(), r.num_partitions) {
                (0, -1) => default_partitions,
                (0, n) => i64::from(n.max(0)),
                (n, _) => n as i64,
            })
            .sum()
    }

    fn decide_topic(
        &self,
        image: &MetadataImage,
        req: &CreateTopicRequest,
    ) -> Result<(CreatedTopic, Vec<MetadataRecord>), ApiError> {
        validate_topic_name(&req.name)
            .map_err(|m| ApiError::new(ErrorCode::InvalidTopicException, m))?;
        if req.name == CLUSTER_METADATA_TOPIC {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."),
            ));
        }
        if image.topic(&req.name).is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{}' already exists.", req.name),
            ));
        }
        if let Some(other) = image.colliding_topic(&req.name) {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {}",
                    req.name, other
                ),
            ));
        }
        let brokers = Self::brokers(image);
        let assignments: Vec<Vec<i32>> = if !req.assignments.is_empty() {
            if req.num_partitions != -1 || req.replication_factor != -1 {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let expected: Vec<i32> = (0..req.assignments.len() as i32).collect();
            if req.assignments.keys().copied().collect::<Vec<_>>() != expected {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "Partitions must be numbered consecutively from 0.",
                ));
            }
            for replicas in req.assignments.values() {
                if replicas.is_empty() || replicas.iter().any(|r| !brokers.contains(r)) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("Replica assignment {replicas:?} names unknown brokers."),
                    ));
                }
                let mut dedup = replicas.clone();
                dedup.sort_unstable();
                dedup.dedup();
                if dedup.len() != replicas.len() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("Replica assignment {replicas:?} has duplicates."),
                    ));
                }
            }
            req.assignments.values().cloned().collect()
        } else {
            let partitions = match req.num_partitions {
                -1 => self.config.get_i64("num.partitions") as i32,
                n if n <= 0 => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidPartitions,
                        "Number of partitions must be larger than 0.",
                    ))
                }
                n => n,
            };
            let rf = match req.replication_factor {
                -1 => self.config.get_i64("default.replication.factor") as i16,
                n if n <= 0 => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicationFactor,
                        "Replication factor must be larger than 0.",
                    ))
                }
                n => n,
            };
            if rf as usize > brokers.len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", brokers.len()),
                ));
            }
            Self::place(&brokers, 0, partitions, rf as usize)
        };
        let configs =
            validate_topic_configs(req.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: req.name.clone(),
            topic_id,
        }];
        records.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
            resource: ConfigResource::Topic(req.name.clone()),
            name: k.clone(),
            value: Some(v.clone()),
        }));
        records.extend(assignments.iter().enumerate().map(|(p, replicas)| {
            MetadataRecord::Partition {
                topic_id,
                partition: p as i32,
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader: replicas[0],
                leader_epoch: 0,
            }
        }));
        let created = CreatedTopic {
            topic_id,
            num_partitions: assignments.len() as i32,
            replication_factor: assignments[0].len() as i16,
            configs,
        };
        Ok((created, records))
    }

    /// Deletes topics by name; each succeeds or fails alone.
    pub fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<Uuid, ApiError>>, ControllerError> {
        let mut inner = self.lock();
        if !self.config.get_bool("delete.topic.enable") {
            let e = ApiError::new(
                ErrorCode::TopicDeletionDisabled,
                "Topic deletion is disabled.",
            );
            return Ok(names.iter().map(|_| Err(e.clone())).collect());
        }
        let mut records = Vec::new();
        let results = names
            .iter()
            .map(|name| match inner.image.topic(name) {
                Some(t) if !records.contains(&MetadataRecord::RemoveTopic { topic_id: t.id }) => {
                    records.push(MetadataRecord::RemoveTopic { topic_id: t.id });
                    Ok(t.id)
                }
                _ => Err(ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
            })
            .collect();
        self.commit(&mut inner, records)?;
        Ok(results)
    }

    /// Grows topics to a new partition count.
    pub fn create_partitions(
        &self,
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ControllerError> {
        let mut inner = self.lock();
        let added: i64 = requests
            .iter()
            .filter_map(|r| {
                let current = inner.image.topic(&r.name)?.partitions.len() as i64;
                Some((i64::from(r.count) - current).max(0))
            })
            .sum();
        if added > MAX_PARTITIONS_PER_REQUEST {
            return Ok(requests
                .iter()
                .map(|_| Err(too_many_partitions()))
                .collect());
        }
        let brokers = Self::brokers(&inner.image);
        let mut records = Vec::new();
        let mut results = Vec::new();
        for req in requests {
            let result = (|| {
                let topic = inner.image.topic(&req.name).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("The topic '{}' does not exist.", req.name),
                    )
                })?;
                let current = topic.partitions.len() as i32;
                if req.count < current {
                    return Err(ApiError::new(ErrorCode::InvalidPartitions, format!("The topic {} currently has {current} partition(s); {} would not be an increase.", req.name, req.count)));
                }
                if req.count == current {
                    return Err(ApiError::new(
                        ErrorCode::InvalidPartitions,
                        format!("Topic already has {current} partition(s)."),
                    ));
                }
                let rf = topic
                    .partitions
                    .values()
                    .next()
                    .map_or(1, |p| p.replicas.len());
                let added = req.count - current;
                let placement = match &req.assignments {
                    Some(a) => {
                        if a.len() as i32 != added {
                            return Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, format!("Increasing the number of partitions by {added} but {} assignments provided.", a.len())));
                        }
                        if a.iter()
                            .any(|r| r.is_empty() || r.iter().any(|b| !brokers.contains(b)))
                        {
                            return Err(ApiError::new(
                                ErrorCode::InvalidReplicaAssignment,
                                "Assignments name unknown brokers.",
                            ));
                        }
                        a.clone()
                    }
                    None => Self::place(&brokers, current, added, rf.min(brokers.len())),
                };
                if !validate_only {
                    records.extend(placement.into_iter().enumerate().map(|(i, replicas)| {
                        MetadataRecord::Partition {
                            topic_id: topic.id,
                            partition: current + i as i32,
                            isr: replicas.clone(),
                            leader: replicas[0],
                            replicas,
                            leader_epoch: 0,
                        }
                    }));
                }
                Ok(())
            })();
            results.push(result);
        }
        self.commit(&mut inner, records)?;
        Ok(results)
    }

    /// Hands `node_id` the next block of producer ids.
    pub fn allocate_producer_ids(&self, node_id: i32) -> Result<Range<i64>, ControllerError> {
        let mut inner = self.lock();
        let start = inner.image.next_producer_id;
        let end = start + PRODUCER_ID_BLOCK_SIZE;
        self.commit(
            &mut inner,
            vec![MetadataRecord::ProducerIds {
                node_id,
                next_producer_id: end,
            }],
        )?;
        Ok(start..end)
    }
}

mod configs;
pub use configs::{AlterConfigsRequest, ConfigOp};

#[cfg(test)]
mod tests;
