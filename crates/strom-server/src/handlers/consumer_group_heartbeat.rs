//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile, leave.

use std::net::SocketAddr;
use std::time::Instant;

use strom_coordinator::group::consumer::{Assignment, HeartbeatRequest, TopicRegex, TopicsView};
use strom_metadata::{MetadataImage, Uuid};
use strom_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use strom_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};
use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

/// The metadata image as the coordinator's view of topics.
pub(super) struct ImageTopics<'a>(pub(super) &'a MetadataImage);

impl TopicsView for ImageTopics<'_> {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0
            .topic(name)
            .map(|t| (t.id, t.partitions.len() as i32))
    }

    fn names(&self) -> Vec<String> {
        self.0.topics_unordered().map(|t| t.name.clone()).collect()
    }
}

fn to_wire(a: &Assignment) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub(super) async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    peer: SocketAddr,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let write = broker
        .ensure_offsets_topic()
        .await
        .and_then(|()| broker.group_write(req.group_id.0.as_str()));
    let write = match write {
        Ok(write) => write,
        Err(code) => {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code.code())
                .with_member_epoch(-1)
        }
    };
    // An empty regex clears the member's; a bad one refuses the heartbeat.
    let regex = match req.subscribed_topic_regex.as_ref().map(|r| r.as_str()) {
        None => None,
        Some("") => Some(None),
        Some(source) => match TopicRegex::new(source) {
            Ok(re) => Some(Some(re)),
            Err(message) => {
                return ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(ErrorCode::InvalidRegularExpression.code())
                    .with_error_message(Some(str_bytes(&message)))
                    .with_member_epoch(-1)
            }
        },
    };
    let image = broker.image();
    let request = HeartbeatRequest {
        api_version: header.request_api_version,
        group_id: req.group_id.0.as_str().to_owned(),
        member_id: req.member_id.as_str().to_owned(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.as_str().to_owned()),
        rack_id: req.rack_id.as_ref().map(|s| s.as_str().to_owned()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.as_str().to_owned()).collect()),
        subscribed_topic_regex: regex,
        server_assignor: req.server_assignor.as_ref().map(|s| s.as_str().to_owned()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                .collect()
        }),
        client_id: header
            .client_id
            .as_ref()
            .map_or_else(String::new, |c| c.as_str().to_owned()),
        client_host: format!("/{}", peer.ip()),
    };
    let outcome = broker
        .groups
        .consumer_heartbeat(request, &ImageTopics(&image), Instant::now());
    let outcome = match outcome {
        Ok(r) => write
            .committed()
            .await
            .map(|()| r)
            .map_err(|code| (code, "the group's records are not committed".to_owned())),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(&r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.as_ref().map(to_wire)),
        Err((code, message)) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message)))
            .with_member_epoch(-1),
    }
}
