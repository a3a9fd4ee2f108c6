//! DeleteTopics (v1+): by name, or by id from v6.

use strom_protocol::messages::delete_topics_response::DeletableTopicResult;
use strom_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use strom_protocol::ErrorCode;
use uuid::Uuid;

use super::{per_item, str_bytes};
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let image = broker.image();
    // Resolve every entry to a name (or an error for an unknown id).
    let entries: Vec<(Option<String>, Uuid, Result<(), ErrorCode>)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| match t.name {
                Some(n) => (Some(n.0.as_str().to_owned()), Uuid::nil(), Ok(())),
                None => match image.topic_by_id(&t.topic_id) {
                    Some(ti) => (Some(ti.name.clone()), t.topic_id, Ok(())),
                    None => (None, t.topic_id, Err(ErrorCode::UnknownTopicId)),
                },
            })
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.as_str().to_owned()), Uuid::nil(), Ok(())))
            .collect()
    };
    let names: Vec<String> = entries
        .iter()
        .filter(|e| e.2.is_ok())
        .filter_map(|e| e.0.clone())
        .collect();
    let mut outcomes =
        per_item(broker.controller.delete_topics(&names).await, names.len()).into_iter();
    if let Err(e) = broker.sync_replicas() {
        tracing::error!(error = %e, "cannot remove deleted partitions");
    }
    let responses = entries
        .into_iter()
        .map(|(name, id, resolved)| {
            let base = DeletableTopicResult::default()
                .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))));
            match resolved {
                Err(code) => base.with_topic_id(id).with_error_code(code.code()),
                Ok(()) => match outcomes.next().expect("one outcome per name") {
                    Ok(topic_id) => base.with_topic_id(topic_id),
                    Err(e) => base
                        .with_topic_id(id)
                        .with_error_code(e.code.code())
                        .with_error_message(Some(str_bytes(&e.message))),
                },
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
