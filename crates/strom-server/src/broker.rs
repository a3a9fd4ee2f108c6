//! The state of one node and how it is opened and closed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use strom_controller::{
    ApiError, BrokerRegistration, Controller, ControllerError, IsrUpdate, QuorumConfig, Transport,
};
use strom_coordinator::{GroupConfig, GroupCoordinator, TxnConfig, TxnCoordinator};
use strom_metadata::config::StaticConfig;
use strom_metadata::MetadataImage;
use strom_protocol::ErrorCode;
use strom_replica::{FetcherConfig, LogCleaner, ReplicaFetchers, ReplicaManager};
use strom_storage::StorageError;
use tracing::{error, info, warn};

use crate::coordination::Coordinated;
use crate::dir_lock::{DirLock, LockError};
use crate::fetch_sessions::FetchSessions;
use crate::internal::{self, InternalTopicLog, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::lifecycle::{Lifecycle, Refused};
use crate::memory::MemoryPool;
use crate::meta::{MetaError, MetaProperties};
use crate::metrics::{Metrics, Sources};
use crate::producer_ids::ProducerIdAllocator;
use crate::replica_link::KafkaLink;
use crate::txns::Markers;

/// What a node is started with.
pub struct BrokerOptions {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// The address clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub config: StaticConfig,
    /// The process's open-files limit (`None`: not known, not enforced).
    pub open_files_limit: Option<u64>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `controller.quorum.voters`: node id -> controller listener address;
    /// empty for a quorum of this node alone.
    pub voters: BTreeMap<i32, String>,
    /// How this node reaches the other voters.
    pub transport: Arc<dyn Transport>,
    /// Where the other voters reach this one (`None`: a quorum of one).
    pub controller_listener: Option<tokio::net::TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot start the log cleaner: {0}")]
    Cleaner(std::io::Error),
    #[error("the controller refused this broker: {0}")]
    Refused(String),
}

/// How many segment files may be open: the open-files limit less a tenth
/// (at least 64) for connections, the metadata log, and indexes and
/// snapshots being written.
fn segment_files_budget(limit: u64) -> u64 {
    limit.saturating_sub((limit / 10).max(64))
}

/// One node: controller and broker roles together.
pub struct Broker {
    pub(crate) node_id: i32,
    pub(crate) cluster_id: String,
    pub(crate) controller: Arc<Controller>,
    /// Registration, heartbeats and controlled shutdown.
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) groups: Arc<GroupCoordinator>,
    pub(crate) txns: Arc<TxnCoordinator>,
    pub(crate) producer_ids: Arc<ProducerIdAllocator>,
    pub(crate) config: StaticConfig,
    /// `queued.max.request.bytes`: requests read and fetch data being read.
    pub(crate) memory: MemoryPool,
    /// Incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: FetchSessions,
    /// Fetchers for the partitions this node follows.
    fetchers: ReplicaFetchers,
    /// What `/metrics` serves.
    pub(crate) metrics: Metrics,
    /// Serialises applying images to the replica manager.
    apply_lock: Mutex<()>,
    /// Stopped first at shutdown.
    cleaner: Mutex<Option<LogCleaner>>,
    /// The internal partitions whose coordinators this node runs.
    pub(crate) coordinated: Mutex<Coordinated>,
    /// Notified when a transaction marker was delivered: the transaction
    /// coordinator then finishes the ends waiting on it.
    pub(crate) markers_delivered: Arc<tokio::sync::Notify>,
    /// Requests to the other brokers (transaction verification).
    pub(crate) link: KafkaLink,
    /// Held while the broker lives: no second process opens the directory.
    _dir_lock: DirLock,
}

