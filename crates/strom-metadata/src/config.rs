//! Configuration keys: Kafka's names, types and defaults.
//!
//! Topic configs may be overridden per topic (CreateTopics); otherwise they
//! take the value of their broker synonym when the operator set it, else
//! their default. DescribeConfigs reports which of the three applies.

use std::collections::BTreeMap;

/// A config's type, numbered as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Where a value comes from, numbered as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// One known config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: &'static str,
    /// Allowed values for enumerations (case-sensitive, like Kafka).
    pub one_of: &'static [&'static str],
    /// Smallest allowed value for numbers.
    pub at_least: Option<i64>,
    pub doc: &'static str,
}

/// A topic config and the broker key that sets its default.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub def: ConfigDef,
    pub broker_synonym: &'static str,
}

const fn def(
    name: &'static str,
    ty: ConfigType,
    default: &'static str,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        one_of: &[],
        at_least: None,
        doc,
    }
}

const fn min(mut d: ConfigDef, at_least: i64) -> ConfigDef {
    d.at_least = Some(at_least);
    d
}

const fn enumeration(mut d: ConfigDef, one_of: &'static [&'static str]) -> ConfigDef {
    d.one_of = one_of;
    d
}

const fn topic(def: ConfigDef, broker_synonym: &'static str) -> TopicConfigDef {
    TopicConfigDef {
        def,
        broker_synonym,
    }
}

const LONG_MAX: &str = "9223372036854775807";
const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
// In the order Kafka's message lists them.
const CLEANUP: &[&str] = &["compact", "delete"];

use ConfigType::{Boolean, Double, Int, List, Long, Short};
const STRING: ConfigType = ConfigType::String;

/// Topic-level configs Strom knows.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic(enumeration(def("cleanup.policy", List, "delete", "Retention policy for old segments: delete removes them by age and size, compact keeps the latest record of each key"), CLEANUP), "log.cleanup.policy"),
    topic(enumeration(def("compression.type", STRING, "producer", "Final compression of the topic's data; only producer (keep what the producer sent) is applied"), COMPRESSION), "compression.type"),
    topic(min(def("delete.retention.ms", Long, "86400000", "How long delete tombstones are retained on compacted topics"), 0), "log.cleaner.delete.retention.ms"),
    topic(min(def("file.delete.delay.ms", Long, "60000", "Delay before a deleted segment's file is removed"), 0), "log.segment.delete.delay.ms"),
    topic(min(def("flush.messages", Long, LONG_MAX, "Fsync the log after this many messages"), 1), "log.flush.interval.messages"),
    topic(min(def("flush.ms", Long, LONG_MAX, "Fsync the log when unflushed data is this old"), 0), "log.flush.interval.ms"),
    topic(min(def("index.interval.bytes", Int, "4096", "Bytes between offset index entries"), 0), "log.index.interval.bytes"),
    topic(min(def("max.compaction.lag.ms", Long, LONG_MAX, "Longest time a message stays uncompacted"), 1), "log.cleaner.max.compaction.lag.ms"),
    topic(min(def("max.message.bytes", Int, "1048588", "Largest record batch the topic accepts"), 0), "message.max.bytes"),
    topic(min(def("message.timestamp.after.max.ms", Long, "3600000", "How far ahead of the broker's clock a CreateTime record's timestamp may be"), 0), "log.message.timestamp.after.max.ms"),
    topic(min(def("message.timestamp.before.max.ms", Long, LONG_MAX, "How far behind the broker's clock a CreateTime record's timestamp may be"), 0), "log.message.timestamp.before.max.ms"),
    topic(enumeration(def("message.timestamp.type", STRING, "CreateTime", "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)"), TIMESTAMP_TYPES), "log.message.timestamp.type"),
    topic(def("min.cleanable.dirty.ratio", Double, "0.5", "Dirty ratio that triggers compaction"), "log.cleaner.min.cleanable.ratio"),
    topic(min(def("min.compaction.lag.ms", Long, "0", "Shortest time a message stays uncompacted"), 0), "log.cleaner.min.compaction.lag.ms"),
    topic(min(def("min.insync.replicas", Int, "1", "Replicas that must acknowledge an acks=all write"), 1), "min.insync.replicas"),
    topic(def("preallocate", Boolean, "false", "Preallocate segment files"), "log.preallocate"),
    topic(min(def("retention.bytes", Long, "-1", "Largest size of a partition before old segments are deleted (-1: unlimited)"), -1), "log.retention.bytes"),
    topic(min(def("retention.ms", Long, "604800000", "Age after which old segments are deleted (-1: unlimited)"), -1), "log.retention.ms"),
    topic(min(def("segment.bytes", Int, "1073741824", "Size of a log segment file"), 14), "log.segment.bytes"),
    topic(min(def("segment.index.bytes", Int, "10485760", "Largest size of a segment's offset index"), 4), "log.index.size.max.bytes"),
    topic(min(def("segment.jitter.ms", Long, "0", "Random jitter subtracted from segment.ms"), 0), "log.roll.jitter.ms"),
    topic(min(def("segment.ms", Long, "604800000", "Age after which a segment is rolled"), 1), "log.roll.ms"),
    topic(def("unclean.leader.election.enable", Boolean, "false", "Allow out-of-sync replicas to become leader"), "unclean.leader.election.enable"),
];

