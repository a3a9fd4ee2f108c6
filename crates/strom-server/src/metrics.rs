//! The node's metrics, in the Prometheus text format (the `prometheus`
//! crate), named as the Prometheus JMX exporter names Kafka's MBeans, so
//! that a Grafana dashboard written for Kafka finds them:
//!
//! - counted as they happen: requests and their time per API
//!   (`kafka_network_requestmetrics_*`), bytes and messages in and bytes out
//!   per topic (`kafka_server_brokertopicmetrics_*`), connections
//!   (`kafka_server_socketservermetrics_*`) and requests in flight;
//! - read when scraped (a collector over the hosted partitions, so a scrape
//!   costs one short lock per partition and nothing between scrapes):
//!   partition and leader counts, under-replicated, under-min-ISR and
//!   offline partitions (`kafka_server_replicamanager_*`,
//!   `kafka_controller_kafkacontroller_*`), and per partition its size,
//!   segment count and offsets (`kafka_log_log_*`);
//! - read when scraped from the group coordinator: each group's members
//!   and state, and per committed partition its offset and lag against
//!   the high watermark, with the names kafka_exporter gives them
//!   (`kafka_consumergroup_*`);
//! - the process: CPU seconds, resident memory, open files (`process_*`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use strom_coordinator::GroupCoordinator;
use strom_protocol::messages::ApiKey;
use strom_replica::ReplicaManager;

/// Buckets of request time, in seconds: 0.1 ms to 30 s (long polls).
const TIME_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    /// By API key: its series of `requests` and `request_seconds`.
    per_api: Vec<OnceLock<(IntCounter, Histogram)>>,
    bytes_in: IntCounterVec,
    messages_in: IntCounterVec,
    bytes_out: IntCounterVec,
    connections: IntGauge,
    in_flight: IntGauge,
}

/// One unit of a gauge (an open connection, a request being handled),
/// given back when dropped: on every path, a panic or a cancelled task
/// included.
pub(crate) struct Held(IntGauge);