/// Wall-clock milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Opens this node's controller: a voter of the quorum when it is one
/// of the voters (or the only node, with none), else an observer of them;
/// a voter serves its peers on `listener`.
pub(crate) async fn open_controller(
    opts: &BrokerOptions,
    listener: Option<tokio::net::TcpListener>,
) -> Result<Arc<Controller>, BrokerError> {
    let quorum_dir = opts.data_dir.join("__cluster_metadata-0");
    let mut quorum = QuorumConfig::single(opts.node_id, quorum_dir);
    if !opts.voters.is_empty() {
        quorum.voters = opts.voters.clone();
    }
    let ms = |name: &str| opts.config.get_i64(name).max(1) as u64;
    quorum.election_timeout_ms = ms("controller.quorum.election.timeout.ms");
    quorum.heartbeat_interval_ms = ms("controller.quorum.heartbeat.interval.ms");
    quorum.snapshot_entries = ms("controller.quorum.snapshot.entries");
    quorum.write_timeout =
        std::time::Duration::from_millis(ms("controller.quorum.request.timeout.ms"));
    let controller =
        Arc::new(Controller::open(quorum, opts.transport.clone(), opts.config.clone()).await?);
    if let Some(listener) = listener {
        tokio::spawn(crate::peer::serve(
            listener,
            controller.clone(),
            opts.config.get_i64("socket.request.max.bytes") as usize,
        ));
    }
    Ok(controller)
}

impl Broker {
    /// Opens the data directory: identity, this node's part of the
    /// controller quorum, broker registration, then every hosted partition
    /// (recovered).
    pub async fn open(mut opts: BrokerOptions) -> Result<Arc<Broker>, BrokerError> {
        let dir_lock = DirLock::acquire(&opts.data_dir)?;
        let recorded = MetaProperties::load(&opts.data_dir, opts.node_id)?;
        let listener = opts.controller_listener.take();
        let controller = open_controller(&opts, listener).await?;
        let registration = BrokerRegistration {
            node_id: opts.node_id,
            host: opts.advertised_host.clone(),
            port: i32::from(opts.advertised_port),
            rack: opts.rack.clone(),
            cluster_id: recorded.as_ref().map(|m| m.cluster_id.clone()),
            incarnation_id: strom_metadata::Uuid::new_v4(),
        };
        let lifecycle = Arc::new(Lifecycle::new(
            controller.clone(),
            registration,
            std::time::Duration::from_millis(
                opts.config.get_i64("broker.heartbeat.interval.ms").max(1) as u64,
            ),
        ));
        let cluster_id = lifecycle
            .register()
            .await
            .map_err(|Refused(why)| BrokerError::Refused(why))?;
        let meta = MetaProperties {
            node_id: opts.node_id,
            cluster_id,
        };
        if recorded.is_none() {
            meta.store(&opts.data_dir)?;
        }
        // Registered, this node's image holds every earlier commit: a
        // cluster with no topics and no cluster-wide configs is new.
        let image = controller.image();
        let fresh =
            image.topics_unordered().next().is_none() && image.broker_configs(None).is_none();
        if fresh {
            // As Kafka's format does (for KIP-966), a new cluster records
            // min.insync.replicas as a cluster-wide dynamic default.
            let bootstrap = strom_controller::AlterConfigsRequest {
                resource: strom_metadata::ConfigResource::Broker(None),
                ops: vec![strom_controller::ConfigOp::Set(
                    "min.insync.replicas".into(),
                    opts.config
                        .get("min.insync.replicas")
                        .unwrap_or_else(|| "1".into()),
                )],
                replace: false,
            };
            match controller.alter_configs(vec![bootstrap], false).await {
                Ok(mut outcome) => {
                    if let Some(Err(e)) = outcome.pop() {
                        warn!(error = %e.message, "cannot record the cluster-wide min.insync.replicas");
                    }
                }
                Err(e) => warn!(error = %e, "cannot record the cluster-wide min.insync.replicas"),
            }
        }
        // Opening and recovering partitions, and loading the coordinators,
        // read files: off the runtime's async threads.
        let broker = tokio::task::block_in_place(move || {
            Self::open_partitions(opts, meta, dir_lock, controller, lifecycle)
        })?;
        // Serving, it may lead: the controller unfences it now.
        broker.lifecycle.wait_unfenced().await;
        broker
            .sync_replicas()
            .map_err(|e| BrokerError::Refused(e.message))?;
        Ok(broker)
    }