/// A topic config whose default the broker sets through more than one key,
/// tried in this order: the first with a value (in any layer) wins, and
/// with none set, the first that has a default. Each key's value is
/// multiplied by its factor (Kafka's `log.retention.hours` and the like).
/// A negative retention stays -1 (unlimited).
const SYNONYM_CHAINS: &[(&str, &[(&str, i64)])] = &[
    (
        "retention.ms",
        &[
            ("log.retention.ms", 1),
            ("log.retention.minutes", 60_000),
            ("log.retention.hours", 3_600_000),
        ],
    ),
    (
        "segment.ms",
        &[("log.roll.ms", 1), ("log.roll.hours", 3_600_000)],
    ),
    (
        "segment.jitter.ms",
        &[
            ("log.roll.jitter.ms", 1),
            ("log.roll.jitter.hours", 3_600_000),
        ],
    ),
    (
        "flush.ms",
        &[
            ("log.flush.interval.ms", 1),
            ("log.flush.scheduler.interval.ms", 1),
        ],
    ),
];

/// The broker keys that set `topic`'s default, with their factors.
pub fn broker_synonyms(topic: &TopicConfigDef) -> Vec<(&'static str, i64)> {
    SYNONYM_CHAINS
        .iter()
        .find(|(name, _)| *name == topic.def.name)
        .map_or_else(
            || vec![(topic.broker_synonym, 1)],
            |(_, chain)| chain.to_vec(),
        )
}

/// The first key of a chain has no default of its own in Kafka (null):
/// its value comes from the next keys unless it is set.
fn has_null_default(name: &str) -> bool {
    SYNONYM_CHAINS.iter().any(|(_, chain)| chain[0].0 == name)
}

/// Kafka's internal configs: accepted, but not listed by DescribeConfigs.
const INTERNAL: &[&str] = &[
    "controller.quorum.heartbeat.interval.ms",
    "controller.quorum.snapshot.entries",
    "log.initial.task.delay.ms",
    "producer.id.expiration.check.interval.ms",
];

