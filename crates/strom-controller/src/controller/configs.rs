//! Config changes (IncrementalAlterConfigs and AlterConfigs), decided as
//! Kafka's controller decides them and written as `Config` records.

use std::collections::BTreeMap;

use strom_metadata::config::{broker_config, is_dynamic_broker_config, topic_config, ConfigType};
use strom_metadata::{ConfigResource, MetadataImage, MetadataRecord};
use strom_protocol::ErrorCode;

use serde::{Deserialize, Serialize};

use super::ApiError;

/// One change to one key, as IncrementalAlterConfigs names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    /// Adds list items not already there (LIST keys only).
    Append(String, String),
    /// Removes list items (LIST keys only).
    Subtract(String, String),
}

impl ConfigOp {
    /// The key the operation changes.
    pub fn name(&self) -> &str {
        match self {
            ConfigOp::Set(n, _)
            | ConfigOp::Delete(n)
            | ConfigOp::Append(n, _)
            | ConfigOp::Subtract(n, _) => n,
        }
    }
}

/// The changes asked for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterConfigsRequest {
    pub resource: ConfigResource,
    pub ops: Vec<ConfigOp>,
    /// AlterConfigs (the older API): the given keys replace every override
    /// of the resource, so a key not given is removed.
    pub replace: bool,
}

fn invalid_config(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidConfig, message)
}

/// The comma-separated items of a list value ("" is no items).
fn items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What an APPEND or SUBTRACT starts from: the current override, else the
/// key's default (Kafka's `prepareIncrementalConfigs`).
fn current_items(current: &BTreeMap<String, String>, name: &str, default: &str) -> Vec<String> {
    items(current.get(name).map_or(default, String::as_str))
}

/// Applies `op` to `overrides`. `def_of` gives the key's type and default,
/// `None` for a key the resource does not know.
fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    op: &ConfigOp,
    def: Option<(ConfigType, &str)>,
) -> Result<(), ApiError> {
    let list_op = |verb: &str, name: &str| -> Result<&str, ApiError> {
        match def {
            Some((ConfigType::List, default)) => Ok(default),
            _ => Err(invalid_config(format!(
                "Can't {verb} to key {name} because its type is not LIST."
            ))),
        }
    };
    match op {
        ConfigOp::Set(name, value) => {
            overrides.insert(name.clone(), value.clone());
        }
        ConfigOp::Delete(name) => {
            overrides.remove(name);
        }
        ConfigOp::Append(name, value) => {
            let default = list_op("APPEND", name)?;
            let mut list = current_items(overrides, name, default);
            for item in items(value) {
                if !list.contains(&item) {
                    list.push(item);
                }
            }
            overrides.insert(name.clone(), list.join(","));
        }
        ConfigOp::Subtract(name, value) => {
            let default = list_op("SUBTRACT", name)?;
            let remove = items(value);
            let list: Vec<String> = current_items(overrides, name, default)
                .into_iter()
                .filter(|i| !remove.contains(i))
                .collect();
            overrides.insert(name.clone(), list.join(","));
        }
    }
    Ok(())
}

/// The overrides `req` leaves on a topic, each validated.
fn decide_topic(
    image: &MetadataImage,
    topic: &str,
    req: &AlterConfigsRequest,
) -> Result<BTreeMap<String, String>, ApiError> {
    let t = image.topic(topic).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("The topic '{topic}' does not exist."),
        )
    })?;
    let mut overrides = if req.replace {
        BTreeMap::new()
    } else {
        t.configs.clone()
    };
    for op in &req.ops {
        let def = topic_config(op.name());
        if def.is_none() && !matches!(op, ConfigOp::Delete(_)) {
            return Err(invalid_config(format!(
                "Unknown topic config name: {}",
                op.name()
            )));
        }
        apply_op(&mut overrides, op, def.map(|d| (d.def.ty, d.def.default)))?;
    }
    for (name, value) in overrides.iter_mut() {
        let def = topic_config(name).expect("only known keys are set");
        *value = def
            .def
            .validate(value)
            .map_err(|e| invalid_config(e.to_string()))?;
    }
    Ok(overrides)
}

/// The dynamic overrides `req` leaves on a broker (or the cluster-wide
/// default): only keys that may change at run time, or keys Strom does not
/// know (kept, as Kafka keeps them); refusals are INVALID_REQUEST, as
/// Kafka's broker-config validation answers.
fn decide_broker(
    image: &MetadataImage,
    node: Option<i32>,
    req: &AlterConfigsRequest,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut overrides = if req.replace {
        BTreeMap::new()
    } else {
        image.broker_configs(node).cloned().unwrap_or_default()
    };
    let fixed: Vec<&str> = req
        .ops
        .iter()
        .map(ConfigOp::name)
        .filter(|n| broker_config(n).is_some() && !is_dynamic_broker_config(n))
        .collect();
    if !fixed.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "Cannot update these configs dynamically: Set({})",
                fixed.join(", ")
            ),
        ));
    }
    for op in &req.ops {
        let def = broker_config(op.name()).map(|d| (d.ty, d.default));
        apply_op(&mut overrides, op, def)?;
    }
    for (name, value) in overrides.iter_mut() {
        if let Some(def) = broker_config(name) {
            *value = def
                .validate(value)
                .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        }
    }
    Ok(overrides)
}

/// The records that turn `old` overrides of `resource` into `new` ones.
fn config_records(
    resource: &ConfigResource,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let record = |name: &str, value: Option<&String>| MetadataRecord::Config {
        resource: resource.clone(),
        name: name.to_owned(),
        value: value.cloned(),
    };
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| record(k, None));
    let set = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| record(k, Some(v)));
    removed.chain(set).collect()
}

/// Changes the config overrides of topics and brokers (or only validates
/// the changes). Each resource succeeds or fails alone, and is changed
/// whole or not at all.
pub(super) fn decide_alter_configs(
    current: &MetadataImage,
    requests: Vec<AlterConfigsRequest>,
    validate_only: bool,
) -> (Vec<Result<(), ApiError>>, Vec<MetadataRecord>) {
    let mut image = current.clone();
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for req in requests {
        let old = match &req.resource {
            ConfigResource::Topic(t) => image.topic(t).map(|t| t.configs.clone()),
            ConfigResource::Broker(node) => image.broker_configs(*node).cloned(),
        }
        .unwrap_or_default();
        let decided = match &req.resource {
            ConfigResource::Topic(t) => decide_topic(&image, t, &req),
            ConfigResource::Broker(node) => decide_broker(&image, *node, &req),
        };
        results.push(decided.map(|new| {
            if !validate_only {
                let recs = config_records(&req.resource, &old, &new);
                let offset = image.offset;
                image.apply_mut(offset, &recs);
                records.extend(recs);
            }
        }));
    }
    (results, records)
}