    /// What [`Broker::open`] does once the controller is open.
    fn open_partitions(
        opts: BrokerOptions,
        meta: MetaProperties,
        dir_lock: DirLock,
        controller: Arc<Controller>,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Arc<Broker>, BrokerError> {
        let replicas = Arc::new(ReplicaManager::new(
            opts.node_id,
            &opts.data_dir,
            opts.config.clone(),
        ));
        // Segment files beyond what the open-files limit leaves room for
        // are closed when idle and reopened on use.
        if let Some(limit) = opts.open_files_limit {
            let budget = segment_files_budget(limit);
            strom_storage::set_open_segment_files(budget as usize);
            info!(
                limit,
                segment_files = budget,
                "segment files kept open at most"
            );
        }
        replicas.apply_image(&controller.image())?;
        let ms =
            |name: &str| std::time::Duration::from_millis(opts.config.get_i64(name).max(0) as u64);
        let group_config = GroupConfig {
            min_session_timeout: ms("group.min.session.timeout.ms"),
            max_session_timeout: ms("group.max.session.timeout.ms"),
            initial_rebalance_delay: ms("group.initial.rebalance.delay.ms"),
            offsets_partitions: opts.config.get_i64("offsets.topic.num.partitions") as i32,
            offset_metadata_max_bytes: opts.config.get_i64("offset.metadata.max.bytes") as usize,
            offsets_retention: std::time::Duration::from_secs(
                opts.config.get_i64("offsets.retention.minutes").max(1) as u64 * 60,
            ),
            consumer_session_timeout: ms("group.consumer.session.timeout.ms"),
            consumer_heartbeat_interval: ms("group.consumer.heartbeat.interval.ms"),
            classic_max_size: opts.config.get_i64("group.max.size").max(1) as usize,
            consumer_max_size: opts.config.get_i64("group.consumer.max.size").max(1) as usize,
        };
        let groups = Arc::new(GroupCoordinator::new(
            group_config,
            Arc::new(InternalTopicLog {
                replicas: replicas.clone(),
                topic: OFFSETS_TOPIC,
            }),
        ));
        let offsets_partitions = groups.config().offsets_partitions;
        let producer_ids = ProducerIdAllocator::new(controller.clone(), opts.node_id);
        // How this node reaches the others: followers' fetches, markers.
        let link = KafkaLink::new(
            controller.clone(),
            opts.node_id,
            std::time::Duration::from_millis(
                opts.config
                    .get_i64("controller.quorum.request.timeout.ms")
                    .max(1) as u64,
            ),
            opts.config.get_i64("socket.request.max.bytes").max(1) as usize,
        );
        let markers = Arc::new(Markers::new(
            opts.node_id,
            replicas.clone(),
            groups.clone(),
            controller.clone(),
            link.clone(),
        ));
        let config = &opts.config;
        let txn_config = TxnConfig {
            state_partitions: config.get_i64("transaction.state.log.num.partitions") as i32,
            offsets_partitions,
            max_timeout_ms: config.get_i64("transaction.max.timeout.ms"),
            id_expiration_ms: config.get_i64("transactional.id.expiration.ms"),
            abort_check_interval_ms: config
                .get_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        };
        let txns = Arc::new(TxnCoordinator::new(
            txn_config,
            Arc::new(InternalTopicLog {
                replicas: replicas.clone(),
                topic: TRANSACTION_STATE_TOPIC,
            }),
            producer_ids.clone(),
            markers.clone(),
        ));
        let cleaner_enabled = opts.config.get_bool("log.cleaner.enable");
        let broker = Arc::new(Broker {
            node_id: opts.node_id,
            cluster_id: meta.cluster_id,
            controller: controller.clone(),
            lifecycle,
            metrics: Metrics::new(Sources {
                replicas: replicas.clone(),
                groups: groups.clone(),
                controller: controller.clone(),
                txns: txns.clone(),
            }),
            replicas,
            groups,
            txns,
            producer_ids,
            memory: MemoryPool::new(opts.config.get_i64("queued.max.request.bytes")),
            fetch_sessions: FetchSessions::new(
                opts.config
                    .get_i64("max.incremental.fetch.session.cache.slots")
                    .max(0) as usize,
            ),
            fetchers: ReplicaFetchers::new(
                opts.node_id,
                Arc::new(link.clone()),
                FetcherConfig::from(&opts.config),
            ),
            markers_delivered: markers.delivered.clone(),
            link,
            config: opts.config,
            apply_lock: Mutex::new(()),
            cleaner: Mutex::new(None),
            coordinated: Mutex::new(Coordinated::default()),
            _dir_lock: dir_lock,
        });
        // The coordinators load the internal partitions this node leads;
        // the cleaner starts after, so that no cleaning runs under a load.
        broker.reconcile_coordinators();
        if cleaner_enabled {
            let cleaner =
                LogCleaner::start(broker.replicas.clone()).map_err(BrokerError::Cleaner)?;
            *broker.cleaner.lock().unwrap_or_else(|p| p.into_inner()) = Some(cleaner);
        }
        info!(node_id = broker.node_id, cluster_id = %broker.cluster_id, partitions = broker.replicas.partition_count(), "broker opened");
        Ok(broker)
    }

    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// The broker's configuration with the dynamic overrides of `image`
    /// (this broker's, then the cluster-wide ones) over the static one.
    pub(crate) fn effective_config(&self, image: &MetadataImage) -> StaticConfig {
        self.config.with_dynamic(
            image.broker_configs(Some(self.node_id)),
            image.broker_configs(None),
        )
    }

    /// The active controller as this node knows it (-1: none known, during
    /// an election). Any broker forwards metadata changes to it.
    pub(crate) fn controller_id(&self) -> i32 {
        self.controller.quorum().leader().unwrap_or(-1)
    }

    /// Brings the hosted partitions up to the controller's current image;
    /// called after every metadata change so a request that changed
    /// metadata is answered only once the change is in effect here.
    pub(crate) fn sync_replicas(&self) -> Result<(), ApiError> {
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self
            .replicas
            .apply_image(&self.controller.image())
            .map_err(|e| {
                error!(error = %e, "cannot apply metadata image");
                ApiError::new(ErrorCode::KafkaStorageError, e.to_string())
            });
        // Partitions this node follows fetch from their leaders; the
        // coordinators follow the internal partitions' leadership.
        self.fetchers.reconcile(&self.replicas);
        self.reconcile_coordinators();
        applied
    }

    /// Makes sure `__consumer_offsets` exists (created on first use).
    pub(crate) async fn ensure_offsets_topic(&self) -> Result<(), ErrorCode> {
        let topic = internal::InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: self.groups.config().offsets_partitions,
            replication_factor: self.config.get_i64("offsets.topic.replication.factor") as i16,
            segment_bytes: self.config.get_i64("offsets.topic.segment.bytes"),
            min_isr: None,
        };
        let created = internal::ensure_topic(&self.controller, topic).await?;
        if created {
            self.sync_replicas().map_err(|e| e.code)?;
        }
        Ok(())
    }