/// Broker-level configs Strom knows (besides the topic synonyms above).
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    min(
        def(
            "log.retention.hours",
            Int,
            "168",
            "Hours to keep a log segment before deleting it, unless log.retention.minutes or log.retention.ms is set",
        ),
        -1,
    ),
    def(
        "log.retention.minutes",
        Int,
        "",
        "Minutes to keep a log segment before deleting it, unless log.retention.ms is set (no default: log.retention.hours applies)",
    ),
    min(
        def(
            "log.roll.hours",
            Int,
            "168",
            "Hours after which a new segment is rolled, unless log.roll.ms is set",
        ),
        1,
    ),
    min(
        def(
            "log.roll.jitter.hours",
            Int,
            "0",
            "Hours of jitter subtracted from the roll time, unless log.roll.jitter.ms is set",
        ),
        0,
    ),
    min(
        def(
            "log.flush.scheduler.interval.ms",
            Long,
            LONG_MAX,
            "How often logs are checked for a flush, unless log.flush.interval.ms is set",
        ),
        0,
    ),
    min(
        def(
            "num.partitions",
            Int,
            "1",
            "Partitions of auto-created topics and of CreateTopics without a count",
        ),
        1,
    ),
    min(
        def(
            "default.replication.factor",
            Int,
            "1",
            "Replication factor of auto-created topics",
        ),
        1,
    ),
    def(
        "auto.create.topics.enable",
        Boolean,
        "true",
        "Create a topic when a client asks for metadata of an unknown one",
    ),
    def("delete.topic.enable", Boolean, "true", "Allow DeleteTopics"),
    min(
        def(
            "socket.request.max.bytes",
            Int,
            "104857600",
            "Largest request frame accepted",
        ),
        1,
    ),
    min(
        def(
            "fetch.max.bytes",
            Int,
            "57671680",
            "Most record bytes one Fetch response carries (at least one batch)",
        ),
        0,
    ),
    min(
        def(
            "max.incremental.fetch.session.cache.slots",
            Int,
            "1000",
            "Most incremental fetch sessions (KIP-227) kept at once",
        ),
        0,
    ),
    min(
        def(
            "queued.max.requests",
            Int,
            "500",
            "Requests being handled at once, over all connections; more wait",
        ),
        1,
    ),
    min(
        def(
            "queued.max.request.bytes",
            Long,
            "268435456",
            "Bytes of requests read and fetch data being read at once (-1: unbounded); connections wait for room (Kafka's default: -1)",
        ),
        -1,
    ),
    min(
        def(
            "connections.max.idle.ms",
            Long,
            "600000",
            "Idle connections are closed after this long",
        ),
        1,
    ),
    min(
        def(
            "max.connections",
            Int,
            "2147483647",
            "Most connections open at once; more wait to be accepted",
        ),
        0,
    ),
    min(
        def(
            "max.connections.per.ip",
            Int,
            "2147483647",
            "Most connections from one address; more are closed at once",
        ),
        0,
    ),
    min(
        def(
            "log.initial.task.delay.ms",
            Long,
            "30000",
            "Delay after start-up before the first retention check",
        ),
        0,
    ),
    min(
        def(
            "log.retention.check.interval.ms",
            Long,
            "300000",
            "How often retention is enforced",
        ),
        1,
    ),
    def(
        "auto.leader.rebalance.enable",
        Boolean,
        "true",
        "Move leadership back to each partition's preferred replica when it is in sync again",
    ),
    min(
        def(
            "leader.imbalance.check.interval.seconds",
            Long,
            "300",
            "How often the active controller looks for partitions not led by their preferred replica",
        ),
        1,
    ),
    min(
        def(
            "offsets.topic.num.partitions",
            Int,
            "50",
            "Partitions of __consumer_offsets",
        ),
        1,
    ),
    min(
        def(
            "offsets.topic.replication.factor",
            Short,
            "3",
            "Replicas of each __consumer_offsets partition (fewer while fewer brokers are live when it is created)",
        ),
        1,
    ),
    min(
        def(
            "offsets.commit.timeout.ms",
            Int,
            "5000",
            "How long a coordinator waits for its records to be committed before it answers with an error",
        ),
        1,
    ),
    min(
        def(
            "offsets.topic.segment.bytes",
            Int,
            "104857600",
            "Segment size of __consumer_offsets",
        ),
        1,
    ),
    min(
        def(
            "producer.id.expiration.ms",
            Int,
            "86400000",
            "How long a producer id's state is kept after its last write (unless a transaction is open)",
        ),
        1,
    ),
    min(
        def(
            "producer.id.expiration.check.interval.ms",
            Int,
            "600000",
            "How often idle producer ids are looked for",
        ),
        1,
    ),
    min(
        def(
            "transaction.state.log.num.partitions",
            Int,
            "50",
            "Partitions of __transaction_state",
        ),
        1,
    ),
    min(
        def(
            "transaction.state.log.replication.factor",
            Short,
            "3",
            "Replicas of each __transaction_state partition (fewer while fewer brokers are live when it is created)",
        ),
        1,
    ),
    min(
        def(
            "transaction.state.log.min.isr",
            Int,
            "2",
            "min.insync.replicas of __transaction_state (no more than its replicas)",
        ),
        1,
    ),
    min(
        def(
            "transaction.state.log.segment.bytes",
            Int,
            "104857600",
            "Segment size of __transaction_state",
        ),
        1,
    ),
    min(
        def(
            "transaction.max.timeout.ms",
            Int,
            "900000",
            "Longest transaction timeout a producer may ask for",
        ),
        1,
    ),
    min(
        def(
            "transactional.id.expiration.ms",
            Int,
            "604800000",
            "How long a transactional id without transactions is remembered",
        ),
        1,
    ),
    min(
        def(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            Int,
            "10000",
            "How often transactions past their timeout are looked for and aborted",
        ),
        1,
    ),
    min(
        def(
            "group.min.session.timeout.ms",
            Int,
            "6000",
            "Shortest session timeout a consumer may ask for",
        ),
        0,
    ),
    min(
        def(
            "group.max.session.timeout.ms",
            Int,
            "1800000",
            "Longest session timeout a consumer may ask for",
        ),
        0,
    ),
    min(
        def(
            "group.initial.rebalance.delay.ms",
            Int,
            "3000",
            "How long the first rebalance of an empty group waits for more members",
        ),
        0,
    ),
    min(
        def(
            "offset.metadata.max.bytes",
            Int,
            "4096",
            "Largest metadata string stored with a committed offset",
        ),
        0,
    ),
    min(
        def(
            "offsets.retention.minutes",
            Int,
            "10080",
            "How long the committed offsets of an empty group are kept",
        ),
        1,
    ),
    def(
        "log.cleaner.enable",
        Boolean,
        "true",
        "Run the log cleaner, which compacts topics whose cleanup.policy includes compact",
    ),
    min(
        def(
            "log.cleaner.threads",
            Int,
            "1",
            "Logs cleaned at once",
        ),
        0,
    ),
    min(
        def(
            "log.cleaner.backoff.ms",
            Long,
            "15000",
            "How long the cleaner sleeps when no log needs cleaning",
        ),
        0,
    ),
    def(
        "log.cleaner.dedupe.buffer.size",
        Long,
        "134217728",
        "Memory for the cleaners' maps of keys to their latest offsets, shared by the threads",
    ),
    def(
        "log.cleaner.io.max.bytes.per.second",
        Double,
        "1.7976931348623157E308",
        "Bytes per second each cleaner thread reads and writes at most",
    ),
    min(
        def(
            "group.max.size",
            Int,
            "2147483647",
            "Members a classic group takes at most",
        ),
        1,
    ),
    min(
        def(
            "group.consumer.max.size",
            Int,
            "2147483647",
            "Members a consumer-protocol (KIP-848) group takes at most",
        ),
        1,
    ),
    min(
        def(
            "group.consumer.session.timeout.ms",
            Int,
            "45000",
            "Session timeout of consumer-protocol (KIP-848) group members",
        ),
        1,
    ),
    min(
        def(
            "group.consumer.heartbeat.interval.ms",
            Int,
            "5000",
            "Heartbeat interval given to consumer-protocol (KIP-848) group members",
        ),
        1,
    ),
    min(
        def(
            "broker.heartbeat.interval.ms",
            Int,
            "2000",
            "How often a broker heartbeats the active controller",
        ),
        1,
    ),
    min(
        def(
            "replica.lag.time.max.ms",
            Long,
            "30000",
            "A follower that has not caught up with its leader's log end for this long leaves the ISR",
        ),
        0,
    ),
    min(
        def(
            "num.replica.fetchers",
            Int,
            "1",
            "Fetcher tasks per leader a broker follows partitions from",
        ),
        1,
    ),
    min(
        def(
            "replica.fetch.wait.max.ms",
            Int,
            "500",
            "How long a follower's fetch waits at the leader for new records",
        ),
        0,
    ),
    min(
        def(
            "replica.fetch.min.bytes",
            Int,
            "1",
            "How many bytes a follower's fetch waits for",
        ),
        1,
    ),
    min(
        def(
            "replica.fetch.max.bytes",
            Int,
            "1048576",
            "Bytes a follower fetches per partition (at least one batch)",
        ),
        0,
    ),
    min(
        def(
            "replica.fetch.response.max.bytes",
            Int,
            "10485760",
            "Bytes a follower's fetch response may hold (at least one batch)",
        ),
        0,
    ),
    min(
        def(
            "replica.fetch.backoff.ms",
            Int,
            "1000",
            "How long a follower waits after a failed fetch",
        ),
        0,
    ),
    min(
        def(
            "broker.session.timeout.ms",
            Int,
            "9000",
            "A broker that has not heartbeated for this long is fenced: its leaderships move away",
        ),
        1,
    ),
    min(
        def(
            "controller.quorum.election.timeout.ms",
            Int,
            "1000",
            "A voter that hears nothing from the active controller for between this and twice this starts an election",
        ),
        1,
    ),
    min(
        def(
            "controller.quorum.heartbeat.interval.ms",
            Int,
            "200",
            "How often the active controller heartbeats the other voters (Strom's; KRaft voters fetch instead); below the election timeout",
        ),
        1,
    ),
    min(
        def(
            "controller.quorum.request.timeout.ms",
            Int,
            "2000",
            "How long a metadata change waits for the quorum to commit it before REQUEST_TIMED_OUT",
        ),
        1,
    ),
    min(
        def(
            "controller.quorum.snapshot.entries",
            Long,
            "10000",
            "Metadata log entries between snapshots of the metadata image (Strom's; Kafka counts bytes)",
        ),
        1,
    ),
];

