//! Metadata: brokers, topics and partitions; auto-creates topics.

use std::sync::Arc;

use strom_controller::{validate_topic_name, CreateTopicRequest, CLUSTER_METADATA_TOPIC};
use strom_metadata::{MetadataImage, PartitionImage, TopicImage, NO_LEADER};
use strom_protocol::messages::metadata_request::MetadataRequestTopic;
use strom_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use strom_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use strom_protocol::ErrorCode;
use tracing::info;
use uuid::Uuid;

use super::{operations, str_bytes};
use crate::broker::Broker;

/// A partition as Kafka describes it: with no live leader, the error
/// LEADER_NOT_AVAILABLE and leader -1; the replicas on brokers that are
/// fenced or gone as offline.
fn describe_partition(image: &MetadataImage, p: &PartitionImage) -> MetadataResponsePartition {
    let live = |r: i32| image.broker(r).is_some_and(|b| !b.fenced);
    let (error, leader) = if p.leader != NO_LEADER && live(p.leader) {
        (0, p.leader)
    } else {
        (ErrorCode::LeaderNotAvailable.code(), NO_LEADER)
    };
    MetadataResponsePartition::default()
        .with_error_code(error)
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
        .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
        .with_offline_replicas(
            p.replicas
                .iter()
                .filter(|r| !live(**r))
                .map(|r| BrokerId(*r))
                .collect(),
        )
}

fn describe_topic(
    image: &MetadataImage,
    t: &TopicImage,
    include_ops: bool,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_topic_authorized_operations(operations::if_asked(include_ops, operations::TOPIC))
        .with_partitions(
            t.partitions
                .values()
                .map(|p| describe_partition(image, p))
                .collect(),
        )
}

fn topic_error(name: Option<&str>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_error_code(code.code())
        .with_topic_authorized_operations(operations::OMITTED)
}

/// Creates `name` with the broker defaults, as `auto.create.topics.enable` asks.
async fn auto_create(broker: &Broker, name: &str) -> Result<Arc<MetadataImage>, ErrorCode> {
    let req = CreateTopicRequest {
        name: name.to_owned(),
        num_partitions: -1,
        replication_factor: -1,
        ..Default::default()
    };
    let result = broker
        .controller
        .create_topics(vec![req], false)
        .await
        .map_err(|e| e.code())?;
    match result.into_iter().next() {
        Some(Ok(_)) => info!(topic = name, "auto-created topic"),
        // Created concurrently by another request: fine.
        Some(Err(e)) if e.code == ErrorCode::TopicAlreadyExists => {}
        Some(Err(e)) => return Err(e.code),
        None => return Err(ErrorCode::UnknownServerError),
    }
    broker.sync_replicas().map_err(|e| e.code)?;
    Ok(broker.image())
}

pub(super) async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let mut image = broker.image();
    let include_ops = req.include_topic_authorized_operations;
    // Asked for in v8-v10 only (later versions use DescribeCluster).
    let include_cluster_ops = req.include_cluster_authorized_operations;
    // v0: an empty list means all topics; v1+: null means all.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create_allowed = (version < 4 || req.allow_auto_topic_creation)
        && broker.config.get_bool("auto.create.topics.enable");
    let topics = match requested {
        None => image
            .topics()
            .into_iter()
            .map(|t| describe_topic(&image, t, include_ops))
            .collect(),
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for r in requested {
                topics.push(
                    describe_requested(broker, &mut image, r, include_ops, auto_create_allowed)
                        .await,
                );
            }
            topics
        }
    };
    MetadataResponse::default()
        .with_brokers(
            image
                .unfenced_brokers()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&broker.cluster_id)))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(operations::if_asked(
            include_cluster_ops,
            operations::CLUSTER,
        ))
}

/// One requested topic of a Metadata request: described, refused, or
/// auto-created when allowed.
async fn describe_requested(
    broker: &Broker,
    image: &mut Arc<MetadataImage>,
    r: MetadataRequestTopic,
    include_ops: bool,
    auto_create_allowed: bool,
) -> MetadataResponseTopic {
    match r.name {
        Some(name) => {
            let name = name.0.as_str().to_owned();
            if let Some(t) = image.topic(&name) {
                return describe_topic(image, t, include_ops);
            }
            if validate_topic_name(&name).is_err() {
                return topic_error(Some(&name), Uuid::nil(), ErrorCode::InvalidTopicException);
            }
            // The controller's own log is no topic (Kafka answers
            // the same for it).
            if !auto_create_allowed || name == CLUSTER_METADATA_TOPIC {
                return topic_error(Some(&name), Uuid::nil(), ErrorCode::UnknownTopicOrPartition);
            }
            match auto_create(broker, &name).await {
                Ok(newer) => {
                    *image = newer;
                    image.topic(&name).map_or_else(
                        || topic_error(Some(&name), Uuid::nil(), ErrorCode::LeaderNotAvailable),
                        |t| describe_topic(image, t, include_ops),
                    )
                }
                Err(code) => topic_error(Some(&name), Uuid::nil(), code),
            }
        }
        None => match image.topic_by_id(&r.topic_id) {
            Some(t) => describe_topic(image, t, include_ops),
            None => topic_error(None, r.topic_id, ErrorCode::UnknownTopicId),
        },
    }
}