impl Held {
    fn take(gauge: &IntGauge) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Names and labels are constants here: a failure is a bug in this file.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    pub(crate) fn new(replicas: Arc<ReplicaManager>, groups: Arc<GroupCoordinator>) -> Metrics {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "kafka_network_requestmetrics_requests_total",
                "Requests answered, by API",
            ),
            &["request"],
        ));
        let request_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "kafka_network_requestmetrics_totaltime_seconds",
                "Time from a request's arrival to its response, by API",
            )
            .buckets(TIME_BUCKETS.to_vec()),
            &["request"],
        ));
        let topic_counter =
            |name: &str, help: &str| must(IntCounterVec::new(Opts::new(name, help), &["topic"]));
        let bytes_in = topic_counter(
            "kafka_server_brokertopicmetrics_bytesin_total",
            "Record batch bytes appended by producers, by topic",
        );
        let messages_in = topic_counter(
            "kafka_server_brokertopicmetrics_messagesin_total",
            "Records appended by producers, by topic",
        );
        let bytes_out = topic_counter(
            "kafka_server_brokertopicmetrics_bytesout_total",
            "Record bytes sent to fetchers, by topic",
        );
        let connections = must(IntGauge::new(
            "kafka_server_socketservermetrics_connection_count",
            "Open client connections",
        ));
        let in_flight = must(IntGauge::new(
            "kafka_network_requestchannel_inflightrequests",
            "Requests being handled (decoded, not yet answered)",
        ));
        for c in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(request_seconds.clone()),
            Box::new(bytes_in.clone()),
            Box::new(messages_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(connections.clone()),
            Box::new(in_flight.clone()),
            Box::new(Partitions::new(replicas.clone())),
            Box::new(Groups::new(groups, replicas)),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            must(registry.register(c));
        }
        let keys = ApiKey::iter()
            .map(|k| k as usize)
            .max()
            .map_or(0, |m| m + 1);
        Metrics {
            registry,
            requests,
            request_seconds,
            per_api: (0..keys).map(|_| OnceLock::new()).collect(),
            bytes_in,
            messages_in,
            bytes_out,
            connections,
            in_flight,
        }
    }

    /// A request begins; it ends when the guard is dropped.
    pub(crate) fn begin(&self) -> Held {
        Held::take(&self.in_flight)
    }

    /// A connection opens; it closes when the guard is dropped.
    pub(crate) fn connection(&self) -> Held {
        Held::take(&self.connections)
    }

    /// A request of `api` answered after `took`. Each API's two series
    /// are looked up once, on its first request, and kept by its key.
    pub(crate) fn request(&self, api: ApiKey, took: Duration) {
        let Some(slot) = self.per_api.get(api as usize) else {
            return;
        };
        let (count, time) = slot.get_or_init(|| {
            let label = format!("{api:?}");
            (
                self.requests.with_label_values(&[&label]),
                self.request_seconds.with_label_values(&[&label]),
            )
        });
        count.inc();
        time.observe(took.as_secs_f64());
    }

    /// A produced batch of `records` records and `bytes` bytes appended.
    pub(crate) fn produced(&self, topic: &str, records: u64, bytes: u64) {
        self.messages_in.with_label_values(&[topic]).inc_by(records);
        self.bytes_in.with_label_values(&[topic]).inc_by(bytes);
    }

    /// `bytes` of records sent to a fetcher.
    pub(crate) fn fetched(&self, topic: &str, bytes: u64) {
        if bytes > 0 {
            self.bytes_out.with_label_values(&[topic]).inc_by(bytes);
        }
    }

    /// Everything, in the Prometheus text format. The per-topic series of
    /// topics that no longer `exists` are dropped first, as Kafka removes
    /// a deleted topic's metrics.
    pub(crate) fn render(&self, exists: impl Fn(&str) -> bool) -> Vec<u8> {
        self.forget_deleted_topics(exists);
        let mut out = Vec::with_capacity(64 * 1024);
        let families = self.registry.gather();
        // Encoding into a Vec fails only on names the registry refused.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

impl Metrics {
    fn forget_deleted_topics(&self, exists: impl Fn(&str) -> bool) {
        for vec in [&self.bytes_in, &self.messages_in, &self.bytes_out] {
            let gone: Vec<String> = vec
                .collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .flat_map(|m| m.get_label())
                .filter(|l| l.name() == "topic" && !exists(l.value()))
                .map(|l| l.value().to_owned())
                .collect();
            for topic in gone {
                let _ = vec.remove_label_values(&[&topic]);
            }
        }
    }
}

/// The hosted partitions, read at each scrape.
struct Partitions {
    replicas: Arc<ReplicaManager>,
    descs: Vec<Desc>,
}

const PARTITION_GAUGES: &[(&str, &str)] = &[
    (
        "kafka_server_replicamanager_partitioncount",
        "Partitions hosted",
    ),
    ("kafka_server_replicamanager_leadercount", "Partitions led"),
    (
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Led partitions whose in-sync replicas are fewer than their replicas",
    ),
    (
        "kafka_server_replicamanager_underminisrpartitioncount",
        "Led partitions with fewer in-sync replicas than min.insync.replicas",
    ),
    (
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "Partitions without a leader",
    ),
];

const LOG_GAUGES: &[(&str, &str)] = &[
    (
        "kafka_log_log_size",
        "Bytes of the partition's segment files",
    ),
    (
        "kafka_log_log_numlogsegments",
        "Segments of the partition's log",
    ),
    (
        "kafka_log_log_logstartoffset",
        "The partition's log start offset",
    ),
    (
        "kafka_log_log_logendoffset",
        "The partition's log end offset",
    ),
];

impl Partitions {
    fn new(replicas: Arc<ReplicaManager>) -> Partitions {
        let descs = PARTITION_GAUGES
            .iter()
            .map(|(name, help)| must(Opts::new(*name, *help).describe()))
            .chain(LOG_GAUGES.iter().map(|(name, help)| {
                must(
                    Opts::new(*name, *help)
                        .variable_labels(vec!["topic".into(), "partition".into()])
                        .describe(),
                )
            }))
            .collect();
        Partitions { replicas, descs }
    }
}

impl Collector for Partitions {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let hosted = self.replicas.hosted();
        let logs: Vec<IntGaugeVec> = LOG_GAUGES
            .iter()
            .map(|(name, help)| {
                must(IntGaugeVec::new(
                    Opts::new(*name, *help),
                    &["topic", "partition"],
                ))
            })
            .collect();
        let mut under_min_isr = 0;
        for p in &hosted {
            let stats = p.log_stats();
            let index = p.index().to_string();
            let labels = [p.topic(), index.as_str()];
            let values = [
                stats.size_bytes as i64,
                stats.segments as i64,
                stats.log_start_offset,
                stats.log_end_offset,
            ];
            for (gauge, v) in logs.iter().zip(values) {
                gauge.with_label_values(&labels).set(v);
            }
            // One node: each partition's one replica is in sync.
            if p.min_insync_replicas() > 1 {
                under_min_isr += 1;
            }
        }
        let count = hosted.len() as i64;
        // One node leads every partition it hosts; none lacks a leader or
        // a replica.
        let counts = [count, count, 0, under_min_isr, 0];
        let mut out: Vec<MetricFamily> = PARTITION_GAUGES
            .iter()
            .zip(counts)
            .flat_map(|((name, help), v)| {
                let g = must(IntGauge::new(*name, *help));
                g.set(v);
                g.collect()
            })
            .collect();
        out.extend(logs.iter().flat_map(|g| g.collect()));
        out
    }
}