/// The definition of a topic config.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|t| t.def.name == name)
}

/// The definition of a broker config, including the topic synonyms.
pub fn broker_config(name: &str) -> Option<ConfigDef> {
    BROKER_CONFIGS
        .iter()
        .copied()
        .find(|d| d.name == name)
        .or_else(|| {
            TOPIC_CONFIGS
                .iter()
                .find(|t| t.broker_synonym == name)
                .map(|t| ConfigDef {
                    name: t.broker_synonym,
                    default: if has_null_default(name) {
                        ""
                    } else {
                        t.def.default
                    },
                    ..t.def
                })
        })
}

impl ConfigDef {
    /// The default, `None` where Kafka's is null (an empty default).
    pub fn default_value(&self) -> Option<&'static str> {
        (!self.default.is_empty()).then_some(self.default)
    }
}

/// Every broker config key.
pub fn broker_config_names() -> impl Iterator<Item = &'static str> {
    BROKER_CONFIGS
        .iter()
        .map(|d| d.name)
        .chain(TOPIC_CONFIGS.iter().map(|t| t.broker_synonym))
}

/// A config refused, with Kafka's message for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Value {
        name: String,
        value: String,
        reason: String,
    },
    #[error("Unknown topic config name: {0}")]
    UnknownTopicConfig(String),
}

