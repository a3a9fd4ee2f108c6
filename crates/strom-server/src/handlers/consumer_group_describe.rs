//! ConsumerGroupDescribe (KIP-848 groups).

use strom_coordinator::group::consumer::Assignment;
use strom_metadata::MetadataImage;
use strom_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use strom_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use strom_protocol::ErrorCode;

use super::{operations, str_bytes};
use crate::broker::Broker;

fn to_wire(a: &Assignment, image: &MetadataImage) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                let name = image
                    .topic_by_id(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(str_bytes(&name)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub(super) fn handle(
    broker: &Broker,
    req: &ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = broker.image();
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations::if_asked(
                    req.include_authorized_operations,
                    operations::GROUP,
                ));
            if let Err(code) = broker.coordinates_group(id.0.as_str()) {
                return base.with_error_code(code.code());
            }
            match broker.groups.consumer_describe(id.0.as_str()) {
                None => base
                    .with_error_code(ErrorCode::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Group {} not found or not a consumer group",
                        id.0.as_str()
                    )))),
                Some(g) => base
                    .with_group_state(str_bytes(g.state))
                    .with_group_epoch(g.group_epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes(&g.assignor))
                    .with_members(
                        g.members
                            .iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .iter()
                                            .map(|t| TopicName(str_bytes(t)))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_topic_regex.as_deref().map(str_bytes),
                                    )
                                    .with_assignment(to_wire(&m.assignment, &image))
                                    .with_target_assignment(to_wire(&m.target_assignment, &image))
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