    /// Makes sure `__transaction_state` exists (created on first use).
    pub(crate) async fn ensure_transaction_state_topic(&self) -> Result<(), ErrorCode> {
        let topic = internal::InternalTopic {
            name: TRANSACTION_STATE_TOPIC,
            partitions: self.txns.config().state_partitions,
            replication_factor: self
                .config
                .get_i64("transaction.state.log.replication.factor")
                as i16,
            segment_bytes: self.config.get_i64("transaction.state.log.segment.bytes"),
            min_isr: Some(self.config.get_i64("transaction.state.log.min.isr")),
        };
        let created = internal::ensure_topic(&self.controller, topic).await?;
        if created {
            self.sync_replicas().map_err(|e| e.code)?;
        }
        Ok(())
    }

    /// Group timers: join phases that timed out, expired sessions.
    pub fn tick_groups(&self) {
        self.groups.tick(std::time::Instant::now());
    }

    /// `socket.request.max.bytes`.
    pub fn max_frame_bytes(&self) -> usize {
        self.config.get_i64("socket.request.max.bytes") as usize
    }

    /// Periodic upkeep: `flush.ms`, log retention, offset retention,
    /// transaction timeouts and unfinished transaction ends.
    pub fn maintain(&self) {
        let now = now_ms();
        // Partitions that could not be opened (a full disk, say) are tried
        // again, so a topic created then works once the cause is gone.
        if self.replicas.has_failed_topics() {
            let _ = self.sync_replicas();
        }
        self.replicas.maintain(now);
        self.groups.expire_offsets(now);
        self.txns.tick(now);
    }

