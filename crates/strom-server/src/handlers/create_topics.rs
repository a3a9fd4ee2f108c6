//! CreateTopics (v2+), with validate_only and per-topic configs.

use std::collections::{BTreeMap, HashMap};

use strom_controller::CreateTopicRequest;
use strom_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use strom_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use strom_protocol::ErrorCode;

use super::{per_item, str_bytes};
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.as_str().to_owned()).or_default() += 1;
    }
    // A name given twice is refused for both, like Kafka.
    let (dupes, unique): (Vec<_>, Vec<_>) = req
        .topics
        .into_iter()
        .partition(|t| seen[t.name.0.as_str()] > 1);
    let requests: Vec<CreateTopicRequest> = unique
        .iter()
        .map(|t| CreateTopicRequest {
            name: t.name.0.as_str().to_owned(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            configs: t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.as_str().to_owned(), v.as_str().to_owned()))
                })
                .collect(),
        })
        .collect();
    let results = per_item(
        broker
            .controller
            .create_topics(requests, req.validate_only)
            .await,
        unique.len(),
    );
    if !req.validate_only {
        if let Err(e) = broker.sync_replicas() {
            tracing::error!(error = %e, "cannot open created partitions");
        }
    }
    let config = broker.effective_config(&broker.image());
    let mut topics: Vec<CreatableTopicResult> = unique
        .into_iter()
        .zip(results)
        .map(|(t, r)| {
            let base = CreatableTopicResult::default().with_name(t.name);
            match r {
                Ok(created) => {
                    let configs = (version >= 5).then(|| {
                        config
                            .topic_configs(&created.configs)
                            .into_iter()
                            .map(|(def, value, source)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(def.def.name))
                                    .with_value(Some(str_bytes(&value)))
                                    .with_config_source(source as i8)
                            })
                            .collect()
                    });
                    // Kafka sends a null message with success.
                    base.with_error_message(None)
                        .with_topic_id(created.topic_id)
                        .with_num_partitions(created.num_partitions)
                        .with_replication_factor(created.replication_factor)
                        .with_configs(configs)
                }
                Err(e) => base
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str_bytes(&e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    topics.extend(dupes.into_iter().map(|t| {
        let msg = format!(
            "Create topics request from client contains duplicate topic {}",
            t.name.0.as_str()
        );
        CreatableTopicResult::default()
            .with_name(t.name)
            .with_error_code(ErrorCode::InvalidRequest.code())
            .with_error_message(Some(str_bytes(&msg)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    }));
    CreateTopicsResponse::default().with_topics(topics)
}
