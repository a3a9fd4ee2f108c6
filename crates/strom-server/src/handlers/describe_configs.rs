//! DescribeConfigs (v1+): topic and broker configs with sources, synonyms
//! and documentation.

use strom_metadata::config::{is_dynamic_broker_config, ConfigDef, ConfigSource};
use strom_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use strom_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

struct Options {
    synonyms: bool,
    documentation: bool,
}

fn entry(
    def: &ConfigDef,
    name: &str,
    value: Option<&str>,
    source: ConfigSource,
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    opts: &Options,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_read_only(read_only)
        .with_config_source(source as i8)
        .with_config_type(def.ty as i8)
        .with_synonyms(if opts.synonyms { synonyms } else { Vec::new() })
        .with_documentation(opts.documentation.then(|| str_bytes(def.doc)))
}

fn synonym(name: &str, value: Option<&str>, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_source(source as i8)
}

fn describe_topic(
    broker: &Broker,
    name: &str,
    keys: Option<&[String]>,
    opts: &Options,
) -> Result<Vec<DescribeConfigsResourceResult>, ErrorCode> {
    let image = broker.image();
    let topic = image
        .topic(name)
        .ok_or(ErrorCode::UnknownTopicOrPartition)?;
    let config = broker.effective_config(&image);
    Ok(config
        .topic_configs(&topic.configs)
        .into_iter()
        .filter(|(d, _, _)| keys.is_none_or(|k| k.iter().any(|k| k == d.def.name)))
        .map(|(d, value, source)| {
            let mut synonyms = Vec::new();
            if let Some(v) = topic.configs.get(d.def.name) {
                synonyms.push(synonym(d.def.name, Some(v), ConfigSource::TopicOverride));
            }
            for (name, v, source) in config.topic_synonyms(&d) {
                synonyms.push(synonym(name, v.as_deref(), source));
            }
            entry(
                &d.def,
                d.def.name,
                Some(&value),
                source,
                false,
                synonyms,
                opts,
            )
        })
        .collect())
}

fn describe_broker(
    broker: &Broker,
    name: &str,
    keys: Option<&[String]>,
    opts: &Options,
) -> Result<Vec<DescribeConfigsResourceResult>, ErrorCode> {
    if !name.is_empty() && name != broker.node_id.to_string() {
        return Err(ErrorCode::InvalidRequest);
    }
    let id = broker.node_id.to_string();
    let identity = ConfigDef {
        name: "node.id",
        ty: strom_metadata::config::ConfigType::Int,
        default: "",
        one_of: &[],
        at_least: None,
        doc: "The id of this node",
    };
    // What the command line sets, as Kafka lists what server.properties
    // sets: the node's id (broker.id with Kafka's default of -1), the data
    // directory and the node's roles (a broker that votes is a controller).
    let dir = broker.replicas.dir();
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy().into_owned();
    let string = ConfigDef {
        ty: strom_metadata::config::ConfigType::String,
        ..identity
    };
    let list = ConfigDef {
        ty: strom_metadata::config::ConfigType::List,
        ..identity
    };
    let roles = if broker.controller.quorum().is_voter() {
        "broker,controller"
    } else {
        "broker"
    };
    let statics: [(&str, &ConfigDef, &str, Option<&str>); 4] = [
        ("node.id", &identity, &id, None),
        ("broker.id", &identity, &id, Some("-1")),
        ("log.dirs", &string, &dir, None),
        ("process.roles", &list, roles, None),
    ];
    let mut out: Vec<DescribeConfigsResourceResult> = statics
        .into_iter()
        .map(|(n, def, value, default)| {
            let mut synonyms = vec![synonym(n, Some(value), ConfigSource::StaticBroker)];
            if let Some(d) = default {
                synonyms.push(synonym(n, Some(d), ConfigSource::Default));
            }
            entry(
                def,
                n,
                Some(value),
                ConfigSource::StaticBroker,
                true,
                synonyms,
                opts,
            )
        })
        .collect();
    let config = broker.effective_config(&broker.image());
    out.extend(config.describe().into_iter().map(|(d, value, source)| {
        let mut synonyms: Vec<DescribeConfigsSynonym> = config
            .layers(d.name)
            .into_iter()
            .map(|(v, source)| synonym(d.name, Some(v), source))
            .collect();
        if let Some(default) = d.default_value() {
            synonyms.push(synonym(d.name, Some(default), ConfigSource::Default));
        }
        let read_only = !is_dynamic_broker_config(d.name);
        entry(
            &d,
            d.name,
            value.as_deref(),
            source,
            read_only,
            synonyms,
            opts,
        )
    }));
    // Keys Strom does not know, set dynamically: listed as Kafka lists
    // them, read-only with their value hidden (it cannot tell whether
    // they are secrets) and no type.
    out.extend(config.unknown_dynamic().into_iter().map(|(name, source)| {
        let hidden = DescribeConfigsSynonym::default()
            .with_name(str_bytes(name))
            .with_value(None)
            .with_source(source as i8);
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes(name))
            .with_value(None)
            .with_read_only(true)
            .with_config_source(source as i8)
            .with_config_type(0)
            .with_is_sensitive(true)
            .with_synonyms(if opts.synonyms {
                vec![hidden]
            } else {
                Vec::new()
            })
    }));
    out.retain(|e| keys.is_none_or(|k| k.iter().any(|k| k == e.name.as_str())));
    Ok(out)
}

pub(super) fn handle(broker: &Broker, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let opts = Options {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation,
    };
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .map(|k| k.iter().map(|s| s.as_str().to_owned()).collect());
            let name = r.resource_name.as_str().to_owned();
            let outcome = match r.resource_type {
                TOPIC => describe_topic(broker, &name, keys.as_deref(), &opts),
                BROKER => describe_broker(broker, &name, keys.as_deref(), &opts),
                _ => Err(ErrorCode::InvalidRequest),
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match outcome {
                Ok(configs) => base.with_configs(configs),
                Err(code) => {
                    let message = match code {
                        ErrorCode::UnknownTopicOrPartition => {
                            format!("Topic {name} does not exist")
                        }
                        _ => format!(
                            "Resource type {} named {name:?} cannot be described here",
                            r.resource_type
                        ),
                    };
                    base.with_error_code(code.code())
                        .with_error_message(Some(str_bytes(&message)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