impl ConfigDef {
    /// Checks and normalises a value (booleans are case-insensitive, like Kafka's).
    pub fn validate(&self, value: &str) -> Result<String, InvalidConfig> {
        let bad = |reason: String| InvalidConfig::Value {
            name: self.name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let v = value.trim();
        match self.ty {
            Boolean => match v.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => return Ok(b.to_owned()),
                _ => return Err(bad("Expected value to be either true or false".into())),
            },
            Short | Int | Long => {
                let kind = match self.ty {
                    Short => "SHORT",
                    Int => "INT",
                    _ => "LONG",
                };
                let not_a_number = || bad(format!("Not a number of type {kind}"));
                let n: i64 = v.parse().map_err(|_| not_a_number())?;
                if self.ty == Int && i32::try_from(n).is_err()
                    || self.ty == Short && i16::try_from(n).is_err()
                {
                    return Err(not_a_number());
                }
                if let Some(m) = self.at_least {
                    if n < m {
                        return Err(bad(format!("Value must be at least {m}")));
                    }
                }
            }
            Double => {
                v.parse::<f64>()
                    .map_err(|_| bad("Not a number of type DOUBLE".into()))?;
            }
            ConfigType::String | List => {}
        }
        if !self.one_of.is_empty() {
            // An empty list has no items to check (Kafka accepts an
            // empty cleanup.policy: neither deleted nor compacted).
            let items: Vec<&str> = if self.ty == List {
                v.split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .collect()
            } else {
                vec![v]
            };
            if items.iter().any(|i| !self.one_of.contains(i)) {
                return Err(bad(format!(
                    "String must be one of: {}",
                    self.one_of.join(", ")
                )));
            }
        }
        Ok(v.to_owned())
    }
}

