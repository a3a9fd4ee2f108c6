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
//! - counted as they happen: the error codes of responses per API
//!   (`kafka_network_requestmetrics_errors_total`, `NONE` included, as
//!   Kafka's `ErrorsPerSec`), ISR shrinks and expansions and failed ISR
//!   updates (`kafka_server_replicamanager_*_total`);
//! - read when scraped from the controller: the Raft quorum as this node
//!   sees it (`kafka_server_raft_metrics_*`, and on the leader each
//!   voter's lag), and on a controller the cluster as its image holds it
//!   (active controller, topics, partitions, offline partitions, brokers,
//!   `kafka_controller_kafkacontroller_*`);
//! - read when scraped: the log cleaner's last round and totals
//!   (`kafka_log_logcleaner*`, `strom_log_cleaner_*`), and the
//!   transaction coordinator's transactions by state and those it ended
//!   (`strom_transactions*`; Kafka has no such gauges);
//! - the process: CPU seconds, resident memory, open files (`process_*`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use strom_controller::Controller;
use strom_coordinator::{GroupCoordinator, TxnCoordinator};
use strom_protocol::messages::{ApiKey, ResponseKind};
use strom_replica::ReplicaManager;

use crate::error_counts;

/// Buckets of request time, in seconds: 0.1 ms to 30 s (long polls).
const TIME_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// What the scraped metrics are read from.
pub(crate) struct Sources {
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) groups: Arc<GroupCoordinator>,
    pub(crate) controller: Arc<Controller>,
    pub(crate) txns: Arc<TxnCoordinator>,
}