    /// Moves this broker's leaderships away through the controller, before
    /// it stops (what SIGTERM does first): whether the controller let it go
    /// within `controller.quorum.request.timeout.ms` twice over.
    pub async fn controlled_shutdown(&self) -> bool {
        let timeout = self
            .config
            .get_i64("controller.quorum.request.timeout.ms")
            .max(1) as u64;
        let done = self
            .lifecycle
            .controlled_shutdown(std::time::Duration::from_millis(2 * timeout))
            .await;
        // What it leads no more is in effect here before connections close.
        let _ = self.sync_replicas();
        done
    }

    /// Stops the log cleaner and closes every partition cleanly.
    pub fn shutdown(&self) {
        if let Some(mut cleaner) = self
            .cleaner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            cleaner.stop();
        }
        self.fetchers.shutdown();
        self.replicas.shutdown();
        info!("broker closed");
    }
}

impl Broker {
    /// Whether the metadata has this broker fenced (or not registered).
    pub(crate) fn is_fenced(&self) -> bool {
        self.image().broker(self.node_id).is_none_or(|b| b.fenced)
    }

    /// Asks the active controller for the ISR changes this node's
    /// leaderships want (AlterPartition): followers out of time leave,
    /// caught-up ones join. The changes reach the partitions with the
    /// metadata; one refused (a stale epoch) is asked again from the newer
    /// state. Returns how many were asked for.
    pub(crate) async fn alter_isrs(&self) -> usize {
        let wanted = self.replicas.wanted_isrs(now_ms());
        if wanted.is_empty() {
            return 0;
        }
        let asked = wanted.len();
        let updates = wanted
            .iter()
            .cloned()
            .map(|c| IsrUpdate {
                topic_id: c.topic_id,
                partition: c.partition,
                leader_epoch: c.leader_epoch,
                partition_epoch: c.partition_epoch,
                isr: c.isr,
            })
            .collect::<Vec<_>>();
        let described: Vec<(i32, Vec<i32>, bool)> = wanted
            .iter()
            .map(|c| (c.partition, c.isr.clone(), c.shrink))
            .collect();
        match self
            .controller
            .alter_partition(self.node_id, self.lifecycle.epoch(), updates)
            .await
        {
            Ok(Ok(outcomes)) => {
                for ((partition, isr, shrink), outcome) in described.iter().zip(outcomes) {
                    self.metrics.isr_changed(*shrink, outcome.is_ok());
                    match outcome {
                        Ok(done) => info!(
                            partition,
                            ?isr,
                            partition_epoch = done.partition_epoch,
                            "ISR changed"
                        ),
                        Err(e) => {
                            info!(partition, ?isr, code = ?e.code, error = %e.message, "ISR change refused")
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                described
                    .iter()
                    .for_each(|(_, _, shrink)| self.metrics.isr_changed(*shrink, false));
                warn!(code = ?e.code, error = %e.message, "AlterPartition refused")
            }
            Err(e) => {
                described
                    .iter()
                    .for_each(|(_, _, shrink)| self.metrics.isr_changed(*shrink, false));
                warn!(error = %e, "AlterPartition not answered")
            }
        }
        asked
    }
}