/// The consumer groups, read at each scrape.
struct Groups {
    groups: Arc<GroupCoordinator>,
    replicas: Arc<ReplicaManager>,
    descs: Vec<Desc>,
}

const GROUP_GAUGES: &[(&str, &str, &[&str])] = &[
    (
        "kafka_consumergroup_members",
        "Members of the group",
        &["consumergroup"],
    ),
    (
        "kafka_consumergroup_state",
        "1 for the group's state (Empty, Stable, PreparingRebalance, CompletingRebalance, Dead, Assigning, Reconciling)",
        &["consumergroup", "state"],
    ),
    (
        "kafka_consumergroup_current_offset",
        "The group's committed offset of the partition",
        &["consumergroup", "topic", "partition"],
    ),
    (
        "kafka_consumergroup_lag",
        "The partition's high watermark less the group's committed offset (at least 0)",
        &["consumergroup", "topic", "partition"],
    ),
];

impl Groups {
    fn new(groups: Arc<GroupCoordinator>, replicas: Arc<ReplicaManager>) -> Groups {
        let descs = GROUP_GAUGES
            .iter()
            .map(|(name, help, labels)| {
                must(
                    Opts::new(*name, *help)
                        .variable_labels(labels.iter().map(|l| (*l).to_owned()).collect())
                        .describe(),
                )
            })
            .collect();
        Groups {
            groups,
            replicas,
            descs,
        }
    }
}

impl Collector for Groups {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let gauges: Vec<IntGaugeVec> = GROUP_GAUGES
            .iter()
            .map(|(name, help, labels)| must(IntGaugeVec::new(Opts::new(*name, *help), labels)))
            .collect();
        let [members, state, current, lag] = &gauges[..] else {
            return Vec::new();
        };
        for g in self.groups.groups() {
            let id = g.group_id.as_str();
            members.with_label_values(&[id]).set(g.members.len() as i64);
            state.with_label_values(&[id, g.state_name]).set(1);
            for ((topic, partition), committed) in self.groups.fetch_offsets(id, None) {
                let Some(committed) = committed else { continue };
                let index = partition.to_string();
                let labels = [id, topic.as_str(), index.as_str()];
                current.with_label_values(&labels).set(committed.offset);
                if let Some(p) = self.replicas.get(&topic, partition) {
                    lag.with_label_values(&labels)
                        .set((p.high_watermark() - committed.offset).max(0));
                }
            }
        }
        gauges.iter().flat_map(|g| g.collect()).collect()
    }
}