/// An API's series, looked up on its first request.
struct ApiSeries {
    label: String,
    requests: IntCounter,
    time: Histogram,
    /// Its `errors` series for `NONE`, the common case.
    none: IntCounter,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    errors: IntCounterVec,
    /// By API key: its series of `requests`, `request_seconds`, `errors`.
    per_api: Vec<OnceLock<ApiSeries>>,
    isr_shrinks: IntCounter,
    isr_expands: IntCounter,
    isr_failed: IntCounter,
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
    pub(crate) fn new(sources: Sources) -> Metrics {
        let Sources {
            replicas,
            groups,
            controller,
            txns,
        } = sources;
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
        let errors = must(IntCounterVec::new(
            Opts::new(
                "kafka_network_requestmetrics_errors_total",
                "Error codes in responses, by API and error (NONE included), as Kafka's ErrorsPerSec counts them",
            ),
            &["request", "error"],
        ));
        let counter = |name: &str, help: &str| must(IntCounter::new(name, help));
        let isr_shrinks = counter(
            "kafka_server_replicamanager_isrshrinks_total",
            "ISR shrinks this node's leaderships made (followers out of time left)",
        );
        let isr_expands = counter(
            "kafka_server_replicamanager_isrexpands_total",
            "ISR expansions this node's leaderships made (caught-up followers joined)",
        );
        let isr_failed = counter(
            "kafka_server_replicamanager_failedisrupdates_total",
            "ISR changes the controller refused or did not answer",
        );
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
            Box::new(errors.clone()),
            Box::new(isr_shrinks.clone()),
            Box::new(isr_expands.clone()),
            Box::new(isr_failed.clone()),
            Box::new(bytes_in.clone()),
            Box::new(messages_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(connections.clone()),
            Box::new(in_flight.clone()),
            Box::new(Partitions::new(replicas.clone())),
            Box::new(Groups::new(groups, replicas.clone())),
            quorum_collector(controller),
            cleaner_collector(replicas),
            txn_collector(txns),
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
            errors,
            per_api: (0..keys).map(|_| OnceLock::new()).collect(),
            isr_shrinks,
            isr_expands,
            isr_failed,
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

    /// A request of `api` answered after `took` with `resp` (none for a
    /// Produce with acks=0). Each API's series are looked up once, on its
    /// first request, and kept by its key; an error other than `NONE`
    /// looks its series up by label.
    pub(crate) fn request(&self, api: ApiKey, took: Duration, resp: Option<&ResponseKind>) {
        let Some(slot) = self.per_api.get(api as usize) else {
            return;
        };
        let series = slot.get_or_init(|| {
            let label = format!("{api:?}");
            ApiSeries {
                requests: self.requests.with_label_values(&[&label]),
                time: self.request_seconds.with_label_values(&[&label]),
                none: self.errors.with_label_values(&[&label, "NONE"]),
                label,
            }
        });
        series.requests.inc();
        series.time.observe(took.as_secs_f64());
        let Some(resp) = resp else { return };
        let mut none = 0;
        let mut others: Vec<(i16, u64)> = Vec::new();
        error_counts::visit(resp, &mut |code| {
            if code == 0 {
                none += 1;
            } else if let Some((_, n)) = others.iter_mut().find(|(c, _)| *c == code) {
                *n += 1;
            } else {
                others.push((code, 1));
            }
        });
        if none > 0 {
            series.none.inc_by(none);
        }
        for (code, n) in others {
            self.errors
                .with_label_values(&[&series.label, &error_counts::name(code)])
                .inc_by(n);
        }
    }

    /// An ISR change this node asked for was made (`done`) or not.
    pub(crate) fn isr_changed(&self, shrink: bool, done: bool) {
        match (done, shrink) {
            (false, _) => self.isr_failed.inc(),
            (true, true) => self.isr_shrinks.inc(),
            (true, false) => self.isr_expands.inc(),
        }
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
        "kafka_server_replicamanager_atminisrpartitioncount",
        "Led partitions with exactly min.insync.replicas in-sync replicas",
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
        }
        let c = self.replicas.replication_counts();
        let counts = [
            c.hosted,
            c.leaders,
            c.under_replicated,
            c.under_min_isr,
            c.at_min_isr,
        ];
        let mut out: Vec<MetricFamily> = PARTITION_GAUGES
            .iter()
            .zip(counts)
            .flat_map(|((name, help), v)| {
                let g = must(IntGauge::new(*name, *help));
                g.set(v as i64);
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

/// A collector of families computed at each scrape by `read`, declared by
/// `(name, help, labels)`.
struct Scraped<F> {
    descs: Vec<Desc>,
    read: F,
}

impl<F: Fn() -> Vec<MetricFamily> + Send + Sync> Collector for Scraped<F> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        (self.read)()
    }
}

type Spec = (&'static str, &'static str, &'static [&'static str]);

fn scraped<F>(specs: &[Spec], read: F) -> Box<dyn Collector>
where
    F: Fn() -> Vec<MetricFamily> + Send + Sync + 'static,
{
    let descs = specs
        .iter()
        .map(|(name, help, labels)| {
            must(
                Opts::new(*name, *help)
                    .variable_labels(labels.iter().map(|l| (*l).to_owned()).collect())
                    .describe(),
            )
        })
        .collect();
    Box::new(Scraped { descs, read })
}

fn int_gauge(spec: &Spec, v: i64) -> Vec<MetricFamily> {
    let g = must(IntGauge::new(spec.0, spec.1));
    g.set(v);
    g.collect()
}

fn float_gauge(spec: &Spec, v: f64) -> Vec<MetricFamily> {
    let g = must(Gauge::new(spec.0, spec.1));
    g.set(v);
    g.collect()
}

fn int_counter(spec: &Spec, v: u64) -> Vec<MetricFamily> {
    let c = must(IntCounter::new(spec.0, spec.1));
    c.inc_by(v);
    c.collect()
}

/// A family of one label: a gauge per `(label value, value)`.
fn labelled_gauges<L: AsRef<str>>(
    spec: &Spec,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Vec<MetricFamily> {
    let g = must(IntGaugeVec::new(Opts::new(spec.0, spec.1), spec.2));
    for (label, v) in values {
        g.with_label_values(&[label.as_ref()]).set(v);
    }
    g.collect()
}

const RAFT_LEADER: Spec = (
    "kafka_server_raft_metrics_current_leader",
    "The controller quorum's leader as this node knows it (-1: none)",
    &[],
);
const RAFT_EPOCH: Spec = (
    "kafka_server_raft_metrics_current_epoch",
    "The quorum's epoch (Raft term) this node is in",
    &[],
);
const RAFT_STATE: Spec = (
    "kafka_server_raft_metrics_current_state",
    "1 for this node's role in the quorum (leader, follower, unattached: a voter with no leader known, observer)",
    &["state"],
);
const RAFT_HW: Spec = (
    "kafka_server_raft_metrics_high_watermark",
    "The metadata log offset this node has committed and applied up to",
    &[],
);
const RAFT_LEO: Spec = (
    "kafka_server_raft_metrics_log_end_offset",
    "The end of this node's metadata log",
    &[],
);
const RAFT_VOTER_LAG: Spec = (
    "strom_raft_voter_lag",
    "On the quorum's leader: entries each voter's log is behind the leader's",
    &["voter"],
);
const ACTIVE_CONTROLLER: Spec = (
    "kafka_controller_kafkacontroller_activecontrollercount",
    "1 on the active controller, else 0",
    &[],
);
const GLOBAL_TOPICS: Spec = (
    "kafka_controller_kafkacontroller_globaltopiccount",
    "Topics in the cluster (on controllers)",
    &[],
);
const GLOBAL_PARTITIONS: Spec = (
    "kafka_controller_kafkacontroller_globalpartitioncount",
    "Partitions in the cluster (on controllers)",
    &[],
);
const OFFLINE: Spec = (
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "Partitions without a leader (on controllers)",
    &[],
);
const IMBALANCE: Spec = (
    "kafka_controller_kafkacontroller_preferredreplicaimbalancecount",
    "Partitions whose leader is not their preferred (first) replica (on controllers)",
    &[],
);
const ACTIVE_BROKERS: Spec = (
    "kafka_controller_kafkacontroller_activebrokercount",
    "Registered, unfenced brokers (on controllers)",
    &[],
);
const FENCED_BROKERS: Spec = (
    "kafka_controller_kafkacontroller_fencedbrokercount",
    "Registered, fenced brokers (on controllers)",
    &[],
);

/// The quorum as this node sees it, and on a voter (a controller) the
/// cluster's state from its image.
fn quorum_collector(controller: Arc<Controller>) -> Box<dyn Collector> {
    let specs = [
        RAFT_LEADER,
        RAFT_EPOCH,
        RAFT_STATE,
        RAFT_HW,
        RAFT_LEO,
        RAFT_VOTER_LAG,
        ACTIVE_CONTROLLER,
        GLOBAL_TOPICS,
        GLOBAL_PARTITIONS,
        OFFLINE,
        IMBALANCE,
        ACTIVE_BROKERS,
        FENCED_BROKERS,
    ];
    scraped(&specs, move || {
        let quorum = controller.quorum();
        let status = quorum.status();
        let state = match (quorum.is_voter(), status.is_leader, status.leader) {
            (false, _, _) => "observer",
            (true, true, _) => "leader",
            (true, false, Some(_)) => "follower",
            (true, false, None) => "unattached",
        };
        let mut out = int_gauge(&RAFT_LEADER, status.leader.map_or(-1, i64::from));
        out.extend(int_gauge(&RAFT_EPOCH, status.term as i64));
        out.extend(labelled_gauges(&RAFT_STATE, [(state, 1)]));
        out.extend(int_gauge(&RAFT_HW, status.applied_end));
        out.extend(int_gauge(&RAFT_LEO, status.log_end));
        if status.is_leader {
            let lags = status
                .voters
                .iter()
                .filter(|v| v.log_end_offset >= 0)
                .map(|v| {
                    (
                        v.node_id.to_string(),
                        (status.log_end - v.log_end_offset).max(0),
                    )
                });
            out.extend(labelled_gauges(&RAFT_VOTER_LAG, lags));
        }
        if !quorum.is_voter() {
            return out;
        }
        let image = controller.image();
        let (mut partitions, mut offline, mut imbalanced) = (0, 0, 0);
        for topic in image.topics_unordered() {
            for p in topic.partitions.values() {
                partitions += 1;
                offline += i64::from(p.leader < 0);
                imbalanced += i64::from(p.replicas.first().is_some_and(|r| *r != p.leader));
            }
        }
        let (active, fenced) = image.brokers().fold((0, 0), |(a, f), b| {
            if b.is_active() {
                (a + 1, f)
            } else {
                (a, f + 1)
            }
        });
        out.extend(int_gauge(&ACTIVE_CONTROLLER, i64::from(status.is_leader)));
        out.extend(int_gauge(
            &GLOBAL_TOPICS,
            image.topics_unordered().count() as i64,
        ));
        out.extend(int_gauge(&GLOBAL_PARTITIONS, partitions));
        out.extend(int_gauge(&OFFLINE, offline));
        out.extend(int_gauge(&IMBALANCE, imbalanced));
        out.extend(int_gauge(&ACTIVE_BROKERS, active));
        out.extend(int_gauge(&FENCED_BROKERS, fenced));
        out
    })
}

const CLEANER_RECOPY: Spec = (
    "kafka_log_logcleaner_cleaner_recopy_percent",
    "Bytes the cleaner's last round wrote, in percent of those it read",
    &[],
);
const CLEANER_TIME: Spec = (
    "kafka_log_logcleaner_max_clean_time_secs",
    "The longest cleaning of the cleaner's last round, in seconds",
    &[],
);
const CLEANER_DIRTY: Spec = (
    "kafka_log_logcleanermanager_max_dirty_percent",
    "The dirtiest compacted log's dirty ratio at the cleaner's last round, in percent",
    &[],
);
const CLEANER_UNCLEANABLE: Spec = (
    "kafka_log_logcleanermanager_uncleanable_partitions_count",
    "Partitions the cleaner left alone after a failed cleaning (until restart)",
    &[],
);
const CLEANER_SINCE: Spec = (
    "kafka_log_logcleanermanager_time_since_last_run_ms",
    "Milliseconds since the cleaner's last round (-1: none yet)",
    &[],
);
const CLEANER_CLEANINGS: Spec = ("strom_log_cleaner_cleanings_total", "Logs cleaned", &[]);
const CLEANER_READ: Spec = (
    "strom_log_cleaner_read_bytes_total",
    "Bytes the cleaner read",
    &[],
);
const CLEANER_WRITTEN: Spec = (
    "strom_log_cleaner_written_bytes_total",
    "Bytes the cleaner wrote",
    &[],
);
const CLEANER_REMOVED: Spec = (
    "strom_log_cleaner_removed_records_total",
    "Records the cleaner removed (superseded or expired tombstones)",
    &[],
);

/// The log cleaner's progress.
fn cleaner_collector(replicas: Arc<ReplicaManager>) -> Box<dyn Collector> {
    let specs = [
        CLEANER_RECOPY,
        CLEANER_TIME,
        CLEANER_DIRTY,
        CLEANER_UNCLEANABLE,
        CLEANER_SINCE,
        CLEANER_CLEANINGS,
        CLEANER_READ,
        CLEANER_WRITTEN,
        CLEANER_REMOVED,
    ];
    scraped(&specs, move || {
        let s = replicas.cleaner_stats().snapshot();
        let since = if s.last_round_ms > 0 {
            (crate::broker::now_ms() - s.last_round_ms).max(0)
        } else {
            -1
        };
        let mut out = float_gauge(&CLEANER_RECOPY, s.recopy_percent);
        out.extend(float_gauge(&CLEANER_TIME, s.max_clean_secs));
        out.extend(float_gauge(&CLEANER_DIRTY, s.max_dirty_percent));
        out.extend(int_gauge(
            &CLEANER_UNCLEANABLE,
            s.uncleanable_partitions as i64,
        ));
        out.extend(int_gauge(&CLEANER_SINCE, since));
        out.extend(int_counter(&CLEANER_CLEANINGS, s.cleanings));
        out.extend(int_counter(&CLEANER_READ, s.bytes_read));
        out.extend(int_counter(&CLEANER_WRITTEN, s.bytes_written));
        out.extend(int_counter(&CLEANER_REMOVED, s.records_removed));
        out
    })
}

const TXNS: Spec = (
    "strom_transactions",
    "Transactional ids this node coordinates, by their transaction's state (Ongoing, PrepareCommit, PrepareAbort: open; CompleteCommit, CompleteAbort, Empty, Dead)",
    &["state"],
);
const TXNS_ENDED: Spec = (
    "strom_transactions_completed_total",
    "Transactions this node's coordinator completed since it started, by result (commit, abort)",
    &["result"],
);

/// The transaction coordinator's transactions.
fn txn_collector(txns: Arc<TxnCoordinator>) -> Box<dyn Collector> {
    scraped(&[TXNS, TXNS_ENDED], move || {
        let mut by_state: Vec<(&'static str, i64)> = Vec::new();
        for t in txns.list(&[], &[], -1, crate::broker::now_ms()) {
            let name = t.state.name();
            match by_state.iter_mut().find(|(s, _)| *s == name) {
                Some((_, n)) => *n += 1,
                None => by_state.push((name, 1)),
            }
        }
        let mut out = labelled_gauges(&TXNS, by_state);
        let (commits, aborts) = txns.completed();
        let ended = must(IntCounterVec::new(
            Opts::new(TXNS_ENDED.0, TXNS_ENDED.1),
            TXNS_ENDED.2,
        ));
        ended.with_label_values(&["commit"]).inc_by(commits);
        ended.with_label_values(&["abort"]).inc_by(aborts);
        out.extend(ended.collect());
        out
    })
}
