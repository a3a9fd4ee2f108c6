//! IncrementalAlterConfigs (v0+) and AlterConfigs (v0+): topic overrides
//! and dynamic broker configs (this broker, or the cluster-wide default
//! when the name is empty), checked as Kafka's ConfigAdminManager checks a
//! request before its controller decides each resource (see
//! `Controller::alter_configs`). The broker's logger levels
//! (BROKER_LOGGER), client-metrics and group configs are not served.

use std::collections::HashMap;

use strom_controller::{AlterConfigsRequest, ApiError, ConfigOp};
use strom_metadata::ConfigResource;
use strom_protocol::messages::{
    AlterConfigsRequest as LegacyRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use strom_protocol::{ErrorCode, StrBytes};

use super::{per_item, str_bytes};
use crate::broker::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// The resource a request names, checked as Kafka checks it.
fn resource(broker: &Broker, kind: i8, name: &str) -> Result<ConfigResource, ApiError> {
    match kind {
        TOPIC => Ok(ConfigResource::Topic(name.to_owned())),
        BROKER if name.is_empty() => Ok(ConfigResource::Broker(None)),
        BROKER => {
            let id: i32 = name.parse().map_err(|_| {
                invalid_request(format!("Node id must be an integer, but it is: {name}"))
            })?;
            if id != broker.node_id {
                return Err(invalid_request(format!(
                    "Unexpected broker id, expected {}, but received {name}",
                    broker.node_id
                )));
            }
            Ok(ConfigResource::Broker(Some(id)))
        }
        BROKER_LOGGER => Err(invalid_request(
            "Changing the broker's log levels (BROKER_LOGGER) is not supported",
        )),
        other => Err(invalid_request(format!("Unknown resource type {other}"))),
    }
}

/// Each resource's checked request, or why it is refused before the
/// controller sees it: a resource named twice (both refused), a key named
/// twice, a value missing where the operation needs one.
fn preprocess(
    broker: &Broker,
    resources: Vec<Resource>,
    replace: bool,
) -> Vec<Result<AlterConfigsRequest, ApiError>> {
    let mut seen: HashMap<(i8, &str), usize> = HashMap::new();
    for (kind, name, _) in &resources {
        *seen.entry((*kind, name.as_str())).or_default() += 1;
    }
    resources
        .iter()
        .map(|(kind, name, ops)| {
            if seen[&(*kind, name.as_str())] > 1 {
                return Err(invalid_request("Each resource must appear at most once."));
            }
            let ops = ops.clone()?;
            let mut keys: Vec<&str> = ops.iter().map(ConfigOp::name).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(invalid_request("Error due to duplicate config keys"));
            }
            Ok(AlterConfigsRequest {
                resource: resource(broker, *kind, name.as_str())?,
                ops,
                replace,
            })
        })
        .collect()
}

/// One resource of a request: its type, its name, and the operations it
/// asks for (or why they cannot be read).
type Resource = (i8, StrBytes, Result<Vec<ConfigOp>, ApiError>);

/// Checks the resources, runs the valid ones through the controller, and
/// gives each resource's answer in request order: type, name, error code
/// and message (null with success, as Kafka sends it).
async fn alter(
    broker: &Broker,
    resources: Vec<Resource>,
    replace: bool,
    validate_only: bool,
) -> Vec<(i8, StrBytes, i16, Option<StrBytes>)> {
    let names: Vec<(i8, StrBytes)> = resources
        .iter()
        .map(|(kind, name, _)| (*kind, name.clone()))
        .collect();
    let checked = preprocess(broker, resources, replace);
    let valid: Vec<AlterConfigsRequest> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let n = valid.len();
    let mut decided = per_item(
        broker.controller.alter_configs(valid, validate_only).await,
        n,
    )
    .into_iter();
    if !validate_only {
        // Live partitions take the new configs before the answer.
        if let Err(e) = broker.sync_replicas() {
            tracing::warn!(error = %e.message, "config change recorded but not yet applied to every partition");
        }
    }
    names
        .into_iter()
        .zip(checked)
        .map(|((kind, name), c)| {
            let outcome = match c {
                Ok(_) => decided.next().expect("one outcome per valid resource"),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => (kind, name, 0, None),
                Err(e) => (kind, name, e.code.code(), Some(str_bytes(&e.message))),
            }
        })
        .collect()
}

fn incremental_ops(
    configs: &[strom_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<ConfigOp>, ApiError> {
    let nulls: Vec<&str> = configs
        .iter()
        .filter(|c| c.config_operation != 1 && c.value.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(invalid_request(format!(
            "Null value not supported for : {}",
            nulls.join(", ")
        )));
    }
    configs
        .iter()
        .map(|c| {
            let name = c.name.as_str().to_owned();
            let value = || c.value.as_ref().map_or("", |v| v.as_str()).to_owned();
            Ok(match c.config_operation {
                0 => ConfigOp::Set(name, value()),
                1 => ConfigOp::Delete(name),
                2 => ConfigOp::Append(name, value()),
                3 => ConfigOp::Subtract(name, value()),
                other => return Err(invalid_request(format!("Unknown operations type {other}"))),
            })
        })
        .collect()
}

pub(super) async fn incremental(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use strom_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let resources = req
        .resources
        .iter()
        .map(|r| {
            let ops = incremental_ops(&r.configs);
            (r.resource_type, r.resource_name.clone(), ops)
        })
        .collect();
    let answers = alter(broker, resources, false, req.validate_only).await;
    IncrementalAlterConfigsResponse::default().with_responses(
        answers
            .into_iter()
            .map(|(kind, name, code, message)| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(kind)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect(),
    )
}

pub(super) async fn legacy(broker: &Broker, req: LegacyRequest) -> AlterConfigsResponse {
    use strom_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let resources = req
        .resources
        .iter()
        .map(|r| {
            // The given keys with a value are the new overrides.
            let ops = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| ConfigOp::Set(c.name.as_str().to_owned(), v.as_str().to_owned()))
                })
                .collect();
            (r.resource_type, r.resource_name.clone(), Ok(ops))
        })
        .collect();
    let answers = alter(broker, resources, true, req.validate_only).await;
    AlterConfigsResponse::default().with_responses(
        answers
            .into_iter()
            .map(|(kind, name, code, message)| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(kind)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect(),
    )
}