/// Checks a set of topic config overrides (as given to CreateTopics).
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>, InvalidConfig> {
    let mut out = BTreeMap::new();
    for (name, value) in configs {
        let def =
            topic_config(name).ok_or_else(|| InvalidConfig::UnknownTopicConfig(name.to_owned()))?;
        out.insert(name.to_owned(), def.def.validate(value)?);
    }
    Ok(out)
}

/// Whether a broker config may be changed while the broker runs
/// (IncrementalAlterConfigs, AlterConfigs): the topic configs' broker
/// synonyms, as in Kafka (its DynamicLogConfig), whose changes reach every
/// topic that does not override them, and [`DYNAMIC_BROKER_CONFIGS`]. The
/// rest are read-only, the hour and minute forms of the chains
/// (`log.retention.hours`, ...) too, as in Kafka.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    DYNAMIC_BROKER_CONFIGS.contains(&name) || TOPIC_CONFIGS.iter().any(|t| t.broker_synonym == name)
}

/// Broker keys besides the topic synonyms that change at run time, as in
/// Kafka: the connection limits (applied to new connections), how long
/// idle producers are kept, and the cleaner's threads, memory, rate and
/// backoff (read at each of its rounds).
const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "max.connections",
    "max.connections.per.ip",
    "producer.id.expiration.ms",
    "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
];

/// The broker's configuration: what the operator gave it (file,
/// environment, flags), validated, with only the keys set explicitly; and,
/// over it, the dynamic overrides recorded in the metadata (see
/// [`StaticConfig::with_dynamic`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticConfig {
    values: BTreeMap<String, String>,
    /// Dynamic overrides for this broker.
    dynamic_node: BTreeMap<String, String>,
    /// Dynamic cluster-wide defaults (the broker resource with no name).
    dynamic_default: BTreeMap<String, String>,
}

impl StaticConfig {
    /// Validates `values`; unknown keys are returned separately so the
    /// caller can warn about them (Kafka also ignores unknown keys).
    pub fn new(
        values: BTreeMap<String, String>,
    ) -> Result<(StaticConfig, Vec<String>), InvalidConfig> {
        let mut known = BTreeMap::new();
        let mut unknown = Vec::new();
        for (k, v) in values {
            match broker_config(&k) {
                Some(d) => {
                    known.insert(k, d.validate(&v)?);
                }
                None => unknown.push(k),
            }
        }
        Ok((
            StaticConfig {
                values: known,
                ..StaticConfig::default()
            },
            unknown,
        ))
    }

