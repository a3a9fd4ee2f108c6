//! DescribeCluster: the brokers and the cluster id.

use strom_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use strom_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use strom_protocol::ErrorCode;

use super::{operations, str_bytes};
use crate::broker::Broker;

/// `endpoint_type` 1: brokers (2, controllers, is not served here).
const BROKERS: i8 = 1;

pub(super) fn handle(broker: &Broker, req: &DescribeClusterRequest) -> DescribeClusterResponse {
    if req.endpoint_type != BROKERS {
        return DescribeClusterResponse::default()
            .with_error_code(ErrorCode::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("Only broker endpoints are served")))
            .with_endpoint_type(req.endpoint_type);
    }
    let image = broker.image();
    DescribeClusterResponse::default()
        .with_endpoint_type(BROKERS)
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_cluster_authorized_operations(operations::if_asked(
            req.include_cluster_authorized_operations,
            operations::CLUSTER,
        ))
        .with_brokers(
            image
                .brokers()
                // v2 (KIP-1073) may ask for the fenced brokers too, marked.
                .filter(|b| !b.fenced || req.include_fenced_brokers)
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                        .with_is_fenced(b.fenced)
                })
                .collect(),
        )
}