    /// This configuration with the dynamic overrides for this broker
    /// (`node`) and the cluster-wide ones (`default`) on top, in Kafka's
    /// order: per broker, then cluster-wide, then static, then default.
    /// Values that are not valid for their key are left out (the
    /// controller validates what it records, so only a hand-edited log has
    /// them).
    pub fn with_dynamic(
        &self,
        node: Option<&BTreeMap<String, String>>,
        default: Option<&BTreeMap<String, String>>,
    ) -> StaticConfig {
        let valid = |m: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
            m.into_iter()
                .flatten()
                .filter(|(k, v)| broker_config(k).is_none_or(|d| d.validate(v).is_ok()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        StaticConfig {
            values: self.values.clone(),
            dynamic_node: valid(node),
            dynamic_default: valid(default),
        }
    }

    /// The explicitly set value of `name` and where it comes from.
    pub fn explicit_with_source(&self, name: &str) -> Option<(&str, ConfigSource)> {
        if let Some(v) = self.dynamic_node.get(name) {
            return Some((v, ConfigSource::DynamicBroker));
        }
        if let Some(v) = self.dynamic_default.get(name) {
            return Some((v, ConfigSource::DynamicDefaultBroker));
        }
        self.values
            .get(name)
            .map(|v| (v.as_str(), ConfigSource::StaticBroker))
    }

    /// The explicitly set value of `name` (dynamically or statically).
    pub fn explicit(&self, name: &str) -> Option<&str> {
        self.explicit_with_source(name).map(|(v, _)| v)
    }

    /// Every explicit value of `name`, most significant first: the layers a
    /// DescribeConfigs synonym list shows.
    pub fn layers(&self, name: &str) -> Vec<(&str, ConfigSource)> {
        [
            (self.dynamic_node.get(name), ConfigSource::DynamicBroker),
            (
                self.dynamic_default.get(name),
                ConfigSource::DynamicDefaultBroker,
            ),
            (self.values.get(name), ConfigSource::StaticBroker),
        ]
        .into_iter()
        .filter_map(|(v, source)| v.map(|v| (v.as_str(), source)))
        .collect()
    }

    /// Dynamic overrides of keys Strom does not know (accepted and kept,
    /// as Kafka keeps them for plugins): name and source.
    pub fn unknown_dynamic(&self) -> Vec<(&str, ConfigSource)> {
        let mut out: Vec<(&str, ConfigSource)> = Vec::new();
        for (map, source) in [
            (&self.dynamic_node, ConfigSource::DynamicBroker),
            (&self.dynamic_default, ConfigSource::DynamicDefaultBroker),
        ] {
            for k in map.keys() {
                if broker_config(k).is_none() && !out.iter().any(|(n, _)| n == k) {
                    out.push((k, source));
                }
            }
        }
        out
    }

    /// The value of a broker config: explicit or default.
    pub fn get(&self, name: &str) -> Option<String> {
        self.explicit(name).map(str::to_owned).or_else(|| {
            broker_config(name)
                .and_then(|d| d.default_value())
                .map(str::to_owned)
        })
    }

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is a known numeric config"))
    }

    pub fn get_f64(&self, name: &str) -> f64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is a known numeric config"))
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v == "true")
    }

    /// Every broker config DescribeConfigs lists, with its value (`None`:
    /// null, as Kafka reports a key without a default) and source.
    pub fn describe(&self) -> Vec<(ConfigDef, Option<String>, ConfigSource)> {
        broker_config_names()
            .filter(|n| !INTERNAL.contains(n))
            .filter_map(broker_config)
            .map(|d| match self.explicit_with_source(d.name) {
                Some((v, source)) => (d, Some(v.to_owned()), source),
                None => (
                    d,
                    d.default_value().map(str::to_owned),
                    ConfigSource::Default,
                ),
            })
            .collect()
    }

    /// A topic config's value from the broker's keys (see
    /// [`broker_synonyms`]), if one of them is set, and where it comes from.
    fn broker_value(&self, t: &TopicConfigDef) -> Option<(String, ConfigSource)> {
        broker_synonyms(t).into_iter().find_map(|(key, factor)| {
            let (v, source) = self.explicit_with_source(key)?;
            if factor == 1 {
                return Some((v.to_owned(), source));
            }
            let n: i64 = v.parse().ok()?;
            let scaled = if n < 0 { -1 } else { n.saturating_mul(factor) };
            Some((scaled.to_string(), source))
        })
    }

    /// The broker-level synonyms DescribeConfigs lists for a topic config:
    /// every layer of each of its broker keys, most significant first, and,
    /// for a key that is its topic config's only broker synonym, its default.
    pub fn topic_synonyms(
        &self,
        t: &TopicConfigDef,
    ) -> Vec<(&'static str, Option<String>, ConfigSource)> {
        let chain = broker_synonyms(t);
        let mut out: Vec<(&'static str, Option<String>, ConfigSource)> = chain
            .iter()
            .flat_map(|(key, _)| {
                self.layers(key)
                    .into_iter()
                    .map(|(v, source)| (*key, Some(v.to_owned()), source))
            })
            .collect();
        if let [(key, _)] = chain.as_slice() {
            out.push((key, Some(t.def.default.to_owned()), ConfigSource::Default));
        }
        out
    }

    /// The effective value and source of every topic config, given the
    /// topic's overrides.
    pub fn topic_configs(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Vec<(TopicConfigDef, String, ConfigSource)> {
        TOPIC_CONFIGS
            .iter()
            .map(|t| {
                if let Some(v) = overrides.get(t.def.name) {
                    (*t, v.clone(), ConfigSource::TopicOverride)
                } else if let Some((v, source)) = self.broker_value(t) {
                    (*t, v, source)
                } else {
                    (*t, t.def.default.to_owned(), ConfigSource::Default)
                }
            })
            .collect()
    }

    /// The effective value of one topic config.
    pub fn topic_value(&self, overrides: &BTreeMap<String, String>, name: &str) -> String {
        let t = topic_config(name).unwrap_or_else(|| panic!("{name} is a known topic config"));
        overrides
            .get(name)
            .cloned()
            .or_else(|| self.broker_value(t).map(|(v, _)| v))
            .unwrap_or_else(|| t.def.default.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let d = topic_config("retention.ms").unwrap().def;
        assert_eq!(d.validate(" 1000 ").unwrap(), "1000");
        assert!(d.validate("-2").is_err());
        assert!(d.validate("abc").is_err());
        let p = topic_config("cleanup.policy").unwrap().def;
        assert!(p.validate("compact,delete").is_ok());
        assert!(p.validate("shred").is_err());
        assert!(validate_topic_configs([("no.such", "1")]).is_err());
        assert!(topic_config("max.message.bytes")
            .unwrap()
            .def
            .validate("99999999999")
            .is_err());
    }

    #[test]
    fn retention_in_hours_minutes_or_ms() {
        let (cfg, unknown) = StaticConfig::new(BTreeMap::from([
            ("log.retention.hours".to_owned(), "24".to_owned()),
            ("log.roll.hours".to_owned(), "1".to_owned()),
        ]))
        .unwrap();
        assert!(unknown.is_empty());
        let none = BTreeMap::new();
        assert_eq!(cfg.topic_value(&none, "retention.ms"), "86400000");
        assert_eq!(cfg.topic_value(&none, "segment.ms"), "3600000");
        let minutes = BTreeMap::from([("log.retention.minutes".to_owned(), "5".to_owned())]);
        let ms = BTreeMap::from([("log.retention.ms".to_owned(), "7".to_owned())]);
        let dynamic = cfg.with_dynamic(Some(&minutes), None);
        assert_eq!(dynamic.topic_value(&none, "retention.ms"), "300000");
        let both = cfg.with_dynamic(Some(&minutes), Some(&ms));
        assert_eq!(
            both.topic_value(&none, "retention.ms"),
            "7",
            "ms wins over minutes"
        );
        let unlimited = cfg.with_dynamic(
            Some(&BTreeMap::from([(
                "log.retention.hours".to_owned(),
                "-1".to_owned(),
            )])),
            None,
        );
        assert_eq!(unlimited.topic_value(&none, "retention.ms"), "-1");
        // Unset everywhere: the topic default; log.retention.ms itself is null.
        let (plain, _) = StaticConfig::new(BTreeMap::new()).unwrap();
        assert_eq!(plain.topic_value(&none, "retention.ms"), "604800000");
        assert_eq!(plain.get("log.retention.ms"), None);
        assert_eq!(plain.get("log.retention.hours").as_deref(), Some("168"));
        assert!(is_dynamic_broker_config("log.retention.ms"));
        assert!(!is_dynamic_broker_config("log.retention.hours"));
    }

    #[test]
    fn sources() {
        let (cfg, unknown) = StaticConfig::new(BTreeMap::from([
            ("log.retention.ms".to_owned(), "5".to_owned()),
            ("num.network.threads".to_owned(), "3".to_owned()),
        ]))
        .unwrap();
        assert_eq!(unknown, vec!["num.network.threads"]);
        let overrides = BTreeMap::from([("segment.bytes".to_owned(), "1000".to_owned())]);
        let all = cfg.topic_configs(&overrides);
        let find = |n: &str| all.iter().find(|(d, _, _)| d.def.name == n).unwrap();
        assert_eq!(find("retention.ms").1, "5");
        assert_eq!(find("retention.ms").2, ConfigSource::StaticBroker);
        assert_eq!(find("segment.bytes").2, ConfigSource::TopicOverride);
        assert_eq!(find("cleanup.policy").2, ConfigSource::Default);
        assert_eq!(cfg.get_i64("num.partitions"), 1);
        assert!(cfg.get_bool("auto.create.topics.enable"));
        assert_eq!(cfg.topic_value(&overrides, "max.message.bytes"), "1048588");
    }
}
